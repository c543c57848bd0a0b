#!/usr/bin/env python3
"""A fresh customer call's set-up with and without trickle ICE, when one
candidate comes late.

    python benchmarks/trickle.py [--runs N] [--late-ms MS] [--json FILE]

On a real network a client's ICE gathering waits for its STUN (or TURN)
server: its host candidates are known at once, its server-reflexive one
hundreds of milliseconds to seconds later. Without trickle ICE the client
sends its offer only once gathering is over; with it, at once, and the late
candidate follows (docs/protocol.md "Trickle ICE").

Here the real platform runs as a process on 127.0.0.1 and bob is a phone
engine in this process, on queue with auto answer, over his kept
connection. Each run is a customer's call from a raw client in this process
(aiortc, the protocol's messages), gathering "completes" ``--late-ms``
after it began: the late candidate is a server-reflexive one on 127.0.0.1
at a port this script holds and never answers (no traffic leaves
loopback). Measured from the start of gathering:

- accepted: the platform's ``call_accepted`` (its SDP answer);
- connected: the client's peer connection is ``connected``;
- answered: ``call_connected`` (the call is queued once its media is
  connected, and bob's auto answer takes it).

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from aiortc import RTCSessionDescription  # noqa: E402
from inprocess import signed_in_agent  # noqa: E402
from procs import PlatformProcess, write_config  # noqa: E402

from agent_phone.media.ice import restrict_ice_addresses, split_candidates  # noqa: E402
from agent_phone.media.peer import new_peer_connection  # noqa: E402
from agent_phone.media.tracks import OutboundAudioTrack  # noqa: E402
from agent_phone.media.wav import ToneSource  # noqa: E402
from agent_phone.phone import events  # noqa: E402
from agent_phone.protocol import (  # noqa: E402
    PROTOCOL_VERSION,
    CallAccepted,
    CallConnected,
    CallEnded,
    CallerHangup,
    Error,
    IceCandidate,
    PlaceCall,
    decode_to_caller,
)
from agent_phone.signaling import SignalingClient  # noqa: E402


async def one_call(
    url: str, token: str, trickle: bool, late_s: float, late_port: int
) -> dict[str, float]:
    """One customer call; the times (ms from the start of gathering)."""
    signaling = SignalingClient(url, decode_to_caller)
    await signaling.connect()
    pc = new_peer_connection()
    pc.addTrack(OutboundAudioTrack(ToneSource(440.0)))
    connected = asyncio.Event()
    pc.on(
        "connectionstatechange",
        lambda: connected.set() if pc.connectionState == "connected" else None,
    )
    times: dict[str, float] = {}
    start = time.monotonic()
    await pc.setLocalDescription(await pc.createOffer())
    sdp, host = split_candidates(pc.localDescription.sdp)
    mid = host[0][1]
    late = (
        f"candidate:9 1 udp 1686052607 127.0.0.1 {late_port} typ srflx"
        f" raddr 127.0.0.1 rport {late_port}"
    )
    place = PlaceCall(
        version=PROTOCOL_VERSION, queue="support", caller="Trickle", sdp="", trunk_token=token
    )
    if trickle:
        await signaling.send(PlaceCall(**{**_fields(place), "sdp": sdp}))
        for candidate, m, index in host:
            await signaling.send(
                IceCandidate(candidate=candidate, sdp_mid=m, sdp_mline_index=index)
            )
    else:
        await asyncio.sleep(late_s)  # gathering is over only now
        lines = "".join(f"a={c}\r\n" for c, _m, _i in host) + f"a={late}\r\na=end-of-candidates\r\n"
        await signaling.send(PlaceCall(**{**_fields(place), "sdp": sdp + lines}))

    async def late_candidate() -> None:
        await asyncio.sleep(max(0.0, start + late_s - time.monotonic()))
        await signaling.send(IceCandidate(candidate=late, sdp_mid=mid, sdp_mline_index=0))
        await signaling.send(IceCandidate(candidate="", sdp_mid=mid))

    trickling = asyncio.create_task(late_candidate()) if trickle else None
    call_id = ""
    try:
        async for message in signaling.messages():
            match message:
                case CallAccepted():
                    call_id = message.call_id
                    times["accepted_ms"] = (time.monotonic() - start) * 1000
                    await pc.setRemoteDescription(RTCSessionDescription(message.sdp, "answer"))
                    asyncio.create_task(_note(connected, times, "connected_ms", start))
                case CallConnected():
                    times["answered_ms"] = (time.monotonic() - start) * 1000
                    await signaling.send(CallerHangup(call_id=call_id))
                case CallEnded():
                    break
                case Error():
                    raise RuntimeError(f"{message.code}: {message.message}")
    finally:
        if trickling is not None:
            await trickling
        await signaling.close()
        await pc.close()
    return times


def _fields(message: Any) -> dict[str, Any]:
    return {f: getattr(message, f) for f in message.__struct_fields__}


async def _note(event: asyncio.Event, times: dict[str, float], key: str, start: float) -> None:
    await asyncio.wait_for(event.wait(), 10)
    times[key] = (time.monotonic() - start) * 1000


async def run(runs: int, late_ms: float) -> dict[str, Any]:
    restrict_ice_addresses(("127.0.0.1",))
    work = Path(tempfile.mkdtemp(prefix="trickle-"))
    platform = PlatformProcess(write_config(work / "platform.toml"), log_dir=work)
    # The late candidate's port: held, never answered (checks to it go unanswered).
    hold = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hold.bind(("127.0.0.1", 0))
    late_port = hold.getsockname()[1]
    results: dict[str, list[dict[str, float]]] = {"complete": [], "trickle": []}
    try:
        async with signed_in_agent(platform, "bob", work, auto_answer=True) as bob:
            for index in range(runs * 2):
                mode = "trickle" if index % 2 else "complete"
                mark = bob.mark()
                times = await one_call(
                    platform.url,
                    platform.trunk_token or "",
                    mode == "trickle",
                    late_ms / 1000,
                    late_port,
                )
                await bob.wait_for(events.CallChanged, lambda e: e.state == "ended", mark)
                results[mode].append(times)
    finally:
        hold.close()
        platform.stop()
    summary: dict[str, Any] = {"late_ms": late_ms, "runs": runs}
    for mode, samples in results.items():
        for key in ("accepted_ms", "connected_ms", "answered_ms"):
            values = [s[key] for s in samples if key in s]
            summary[f"{mode}_{key}_p50"] = round(float(np.percentile(values, 50)), 1)
            summary[f"{mode}_{key}_p95"] = round(float(np.percentile(values, 95)), 1)
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10, help="calls per mode (default 10)")
    p.add_argument("--late-ms", type=float, default=1000.0, help="the late candidate's delay")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "trickle.json")
    args = p.parse_args()
    summary = asyncio.run(run(args.runs, args.late_ms))
    print(f"one candidate {args.late_ms:.0f} ms late, {args.runs} calls per mode (ms, p50 / p95)")
    print(f"{'':10} {'accepted':>16} {'connected':>16} {'answered':>16}")
    for mode in ("complete", "trickle"):
        cells = [
            f"{summary[f'{mode}_{k}_p50']:7.1f} / {summary[f'{mode}_{k}_p95']:6.1f}"
            for k in ("accepted_ms", "connected_ms", "answered_ms")
        ]
        print(f"{mode:10} " + " ".join(f"{c:>16}" for c in cells))
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print("wrote", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
