#!/usr/bin/env python3
"""Call delivery with and without the persistent connection, side by side.

    python benchmarks/call_delivery.py [--calls N] [--json FILE]

Runs the real platform and a real headless phone (auto answer) as processes
on 127.0.0.1, and places N calls with the caller client from this process,
first with the phone's "Maintain a persistent connection" on, then off.
For each call it takes, from the processes' own event clocks:

- routed -> alerting: the platform's ``call_routed`` to the phone's ``alerting``;
- routed -> two-way audio: to the later of the customer's first audible frame
  at the agent's speaker (the phone's ``hearing``) and the agent's first
  audible frame at the caller.

It also measures the phone's CPU and memory idle with a kept connection and
during a call, and the bytes per second crossing loopback while a kept
connection is idle (needs root, for a packet socket on ``lo``).
Prints a table and writes JSON. Timing goals live here, not in the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from procs import PhoneProcess, PlatformProcess, write_config  # noqa: E402

from agent_phone.caller.client import CallPlan, place_call  # noqa: E402
from agent_phone.media.ice import restrict_ice_addresses  # noqa: E402
from agent_phone.media.playout import WallClockSink  # noqa: E402
from agent_phone.media.wav import ToneSource, write_wav  # noqa: E402

AUDIBLE = 100
TALK_S = 0.6
#: Network round trips on the path to the agent, by design (docs/performance.md).
#: Alerting: persistent = the call_offered message (half a round trip);
#: fresh = offer + answer (1) + ICE check (1) + DTLS handshake (2) + call_offered (0.5).
RTT_TO_ALERT = {"persistent": 0.5, "fresh": 4.5}
#: Two-way audio adds answer_call (0.5) and the first media packet (0.5... both ways in parallel).
RTT_TO_AUDIO = {"persistent": 1.5, "fresh": 5.5}


class FirstAudible(WallClockSink):
    """The customer's ear: notes when the first audible frame is played
    (on the caller's playout clock, after its jitter buffer)."""

    def __init__(self) -> None:
        super().__init__(self._heard)
        self.at: float | None = None

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def _heard(self, samples: np.ndarray) -> None:
        if self.at is None and samples.size and np.abs(samples).max() > AUDIBLE:
            self.at = time.time()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_percent(pid: int, seconds: float) -> float:
    before, t0 = proc_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (proc_cpu_seconds(pid) - before) / (time.monotonic() - t0)


def udp_ports_of(pid: int) -> set[int]:
    """The local UDP ports of a process's sockets (its ICE candidates)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def udp_bytes_per_s(ports: set[int], seconds: float) -> float | None:
    """UDP bytes per second to and from ``ports`` on ``lo``, IP headers
    included (each packet counted once); needs root for the packet socket."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    except PermissionError:
        return None
    sock.bind(("lo", 0))
    sock.settimeout(0.2)
    total = 0
    end = time.monotonic() + seconds
    with sock:
        while time.monotonic() < end:
            try:
                frame, address = sock.recvfrom(65535)
            except TimeoutError:
                continue
            if address[2] != socket.PACKET_OUTGOING or len(frame) < 38:
                continue
            ethertype = struct.unpack("!H", frame[12:14])[0]
            if ethertype != 0x0800 or frame[23] != 17:  # IPv4 UDP only
                continue
            header = (frame[14] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", frame[14 + header : 18 + header])
            if sport in ports or dport in ports:
                total += len(frame) - 14
    return total / seconds


async def one_call(url: str, n: int, trunk_token: str) -> tuple[str, FirstAudible]:
    sink = FirstAudible()
    plan = CallPlan(
        platform=url,
        queue="support",
        caller=f"bench-{n}",
        duration_s=TALK_S,
        wait_s=30,
        trunk_token=trunk_token,
    )
    result = await place_call(plan, ToneSource(440.0), sink)
    if not result.answered:
        raise RuntimeError(f"call {n} not answered: {result}")
    assert result.call_id is not None
    return result.call_id, sink


def run_mode(mode: str, calls: int, mic: Path, workdir: Path) -> dict[str, object]:
    platform = PlatformProcess(write_config(workdir / "platform.toml"), log_dir=workdir)
    persistent = "--persistent" if mode == "persistent" else "--no-persistent"
    phone = PhoneProcess(
        platform.url,
        "bob",
        "--on-queue",
        "--auto-answer",
        persistent,
        "--mic-file",
        str(mic),
        "--speaker-file",
        str(workdir / f"heard-{mode}.wav"),
        log_dir=workdir,
    )
    try:
        phone.wait_for("presence", on_queue=True)
        loop = asyncio.new_event_loop()
        alert_ms: list[float] = []
        audio_ms: list[float] = []
        to_agent_ms: list[float] = []
        to_customer_ms: list[float] = []
        over: list[bool] = []
        for n in range(calls):
            call_id, sink = loop.run_until_complete(
                one_call(platform.url, n, platform.trunk_token or "")
            )
            routed = platform.wait_for("call_routed", call_id=call_id)["t"]
            alert = phone.wait_for("alerting", call_id=call_id)
            heard = phone.wait_for("hearing", call_id=call_id)["t"]
            assert sink.at is not None, "the caller never heard the agent"
            alert_ms.append((alert["t"] - routed) * 1000)
            audio_ms.append((max(heard, sink.at) - routed) * 1000)
            to_agent_ms.append((heard - routed) * 1000)
            to_customer_ms.append((sink.at - routed) * 1000)
            over.append(alert["over_persistent_connection"])
            phone.wait_for("ended", call_id=call_id)
        offers = len(platform.matching("connection_offered", agent="bob"))
        idle = {}
        if mode == "persistent":
            # A kept connection, idle: what crosses loopback, and what it costs.
            time.sleep(1.0)
            idle["udp_bytes_per_s"] = udp_bytes_per_s(udp_ports_of(phone.proc.pid), 10.0)
            idle["cpu_percent"] = cpu_percent(phone.proc.pid, 10.0)
            idle["rss_mb"] = proc_rss_mb(phone.proc.pid)

            async def long_call() -> None:
                plan = CallPlan(
                    platform=platform.url,
                    queue="support",
                    duration_s=12.0,
                    trunk_token=platform.trunk_token or "",
                )
                await place_call(plan, ToneSource(440.0))

            thread = threading.Thread(target=lambda: asyncio.run(long_call()))
            thread.start()
            phone.wait_for("hearing", since=len(phone.events) - 1, timeout=20)
            time.sleep(1.0)
            idle["in_call_cpu_percent"] = cpu_percent(phone.proc.pid, 8.0)
            idle["in_call_rss_mb"] = proc_rss_mb(phone.proc.pid)
            thread.join(30)
        loop.close()
        return {
            "calls": calls,
            "connection_offers": offers,
            "over_persistent_connection": sum(over),
            "routed_to_alerting_ms": {
                "p50": percentile(alert_ms, 50),
                "p95": percentile(alert_ms, 95),
            },
            "routed_to_two_way_audio_ms": {
                "p50": percentile(audio_ms, 50),
                "p95": percentile(audio_ms, 95),
            },
            "routed_to_customer_heard_ms": {"p50": percentile(to_agent_ms, 50)},
            "routed_to_agent_heard_ms": {"p50": percentile(to_customer_ms, 50)},
            "raw": {"alert_ms": alert_ms, "audio_ms": audio_ms},
            **idle,
        }
    finally:
        phone.quit()
        platform.stop()


def projected(ms: float, rtts: float, rtt_ms: float) -> float:
    return ms + rtts * rtt_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if not 1 <= args.calls <= 1000:
        parser.error("--calls must be between 1 and 1000")
    restrict_ice_addresses(["127.0.0.1"])
    workdir = Path(tempfile.mkdtemp(prefix="agent-phone-bench-"))
    mic = workdir / "mic.wav"
    t = np.arange(48000) / 48000
    write_wav(mic, (0.3 * 32767 * np.sin(2 * np.pi * 880 * t)).astype(np.int16))

    results = {mode: run_mode(mode, args.calls, mic, workdir) for mode in ("persistent", "fresh")}
    p, f = results["persistent"], results["fresh"]
    rows = []
    for key, label, rtt_table in (
        ("routed_to_alerting_ms", "routed -> alerting", RTT_TO_ALERT),
        ("routed_to_two_way_audio_ms", "routed -> two-way audio", RTT_TO_AUDIO),
    ):
        for q in ("p50", "p95"):
            pv, fv = p[key][q], f[key][q]  # type: ignore[index]
            rows.append((f"{label} {q} (ms)", pv, fv, fv / pv if pv else float("nan")))
        for rtt in (50.0, 150.0):
            pv = projected(p[key]["p50"], rtt_table["persistent"], rtt)  # type: ignore[index]
            fv = projected(f[key]["p50"], rtt_table["fresh"], rtt)  # type: ignore[index]
            rows.append((f"{label} p50 at {rtt:g} ms RTT (ms)", pv, fv, fv / pv))
    for key, label in (
        ("routed_to_customer_heard_ms", "  customer heard by agent p50 (ms)"),
        ("routed_to_agent_heard_ms", "  agent heard by customer p50 (ms)"),
    ):
        pv, fv = p[key]["p50"], f[key]["p50"]  # type: ignore[index]
        rows.append((label, pv, fv, fv / pv))
    rows.append(("round trips to alert", RTT_TO_ALERT["persistent"], RTT_TO_ALERT["fresh"], None))
    rows.append(("connection offers", p["connection_offers"], f["connection_offers"], None))

    print(f"\nCall delivery, {args.calls} calls each, loopback, auto answer")
    print(f"{'':46} {'persistent':>11} {'fresh':>11} {'fresh/pers':>10}")
    for label, pv, fv, ratio in rows:
        r = f"{ratio:10.1f}" if ratio is not None else ""
        print(f"{label:46} {pv:11.2f} {fv:11.2f} {r}")
    print("\nPhone with a kept connection:")
    udp = p.get("udp_bytes_per_s")
    print(
        f"  idle: loopback UDP {udp:.0f} B/s" if udp is not None else "  idle: UDP n/a (not root)"
    )
    print(f"  idle: CPU {p['cpu_percent']:.2f} % of a core, RSS {p['rss_mb']:.0f} MB")
    cpu, rss = p["in_call_cpu_percent"], p["in_call_rss_mb"]
    print(f"  in a call: CPU {cpu:.2f} % of a core, RSS {rss:.0f} MB")
    out = {
        "calls": args.calls,
        "results": results,
        "rtt_model": {"alert": RTT_TO_ALERT, "audio": RTT_TO_AUDIO},
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
