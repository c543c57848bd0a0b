"""The sign-in lockout's rules, on the real ``SignInGuard`` with real SQLite
storage: per (user name, address), per address, and kept across a restart.

End-to-end versions (a real platform process, clients on several loopback
addresses) are in tests/test_lockout.py; here the addresses are just strings,
which lets the rules be checked quickly and exactly.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent_phone.cloud.config import ConfigError, demo_config, load_config
from agent_phone.cloud.lockout import ADDRESS, NAME, LockedOut, SignInGuard, client_address
from agent_phone.cloud.storage import SqliteStorage

ATTACKER = "203.0.113.7"
AGENT = "198.51.100.20"
OTHER = "198.51.100.99"


def _guard(path: Path, **settings: object) -> tuple[SignInGuard, SqliteStorage]:
    storage = SqliteStorage(path)
    return SignInGuard(demo_config(**settings), storage), storage


def _fail(guard: SignInGuard, user: str, address: str):
    """One wrong password, as AgentSession makes it: check, begin, failed, end."""
    guard.check(user, address)
    guard.begin(user, address)
    try:
        return guard.failed(user, address)
    finally:
        guard.end(user, address)


def _crash(storage: SqliteStorage) -> None:
    """Leave the file as a killed process would (after its queued writes)."""
    storage.flush()
    storage._db.close()
    storage._lock_file.close()


def _rows(path: Path, table: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
    finally:
        db.close()


def test_an_attackers_failures_lock_the_name_only_from_the_attackers_address(tmp_path: Path):
    guard, _ = _guard(tmp_path / "db", lockout_failures=3, sign_in_delay_s=0.5)
    verdicts = [_fail(guard, "bob", ATTACKER) for _ in range(3)]
    assert [(v.failures, v.delay_s) for v in verdicts] == [(1, 0.0), (2, 0.5), (3, 1.0)]
    assert verdicts[-1].locked_for_s == 300.0 and verdicts[0].locked_for_s == 0.0
    with pytest.raises(LockedOut) as locked:
        guard.check("bob", ATTACKER)
    assert locked.value.scope == NAME and 299 < locked.value.retry_after_s <= 300
    assert "this user is locked" in locked.value.message

    # The real bob, at his own desk: not refused, and his own first typo is
    # his first failure (answered at once), not the attacker's fourth.
    guard.check("bob", AGENT)
    guard.begin("bob", AGENT)
    guard.end("bob", AGENT)
    typo = _fail(guard, "bob", AGENT)
    assert (typo.failures, typo.delay_s, typo.locked_for_s) == (1, 0.0, 0.0)
    guard.succeeded("bob", AGENT)
    # His success does not unlock the attacker.
    with pytest.raises(LockedOut):
        guard.check("bob", ATTACKER)


def test_attempts_in_flight_elsewhere_do_not_refuse_the_agent(tmp_path: Path):
    """A burst of guesses still being checked counts against the attacker's
    address only."""
    guard, _ = _guard(tmp_path / "db", lockout_failures=3, lockout_address_failures=5)
    for _ in range(3):
        guard.begin("bob", ATTACKER)
    with pytest.raises(LockedOut) as refused:
        guard.begin("bob", ATTACKER)
    assert refused.value.retry_after_s == 1.0
    guard.check("bob", AGENT)
    guard.begin("bob", AGENT)  # not refused
    guard.end("bob", AGENT)
    guard.succeeded("bob", AGENT)
    # In flight counts per address too: 3 for bob + 2 others, then the address is full.
    guard.begin("alice", ATTACKER)
    guard.begin("carol", ATTACKER)
    with pytest.raises(LockedOut) as full:
        guard.begin("mallory", ATTACKER)
    assert full.value.scope == ADDRESS


def test_one_address_trying_many_names_is_locked_for_every_name(tmp_path: Path):
    guard, _ = _guard(
        tmp_path / "db", lockout_failures=5, lockout_address_failures=4, lockout_s=60.0
    )
    names = ["alice", "bob", "carol", "mallory"]
    verdicts = [_fail(guard, name, ATTACKER) for name in names]
    assert [v.failures for v in verdicts] == [1, 1, 1, 1]  # each name once: no name lock
    assert [v.address_failures for v in verdicts] == [1, 2, 3, 4]
    assert [v.address_locked_for_s for v in verdicts] == [0.0, 0.0, 0.0, 60.0]
    assert all(v.delay_s == 0.0 and v.locked_for_s == 0.0 for v in verdicts)
    # Every name is refused from that address, a name never tried included.
    for name in [*names, "zoe"]:
        with pytest.raises(LockedOut) as locked:
            guard.check(name, ATTACKER)
        assert locked.value.scope == ADDRESS and 59 < locked.value.retry_after_s <= 60
        assert "this address is locked" in locked.value.message
    # Any other address is untouched.
    guard.check("alice", AGENT)
    assert _fail(guard, "alice", AGENT).address_failures == 1


def test_a_success_does_not_reset_the_address_count(tmp_path: Path):
    """An attacker with one account of their own cannot clear the address's
    count by signing in between guesses."""
    guard, _ = _guard(tmp_path / "db", lockout_failures=5, lockout_address_failures=3)
    _fail(guard, "alice", ATTACKER)
    _fail(guard, "bob", ATTACKER)
    guard.succeeded("carol", ATTACKER)  # the attacker's own account
    assert _fail(guard, "mallory", ATTACKER).address_locked_for_s > 0
    with pytest.raises(LockedOut):
        guard.check("carol", ATTACKER)


def test_locks_and_counts_survive_a_restart_and_then_expire(tmp_path: Path):
    path = tmp_path / "db"
    settings = {"lockout_failures": 2, "lockout_address_failures": 10, "lockout_s": 1.5}
    first, storage = _guard(path, **settings)
    _fail(first, "bob", ATTACKER)
    assert _fail(first, "bob", ATTACKER).locked_for_s == 1.5
    _fail(first, "carol", OTHER)  # one failure, not locked
    _crash(storage)

    second, storage = _guard(path, **settings)
    # bob's lock (his failures gave way to it); carol's failure; two
    # addresses' counts (2 and 1 failures).
    assert second.restored == (1, 4)
    with pytest.raises(LockedOut) as locked:
        second.check("bob", ATTACKER)
    assert 0 < locked.value.retry_after_s <= 1.5
    second.check("bob", AGENT)  # still per address after the restart
    # carol's earlier failure still counts: her second one locks her.
    verdict = _fail(second, "carol", OTHER)
    assert (verdict.failures, verdict.locked_for_s) == (2, 1.5)
    # The restored lock ends when it was due (counted on the wall clock),
    # and the name's count starts afresh.
    time.sleep(locked.value.retry_after_s + 0.1)
    second.check("bob", ATTACKER)
    assert _fail(second, "bob", ATTACKER).failures == 1
    _crash(storage)

    third, storage = _guard(path, **settings)
    third.check("bob", ATTACKER)
    _crash(storage)


def test_the_address_lock_survives_a_restart(tmp_path: Path):
    path = tmp_path / "db"
    settings = {"lockout_failures": 5, "lockout_address_failures": 2, "lockout_s": 30.0}
    first, storage = _guard(path, **settings)
    _fail(first, "alice", ATTACKER)
    assert _fail(first, "bob", ATTACKER).address_locked_for_s == 30.0
    _crash(storage)
    second, storage = _guard(path, **settings)
    with pytest.raises(LockedOut) as locked:
        second.check("zoe", ATTACKER)
    assert locked.value.scope == ADDRESS and 29 < locked.value.retry_after_s <= 30
    second.check("zoe", AGENT)
    _crash(storage)


def test_old_failures_and_ended_locks_are_pruned(tmp_path: Path):
    path = tmp_path / "db"
    settings = {
        "lockout_failures": 2,
        "lockout_address_failures": 10,
        "lockout_window_s": 0.5,
        "lockout_s": 0.3,
    }
    guard, storage = _guard(path, **settings)
    _fail(guard, "bob", ATTACKER)
    _fail(guard, "bob", ATTACKER)  # locks bob from there: his failures give way to the lock
    _fail(guard, "alice", OTHER)
    storage.flush()
    assert [r[:3] for r in _rows(path, "sign_in_locks")] == [("name", "bob", ATTACKER)]
    kept = {r[:3] for r in _rows(path, "sign_in_failures")}
    assert kept == {("address", "", ATTACKER), ("name", "alice", OTHER), ("address", "", OTHER)}
    # A success clears that name's rows from that address.
    guard.succeeded("alice", OTHER)
    storage.flush()
    assert ("name", "alice", OTHER) not in {r[:3] for r in _rows(path, "sign_in_failures")}

    time.sleep(0.6)  # past the window and the lock
    _fail(guard, "carol", AGENT)  # the window has passed: this failure prunes
    storage.flush()
    assert _rows(path, "sign_in_locks") == []
    assert {r[:3] for r in _rows(path, "sign_in_failures")} == {
        ("name", "carol", AGENT),
        ("address", "", AGENT),
    }
    _crash(storage)
    # At start too: a restart after the window keeps nothing.
    time.sleep(0.6)
    again, storage = _guard(path, **settings)
    assert again.restored == (0, 0)
    assert _rows(path, "sign_in_failures") == [] and _rows(path, "sign_in_locks") == []
    _crash(storage)


def test_the_per_address_limit_is_read_and_checked_from_the_configuration(tmp_path: Path):
    path = tmp_path / "platform.toml"
    path.write_text("[platform]\nlockout_address_failures = 7\n")
    assert load_config(path).lockout_address_failures == 7
    path.write_text("[platform]\n")
    assert load_config(path).lockout_address_failures == 20
    for bad in ("0", "2.5", "true", '"20"'):
        path.write_text(f"[platform]\nlockout_address_failures = {bad}\n")
        with pytest.raises(ConfigError, match="platform.lockout_address_failures"):
            load_config(path)


def test_ipv6_peers_are_counted_by_their_64_prefix():
    """One IPv6 host may use any address of its /64: those are one address here."""
    assert client_address("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_address("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert client_address("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert client_address("::ffff:192.0.2.9") == "192.0.2.9"
    assert client_address("::1") == "::1"
    assert client_address("192.0.2.9") == "192.0.2.9"
    assert client_address(None) == "unknown"


def test_a_restored_lock_is_no_longer_than_the_lockout_now_set(tmp_path: Path):
    """An administrator who shortens lockout_s and restarts shortens the locks
    in force too (and a clock set back cannot stretch them)."""
    path = tmp_path / "db"
    first, storage = _guard(path, lockout_failures=1, lockout_s=600.0)
    assert _fail(first, "bob", ATTACKER).locked_for_s == 600.0
    _crash(storage)
    second, storage = _guard(path, lockout_failures=1, lockout_s=2.0)
    with pytest.raises(LockedOut) as locked:
        second.check("bob", ATTACKER)
    assert 0 < locked.value.retry_after_s <= 2.0
    _crash(storage)
