#!/usr/bin/env python3
"""What a listener hears on a call, in both directions, through the real programs.

    python benchmarks/audio_quality.py [--conditions clean,loss2,...] [--runs N] [--json FILE]
        [--leg agent|customer|both] [--duration S] [--speaker file|device]
        [--period S] [--repo DIR] [--keep-audio DIR]

For each condition and run: a platform, agent bob's headless phone (on
queue, auto answer, its microphone a looped WAV of the agent speaking) and
one caller (``--play`` a looped WAV of the customer speaking, ``--record``
what the customer hears) in one call of ``--duration`` seconds (60 by
default), all on 127.0.0.1. The network is impaired by ``AGENT_PHONE_NETEM``
(agent_phone/media/netem.py: each direction of every media socket of the
process that has it) on the phone (``--leg agent``, the default), on the
caller (``--leg customer``) or on both, with ``seed`` = run index + 1, so
runs repeat. Conditions: ``clean``, ``loss2``, ``loss5rtt150``, ``jitter30``,
``burst`` (see CONDITIONS).

What the agent heard is the phone's speaker: ``--speaker device`` (the
default) runs the phone on a private PulseAudio daemon with null sinks
(tests/virtual_audio.py) and records the ``speaker`` sink's monitor for the
call; ``--speaker file`` takes the phone's ``--speaker-file`` instead (which
today leaves lost frames out instead of playing anything in their place, so
do not score it against device figures). What the customer heard is the
caller's ``--record`` file. Both are scored exactly as written:

- The received audio from 2 s after the answer is cut into 8 s periods
  (about 6 s of speech each, P.862.3's 8-12 s with 40-80 % activity).
  Each is resampled to 16 kHz and placed in the looped reference (the
  speech the far end's source played, WavLoopSource) by cross-correlation;
  then ITU-T P.862.2 wideband PESQ (``pesq``) gives its MOS-LQO.
- Level: received minus sent speech, in dB, over the reference's 20 ms
  frames above -40 dBFS, on the aligned periods.
- Mouth-to-ear and concealed time, when the programs report the clocks and
  counters for them (``play_started_at``/``record_started_at`` in the
  caller's summary, the phone's ``audio_clock`` event, ``concealed_samples``
  in ``quality``); "n/a" otherwise.
- Calls ok: answered, lasted the duration, ended by the customer, and never
  dropped on the agent's side (the phone's ``ended`` says ``customer_hangup``,
  the platform did not requeue it). A dropped call is scored only up to the
  drop: after it the customer hears the waiting tone, not the agent.

Speech is made with espeak-ng (two voices, two read texts of ~45 s each,
set to -26 dBFS active speech). ``--repo DIR`` runs the programs (and
imports tests/procs.py) from another checkout, e.g. a worktree of an older
commit, with this script and this interpreter. Prints a table and writes
JSON (benchmarks/results/audio_quality.json by default) with every period's
score. Needs ``pip install pesq``, espeak-ng and, for ``--speaker device``,
the test suite's PulseAudio packages. A 60 s call takes about 75 s with its
scoring: the default 5 conditions x 2 runs about 12.5 minutes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent.parent

RATE = 48000
SCORE_RATE = 16000
DECIMATE = RATE // SCORE_RATE
#: Skip this much after the answer (connection start, the first jitter-buffer fill).
SKIP_S = 2.0
#: Length of a scored period, and what is left out at the end of a recording.
PERIOD_S = 8.0
TAIL_S = 0.5
#: 20 ms frames of the reference above this are active speech (for the level).
ACTIVE_DBFS = -40.0
#: The speech material's active level (ITU-T P.56-style, as P.862 expects).
SPEECH_DBFS = -26.0
#: A period whose best normalised correlation is below this is flagged (still scored).
MIN_CORRELATION = 0.1

CONDITIONS: dict[str, str] = {
    "clean": "",
    "loss2": "loss=0.02",
    # 75 ms each way on the impaired process: 150 ms round trip.
    "loss5rtt150": "loss=0.05,delay_ms=75",
    # Uniform 0-60 ms each way, as netem's "delay 30ms 30ms loss 1%".
    "jitter30": "delay_ms=30,jitter_ms=30,loss=0.01",
    "burst": "loss=0.05,burst=3",
}

DIRECTIONS = ("customer->agent", "agent->customer")

CUSTOMER_TEXT = (
    "Hello, good morning. I am calling about the bill I received last week, because the "
    "amount looks much higher than usual. Normally I pay around forty dollars a month, but "
    "this time the invoice says one hundred and twelve. I checked my usage online and I did "
    "not make any international calls. I also did not change my plan. There is a line that "
    "says equipment fee, and I have no idea what that is. My account number should be on "
    "your screen, it starts with four seven nine. Could you please tell me what happened, "
    "and whether you can take the extra charges off? I would also like to know if there is "
    "a cheaper plan for someone who mostly uses the internet at home. Thank you for your "
    "help, I have been waiting a while."
)
AGENT_TEXT = (
    "Thank you for calling, my name is Bob and I will be glad to help you today. I can see "
    "your account here, and I understand why the bill looks confusing. The equipment fee is "
    "for the new router that was sent to you in March. It should have been included in your "
    "plan at no cost, so that charge is our mistake. I am removing it now, and you will see "
    "a credit of seventy two dollars on your next statement. While I have your account "
    "open, I can also move you to our home internet plan, which costs thirty five dollars a "
    "month and includes unlimited data. Your contract would stay the same length, and there "
    "is no fee to switch. Would you like me to make that change for you today?"
)
#: espeak-ng voice and words per minute, per speaker.
VOICES = {"customer": ("en-us+m3", 165), "agent": ("en-gb+f4", 160)}


# --------------------------------------------------------------------------------------
# Signals: speech material, resampling, alignment, scores
# --------------------------------------------------------------------------------------


def make_speech(text: str, voice: str, wpm: int, path: Path, wav: ModuleType) -> np.ndarray:
    """espeak-ng speech as 48 kHz mono int16 at SPEECH_DBFS, silence at both ends trimmed."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "-g", "2", "-w", str(raw), text],
        check=True,
        capture_output=True,
        timeout=120,
    )
    x = wav.read_wav(raw).astype(np.float64)
    frames = x[: x.size // 960 * 960].reshape(-1, 960)
    level = 10 * np.log10(np.mean(frames**2, axis=1) / 32768.0**2 + 1e-12)
    active = np.flatnonzero(level > ACTIVE_DBFS)
    # Keep 0.2 s of silence at each end: the loop joins them into one short pause.
    now_db = 10 * np.log10(np.mean(frames[active] ** 2) / 32768.0**2)
    # Whole 20 ms frames, so the loop is a whole number of samples at 16 kHz too.
    first, last = max(0, active[0] - 10), min(len(frames), active[-1] + 11)
    x = x[first * 960 : last * 960] * 10 ** ((SPEECH_DBFS - now_db) / 20)
    samples = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    wav.write_wav(path, samples)
    return wav.read_wav(path)  # exactly what WavLoopSource will play


def _lowpass(taps: int = 241, cutoff_hz: float = 7600.0) -> np.ndarray:
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * cutoff_hz / RATE * np.sinc(2 * cutoff_hz / RATE * n) * np.kaiser(taps, 8.0)
    return h / h.sum()


_LOWPASS = _lowpass()


def to_16k(x: np.ndarray) -> np.ndarray:
    """48 kHz -> 16 kHz (windowed-sinc low-pass, then every third sample), float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    h = _LOWPASS
    n = 1 << int(math.ceil(math.log2(x.size + h.size - 1)))
    y = np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(h, n), n)
    delay = (h.size - 1) // 2
    return y[delay : delay + x.size : DECIMATE]


class LoopReference:
    """A looped reference at 16 kHz, for placing received stretches in it."""

    def __init__(self, samples48: np.ndarray, max_period: int) -> None:
        self.samples48 = samples48
        self.loop_samples48 = samples48.size
        # Resample two loops and keep the second so the filter sees the wrap.
        ref = to_16k(np.concatenate([samples48, samples48]))[samples48.size // DECIMATE :]
        self.ref = ref[: samples48.size // DECIMATE]
        self.size = self.ref.size
        reps = 1 + int(math.ceil(max_period / self.size))
        self.ext = np.tile(self.ref, reps + 1)[: self.size + max_period]
        self.n = 1 << int(math.ceil(math.log2(self.ext.size + max_period)))
        self._spectrum = np.fft.rfft(self.ext, self.n)
        self._cum = np.concatenate([[0.0], np.cumsum(self.ext**2)])

    def window(self, lag: int, length: int) -> np.ndarray:
        """``length`` samples of the loop from ``lag`` (wrapping)."""
        return np.take(self.ref, np.arange(lag, lag + length), mode="wrap")

    def align(self, period: np.ndarray) -> tuple[int, float]:
        """Where ``period`` (16 kHz) starts in the loop, and the normalised correlation there."""
        m = period.size
        corr = np.fft.irfft(self._spectrum * np.conj(np.fft.rfft(period, self.n)), self.n)
        corr = corr[: self.size]
        energy = self._cum[m : m + self.size] - self._cum[: self.size]
        norm = np.sqrt(np.maximum(energy, 1e-9) * max(float(np.dot(period, period)), 1e-9))
        coefficient = corr / norm
        lag = int(np.argmax(coefficient))
        return lag, float(coefficient[lag])


def level_db(ref: np.ndarray, deg: np.ndarray) -> float | None:
    """Received minus sent level over the reference's active 20 ms frames (16 kHz)."""
    frame = SCORE_RATE // 50
    k = min(ref.size, deg.size) // frame
    r = ref[: k * frame].reshape(k, frame)
    d = deg[: k * frame].reshape(k, frame)
    r_power = np.mean(r**2, axis=1)
    active = 10 * np.log10(r_power / 32768.0**2 + 1e-12) > ACTIVE_DBFS
    if not active.any():
        return None
    sent, got = float(np.sum(r_power[active])), float(np.sum(np.mean(d**2, axis=1)[active]))
    return round(10 * math.log10(max(got, 1e-9) / sent), 2)


def pesq_wb(ref: np.ndarray, deg: np.ndarray) -> float | None:
    """P.862.2 MOS-LQO of 16 kHz ``deg`` against ``ref``; None when PESQ finds no speech."""
    from pesq import PesqError, pesq

    try:
        return round(float(pesq(SCORE_RATE, ref, deg, "wb")), 3)
    except PesqError:
        return None


#: Unix time of sample i of a recording (48 kHz), or of position p in a source's loop.
Clock = Callable[[int], float]


def mouth_to_ear_ms(heard_at: float, sent_start: float, position48: int, loop48: int) -> float:
    """Delay from the source handing loop position ``position48`` to the sender to that
    sound being heard at ``heard_at``; the source's loop count is whichever puts the delay
    in [-1 s, loop length - 1 s)."""
    loop_s = loop48 / RATE
    delay = (heard_at - sent_start - position48 / RATE + 1.0) % loop_s - 1.0
    return round(delay * 1000, 1)


@dataclass
class Period:
    start_s: float  # in the recording
    loop_position_s: float  # where it matched in the source's loop
    correlation: float
    speech_s: float  # active reference speech in it
    pesq: float | None
    level_db: float | None
    #: Loop position minus recording position, modulo the loop: constant while the
    #: path's delay is; it falls by as much as the delay grows (a stall, a buffer).
    alignment_s: float = 0.0
    mouth_to_ear_ms: float | None = None


def delay_change_ms(periods: Sequence[Period], loop_s: float) -> float | None:
    """How far the path's delay moved during a call: the range of the periods'
    alignments (relative to the first, across the loop's wrap), in ms."""
    if len(periods) < 2:
        return None
    first = periods[0].alignment_s
    moves = [(p.alignment_s - first + loop_s / 2) % loop_s - loop_s / 2 for p in periods]
    return round(1000 * (max(moves) - min(moves)), 1)


def score_recording(
    received48: np.ndarray,
    begin: int,
    end: int,
    reference: LoopReference,
    heard_clock: Clock | None = None,
    sent_start: float | None = None,
    period_s: float = PERIOD_S,
) -> list[Period]:
    """Score ``received48[begin:end]`` in ``period_s`` pieces against the looped reference.

    ``heard_clock(i)``: Unix time at which sample i of the recording was heard;
    ``sent_start``: Unix time at which the source handed loop position 0 to the
    sender. Both given: each period also has its mouth-to-ear delay."""
    length48 = int(period_s * RATE) // 960 * 960
    periods: list[Period] = []
    if end - begin < length48:
        return periods
    deg16_all = to_16k(received48[begin:end])
    length16 = length48 // DECIMATE
    frame = SCORE_RATE // 50
    for offset in range(0, deg16_all.size - length16 + 1, length16):
        deg = deg16_all[offset : offset + length16]
        lag, coefficient = reference.align(deg)
        ref = reference.window(lag, length16)
        power = np.mean(ref[: ref.size // frame * frame].reshape(-1, frame) ** 2, axis=1)
        speech_s = float(np.sum(10 * np.log10(power / 32768.0**2 + 1e-12) > ACTIVE_DBFS)) / 50
        start48 = begin + offset * DECIMATE
        period = Period(
            start_s=round(start48 / RATE, 3),
            loop_position_s=round(lag / SCORE_RATE, 4),
            correlation=round(coefficient, 3),
            speech_s=speech_s,
            pesq=pesq_wb(ref, deg),
            level_db=level_db(ref, deg),
            alignment_s=round((lag * DECIMATE - start48) % reference.loop_samples48 / RATE, 4),
        )
        if heard_clock is not None and sent_start is not None:
            period.mouth_to_ear_ms = mouth_to_ear_ms(
                heard_clock(start48), sent_start, lag * DECIMATE, reference.loop_samples48
            )
        periods.append(period)
    return periods


# --------------------------------------------------------------------------------------
# The speaker monitor (--speaker device)
# --------------------------------------------------------------------------------------


class MonitorRecorder:
    """Records a PortAudio input (the virtual speaker's monitor), knowing the Unix
    time of its first sample. Bounded to ``max_seconds``; ``stop()`` is idempotent."""

    def __init__(self, sd: Any, device: int, max_seconds: float) -> None:
        self._max = int(max_seconds * RATE)
        self._blocks: list[np.ndarray] = []
        self._frames = 0
        self._lock = threading.Lock()
        self.first_sample_at: float | None = None
        self.status_flags: list[str] = []
        self._result: np.ndarray | None = None
        self._stream = sd.InputStream(
            device=device, samplerate=RATE, channels=1, dtype="int16", callback=self._callback
        )
        self._stream.start()

    def _callback(self, indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
        # PortAudio's thread: plain objects only.
        if status:
            self.status_flags.append(str(status))
        if self.first_sample_at is None:
            age = when.currentTime - when.inputBufferAdcTime
            if not 0.0 <= age < 1.0 or when.inputBufferAdcTime <= 0:
                age = frames / RATE
            self.first_sample_at = time.time() - age
        with self._lock:
            take = min(frames, self._max - self._frames)
            if take > 0:
                self._blocks.append(indata[:take, 0].copy())
                self._frames += take

    def stop(self) -> np.ndarray:
        if self._result is None:
            self._stream.abort()
            self._stream.close()
            with self._lock:
                blocks = self._blocks
            self._result = np.concatenate(blocks) if blocks else np.zeros(0, np.int16)
        return self._result


# --------------------------------------------------------------------------------------
# One call
# --------------------------------------------------------------------------------------


@dataclass
class Material:
    customer_wav: Path
    agent_wav: Path
    customer: LoopReference
    agent: LoopReference


@dataclass
class CallRecord:
    condition: str
    run: int
    netem: str
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    caller_exit: int | None = None
    caller_summary: dict[str, Any] = field(default_factory=dict)
    phone_answered: dict[str, Any] = field(default_factory=dict)
    phone_ended: dict[str, Any] = field(default_factory=dict)
    phone_quality: dict[str, Any] = field(default_factory=dict)
    phone_audio_clock: dict[str, Any] = field(default_factory=dict)
    #: The platform's ``call_requeued`` events for the call (the agent's leg failed).
    requeued: int = 0
    monitor: dict[str, Any] = field(default_factory=dict)
    periods: dict[str, list[Period]] = field(default_factory=dict)
    delay_change_ms: dict[str, float | None] = field(default_factory=dict)
    concealed_pct: dict[str, float | None] = field(default_factory=dict)
    #: 1-minute load average when the call ended, and the share of all cores busy
    #: during the call, this benchmark's processes included (others' work shows here).
    load_average: float | None = None
    cpu_busy_pct: float | None = None


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores from /proc/stat (Linux); None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def _env_for(leg: str, side: str, spec: str) -> dict[str, str]:
    return {"AGENT_PHONE_NETEM": spec} if spec and leg in (side, "both") else {}


def _number(d: dict[str, Any], key: str) -> float | None:
    value = d.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def concealed_pct(quality: dict[str, Any], talk_s: float | None) -> float | None:
    """``concealed_samples`` as a share of the samples received (``total_samples_received``
    when reported, otherwise the talk time at 48 kHz)."""
    concealed = _number(quality, "concealed_samples")
    if concealed is None:
        return None
    total = _number(quality, "total_samples_received") or (talk_s or 0.0) * RATE
    return round(100 * concealed / total, 2) if total > 0 else None


def check_call(record: CallRecord, duration: float) -> None:
    s = record.caller_summary
    if record.caller_exit != 0:
        record.problems.append(f"caller exited {record.caller_exit}")
    if not s.get("answered"):
        record.problems.append("not answered")
    if (s.get("talk_s") or 0.0) < duration - 1.0:
        record.problems.append(f"talked {s.get('talk_s')} s of {duration}")
    if s.get("ended_by") != "customer" or s.get("reason") != "customer_hangup":
        record.problems.append(f"ended by {s.get('ended_by')} ({s.get('reason')})")
    ended = record.phone_ended
    if not ended:
        record.problems.append("the phone saw no end of the call")
    elif ended.get("reason") != "customer_hangup":
        # The customer may still have "talked" on, to the waiting tone.
        record.problems.append(
            f"dropped: the agent's call ended after {ended.get('duration_s')} s "
            f"({ended.get('reason')})"
        )
    if record.requeued:
        record.problems.append(f"requeued {record.requeued} time(s)")
    record.ok = not record.problems


def run_call(
    condition: str,
    run: int,
    args: argparse.Namespace,
    material: Material,
    procs: ModuleType,
    wav: ModuleType,
    audio: Any,
    work: Path,
) -> CallRecord:
    spec = CONDITIONS[condition]
    if spec:
        spec = f"{spec},seed={run + 1}"
    record = CallRecord(condition=condition, run=run, netem=spec)
    tag = f"{condition}-{run}"
    speaker_file = work / f"{tag}-agent-heard.wav"
    customer_heard = work / f"{tag}-customer-heard.wav"
    speaker = ["--speaker-file", str(speaker_file)] if args.speaker == "file" else []
    started: list[Any] = []
    cpu_at_start = _cpu_times()
    recorder: MonitorRecorder | None = None
    agent_heard: np.ndarray | None = None
    try:
        platform = procs.PlatformProcess(procs.write_config(work / "platform.toml"), log_dir=work)
        started.append(platform)
        phone = procs.PhoneProcess(
            platform.url, "bob", "--on-queue", "--auto-answer",
            "--mic-file", str(material.agent_wav), *speaker,
            log_dir=work, env=procs.child_env(**_env_for(args.leg, "agent", spec)),
        )  # fmt: skip
        started.append(phone)
        phone.wait_for("presence", on_queue=True, timeout=30)
        if audio is not None:
            recorder = MonitorRecorder(
                audio.sd, audio.speaker_monitor_device, args.duration + args.wait + 60
            )
        caller = procs.CallerProcess(
            platform.url, "--play", str(material.customer_wav), "--record", str(customer_heard),
            "--duration", f"{args.duration:g}", "--wait", f"{args.wait:g}",
            log_dir=work, env=_env_for(args.leg, "customer", spec) or None,
        )  # fmt: skip
        started.append(caller)
        record.phone_answered = phone.wait_for("answered", timeout=args.wait + 10)
        call_id = record.phone_answered["call_id"]
        record.caller_exit, record.caller_summary = caller.result(
            timeout=args.duration + args.wait + 60
        )
        record.phone_ended = phone.wait_for("ended", call_id=call_id, timeout=20)
        record.requeued = len(platform.matching("call_requeued", call_id=call_id))
        time.sleep(0.5)  # what is still in the speaker's buffers
        finals = phone.matching("quality", call_id=call_id, final=True)
        record.phone_quality = finals[-1] if finals else {}
        clocks = phone.matching("audio_clock", call_id=call_id)
        record.phone_audio_clock = clocks[0] if clocks else {}
        phone.quit(timeout=20)  # writes --speaker-file
    except AssertionError as exc:  # procs' way of saying an event or exit did not come
        record.problems.append(f"{type(exc).__name__}: {str(exc)[:500]}")
    finally:
        if recorder is not None:
            agent_heard = recorder.stop()
            record.monitor = {
                "first_sample_at": recorder.first_sample_at,
                "seconds": round(agent_heard.size / RATE, 3),
                "status_flags": sorted(set(recorder.status_flags)),
            }
        for p in reversed(started):
            p.stop()
    record.load_average = round(os.getloadavg()[0], 2)
    record.cpu_busy_pct = _busy_pct(cpu_at_start, _cpu_times())
    check_call(record, args.duration)
    if record.phone_answered:
        score_call(record, args, material, wav, agent_heard, speaker_file, customer_heard)
    if args.keep_audio is not None:
        args.keep_audio.mkdir(parents=True, exist_ok=True)
        if agent_heard is not None:
            wav.write_wav(args.keep_audio / speaker_file.name, agent_heard)
        for f in (speaker_file, customer_heard):
            if f.exists():
                f.replace(args.keep_audio / f.name)
    for f in (speaker_file, customer_heard):
        f.unlink(missing_ok=True)
    return record


def score_call(
    record: CallRecord,
    args: argparse.Namespace,
    material: Material,
    wav: ModuleType,
    agent_heard: np.ndarray | None,
    speaker_file: Path,
    customer_heard: Path,
) -> None:
    """Both directions of one call: periods, levels, delays, concealment."""
    s, clock = record.caller_summary, record.phone_audio_clock
    answered_at = float(record.phone_answered["t"])
    ended_at = float(record.phone_ended.get("t") or answered_at + args.duration)
    talk_s = _number(s, "talk_s")

    # Customer -> agent: the speaker monitor (device) or the speaker file.
    heard_clock: Clock | None = None
    if agent_heard is not None:
        first = record.monitor.get("first_sample_at")
        origin = first if first is not None else answered_at
        received = agent_heard
        begin = int((answered_at - origin + SKIP_S) * RATE)
        end = int((ended_at - origin) * RATE)
        if first is not None:
            heard_clock = lambda i, t0=first: t0 + i / RATE  # noqa: E731
    elif speaker_file.exists():
        received = wav.read_wav(speaker_file)
        offset = _number(clock, "speaker_file_offset_s") or 0.0
        begin = int((offset + SKIP_S) * RATE)
        end = received.size
        started = _number(clock, "speaker_started_at")
        if started is not None:
            heard_clock = lambda i, t0=started, o=offset: t0 + i / RATE - o  # noqa: E731
    else:
        received, begin, end = np.zeros(0, np.int16), 0, 0
    end = min(end, received.size) - int(TAIL_S * RATE)
    record.periods[DIRECTIONS[0]] = score_recording(
        received,
        max(0, begin),
        end,
        material.customer,
        heard_clock,
        _number(s, "play_started_at"),
        args.period,
    )
    record.delay_change_ms[DIRECTIONS[0]] = delay_change_ms(
        record.periods[DIRECTIONS[0]], material.customer.loop_samples48 / RATE
    )
    record.concealed_pct[DIRECTIONS[0]] = concealed_pct(
        record.phone_quality, _number(record.phone_ended, "duration_s") or talk_s
    )

    # Agent -> customer: the caller's recording.
    heard_clock = None
    if customer_heard.exists():
        received = wav.read_wav(customer_heard)
        record_start = _number(s, "record_started_at")
        origin = record_start or _number(s, "heard_from") or answered_at
        begin = int((max(0.0, answered_at - origin) + SKIP_S) * RATE)
        if record_start is not None:
            heard_clock = lambda i, t0=record_start: t0 + i / RATE  # noqa: E731
        # Only while the agent was in the call (a dropped call leaves the customer
        # with the waiting tone, which is not the agent's voice degraded).
        end = min(received.size, int((ended_at - origin) * RATE)) - int(TAIL_S * RATE)
    else:
        received, begin, end = np.zeros(0, np.int16), 0, 0
    record.periods[DIRECTIONS[1]] = score_recording(
        received,
        begin,
        end,
        material.agent,
        heard_clock,
        _number(clock, "mic_started_at"),
        args.period,
    )
    record.delay_change_ms[DIRECTIONS[1]] = delay_change_ms(
        record.periods[DIRECTIONS[1]], material.agent.loop_samples48 / RATE
    )
    quality = s.get("quality") if isinstance(s.get("quality"), dict) else {}
    record.concealed_pct[DIRECTIONS[1]] = concealed_pct(quality, talk_s)


# --------------------------------------------------------------------------------------
# Summary, table, JSON
# --------------------------------------------------------------------------------------


def summarise(records: Sequence[CallRecord], conditions: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for condition in conditions:
        calls = [r for r in records if r.condition == condition]
        per: dict[str, Any] = {}
        for direction in DIRECTIONS:
            periods = [p for r in calls for p in r.periods.get(direction, [])]
            scores = [p.pesq for p in periods if p.pesq is not None]
            levels = [p.level_db for p in periods if p.level_db is not None]
            delays = [p.mouth_to_ear_ms for p in periods if p.mouth_to_ear_ms is not None]
            hidden = [c for r in calls if (c := r.concealed_pct.get(direction)) is not None]
            moved = [m for r in calls if (m := r.delay_change_ms.get(direction)) is not None]
            per[direction] = {
                "periods": len(periods),
                "pesq_unscored": len(periods) - len(scores),
                "low_correlation": sum(p.correlation < MIN_CORRELATION for p in periods),
                "pesq_median": _median(scores, 3),
                "pesq_min": min(scores) if scores else None,
                "pesq_max": max(scores) if scores else None,
                "level_db_median": _median(levels, 2),
                "mouth_to_ear_ms_median": _median(delays, 1),
                "concealed_pct_median": _median(hidden, 2),
                "delay_change_ms_max": max(moved) if moved else None,
                "calls_ok": sum(r.ok for r in calls),
                "calls": len(calls),
            }
        out[condition] = per
    return out


def _median(values: Sequence[float], digits: int) -> float | None:
    return round(statistics.median(values), digits) if values else None


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


def print_table(summary: dict[str, Any]) -> None:
    head = (
        f"{'condition':<12} {'direction':<16} {'PESQ median [min-max]':>22} {'level dB':>9} "
        f"{'mouth-to-ear ms':>16} {'concealed %':>12} {'delay moved ms':>15} "
        f"{'calls ok':>9} {'periods':>8}"
    )
    print(head)
    print("-" * len(head))
    for condition, per in summary.items():
        for direction, s in per.items():
            pesq = (
                f"{s['pesq_median']:.2f} [{s['pesq_min']:.2f}-{s['pesq_max']:.2f}]"
                if s["pesq_median"] is not None
                else "n/a"
            )
            level = _fmt(s["level_db_median"], "+.1f")
            print(
                f"{condition:<12} {direction:<16} {pesq:>22} {level:>9} "
                f"{_fmt(s['mouth_to_ear_ms_median'], '.0f'):>16} "
                f"{_fmt(s['concealed_pct_median'], '.1f'):>12} "
                f"{_fmt(s['delay_change_ms_max'], '.0f'):>15} "
                f"{s['calls_ok']:>5}/{s['calls']:<3} {s['periods']:>8}"
            )


def _git(repo: Path, *cmd: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *cmd], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in ("aiortc", "av", "pesq", "numpy", "aioice"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _record_json(r: CallRecord) -> dict[str, Any]:
    d = asdict(r)
    # The per-second timeline is long and says little here.
    d["caller_summary"] = {k: v for k, v in r.caller_summary.items() if k != "heard_timeline"}
    return d


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help=f"comma-separated, of: {', '.join(CONDITIONS)} (default: all)",
    )
    p.add_argument("--runs", type=int, default=2, help="calls per condition (seed = run + 1)")
    p.add_argument(
        "--json",
        type=Path,
        default=HERE / "benchmarks/results/audio_quality.json",
        help="where the results go (default: benchmarks/results/audio_quality.json)",
    )
    p.add_argument(
        "--leg",
        choices=("agent", "customer", "both"),
        default="agent",
        help="whose process gets AGENT_PHONE_NETEM: the phone (default), the caller, both",
    )
    p.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds per call")
    p.add_argument(
        "--speaker",
        choices=("file", "device"),
        default="device",
        help="what the agent heard: the virtual sound card's speaker (default) or "
        "the phone's --speaker-file",
    )
    p.add_argument(
        "--period",
        type=float,
        default=PERIOD_S,
        metavar="S",
        help=f"length of a scored period (default {PERIOD_S:g} s)",
    )
    p.add_argument(
        "--repo",
        type=Path,
        default=HERE,
        metavar="DIR",
        help="run the programs (and tests/procs.py) from this checkout (default: this one)",
    )
    p.add_argument("--wait", type=float, default=30.0, help=argparse.SUPPRESS)
    p.add_argument(
        "--keep-audio", type=Path, metavar="DIR", help="keep what was heard, as WAVs, here"
    )
    return p


def _load(repo: Path) -> tuple[ModuleType, ModuleType]:
    """tests/procs.py and agent_phone.media.wav from ``repo``."""
    sys.path[:0] = [str(repo), str(repo / "tests")]
    procs = importlib.import_module("procs")
    wav = importlib.import_module("agent_phone.media.wav")
    if Path(procs.REPO).resolve() != repo:
        raise SystemExit(f"tests/procs.py came from {procs.REPO}, not {repo}")
    return procs, wav


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown or not conditions:
        parser.error(f"unknown condition(s) {unknown}; known: {', '.join(CONDITIONS)}")
    if not 1 <= args.runs <= 100 or not 4 <= args.period <= 30:
        parser.error("--runs 1..100, --period 4..30 s")
    if not SKIP_S + TAIL_S + args.period <= args.duration <= 3600:
        parser.error(f"--duration {SKIP_S + TAIL_S + args.period:g}..3600 s")
    args.repo = args.repo.resolve()
    # The emulator is for the processes a condition names, never inherited.
    for name in ("AGENT_PHONE_NETEM", "AGENT_PHONE_NETEM_FILE"):
        if os.environ.pop(name, None) is not None:
            print(f"note: {name} in the environment ignored", file=sys.stderr)
    # Ctrl+C and SIGTERM unwind through the finally blocks that stop every process
    # (SIGINT too when a non-interactive shell started us with it ignored).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    load_at_start = os.getloadavg()
    procs, wav = _load(args.repo)
    audio: Any = None
    records: list[CallRecord] = []
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="audio-quality-") as tmp:
        work = Path(tmp)
        longest = int(args.period * SCORE_RATE)
        customer_wav, agent_wav = work / "customer.wav", work / "agent.wav"
        voice, wpm = VOICES["customer"]
        customer = make_speech(CUSTOMER_TEXT, voice, wpm, customer_wav, wav)
        voice, wpm = VOICES["agent"]
        agent = make_speech(AGENT_TEXT, voice, wpm, agent_wav, wav)
        material = Material(
            customer_wav, agent_wav, LoopReference(customer, longest), LoopReference(agent, longest)
        )
        if args.keep_audio is not None:
            args.keep_audio.mkdir(parents=True, exist_ok=True)
            for f in (customer_wav, agent_wav):
                wav.write_wav(args.keep_audio / f"sent-{f.name}", wav.read_wav(f))
        try:
            if args.speaker == "device":
                virtual_audio = importlib.import_module("virtual_audio")
                audio = virtual_audio.VirtualAudio(virtual_audio.prepare_environment())
                audio.start()
            for condition in conditions:
                for run in range(args.runs):
                    t0 = time.monotonic()
                    record = run_call(condition, run, args, material, procs, wav, audio, work)
                    records.append(record)
                    scores = [
                        f"{d}: " + " ".join(_fmt(p.pesq, ".2f") for p in record.periods.get(d, []))
                        for d in DIRECTIONS
                    ]
                    status = "ok" if record.ok else "; ".join(record.problems)
                    print(
                        f"{condition} run {run + 1}/{args.runs} ({time.monotonic() - t0:.0f} s, "
                        f"cpu {_fmt(record.cpu_busy_pct, '.0f')} %, {status}): "
                        + " | ".join(scores),
                        flush=True,
                    )
        finally:
            if audio is not None:
                audio.close()
    summary = summarise(records, conditions)
    print()
    print_table(summary)
    result = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "settings": {
            "conditions": {c: CONDITIONS[c] for c in conditions},
            "runs": args.runs,
            "leg": args.leg,
            "duration_s": args.duration,
            "speaker": args.speaker,
            "seed": "run index + 1",
            "skip_s": SKIP_S,
            "period_s": args.period,
            "active_dbfs": ACTIVE_DBFS,
            "speech_dbfs": SPEECH_DBFS,
            "voices": VOICES,
            "speech_s": {
                "customer": round(customer.size / RATE, 2),
                "agent": round(agent.size / RATE, 2),
            },
            "score": "ITU-T P.862.2 wideband PESQ (pesq, 16 kHz), MOS-LQO",
        },
        "repo": str(args.repo),
        "git_commit": _git(args.repo, "rev-parse", "HEAD"),
        "git_dirty": bool(_git(args.repo, "status", "--porcelain", "--", "agent_phone")),
        "started_at": began,
        "wall_s": round(time.time() - began, 1),
        "load_average_at_start": [round(x, 2) for x in load_at_start],
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "versions": _versions(),
        "summary": summary,
        "calls": [_record_json(r) for r in records],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.json} ({result['wall_s']:.0f} s)")
    return 0 if all(r.ok for r in records) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc or 'Ctrl+C'}); every process stopped", file=sys.stderr)
        sys.exit(130)
