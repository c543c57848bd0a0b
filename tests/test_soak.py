"""The soak benchmark, small: calls through several phones with declines,
alert timeouts, hang-ups on both sides, abandons and a phone killed mid-call,
and not one call lost (benchmarks/soak.py runs the 1,000-call version)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_soak_loses_no_call(virtual_audio, tmp_path: Path) -> None:
    rate = 48000
    t = np.arange(rate) / rate
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 330 * t)).astype(np.int16)
    feed = virtual_audio.play_into_mic(tone, loop=True)  # the agents' voice
    out = tmp_path / "soak.json"
    env = {**os.environ, "AGENT_PHONE_SOAK_AUDIO_RUNNING": "1", "PYTHONPATH": str(REPO)}
    try:
        run = subprocess.run(
            [
                sys.executable,
                str(REPO / "benchmarks" / "soak.py"),
                "--calls",
                "60",
                "--agents",
                "4",
                "--callers",
                "5",
                "--checkpoints",
                "2",
                "--json",
                str(out),
                "--keep-logs",
                str(tmp_path / "logs"),
            ],
            capture_output=True,
            text=True,
            timeout=200,
            env=env,
        )
    finally:
        feed.stop()
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["lost"] == 0 and r["placed"] == 60
    assert r["answered"] + r["abandoned"] == 60
    assert not r["never_ended_at_platform"]
    # Everything the run is meant to exercise happened.
    assert r["agent_actions"].get("decline", 0) > 0
    assert r["requeued_by_reason"].get("connection_lost", 0) >= 1
    killed = r["killed"]
    # Its customer went back to the queue: taken by the next agent, unless
    # the customer's talk time ran out first while waiting again.
    assert killed["answered_by"][0] == killed["agent"], killed
    if len(killed["answered_by"]) > 1:
        assert killed["answered_by"][-1] != killed["agent"], killed
    else:
        assert killed["ended"] == "customer_hangup", killed
    # Answered calls carried audio both ways.
    a = r["audio"]
    assert a["customer_heard_by_agent"] >= 0.9 * a["answered_at_phone"]
    assert r["audio"]["agent_heard_by_customer"] >= 0.9 * r["answered"]
    assert r["platform"]["rate_limited_events"] == 0  # real traffic is never limited
    # Idle again after each phase: the platform's tables hold the four agents
    # and at most their kept connections (one may be re-connecting), whatever
    # went wrong before.
    memory = r["platform"]["memory_after_collection"]
    assert [c["placed"] for c in memory["checkpoints"]] == [30, 60]
    for c in memory["checkpoints"]:
        assert (c["agents"], c["calls"]) == (4, 0), c
        assert c["links"] <= 4 and c["setups"] <= 1 and c["timers"] <= 4, c
        assert c["heap_in_use_kb"] > 0, c
        # SQLite's share (its page cache holds the call records) is counted.
        assert 0 < c["sqlite_kb"] < c["heap_in_use_kb"], c
        assert c["heap_less_sqlite_kb"] == c["heap_in_use_kb"] - c["sqlite_kb"], c
