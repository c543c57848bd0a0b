#!/usr/bin/env python3
"""What a consult transfer and a conference cost: time, silence, CPU.

    python benchmarks/transfer.py [--runs N] [--json FILE]

Runs the real platform as a process on 127.0.0.1; agents bob and carol are
``PhoneEngine``s in this process and the customer is the caller client in
this process too, each saying its own tone, so every time is read on one
clock. Per run, over both agents' kept connections:

- consult -> offered: bob's ``transfer`` (consult) to carol's ``alerting``;
- complete -> customer hears carol: from ``complete_transfer`` to the first
  20 ms the customer's speaker plays with carol's tone in it (what the
  customer hears of the hand-over, the agents' jitter buffers included);
- blind -> offered: a blind transfer back to bob, to his ``alerting``.

Then the platform's CPU (its process's user+system time, from /proc) over
5 s of a two-party call (packets forwarded) and 5 s of a three-party
conference (decoded, mixed, encoded), as a share of one core.

Prints a table and writes JSON. Timing goals live here, not in the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from inprocess import Agent, Ear, signed_in_agent  # noqa: E402
from procs import PlatformProcess, write_config  # noqa: E402

from agent_phone.caller.client import CallPlan, place_call  # noqa: E402
from agent_phone.media.ice import restrict_ice_addresses  # noqa: E402
from agent_phone.media.wav import ToneSource  # noqa: E402
from agent_phone.phone import events  # noqa: E402

CUSTOMER_HZ, BOB_HZ, CAROL_HZ = 440.0, 660.0, 1000.0
CPU_WINDOW_S = 5.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def customer_plan(platform: PlatformProcess) -> CallPlan:
    """A customer calling queue ``support`` until told to hang up."""
    return CallPlan(
        platform.url,
        "support",
        caller="Dana",
        duration_s=None,
        wait_s=20,
        trunk_token=platform.trunk_token or "",
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tone_level(samples: np.ndarray, hz: float) -> float:
    if samples.size < 240:
        return 0.0
    x = samples.astype(np.float64)
    t = np.arange(x.size) / 48000.0
    return float(abs(np.dot(x, np.exp(-2j * np.pi * hz * t))) / x.size)


def first_heard(ear: Ear, since: float, hz: float, other: float) -> float | None:
    """When ``ear`` first played ~20 ms with ``hz`` louder than ``other``."""
    for at, samples in ear.played:
        if at < since:
            continue
        level = tone_level(samples, hz)
        if level > 500 and level > 2 * tone_level(samples, other):
            return at
    return None


async def one_run(platform: PlatformProcess, bob: Agent, carol: Agent, workdir: Path) -> dict:
    ear = Ear(workdir / "customer.wav")
    hangup = asyncio.Event()
    plan = customer_plan(platform)
    customer = asyncio.create_task(place_call(plan, ToneSource(CUSTOMER_HZ), ear, hangup=hangup))
    try:
        mark = bob.mark()
        offered = await bob.wait_for(events.CallChanged, lambda e: e.state == "alerting", mark)
        await bob.engine.answer(offered.call_id)  # type: ignore[attr-defined]
        await bob.wait_for(events.CallChanged, lambda e: e.state == "connected", mark)
        await asyncio.sleep(0.5)

        carol_mark, bob_mark = carol.mark(), bob.mark()
        started = time.time()  # (events carry Unix time, ``t``)
        await bob.engine.transfer(agent="carol", consult=True)
        consult = await carol.wait_for(
            events.CallChanged, lambda e: e.state == "alerting", carol_mark
        )
        consult_ms = (consult.t - started) * 1000
        await carol.engine.answer(consult.call_id)  # type: ignore[attr-defined]
        await bob.wait_for(events.Party, lambda e: e.state == "connected", bob_mark)
        await asyncio.sleep(0.5)
        completed = time.monotonic()
        await bob.engine.complete_transfer()
        await asyncio.sleep(1.0)
        heard = first_heard(ear, completed, CAROL_HZ, BOB_HZ)

        bob_mark = bob.mark()
        started = time.time()
        await carol.engine.transfer(agent="bob")
        blind = await bob.wait_for(events.CallChanged, lambda e: e.state == "alerting", bob_mark)
        blind_ms = (blind.t - started) * 1000
        await bob.engine.answer(blind.call_id)  # type: ignore[attr-defined]
        await bob.wait_for(events.CallChanged, lambda e: e.state == "connected", bob_mark)
    finally:
        hangup.set()
        await asyncio.wait_for(customer, 20)
    return {
        "consult_to_offered_ms": round(consult_ms, 2),
        "complete_to_customer_hears_ms": None
        if heard is None
        else round((heard - completed) * 1000, 1),
        "blind_to_offered_ms": round(blind_ms, 2),
    }


async def cpu_share(platform: PlatformProcess, bob: Agent, carol: Agent, workdir: Path) -> dict:
    """The platform's CPU over a two-party call, then over a conference."""
    pid = platform.proc.pid
    hangup = asyncio.Event()
    plan = customer_plan(platform)
    customer = asyncio.create_task(
        place_call(plan, ToneSource(CUSTOMER_HZ), Ear(workdir / "c.wav"), hangup=hangup)
    )
    shares: dict[str, float] = {}
    try:
        mark = bob.mark()
        offered = await bob.wait_for(events.CallChanged, lambda e: e.state == "alerting", mark)
        await bob.engine.answer(offered.call_id)  # type: ignore[attr-defined]
        await bob.wait_for(events.CallChanged, lambda e: e.state == "connected", mark)
        for shape in ("two_party", "conference"):
            if shape == "conference":
                carol_mark, bob_mark = carol.mark(), bob.mark()
                await bob.engine.conference(agent="carol")
                added = await carol.wait_for(
                    events.CallChanged, lambda e: e.state == "alerting", carol_mark
                )
                await carol.engine.answer(added.call_id)  # type: ignore[attr-defined]
                await bob.wait_for(events.Party, lambda e: e.state == "connected", bob_mark)
            await asyncio.sleep(1.0)
            before, at = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(CPU_WINDOW_S)
            shares[shape] = round((cpu_seconds(pid) - before) / (time.monotonic() - at), 4)
    finally:
        hangup.set()
        await asyncio.wait_for(customer, 20)
    return shares


