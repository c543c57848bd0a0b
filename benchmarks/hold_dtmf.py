#!/usr/bin/env python3
"""How fast hold, resume and DTMF reach the customer's ear.

    python benchmarks/hold_dtmf.py [--cycles N] [--json FILE]

Runs the real platform, a headless phone (auto answer, an 880 Hz microphone
file) and the caller (recording what the customer hears) as processes on
127.0.0.1. In one call it repeats N times: hold, 1.5 s, resume, 1.2 s, the
key "1", 0.8 s. Each command's time is the phone's event for it (``held``,
``dtmf``: the engine's clock when the platform confirmed, or when the keys
were sent); each onset is found in the caller's recording, placed on the
clock by its ``heard_from`` (the first frame's arrival, so the figures
include one network and jitter-buffer delay) and the RTP timestamps:

- hold -> music: the first 20 ms block dominated by the hold music;
- resume -> agent: the first block dominated by 880 Hz again;
- key -> tone: the first block with the key's two DTMF frequencies.

Prints a table and writes JSON. Timing goals live here, not in the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from procs import CallerProcess, PhoneProcess, PlatformProcess, write_config  # noqa: E402

from agent_phone.media.tones import DTMF_FREQUENCIES, HOLD_NOTES_HZ  # noqa: E402
from agent_phone.media.wav import read_wav, write_wav  # noqa: E402

RATE = 48000
BLOCK = 960


def share(block: np.ndarray, freqs: tuple[float, ...]) -> float:
    """Fraction of the block's power at ``freqs`` (single-bin DFTs)."""
    x = block.astype(np.float64)
    total = float(np.dot(x, x))
    if total < (100.0**2) * len(x):
        return 0.0
    t = np.arange(len(x)) / RATE
    power = sum(2 * abs(np.dot(x, np.exp(-2j * np.pi * f * t))) ** 2 / len(x) for f in freqs)
    return float(power) / total


def onset(x: np.ndarray, origin: float, after: float, freqs: tuple[float, ...]) -> float | None:
    """Seconds from ``after`` to the first block mostly at ``freqs``."""
    start = max(0, int((after - origin) * RATE))
    for i in range(start, min(len(x), start + 3 * RATE) - BLOCK, BLOCK):
        if share(x[i : i + BLOCK], freqs) > 0.5:
            return (i - start) / RATE
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=10)
    p.add_argument("--json", type=Path, default=REPO / "benchmarks/results/hold_dtmf.json")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hold-bench-"))
    mic = tmp / "mic.wav"
    t = np.arange(RATE) / RATE
    write_wav(mic, np.rint(0.3 * 32767 * np.sin(2 * np.pi * 880 * t)).astype(np.int16))
    platform = PlatformProcess(write_config(tmp / "platform.toml"), log_dir=tmp)
    phone = caller = None
    try:
        phone = PhoneProcess(
            platform.url,
            "bob",
            "--on-queue",
            "--auto-answer",
            "--mic-file",
            str(mic),
            "--speaker-file",
            str(tmp / "agent.wav"),
            log_dir=tmp,
        )
        phone.wait_for("presence", on_queue=True)
        rec = tmp / "customer.wav"
        caller = CallerProcess(
            platform.url, "--record", str(rec), "--duration", "0", "--wait", "600", log_dir=tmp
        )
        phone.wait_for("answered", timeout=30)
        time.sleep(1.0)
        marks: list[tuple[str, float]] = []
        for _ in range(args.cycles):
            since = phone.mark()
            phone.send("hold")
            marks.append(("hold", phone.wait_for("held", on=True, since=since)["t"]))
            time.sleep(1.5)
            since = phone.mark()
            phone.send("unhold")
            marks.append(("resume", phone.wait_for("held", on=False, since=since)["t"]))
            time.sleep(1.2)
            since = phone.mark()
            phone.send("dtmf", digits="1")
            marks.append(("key", phone.wait_for("dtmf", since=since)["t"]))
            time.sleep(0.8)
        phone.send("hangup")
        _code, summary = caller.result(timeout=30)
    finally:
        for proc in (caller, phone, platform):
            if proc is not None:
                proc.stop()
    x = read_wav(rec)
    origin = summary["heard_from"]
    targets = {"hold": HOLD_NOTES_HZ, "resume": (880.0,), "key": DTMF_FREQUENCIES["1"]}
    found: dict[str, list[float]] = {k: [] for k in targets}
    missed: dict[str, int] = {k: 0 for k in targets}
    for kind, at in marks:
        delay = onset(x, origin, at, tuple(set(targets[kind])))
        if delay is None:
            missed[kind] += 1
        else:
            found[kind].append(delay * 1000)
    names = {"hold": "hold -> music", "resume": "resume -> agent", "key": "key -> tone"}
    print(f"{'':18} {'n':>3} {'missed':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    result: dict[str, object] = {"cycles": args.cycles, "dtmf_heard": summary["dtmf_heard"]}
    for kind, values in found.items():
        p50, p95, top = (
            (np.percentile(values, 50), np.percentile(values, 95), max(values))
            if values
            else (float("nan"),) * 3
        )
        print(f"{names[kind]:18} {len(values):3} {missed[kind]:6} {p50:8.0f} {p95:8.0f} {top:8.0f}")
        result[kind] = {"n": len(values), "missed": missed[kind], "p50_ms": p50, "p95_ms": p95}
    print(f"caller heard DTMF: {summary['dtmf_heard']!r}; hold music {summary['hold_tone_s']} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
