"""The platform's memory figures (agent_phone/cloud/memory.py), and how an
administrator reads them: the periodic ``memory`` event and ``GET /admin/memory``."""

from __future__ import annotations

import gc
import sys
import time

import aiohttp
import numpy as np
import pytest
from e2e import write_config

from agent_phone.cloud.config import ConfigError, load_config
from agent_phone.cloud.memory import (
    FullCollections,
    live_types,
    memory_use,
    release_free_memory,
)
from agent_phone.cloud.storage import SQLITE_CACHE_KB, CallRecord, SqliteStorage

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="malloc's figures come from glibc"
)


@glibc_only
def test_heap_in_use_follows_what_c_code_holds():
    before = memory_use()
    assert before.heap_in_use_kb is not None and before.rss_kb > 0
    block = np.ones(40 * 1024 * 1024 // 8)  # 40 MB from malloc, touched
    held = memory_use()
    assert held.heap_in_use_kb is not None
    assert held.heap_in_use_kb - before.heap_in_use_kb >= 39 * 1024
    assert held.rss_kb - before.rss_kb >= 39 * 1024
    del block
    freed = memory_use()
    assert freed.heap_in_use_kb is not None
    assert held.heap_in_use_kb - freed.heap_in_use_kb >= 39 * 1024
    assert release_free_memory() is True


async def test_sqlite_memory_fills_with_call_records_then_stops_at_its_cache(tmp_path):
    """The platform's heap grows with its call records while SQLite's page
    cache fills, and stops at the cache's cap: bounded, not a leak. The
    figure that says so is ``sqlite_kb`` (the soak subtracts it)."""
    storage = SqliteStorage(tmp_path / "platform.db")
    start = memory_use().sqlite_kb
    assert start is not None
    seen: list[int] = []
    try:
        for batch in range(16):
            for i in range(1000):
                n = batch * 1000 + i
                record = CallRecord(f"call-{n:08d}", f"customer-{n}", "support", time.time())
                record.offered_to = ["bob", "carol"]
                record.end_reason = "customer_hangup"
                record.quality = {"loss": 0.01, "jitter_ms": 3.2, "rtt_ms": 1.1}
                storage.put_call(record)
            storage.flush()
            seen.append(memory_use().sqlite_kb or 0)
        on_disk_kb = (tmp_path / "platform.db").stat().st_size // 1024
    finally:
        await storage.close()
    assert seen[3] - start > 300  # it follows SQLite: the cache fills with the records
    assert on_disk_kb > SQLITE_CACHE_KB * 1.2  # the database outgrew the cache...
    assert max(seen) - start <= SQLITE_CACHE_KB * 1.1  # ...and SQLite's memory did not
    assert seen[-1] - seen[-5] < 50


def test_python_blocks_and_live_types_count_objects():
    class Marker:
        pass

    # Garbage of earlier tests, collected in the middle, would hide the growth.
    gc.collect()
    gc.disable()
    try:
        before = memory_use().python_blocks
        kept = [Marker() for _ in range(20_000)]
        grown = memory_use().python_blocks - before
    finally:
        gc.enable()
    assert grown >= 20_000
    counts = dict(live_types(500))
    assert counts[f"{Marker.__module__}.{Marker.__qualname__}"] == len(kept)


def test_only_full_collections_are_timed():
    timer = FullCollections()
    gc.callbacks.append(timer)
    try:
        gc.collect(0)
        gc.collect(1)
        assert timer.count == 0
        gc.collect()
        gc.collect()
    finally:
        gc.callbacks.remove(timer)
    taken = timer.take()
    assert taken["gc_full_collections"] == 2 and taken["gc_full_max_ms"] > 0
    assert timer.take()["gc_full_max_ms"] == 0  # the longest since the last take


def test_the_periodic_collection_is_configured_in_seconds_or_off(tmp_path):
    assert load_config(write_config(tmp_path / "a.toml")).gc_collect_s == 5.0
    assert load_config(write_config(tmp_path / "b.toml", gc_collect_s=0)).gc_collect_s == 0.0
    for bad in (-1, "often"):
        with pytest.raises(ConfigError, match="gc_collect_s"):
            load_config(write_config(tmp_path / "c.toml", gc_collect_s=bad))


async def test_the_platform_collects_on_its_own_timer(start_platform):
    p = start_platform(memory_report_s=1.0, gc_collect_s=0.2)
    first = p.wait_for("memory", timeout=10)
    second = p.wait_for("memory", timeout=10, where=lambda e: e["t"] > first["t"])
    # About five a second; a full collection of Python's own would be rare here.
    assert second["gc_full_collections"] - first["gc_full_collections"] >= 3


async def test_the_platform_reports_its_memory(start_platform):
    p = start_platform(memory_report_s=0.5, admin_token="memory-test-admin-token")
    event = p.wait_for("memory", timeout=10)
    keys = ("rss_kb", "heap_in_use_kb", "python_blocks", "sqlite_kb", "gc_full_collections")
    keys += ("agents", "calls")
    for key in keys:
        assert key in event, key
    assert event["rss_kb"] > 10_000 and event["agents"] == 0 and event["calls"] == 0

    url = p.admin_url + "/memory"
    headers = {"Authorization": "Bearer memory-test-admin-token"}
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            assert r.status == 401
        async with s.get(url, params={"collect": "yes"}, headers=headers) as r:
            assert r.status == 400 and "collect" in await r.text()
        async with s.get(url, headers=headers) as r:
            assert r.status == 200
            plain = await r.json()
        async with s.get(url, params={"collect": "1"}, headers=headers) as r:
            assert r.status == 200
            collected = await r.json()
    assert "live_types" not in plain and plain["rss_kb"] > 10_000
    # What it was made of at start is frozen out of the collector's sight
    # (its modules alone hold tens of thousands of objects); the types
    # counted are those of what came after.
    assert collected["gc_frozen"] > 20_000
    assert collected["live_types"] and all(n > 0 for _, n in collected["live_types"])
    assert collected["gc_ms"] >= 0 and collected["sockets"] == 0
