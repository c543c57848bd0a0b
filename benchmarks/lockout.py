#!/usr/bin/env python3
"""What the durable sign-in lockout costs: per failure, and at start.

    python benchmarks/lockout.py [--failures N] [--restore-rows M] [--json FILE]

Uses the platform's own ``SignInGuard`` on a real ``SqliteStorage`` (WAL,
``synchronous=FULL``) in a temporary directory:

- **per failure**: ``failed()`` on the event loop (dictionary work plus
  queuing the writes) and ``synced()``, the wait for those writes to be on
  disk that every failed sign-in's answer now includes (a ``locked_out`` is
  only sent once the lock is saved). N failures, each from its own address
  (no locks), then N failures spread on 10 names from one address (locks).
  For scale: the argon2 check each failure costs anyway is ~50-100 ms.
- **at start**: how long a platform takes to read back M failure rows (the
  most a window could hold under a sustained distributed attack) and the
  locks among them.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

from agent_phone.cloud.config import demo_config  # noqa: E402
from agent_phone.cloud.lockout import SignInGuard  # noqa: E402
from agent_phone.cloud.storage import SignInFailure, SqliteStorage  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def per_failure(path: Path, n: int, spread: bool) -> dict[str, float]:
    storage = SqliteStorage(path)
    guard = SignInGuard(demo_config(lockout_failures=5, lockout_address_failures=10**9), storage)
    on_loop, to_disk = [], []
    for i in range(n):
        user, address = (f"u{i}", f"10.0.{i // 250}.{i % 250}") if spread else (f"u{i % 10}", "a")
        started = time.perf_counter()
        guard.failed(user, address)
        on_loop.append((time.perf_counter() - started) * 1e6)
        started = time.perf_counter()
        await guard.synced()
        to_disk.append((time.perf_counter() - started) * 1e3)
    await storage.close()
    return {
        "failed_us_p50": statistics.median(on_loop),
        "failed_us_p95": percentile(on_loop, 95),
        "synced_ms_p50": statistics.median(to_disk),
        "synced_ms_p95": percentile(to_disk, 95),
        "synced_ms_max": max(to_disk),
    }


def restore(path: Path, rows: int) -> dict[str, float]:
    storage = SqliteStorage(path)
    now = time.time()
    failures = []
    for i in range(rows // 2):
        address = f"10.{i // 65000}.{(i // 250) % 260}.{i % 250}"
        failures += [
            SignInFailure("name", f"u{i}", address, now - 1),
            SignInFailure("address", "", address, now - 1),
        ]
    storage.put_sign_in_failures(failures)
    storage.flush()
    storage._db.close()
    storage._lock_file.close()
    storage = SqliteStorage(path)
    started = time.perf_counter()
    guard = SignInGuard(demo_config(), storage)
    took = (time.perf_counter() - started) * 1e3
    storage.flush()
    storage._db.close()
    storage._lock_file.close()
    return {"rows": rows, "restored_failures": guard.restored[1], "restore_ms": took}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--failures", type=int, default=300)
    parser.add_argument("--restore-rows", type=int, default=20_000)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockout-bench-") as tmp:
        spread = asyncio.run(per_failure(Path(tmp) / "a.sqlite3", args.failures, True))
        locking = asyncio.run(per_failure(Path(tmp) / "b.sqlite3", args.failures, False))
        start = restore(Path(tmp) / "c.sqlite3", args.restore_rows)
    print(f"{'failed sign-ins':<34}{'failed() µs p50/p95':>22}{'synced() ms p50/p95/max':>28}")
    for name, r in (("each from its own address", spread), ("10 names, one address", locking)):
        print(
            f"{name:<34}{r['failed_us_p50']:>12.0f} /{r['failed_us_p95']:>7.0f}"
            f"{r['synced_ms_p50']:>14.2f} /{r['synced_ms_p95']:>6.2f} /{r['synced_ms_max']:>6.1f}"
        )
    rows, took = start["restored_failures"], start["restore_ms"]
    print(f"start: {rows} failure rows read back in {took:.0f} ms")
    result = {"failures": args.failures, "spread": spread, "locking": locking, "restore": start}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
