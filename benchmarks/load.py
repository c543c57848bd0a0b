#!/usr/bin/env python3
"""How much one platform process carries: idle agents with kept connections,
and concurrent calls with media.

    python benchmarks/load.py [--idle 25,50,100,200] [--calls 1,2,4,6,8,10]
                              [--profile FILE] [--json FILE]

The platform runs as its own process (optionally under cProfile). The load
is generated from this process with the real parts: each agent is a real
``PhoneEngine`` (signaling client, WebRTC connection, heartbeat) and each
customer is ``place_call``. So that the generator, which shares the two
cores, spends as little as it can, both send a tone encoded once (its Opus
packets replayed, ``PacketTone``) and count the packets that reach them
rather than decode them: what is measured is whether every stream arrives
whole through the platform. Every agent holds
``routing:conversation:acceptOffQueue``, so its connection is set up at
sign-in and kept (R5).

1. Idle: step up the number of signed-in agents with kept connections; at
   each step measure the platform's CPU and memory, the signaling round trip
   (``set_presence`` -> ``presence``) and the delivery of a probe call
   (routed -> offered at the platform, and place -> connected at the customer).
2. Calls: step up the number of concurrent calls (one agent per call, Auto
   Answer, 5 s of tone both ways); measure the platform's CPU (and per call,
   over what the same agents' idle kept connections cost)
   and how much of the expected audio each end received (packets arrived /
   50 a second), and the longest gap between packets.

The load generator shares the machine's two cores with the platform: the
platform's own CPU per agent and per call is the figure to scale from.
Prints tables and writes JSON (default benchmarks/results/load.json).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import argon2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from procs import JsonLinesProcess  # noqa: E402

from agent_phone.caller.client import CallPlan, place_call  # noqa: E402
from agent_phone.cloud.config import ACCEPT_OFF_QUEUE  # noqa: E402
from agent_phone.media.audio import PTIME, SAMPLE_RATE  # noqa: E402
from agent_phone.media.ice import restrict_ice_addresses  # noqa: E402
from agent_phone.media.tracks import PacketLoop, encode_loop  # noqa: E402
from agent_phone.phone import events  # noqa: E402
from agent_phone.phone.audio_io import CallAudio  # noqa: E402
from agent_phone.phone.engine import PhoneEngine  # noqa: E402
from agent_phone.phone.settings import PhoneSettings  # noqa: E402
from agent_phone.protocol import (  # noqa: E402
    PROTOCOL_VERSION,
    PresenceChanged,
    SetPresence,
    SignIn,
    decode_to_agent,
)
from agent_phone.signaling import SignalingClient  # noqa: E402

PASSWORD = "load"
TALK_S = 5.0


# --- measuring ------------------------------------------------------------------------


#: The trunk token written into this benchmark's platform configuration.
TRUNK_TOKEN = "benchmark-trunk-token-0123456789"


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (the main thread is the process's name)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = "main" if task.name == str(pid) else comm.rstrip("_0123456789") or comm
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out[name] = out.get(name, 0.0) + cpu
    return out


async def cpu_percent(pid: int, seconds: float) -> float:
    before, t0 = proc_cpu_s(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return round(100 * (proc_cpu_s(pid) - before) / (time.monotonic() - t0), 1)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class PacketCounter:
    """Notes when each packet of a stream arrives (at a receiver's tap)."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    def __call__(self, payload: bytes, timestamp: int, sequence: int) -> None:
        self.arrivals.append(time.monotonic())

    def quality(self, start: float, end: float) -> tuple[float, float]:
        """(packets received / expected (one per 20 ms), longest gap in ms)
        within [start, end]."""
        inside = [t for t in self.arrivals if start <= t <= end]
        if not inside:
            return 0.0, (end - start) * 1000
        times = [start, *inside, end]
        gap = max(b - a for a, b in zip(times, times[1:], strict=False))
        return round(len(inside) / ((end - start) / PTIME), 3), round(gap * 1000, 1)


@functools.cache
def _tone_packets(hz: float) -> tuple[bytes, ...]:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    return encode_loop(np.round(0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16))


class PacketTone(PacketLoop):
    """An audio source whose tone was encoded once: its track replays the
    packets and encodes nothing (the load generator's voice)."""

    def __init__(self, hz: float) -> None:
        super().__init__(_tone_packets(hz))

    async def start(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        return None

    async def stop(self) -> None:
        pass


class NoSpeaker:
    """A speaker that never asks for audio: nothing is decoded."""

    async def start(self) -> None:
        pass

    def begin(self, now: float) -> None:
        pass

    def wanted(self, now: float) -> int:
        return 0

    def play_time(self, now: float) -> float:
        return now

    def write(self, samples: np.ndarray) -> None:
        pass

    async def stop(self) -> None:
        pass


# --- the agents -----------------------------------------------------------------------


class Agent:
    """A real phone engine, in this process, with a tone for a voice."""

    def __init__(self, url: str, name: str, on_queue: bool = False) -> None:
        self.heard = PacketCounter()
        settings = PhoneSettings(
            platform=url, user=name, password=PASSWORD, on_queue=on_queue, auto_answer=True
        )
        audio = CallAudio(PacketTone(330.0), NoSpeaker(), voice_processing=False)
        self.engine = PhoneEngine(settings, audio)
        self.connected = asyncio.Event()
        self.answered: list[events.Answered] = []
        self.alerting: list[events.Alerting] = []
        self.engine.subscribe(self._on_event)

    def _on_event(self, e: events.PhoneEvent) -> None:
        if isinstance(e, events.Connection) and e.state == "active":
            self.connected.set()
            # Count what reaches this phone, then hand it on as usual.
            tap = self.engine.connection.tap if self.engine.connection else None
            if tap is not None and not isinstance(tap.sink, _Counted):
                tap.sink = _Counted(self.heard, tap.sink)
        elif isinstance(e, events.Answered):
            self.answered.append(e)
        elif isinstance(e, events.Alerting):
            self.alerting.append(e)

    async def start(self, timeout: float = 60.0) -> None:
        await self.engine.start(timeout)
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def close(self) -> None:
        await self.engine.close()


class _Counted:
    """A tap's sink that counts each packet before handing it on."""

    def __init__(self, counter: PacketCounter, then: Any) -> None:
        self.counter, self.then = counter, then

    def __call__(self, payload: bytes, timestamp: int, sequence: int) -> None:
        self.counter(payload, timestamp, sequence)
        if self.then is not None:
            self.then(payload, timestamp, sequence)


async def start_agents(url: str, names: list[str], on_queue: bool = False) -> list[Agent]:
    agents = [Agent(url, n, on_queue) for n in names]
    # In batches, so sign-in and connection set-up do not all pile up at once.
    for i in range(0, len(agents), 10):
        await asyncio.gather(*(a.start() for a in agents[i : i + 10]))
    return agents


# --- the probes -----------------------------------------------------------------------


async def signaling_rtt(url: str, samples: int = 20) -> list[float]:
    """``set_presence`` -> ``presence`` round trips of a raw agent, in ms."""
    client = SignalingClient(url, decode_to_agent)
    await client.connect()
    messages = client.messages()
    try:
        await client.send(SignIn(version=PROTOCOL_VERSION, user="rtt", password=PASSWORD))
        await anext(messages)  # signed_in
        rtts = []
        for _ in range(samples):
            t0 = time.perf_counter()
            await client.send(SetPresence(on_queue=False))
            while not isinstance(await anext(messages), PresenceChanged):
                pass
            rtts.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.05)
        return rtts
    finally:
        await messages.aclose()
        await client.close()


async def probe_calls(url: str, probe: Agent, count: int = 5) -> dict[str, Any]:
    """Calls to the probe agent, one at a time: delivery and customer wait."""
    waits = []
    first = len(probe.alerting)
    for i in range(count):
        plan = CallPlan(
            url, "probe", caller=f"probe{i}", duration_s=0.3, wait_s=30, trunk_token=TRUNK_TOKEN
        )
        result = await place_call(plan, PacketTone(440.0))
        if result.answered:
            waits.append(result.wait_s * 1000)
        await asyncio.sleep(0.3)
    delivered = [a.delivery_ms for a in probe.alerting[first:]]
    return {
        "delivery_ms_p50": pct(delivered, 50),
        "delivery_ms_max": round(max(delivered), 2) if delivered else None,
        "customer_wait_ms_p50": pct(waits, 50),
        "answered": len(waits),
        "of": count,
    }


# --- the run --------------------------------------------------------------------------


def write_config(path: Path, idle: int, media: int) -> Path:
    # A cheap argon2 hash: the benchmark measures calls, not sign-in hashing.
    h = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    perm = f'permissions = ["{ACCEPT_OFF_QUEUE}"]'
    lines = [
        "[platform]",
        "alert_timeout_s = 12",
        "persistent_timeout_s = 3600",
        f'trunk_token = "{TRUNK_TOKEN}"',
    ]
    names = (
        ["rtt", "probe"] + [f"i{n:04d}" for n in range(idle)] + [f"m{n:03d}" for n in range(media)]
    )
    for name in names:
        lines += [f"[agents.{name}]", f'password_hash = "{h}"', perm]
    lines += ["[queues.probe]", 'members = ["probe"]']
    lines += ["[queues.media]", f"members = {json.dumps([f'm{n:03d}' for n in range(media)])}"]
    path.write_text("\n".join(lines) + "\n")
    return path


async def idle_steps(url: str, pid: int, steps: list[int]) -> list[dict[str, Any]]:
    rows = []
    probe = Agent(url, "probe", on_queue=True)
    await probe.start()
    agents: list[Agent] = []
    try:
        for target in steps:
            names = [f"i{n:04d}" for n in range(len(agents), target)]
            t0 = time.monotonic()
            batch = [Agent(url, n) for n in names]
            agents += batch
            try:
                # In batches, so sign-in and set-up do not all pile up at once.
                for i in range(0, len(batch), 10):
                    await asyncio.gather(*(a.start() for a in batch[i : i + 10]))
            except Exception as exc:
                # The step where connections can no longer be set up or kept
                # (often the load generator's own loop starving first).
                row = {"agents": target, "failed": f"{type(exc).__name__}: {exc}"[:300]}
                row["platform_cpu_percent"] = await cpu_percent(pid, 3.0)
                row["loadavg"] = loadavg()
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                break
            ramp_s = time.monotonic() - t0
            await asyncio.sleep(2.0)  # settle
            row = {
                "agents": len(agents),
                "ramp_s": round(ramp_s, 1),
                "platform_cpu_percent": await cpu_percent(pid, 5.0),
                "platform_rss_mb": rss_mb(pid),
                "loadavg": loadavg(),
            }
            rtts = await signaling_rtt(url)
            row["signaling_rtt_ms_p50"] = pct(rtts, 50)
            row["signaling_rtt_ms_p95"] = pct(rtts, 95)
            row.update(await probe_calls(url, probe))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        for i in range(0, len(agents), 20):
            await asyncio.gather(*(a.close() for a in agents[i : i + 20]))
        await probe.close()
    return rows


async def call_steps(url: str, pid: int, steps: list[int]) -> list[dict[str, Any]]:
    rows = []
    agents = await start_agents(url, [f"m{n:03d}" for n in range(max(steps))], on_queue=True)
    try:
        # What the agents' kept connections cost with no call (heartbeats,
        # RTCP, ICE consent): a call's own cost is what comes on top.
        await asyncio.sleep(2.0)
        idle_cpu = await cpu_percent(pid, 5.0)
        for concurrent in steps:
            heard = [PacketCounter() for _ in range(concurrent)]
            plans = [
                CallPlan(
                    url,
                    "media",
                    caller=f"c{concurrent}-{i}",
                    duration_s=TALK_S,
                    wait_s=30,
                    trunk_token=TRUNK_TOKEN,
                )
                for i in range(concurrent)
            ]
            first = {a: len(a.answered) for a in agents}
            started = time.monotonic()
            calls = asyncio.gather(
                *(
                    place_call(p, PacketTone(440.0), observe=h)
                    for p, h in zip(plans, heard, strict=True)
                )
            )
            await asyncio.sleep(1.5)
            threads_before = thread_cpu_s(pid)
            cpu = await cpu_percent(pid, 3.0)
            threads_after = thread_cpu_s(pid)
            by_thread = {
                k: round(100 * (v - threads_before.get(k, 0.0)) / 3.0, 1)
                for k, v in threads_after.items()
                if v - threads_before.get(k, 0.0) > 0.01
            }
            results = await calls
            elapsed = time.monotonic() - started
            answered = [r for r in results if r.answered]
            # Audio judged in the middle of the talk (1 s in, until 1 s before the end).
            q_customer = []
            for r, s in zip(results, heard, strict=True):
                if r.answered:
                    t_answer = started + r.wait_s
                    q_customer.append(s.quality(t_answer + 1.0, t_answer + TALK_S - 1.0))
            q_agent = []
            for a in agents:
                if len(a.answered) > first[a]:
                    ans = a.answered[-1]
                    t = ans.t - time.time() + time.monotonic()  # wall -> monotonic
                    q_agent.append(a.heard.quality(t + 1.0, t + TALK_S - 1.0))
            delivered = [e.delivery_ms for a in agents for e in a.answered[first[a] :]]
            row = {
                "calls": concurrent,
                "answered": len(answered),
                "platform_cpu_percent": cpu,
                "platform_cpu_percent_idle_agents": idle_cpu,
                "platform_cpu_percent_per_call": round((cpu - idle_cpu) / concurrent, 2),
                "platform_cpu_by_thread": by_thread,
                "platform_rss_mb": rss_mb(pid),
                "loadavg": loadavg(),
                "routed_to_answered_ms_p50": pct(delivered, 50),
                "customer_wait_ms_p50": pct([r.wait_s * 1000 for r in answered], 50),
                "audio_at_customer_min_ratio": min((q[0] for q in q_customer), default=None),
                "audio_at_customer_max_gap_ms": max((q[1] for q in q_customer), default=None),
                "audio_at_agent_min_ratio": min((q[0] for q in q_agent), default=None),
                "audio_at_agent_max_gap_ms": max((q[1] for q in q_agent), default=None),
                "elapsed_s": round(elapsed, 1),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            await asyncio.sleep(1.0)
    finally:
        await asyncio.gather(*(a.close() for a in agents))
    return rows


def table(title: str, rows: list[dict[str, Any]], keys: list[str]) -> str:
    out = [title, " | ".join(keys)]
    for r in rows:
        out.append(" | ".join(str(r.get(k)) for k in keys))
    return "\n".join(out)


async def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    idle = [int(x) for x in args.idle.split(",") if x]
    calls = [int(x) for x in args.calls.split(",") if x]
    config = write_config(log_dir / "load.toml", max(idle, default=0), max(calls, default=0))
    base = ["agent_phone.cloud", "--port", "0", "--config", str(config)]
    if args.profile:
        base = ["cProfile", "-o", str(args.profile), "-m", *base]
    platform = JsonLinesProcess(base, log_dir=log_dir)
    try:
        url = (await asyncio.to_thread(platform.wait_for, "ready", 30))["url"]
        pid = platform.proc.pid
        result: dict[str, Any] = {"rss_start_mb": rss_mb(pid), "loadavg_start": loadavg()}
        result["idle"] = await idle_steps(url, pid, idle) if idle else []
        result["calls"] = await call_steps(url, pid, calls) if calls else []
        result["rss_end_mb"] = rss_mb(pid)
    finally:
        await asyncio.to_thread(platform.stop)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idle", default="25,50,100,200", help="agent counts to step through")
    p.add_argument("--calls", default="1,2,4,6,8,10", help="concurrent call counts")
    p.add_argument("--profile", type=Path, help="run the platform under cProfile, to FILE")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "load.json")
    args = p.parse_args(argv)
    restrict_ice_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(
        table(
            "idle agents with kept connections",
            result["idle"],
            [
                "agents",
                "platform_cpu_percent",
                "platform_rss_mb",
                "signaling_rtt_ms_p50",
                "signaling_rtt_ms_p95",
                "delivery_ms_p50",
                "customer_wait_ms_p50",
                "loadavg",
            ],
        )
    )
    print(
        table(
            "concurrent calls with media",
            result["calls"],
            [
                "calls",
                "answered",
                "platform_cpu_percent",
                "platform_cpu_percent_per_call",
                "routed_to_answered_ms_p50",
                "audio_at_customer_min_ratio",
                "audio_at_customer_max_gap_ms",
                "audio_at_agent_min_ratio",
                "audio_at_agent_max_gap_ms",
                "loadavg",
            ],
        )
    )
    if args.profile:
        import pstats

        print(f"\nplatform profile ({args.profile}), top 25 by own time:")
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
