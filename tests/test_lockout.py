"""Repeated failed sign-ins are slowed, then the user name is locked for a
while (``locked_out``), against the real platform process; the slowdown holds
up no one else. The lock is per (user name, address) and per address, and
outlives a restart of the platform.

Clients connect from several loopback addresses (127.0.0.2, 127.0.0.3 ...:
Linux accepts any of 127.0.0.0/8 as a source), so the platform sees distinct
peers while all traffic stays on loopback. The rules in detail are checked
on SignInGuard itself in tests/test_lockout_guard.py.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from test_bad_input import RawClient, blocking, sign_in
from test_sessions import Raw, everything_logged

WRONG = "not-the-password-7f3a"


async def _timed_error(raw, payload: dict) -> tuple[dict, float]:
    started = time.monotonic()
    await raw.send(payload)
    error = await raw.receive("error", timeout=20)
    return error, time.monotonic() - started


async def test_failures_are_slowed_then_locked_and_others_are_served(start_platform, start_phone):
    platform = await blocking(
        start_platform,
        lockout_failures=3,
        lockout_s=12.0,
        sign_in_delay_s=1.0,
        sign_in_delay_max_s=2.0,
    )
    async with Raw(platform.url) as attacker, Raw(platform.url) as carol:
        # 1st failure: answered at once (a typo costs nothing).
        e, _ = await _timed_error(attacker, sign_in("bob", WRONG))
        assert e["code"] == "auth_failed" and e["retry_after_s"] is None
        # 2nd failure: its answer waits 1 s. Meanwhile another agent signs in
        # and is answered before the attacker's delayed error arrives.
        await attacker.send(sign_in("bob", WRONG))
        sent = time.monotonic()
        await asyncio.sleep(0.1)
        await carol.send(sign_in("carol"))
        assert (await carol.receive("signed_in", timeout=10))["agent"] == "carol"
        carol_took = time.monotonic() - sent
        e = await attacker.receive("error", timeout=20)
        took2 = time.monotonic() - sent
        assert e["code"] == "auth_failed"
        assert took2 >= 1.0 and carol_took < took2, (carol_took, took2)
        # 3rd failure within the window: locked, and told for how long.
        e, took3 = await _timed_error(attacker, sign_in("bob", WRONG))
        assert took3 >= 2.0  # the delay doubles (capped at 2 s)
        assert e["code"] == "locked_out" and "try again in" in e["message"]
        assert 0 < e["retry_after_s"] <= 12.0
        # Locked: even the right password is refused, at once, without a check.
        e, _ = await _timed_error(attacker, sign_in("bob", "demo"))
        assert e["code"] == "locked_out" and e["retry_after_s"] > 0
        # Others are not locked.
        await carol.send({"type": "set_presence", "on_queue": True})
        assert (await carol.receive("presence"))["on_queue"] is True

    # The headless phone says why it cannot sign in.
    phone = await blocking(start_phone, platform.url, "bob")
    error = await blocking(phone.wait_for, "error")
    assert error["code"] == "sign_in" and "locked" in error["message"]
    assert "try again in" in error["message"]
    assert await blocking(phone.wait_exit, 10) == 1

    # After the lock, the right password works and clears the count.
    locked = platform.wait_for("user_locked", user="bob")
    assert locked["failures"] == 3 and locked["locked_s"] == 12.0
    await asyncio.sleep(max(0.0, locked["t"] + 12.2 - time.time()))
    async with Raw(platform.url) as bob:
        e, _ = await _timed_error(bob, sign_in("bob", WRONG))
        assert e["code"] == "auth_failed"  # a fresh count: answered at once, not locked
        await bob.send(sign_in("bob"))
        assert (await bob.receive("signed_in"))["agent"] == "bob"

    # Every line before it has been read once the last one has.
    platform.wait_for("agent_signed_in", agent="bob")
    failed = platform.matching("sign_in_failed", user="bob")
    assert [(f["code"], f.get("failures")) for f in failed] == [
        ("auth_failed", 1),
        ("auth_failed", 2),
        ("auth_failed", 3),
        ("locked_out", None),
        ("locked_out", None),
        ("auth_failed", 1),
    ]
    assert [f.get("delay_s") for f in failed if f["code"] == "auth_failed"] == [0.0, 1.0, 2.0, 0.0]
    await blocking(platform.stop)
    logged = everything_logged(platform)
    assert WRONG not in logged and '"demo"' not in logged


async def test_unknown_user_names_are_counted_too(start_platform):
    """An unknown name is slowed and locked like a real one, so the answers
    do not tell which names exist."""
    platform = await blocking(start_platform, lockout_failures=2, sign_in_delay_s=0.2)
    async with Raw(platform.url) as raw:
        e = await raw.error_for(sign_in("mallory", WRONG))
        assert e["code"] == "auth_failed"
        e = await raw.error_for(sign_in("mallory", WRONG))
        assert e["code"] == "locked_out" and e["retry_after_s"] > 200  # default 300 s
        e = await raw.error_for(sign_in("bob", WRONG))
        assert e["code"] == "auth_failed"  # per user name: bob is not locked


async def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(start_platform):
    """Guesses sent on many sockets at once: attempts in flight count, so no
    more passwords are checked than the failures the name has left."""
    platform = await blocking(start_platform, lockout_failures=3, sign_in_delay_s=0.5)
    raws = [Raw(platform.url) for _ in range(8)]
    clients = [await r.__aenter__() for r in raws]
    try:
        await asyncio.gather(*(c.send(sign_in("carol", WRONG)) for c in clients))
        errors = await asyncio.gather(*(c.receive("error", timeout=20) for c in clients))
    finally:
        for r in raws:
            await r.__aexit__(None, None, None)
    codes = sorted(e["code"] for e in errors)
    assert codes.count("auth_failed") <= 3 and codes.count("locked_out") >= 5, codes
    platform.wait_for("sign_in_failed", user="carol", where=lambda f: f.get("failures") == 3)
    checked = [f for f in platform.matching("sign_in_failed", user="carol") if "failures" in f]
    assert [f["failures"] for f in checked] == [1, 2, 3]  # three passwords checked, no more
    assert platform.wait_for("user_locked", user="carol")["failures"] == 3


class From(Raw):
    """A raw WebSocket peer whose socket comes from ``address`` (127.0.0.0/8),
    sending ``forwarded_for`` as its X-Forwarded-For (what a proxy sends)."""

    def __init__(self, url: str, address: str, forwarded_for: str | None = None) -> None:
        super().__init__(url)
        self.address = address
        self.headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}

    async def __aenter__(self) -> RawClient:
        connector = aiohttp.TCPConnector(local_addr=(self.address, 0))
        self.session = aiohttp.ClientSession(connector=connector)
        ws = await self.session.ws_connect(self.url, headers=self.headers)
        self.client = RawClient(ws)
        return self.client


async def test_an_attacker_locks_the_name_only_from_the_attackers_address(start_platform):
    """Someone who knows bob's name and fails on purpose locks bob out of
    *their* address; bob at his own desk is neither slowed nor refused."""
    platform = await blocking(
        start_platform, lockout_failures=2, sign_in_delay_s=1.0, lockout_s=60.0
    )
    async with From(platform.url, "127.0.0.2") as attacker:
        e, _ = await _timed_error(attacker, sign_in("bob", WRONG))
        assert e["code"] == "auth_failed"
        e, took = await _timed_error(attacker, sign_in("bob", WRONG))
        assert e["code"] == "locked_out" and took >= 1.0  # slowed, then locked
        e, _ = await _timed_error(attacker, sign_in("bob", "demo"))
        assert e["code"] == "locked_out" and 50 < e["retry_after_s"] <= 60
    async with From(platform.url, "127.0.0.3") as desk:
        # bob's own typo is his first failure: answered at once, no lock.
        e = await desk.error_for(sign_in("bob", WRONG))
        assert e["code"] == "auth_failed" and e["retry_after_s"] is None
        await desk.send(sign_in("bob"))
        assert (await desk.receive("signed_in", timeout=10))["agent"] == "bob"
    signed_in = platform.wait_for("agent_signed_in", agent="bob")  # the lines before it are read
    failed = platform.matching("sign_in_failed", user="bob")
    assert [(f["address"], f["code"], f.get("failures"), f.get("delay_s")) for f in failed] == [
        ("127.0.0.2", "auth_failed", 1, 0.0),
        ("127.0.0.2", "auth_failed", 2, 1.0),
        ("127.0.0.2", "locked_out", None, None),
        ("127.0.0.3", "auth_failed", 1, 0.0),
    ]
    locked = platform.matching("user_locked")
    assert [(e["user"], e["address"], e["failures"]) for e in locked] == [("bob", "127.0.0.2", 2)]
    assert signed_in["t"] > locked[0]["t"]


async def test_one_address_trying_many_names_is_locked_for_all_names(start_platform):
    """Password spraying: a few failures each on many names from one address
    lock that address for every name; other addresses are served."""
    platform = await blocking(
        start_platform,
        lockout_failures=5,
        lockout_address_failures=3,
        lockout_s=3.0,
        sign_in_delay_s=0.05,
    )
    async with From(platform.url, "127.0.0.4") as sprayer:
        for name in ("alice", "bob"):
            assert (await sprayer.error_for(sign_in(name, WRONG)))["code"] == "auth_failed"
        e = await sprayer.error_for(sign_in("mallory", WRONG))
        assert e["code"] == "locked_out" and "this address is locked" in e["message"]
        # Even a real agent's right password is refused from there, unchecked.
        e = await sprayer.error_for(sign_in("carol"))
        assert e["code"] == "locked_out" and 0 < e["retry_after_s"] <= 3.0
    locked = platform.wait_for("address_locked", address="127.0.0.4")
    assert locked["failures"] == 3 and locked["locked_s"] == 3.0
    assert not platform.matching("user_locked")  # no name reached its own limit
    # Logged too (waited for: the line may still be on its way from the process).
    platform.wait_for("sign_in_failed", user="carol", code="locked_out", scope="address")
    async with From(platform.url, "127.0.0.5") as elsewhere:
        await elsewhere.send(sign_in("carol"))
        assert (await elsewhere.receive("signed_in"))["agent"] == "carol"
    # The lock runs out: the address may sign in again.
    await asyncio.sleep(max(0.0, locked["t"] + 3.2 - time.time()))
    async with From(platform.url, "127.0.0.4") as later:
        await later.send(sign_in("alice"))
        assert (await later.receive("signed_in"))["agent"] == "alice"


async def test_a_lock_outlives_the_platform_killed_and_restarted(start_platform):
    """The lock and the failures counted are in the database (--db): a
    platform killed right after answering ``locked_out`` still refuses the
    name from that address when it is back, and still only from there."""
    settings = {
        "database": "lockout.sqlite3",
        "lockout_failures": 2,
        "lockout_s": 60.0,
        "sign_in_delay_s": 0.05,
    }
    first = await blocking(start_platform, **settings)
    async with From(first.url, "127.0.0.6") as attacker:
        assert (await attacker.error_for(sign_in("bob", WRONG)))["code"] == "auth_failed"
        assert (await attacker.error_for(sign_in("bob", WRONG)))["code"] == "locked_out"
        assert (await attacker.error_for(sign_in("carol", WRONG)))["code"] == "auth_failed"
    first.proc.kill()  # no shutdown: only what was on disk when answered
    first.proc.wait(10)

    second = await blocking(start_platform, **settings)
    restored = second.wait_for("sign_in_lockout_restored")
    assert restored["locks"] == 1
    async with From(second.url, "127.0.0.6") as attacker:
        e = await attacker.error_for(sign_in("bob"))
        assert e["code"] == "locked_out" and 40 < e["retry_after_s"] <= 60
        # carol's failure before the crash still counts: her second locks her.
        e = await attacker.error_for(sign_in("carol", WRONG))
        assert e["code"] == "locked_out"
    assert second.wait_for("user_locked", user="carol")["failures"] == 2
    async with From(second.url, "127.0.0.7") as desk:
        await desk.send(sign_in("bob"))
        assert (await desk.receive("signed_in"))["agent"] == "bob"


async def test_behind_a_trusted_proxy_each_client_is_counted_not_the_proxy(start_platform):
    """With the platform behind a reverse proxy (127.0.0.1 here, trusted),
    a client the proxy names locks only itself, and another client through
    the same proxy is served; a peer that is not trusted cannot choose its
    address with the header."""
    platform = await blocking(
        start_platform,
        trusted_proxies=["127.0.0.1"],
        lockout_failures=5,
        lockout_address_failures=2,
        lockout_s=60.0,
        sign_in_delay_s=0.05,
    )
    # Through the proxy, forged entries first: the proxy appended the real one.
    async with From(platform.url, "127.0.0.1", "192.0.2.99, 203.0.113.7") as sprayer:
        for name in ("alice", "bob"):
            await sprayer.error_for(sign_in(name, WRONG))
        e = await sprayer.error_for(sign_in("carol"))
        assert e["code"] == "locked_out" and "this address is locked" in e["message"]
    locked = platform.wait_for("address_locked")
    assert locked["address"] == "203.0.113.7"
    # Another client through the same proxy, and the proxy itself, are served.
    for forwarded_for in ("203.0.113.8", None):
        async with From(platform.url, "127.0.0.1", forwarded_for) as other:
            await other.send(sign_in("carol"))
            assert (await other.receive("signed_in"))["agent"] == "carol"
    # Not from the proxy: the header is not believed (no way out of a lock,
    # nor into someone else's).
    async with From(platform.url, "127.0.0.2", "203.0.113.9") as direct:
        assert (await direct.error_for(sign_in("alice", WRONG)))["code"] == "auth_failed"
    failed = platform.wait_count("sign_in_failed", 4)
    assert [f["address"] for f in failed] == ["203.0.113.7"] * 3 + ["127.0.0.2"]
