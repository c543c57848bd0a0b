#!/usr/bin/env python3
"""Faults on the agent's side during a call, measured with the real programs.

    python benchmarks/faults.py [--runs N] [--json FILE]

For each run: a platform, agent bob (auto answer) in a call with a customer,
agent carol free. Then either bob's phone is SIGKILLed (``kill``) or its
media network is cut (``cut``: ``cut=1`` written to its
``AGENT_PHONE_NETEM_FILE``, agent_phone/media/netem.py). Measured from the
event clocks: fault -> the platform puts the call back in the queue
(``call_requeued``), and fault -> carol has answered it (``call_answered``).
Finally one call at 5 % loss and 75 ms each way on bob's media path
(``AGENT_PHONE_NETEM=loss=0.05,delay_ms=75,jitter_ms=5``), reporting the
phone's final ``quality`` event and the platform's ``call_quality``.

Prints a table and writes JSON (benchmarks/results/faults.json by default).
Audio goes through WAV files (--mic-file/--speaker-file), so no sound card
is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from procs import CallerProcess, PhoneProcess, PlatformProcess, child_env, write_config  # noqa: E402

from agent_phone.media.wav import write_wav as _write_wav  # noqa: E402

IMPAIRED = "loss=0.05,delay_ms=75,jitter_ms=5"


def _tone_file(path: Path) -> str:
    import numpy as np

    t = np.arange(48000) / 48000
    _write_wav(path, np.round(0.3 * 32767 * np.sin(2 * np.pi * 880 * t)).astype(np.int16))
    return str(path)


def one_fault(kind: str, work: Path) -> dict[str, float]:
    platform = PlatformProcess(write_config(work / "platform.toml"), log_dir=work)
    mic = _tone_file(work / "mic.wav")
    control = work / f"bob-{kind}.netem"
    control.write_text("")
    env = child_env(AGENT_PHONE_NETEM_FILE=str(control)) if kind == "cut" else None
    procs: list[Any] = [platform]
    try:
        bob = PhoneProcess(
            platform.url, "bob", "--on-queue", "--auto-answer", "--mic-file", mic,
            "--speaker-file", str(work / "bob.wav"), log_dir=work, env=env,
        )  # fmt: skip
        procs.append(bob)
        bob.wait_for("presence", on_queue=True)
        carol = PhoneProcess(
            platform.url, "carol", "--auto-answer", "--mic-file", mic,
            "--speaker-file", str(work / "carol.wav"), log_dir=work,
        )  # fmt: skip
        procs.append(carol)
        carol.wait_for("signed_in")
        # The customer stays until an agent hangs up.
        caller = CallerProcess(platform.url, "--duration", "0", log_dir=work)
        procs.append(caller)
        call_id = bob.wait_for("answered", timeout=30)["call_id"]
        carol.send("on_queue")
        carol.wait_for("presence", on_queue=True)
        time.sleep(1.0)
        fault_at = time.time()
        if kind == "kill":
            os.kill(bob.proc.pid, signal.SIGKILL)
        else:
            control.write_text("cut=1\n")
        requeued = platform.wait_for("call_requeued", call_id=call_id, timeout=20)
        answered = platform.wait_for("call_answered", call_id=call_id, agent="carol", timeout=30)
        carol.wait_for("answered", call_id=call_id)
        carol.send("hangup")
        code, summary = caller.result(timeout=40)
        assert code == 0 and summary["agent"] == "carol", summary
        return {
            "detect_ms": round((requeued["t"] - fault_at) * 1000, 1),
            "answered_by_next_ms": round((answered["t"] - fault_at) * 1000, 1),
        }
    finally:
        for p in reversed(procs):
            p.stop()


def impaired_call(work: Path) -> dict[str, Any]:
    platform = PlatformProcess(write_config(work / "platform.toml"), log_dir=work)
    mic = _tone_file(work / "mic.wav")
    procs: list[Any] = [platform]
    try:
        bob = PhoneProcess(
            platform.url, "bob", "--on-queue", "--auto-answer", "--mic-file", mic,
            "--speaker-file", str(work / "bob.wav"), log_dir=work,
            env=child_env(AGENT_PHONE_NETEM=IMPAIRED),
        )  # fmt: skip
        procs.append(bob)
        bob.wait_for("presence", on_queue=True)
        caller = CallerProcess(platform.url, "--duration", "10", log_dir=work)
        procs.append(caller)
        code, summary = caller.result(timeout=60)
        assert code == 0, summary
        call_id = summary["call_id"]
        bob.wait_for("ended", call_id=call_id)
        phone_q = bob.wait_for("quality", call_id=call_id, final=True)
        platform_q = platform.wait_for("call_quality", call_id=call_id)
        keep = ("packets_received", "packets_lost", "fraction_lost", "jitter_ms", "rtt_ms")
        return {
            "phone": {k: phone_q[k] for k in keep},
            "platform": {k: platform_q[k] for k in keep},
        }
    finally:
        for p in reversed(procs):
            p.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/faults.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        work = Path(tmp)
        for kind in ("kill", "cut"):
            runs = [one_fault(kind, work) for _ in range(args.runs)]
            results[kind] = {
                "runs": runs,
                "detect_ms_median": statistics.median(r["detect_ms"] for r in runs),
                "detect_ms_max": max(r["detect_ms"] for r in runs),
                "answered_by_next_ms_median": statistics.median(
                    r["answered_by_next_ms"] for r in runs
                ),
            }
        results["impaired"] = impaired_call(work)
    print(f"{'fault':<28}{'detected (median, max)':>26}{'next agent answered':>22}")
    for kind, label in (("kill", "phone SIGKILLed"), ("cut", "phone's media network cut")):
        r = results[kind]
        print(
            f"{label:<28}{r['detect_ms_median']:>15.0f} ms {r['detect_ms_max']:>6.0f} ms"
            f"{r['answered_by_next_ms_median']:>19.0f} ms"
        )
    print(f"\ncall at {IMPAIRED}:")
    for side in ("phone", "platform"):
        print(f"  {side:<9}", json.dumps(results["impaired"][side]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
