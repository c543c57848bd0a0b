#!/usr/bin/env python3
"""What TLS costs the signaling connection: connect time over ws:// and wss://.

    python benchmarks/tls_connect.py [--runs N] [--json FILE]

Starts one in-process platform per mode on 127.0.0.1 (plain, and with a
``--dev-tls`` style self-signed certificate) and opens N WebSocket
connections to each with the clients' own ``SignalingClient`` (certificate
verified against the certificate file, as ``--ca`` does), timing
``connect()`` alone: TCP + TLS handshake + WebSocket upgrade. The phone pays
this once per sign-in and the caller once per call; a kept connection
(persistent or not) never pays it again. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

from agent_phone.cloud.config import demo_config  # noqa: E402
from agent_phone.cloud.events import EventLog  # noqa: E402
from agent_phone.cloud.server import Platform  # noqa: E402
from agent_phone.cloud.tls import make_dev_certificate  # noqa: E402
from agent_phone.protocol import decode_to_agent  # noqa: E402
from agent_phone.signaling import SignalingClient  # noqa: E402


async def connect_times(tls: bool, runs: int, workdir: Path) -> list[float]:
    config = demo_config()
    ca = None
    if tls:
        dev = make_dev_certificate(workdir)
        config = dataclasses.replace(config, tls_cert_file=dev.cert_file, tls_key_file=dev.key_file)
        ca = dev.cert_file
    platform = Platform(config, EventLog(out=None))
    url = await platform.start("127.0.0.1", 0)
    times = []
    try:
        for _ in range(runs):
            client = SignalingClient(url, decode_to_agent, ca_file=ca)
            started = time.perf_counter()
            await client.connect()
            times.append((time.perf_counter() - started) * 1000)
            await client.close()
    finally:
        await platform.close()
    return times


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))], 2)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/tls_connect.json")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, tls in (("ws", False), ("wss", True)):
            times = await connect_times(tls, args.runs, Path(tmp))
            results[mode] = {
                "runs": len(times),
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": percentile(times, 95),
                "max_ms": round(max(times), 2),
            }
    print(f"Signaling connect on 127.0.0.1, {args.runs} runs each")
    print(f"{'':10}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for mode, r in results.items():
        print(f"{mode + '://':10}{r['p50_ms']:>10}{r['p95_ms']:>10}{r['max_ms']:>10}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