async def run(runs: int, workdir: Path) -> dict[str, Any]:
    platform = PlatformProcess(write_config(workdir / "platform.toml"), log_dir=workdir)
    try:
        async with (
            signed_in_agent(platform, "bob", workdir, hz=BOB_HZ) as bob,
            signed_in_agent(platform, "carol", workdir, hz=CAROL_HZ) as carol,
        ):
            await carol.engine.set_status("busy")  # the queue's calls go to bob
            rows = [await one_run(platform, bob, carol, workdir) for _ in range(runs)]
            cpu = await cpu_share(platform, bob, carol, workdir)
    finally:
        platform.stop()
    return {"runs": rows, "platform_cpu_share_of_a_core": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    restrict_ice_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="transfer-") as workdir:
        result = asyncio.run(run(args.runs, Path(workdir)))
    rows = result["runs"]
    summary: dict[str, Any] = {"runs": args.runs, "figures": {}, **result}
    print(f"{'metric':<32} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for metric in ("consult_to_offered_ms", "complete_to_customer_hears_ms", "blind_to_offered_ms"):
        values = [r[metric] for r in rows if r[metric] is not None]
        f = {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values)}
        f["missing"] = len(rows) - len(values)
        summary["figures"][metric] = f
        print(f"{metric:<32} {f['p50']:>8.1f} {f['p95']:>8.1f} {f['max']:>8.1f}")
    cpu = result["platform_cpu_share_of_a_core"]
    print(
        f"platform CPU, two-party call: {cpu['two_party']:.1%} of a core;"
        f" three-party conference: {cpu['conference']:.1%}"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
