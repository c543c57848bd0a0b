#!/usr/bin/env python3
"""How fast an agent's outbound call rings and connects, over the kept
connection and over a fresh one (R1).

    python benchmarks/outbound_delivery.py [--calls N] [--json FILE]

Runs the real platform as a process on 127.0.0.1; the agent is a
``PhoneEngine`` in this process (a tone for a microphone, a file for a speaker) and the
customer is the caller client in ``--answer`` mode, also in this process, so
every time below is read on one clock. For each call:

- dial -> ringing: the phone's ``dial`` to its ``call`` event ``ringing``
  (the platform has rung the customer's trunk);
- dial -> connected: to ``connected`` (the customer answered at once, their
  leg's media connected, and the platform bridged it);
- the platform's own ``delivery_ms`` (dial -> ringing, set-up included).

"kept" dials over alice's connection (up from sign-in, R5); "fresh" has the
agent end the connection before each call, so each dial sets one up first.
Prints a table and writes JSON. Timing goals live here, not in the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from procs import PlatformProcess, write_config  # noqa: E402

from agent_phone.caller.client import CallPlan, place_call  # noqa: E402
from agent_phone.media.ice import restrict_ice_addresses  # noqa: E402
from agent_phone.media.wav import ToneSource, WavFileSink  # noqa: E402
from agent_phone.phone import events  # noqa: E402
from agent_phone.phone.audio_io import CallAudio  # noqa: E402
from agent_phone.phone.engine import PhoneEngine  # noqa: E402
from agent_phone.phone.settings import PhoneSettings  # noqa: E402

NUMBER = "+15550100"
#: Every wait is bounded.
STEP_TIMEOUT_S = 20.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Watch:
    """The engine's events, each with this process's monotonic time."""

    def __init__(self, engine: PhoneEngine) -> None:
        self.seen: list[tuple[float, events.PhoneEvent]] = []
        self._changed = asyncio.Event()
        engine.subscribe(self._on_event)

    def _on_event(self, event: events.PhoneEvent) -> None:
        self.seen.append((time.monotonic(), event))
        self._changed.set()

    async def wait(self, test: Any, since: int = 0) -> float:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            for at, event in self.seen[since:]:
                if test(event):
                    return at
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), max(0.01, deadline - time.monotonic()))


async def one_call(engine: PhoneEngine, watch: Watch, platform: PlatformProcess) -> dict:
    customer = asyncio.create_task(
        place_call(
            CallPlan(
                platform.url,
                "",
                duration_s=0.3,
                wait_s=STEP_TIMEOUT_S,
                trunk_token=platform.trunk_token or "",
                answer_number=NUMBER,
            ),
            ToneSource(440.0),
        )
    )
    seen = len(platform.matching("number_awaiting"))
    await asyncio.to_thread(platform.wait_count, "number_awaiting", seen + 1, STEP_TIMEOUT_S)
    started = time.monotonic()
    call = await engine.dial(NUMBER)

    def state(name: str):  # noqa: ANN202
        return lambda e: (
            isinstance(e, events.CallChanged) and e.call_id == call.call_id and e.state == name
        )

    ringing = await watch.wait(state("ringing"))
    connected = await watch.wait(state("connected"))
    await watch.wait(state("ended"))
    result = await asyncio.wait_for(customer, STEP_TIMEOUT_S)
    assert result.answered, result
    rung = platform.wait_for("call_ringing", call_id=call.call_id)
    return {
        "call_id": call.call_id,
        "dial_to_ringing_ms": round((ringing - started) * 1000, 2),
        "dial_to_connected_ms": round((connected - started) * 1000, 2),
        "platform_delivery_ms": rung["delivery_ms"],
        "over_persistent_connection": rung["over_persistent_connection"],
    }


async def run(calls: int, workdir: Path) -> dict[str, list[dict]]:
    platform = PlatformProcess(write_config(workdir / "platform.toml"), log_dir=workdir)
    settings = PhoneSettings(platform=platform.url, user="alice", password="demo")
    speaker = WavFileSink(workdir / "heard.wav")
    engine = PhoneEngine(settings, CallAudio(ToneSource(880.0), speaker, voice_processing=False))
    watch = Watch(engine)
    results: dict[str, list[dict]] = {"kept": [], "fresh": []}
    try:
        await engine.start()
        await watch.wait(lambda e: isinstance(e, events.Connection) and e.state == "active")
        for mode in ("kept", "fresh"):
            for _ in range(calls):
                if mode == "fresh":  # the agent ends it: the dial sets one up (R1)
                    mark = len(watch.seen)
                    await engine.end_connection()
                    await watch.wait(
                        lambda e: isinstance(e, events.Connection) and e.state == "inactive",
                        since=mark,
                    )
                results[mode].append(await one_call(engine, watch, platform))
    finally:
        await engine.close()
        platform.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="calls per mode")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    restrict_ice_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="outbound-") as workdir:
        results = asyncio.run(run(args.calls, Path(workdir)))
    summary: dict[str, Any] = {"calls_per_mode": args.calls, "modes": {}}
    print(f"{'mode':<6} {'metric':<22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for mode, rows in results.items():
        assert all(r["over_persistent_connection"] is (mode == "kept") for r in rows), rows
        figures = {}
        for metric in ("dial_to_ringing_ms", "dial_to_connected_ms", "platform_delivery_ms"):
            values = [r[metric] for r in rows]
            figures[metric] = {
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
                "max": max(values),
            }
            f = figures[metric]
            print(f"{mode:<6} {metric:<22} {f['p50']:>8.1f} {f['p95']:>8.1f} {f['max']:>8.1f}")
        summary["modes"][mode] = {"figures": figures, "calls": rows}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
