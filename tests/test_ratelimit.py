"""The per-connection rate limit as an object (the end-to-end flood is in
test_fuzz.py), and its settings in the configuration file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from agent_phone.cloud.config import ConfigError, load_config
from agent_phone.cloud.ratelimit import MessageRateLimit, RateLimitConfig, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def verdicts(limit: MessageRateLimit, clock: Clock, per_s: float, seconds: float) -> Counter:
    seen: Counter = Counter()
    for _ in range(int(per_s * seconds)):
        clock.now += 1 / per_s
        verdict = limit.check()
        seen[verdict] += 1
        if verdict is Verdict.CLOSE:
            break
    return seen


def test_traffic_under_the_limit_is_never_dropped():
    clock = Clock()
    limit = MessageRateLimit(RateLimitConfig(), clock)
    assert verdicts(limit, clock, per_s=19, seconds=60) == {Verdict.ACCEPT: 19 * 60}


def test_a_burst_passes_then_drops_are_told_once_a_second():
    clock = Clock()
    limit = MessageRateLimit(RateLimitConfig(rate=20, burst=50), clock)
    burst = [limit.check() for _ in range(80)]  # all at one instant
    assert burst[:50] == [Verdict.ACCEPT] * 50
    assert burst[50] is Verdict.DROP_AND_TELL and set(burst[51:]) == {Verdict.DROP}
    assert limit.told() == 30 and limit.told() == 0
    clock.now += 1.0  # refilled by 20
    assert [limit.check() for _ in range(21)][-1] is Verdict.DROP_AND_TELL


def test_five_times_the_limit_for_three_seconds_closes():
    clock = Clock()
    limit = MessageRateLimit(RateLimitConfig(rate=20, burst=50, abuse_factor=5, abuse_s=3), clock)
    seen = verdicts(limit, clock, per_s=101, seconds=10)
    assert seen[Verdict.CLOSE] == 1
    assert 2.9 <= sum(seen.values()) / 101 <= 3.1  # after ~3 s
    # Twice the limit is dropped but never closed.
    clock2 = Clock()
    limit2 = MessageRateLimit(RateLimitConfig(), clock2)
    seen2 = verdicts(limit2, clock2, per_s=40, seconds=30)
    assert Verdict.CLOSE not in seen2 and seen2[Verdict.DROP] > 0


def test_the_limit_is_set_in_the_configuration(tmp_path: Path):
    path = tmp_path / "p.toml"
    path.write_text(
        "[platform]\nrate_limit_per_s = 5\nrate_limit_burst = 7\n"
        "rate_limit_abuse_factor = 4\nrate_limit_abuse_s = 2\n"
    )
    assert load_config(path).rate_limit == RateLimitConfig(5.0, 7, 4.0, 2.0)
    path.write_text("[platform]\n")
    assert load_config(path).rate_limit == RateLimitConfig()
    for bad in ("rate_limit_per_s = 0", "rate_limit_burst = 1.5", "rate_limit_abuse_s = -1"):
        path.write_text(f"[platform]\n{bad}\n")
        with pytest.raises(ConfigError, match=bad.split()[0]):
            load_config(path)
