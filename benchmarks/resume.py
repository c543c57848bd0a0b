#!/usr/bin/env python3
"""Resuming a session after the WebSocket drops, during a call.

    python benchmarks/resume.py [--runs N] [--cut S] [--json FILE]

Runs the real platform and a real headless phone (auto answer, a WAV file as
microphone) as processes on 127.0.0.1; the phone reaches the platform through
a TCP proxy (tests/tcp_proxy.py). For each run a caller places a call, the
proxy is severed for ``--cut`` seconds during it and restored, and the
script takes from the processes' own event clocks:

- drop -> platform noticed: sever to the platform's ``agent_detached``;
- restore -> resumed: proxy restored to the phone's ``resumed`` (the phone's
  retry interval, 0.25, 0.5, then 1 s, decides most of it);
- drop -> resumed: the whole time the phone was away (``away_s``);

and checks that the call was neither ended nor re-queued in between.
Prints a table and writes JSON. Timing goals live here, not in the tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from audio_analysis import make_tone  # noqa: E402
from procs import CallerProcess, PhoneProcess, PlatformProcess, write_config  # noqa: E402
from tcp_proxy import TcpProxy  # noqa: E402

from agent_phone.media.wav import write_wav  # noqa: E402


def one_run(platform: PlatformProcess, phone: PhoneProcess, proxy: TcpProxy, cut_s: float, d: Path):
    mark_phone, mark_platform = phone.mark(), platform.mark()
    caller = CallerProcess(platform.url, "--duration", "60", log_dir=d)
    try:
        call_id = phone.wait_for("answered", since=mark_phone, timeout=30)["call_id"]
        time.sleep(1.0)
        severed = time.time()
        proxy.sever()
        detached = platform.wait_for("agent_detached", since=mark_platform, timeout=15)
        time.sleep(cut_s)
        restored = time.time()
        proxy.restore()
        resumed = phone.wait_for("resumed", since=mark_phone, timeout=30)
        time.sleep(0.5)
        phone.send("hangup")
        code, summary = caller.result(timeout=30)
    finally:
        caller.stop()
    ended = platform.matching("call_ended", call_id=call_id)
    return {
        "call_id": call_id,
        "detect_ms": round((detached["t"] - severed) * 1000, 1),
        "restore_to_resumed_ms": round((resumed["t"] - restored) * 1000, 1),
        "away_s": resumed["away_s"],
        "attempts": resumed["attempts"],
        "call_kept": resumed["call_id"] == call_id and resumed["call_state"] == "connected",
        "ended_reason": ended[0]["reason"] if ended else None,
        "requeued": bool(platform.matching("call_requeued", call_id=call_id)),
        "caller_ok": code == 0 and summary.get("ended_by") == "agent",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cut", type=float, default=2.0, help="seconds the WebSocket is severed")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "resume.json")
    args = p.parse_args()
    d = Path(tempfile.mkdtemp(prefix="resume-"))
    mic = d / "mic.wav"
    write_wav(mic, make_tone(880.0, 1.0))
    platform = PlatformProcess(write_config(d / "platform.toml"), log_dir=d)
    port = urlsplit(platform.url).port
    assert port is not None
    proxy = TcpProxy(port)
    phone = PhoneProcess(
        f"ws://127.0.0.1:{proxy.port}/ws",
        "bob",
        "--on-queue",
        "--auto-answer",
        "--mic-file",
        str(mic),
        "--speaker-file",
        str(d / "agent.wav"),
        log_dir=d,
    )
    runs = []
    try:
        phone.wait_for("presence", on_queue=True, timeout=30)
        for _ in range(args.runs):
            runs.append(one_run(platform, phone, proxy, args.cut, d))
            time.sleep(0.5)
    finally:
        phone.quit() if phone.proc.poll() is None else phone.stop()
        proxy.close()
        platform.stop()

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 1)

    print(f"{'run':>3} {'detect ms':>10} {'restore->resumed ms':>20} {'away s':>7} {'tries':>5} ok")
    for i, r in enumerate(runs, 1):
        ok = r["call_kept"] and r["caller_ok"] and not r["requeued"]
        print(
            f"{i:>3} {r['detect_ms']:>10} {r['restore_to_resumed_ms']:>20} "
            f"{r['away_s']:>7} {r['attempts']:>5} {'yes' if ok else 'NO'}"
        )
    print(
        f"median: detect {median('detect_ms')} ms, restore->resumed "
        f"{median('restore_to_resumed_ms')} ms, away {median('away_s')} s (cut {args.cut} s)"
    )
    result = {"cut_s": args.cut, "runs": runs}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    lost = [r for r in runs if not (r["call_kept"] and r["caller_ok"] and not r["requeued"])]
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
