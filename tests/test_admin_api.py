"""The administrator changes the timeout while the platform runs (R7)."""

from __future__ import annotations

import time

import aiohttp
import pytest


@pytest.fixture
async def admin(platform):
    headers = {"Authorization": f"Bearer {platform.admin_token}"}
    async with aiohttp.ClientSession(base_url=platform.admin_url + "/", headers=headers) as s:
        yield s


async def test_requests_without_the_token_are_refused(platform):
    async with aiohttp.ClientSession() as s:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with s.get(platform.admin_url + "/settings", headers=headers) as r:
                assert r.status == 401
            async with s.put(
                platform.admin_url + "/settings", json={"persistent_timeout_s": 5}, headers=headers
            ) as r:
                assert r.status == 401
    assert platform.wait_for("admin_refused")["path"] == "/admin/settings"


async def test_bad_requests_are_named(admin):
    async with admin.get("settings") as r:
        assert r.status == 200
        assert (await r.json())["persistent_timeout_s"] == 600
    for body, words in (
        ({"persistent_timeout_s": "soon"}, "persistent_timeout_s"),
        ({"persistent_timeout_s": 0}, "between"),
        ({"persistent_timeout_s": 5, "typo": 1}, "typo"),
    ):
        async with admin.put("settings", json=body) as r:
            assert r.status == 400 and words in await r.text()
    async with admin.put("settings", data="x" * 10_000) as r:
        assert r.status == 413
    async with admin.put("agents/mallory", json={"persistent_timeout_s": 5}) as r:
        assert r.status == 404


async def test_a_new_timeout_applies_from_the_next_idle_period(
    platform, admin, start_phone, start_caller
):
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer")
    await _blocking(bob.wait_for, "presence", on_queue=True)
    await _blocking(_call, start_caller, platform.url)
    first = await _blocking(platform.wait_for, "connection_kept", agent="bob")
    assert first["expires_at"] - first["t"] > 500  # the configured 600 s

    async with admin.put("agents/bob", json={"persistent_timeout_s": 1.5}) as r:
        assert r.status == 200
        assert (await r.json())["agents"]["bob"]["persistent_timeout_s"] == 1.5
    # The connection already counting down keeps its deadline...
    time.sleep(2.5)
    assert not platform.matching("connection_closed", agent="bob")
    # ...and the next idle period uses the new one.
    mark = platform.mark()
    await _blocking(_call, start_caller, platform.url)
    kept = await _blocking(platform.wait_for, "connection_kept", agent="bob", since=mark)
    assert 1.0 < kept["expires_at"] - kept["t"] < 2.0
    closed = await _blocking(platform.wait_for, "connection_closed", agent="bob", timeout=10)
    assert closed["reason"] == "timeout"
    # Back to the platform's default for bob.
    async with admin.put("agents/bob", json={"persistent_timeout_s": None}) as r:
        assert (await r.json())["agents"]["bob"]["persistent_timeout_s"] == 600


def _call(start_caller, url: str) -> None:
    code, summary = start_caller(url, "--duration", "0.5").result(timeout=30)
    assert code == 0, summary


async def _blocking(fn, *args, **kwargs):
    import asyncio

    return await asyncio.to_thread(fn, *args, **kwargs)
