"""Call-progress tones and DTMF: generated here, and recognised here.

No Qt and no I/O: the platform uses it for what a customer hears (the
waiting tone in the queue, the hold music, the agent's DTMF digits), the
phone for the agent's own key feedback, and the caller tool to report what
the customer heard.

The tones are chosen to be told apart from each other and from the tests'
voice stand-ins (a customer at 440 Hz, an agent at 880 Hz):

- **waiting tone**: a 520 Hz beep, 0.4 s on, 0.6 s off, repeated while a
  customer waits in a queue (first arrival or re-queued);
- **hold music**: a looping four-note figure, E4 G4 C4 G4 (330, 392, 262,
  392 Hz), 0.25 s per note with 10 ms fades, while the agent holds the call;
- **DTMF** (ITU-T Q.23/Q.24): each key is the sum of one low-group and one
  high-group frequency, 100 ms on and 70 ms off, each frequency at -10 dBm0.

``dBm0`` follows G.711: a full-scale sine is +3.14 dBm0, so -10 dBm0 is a
sine of 0.22 of full scale.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import numpy as np

from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, SAMPLE_RATE

__all__ = [
    "DTMF_DIGITS_PATTERN",
    "DTMF_FREQUENCIES",
    "HOLD_NOTES_HZ",
    "MAX_DTMF_DIGITS",
    "WAITING_HZ",
    "DtmfDetector",
    "HeardAnalysis",
    "LoopedTone",
    "dtmf_samples",
    "hold_music",
    "validate_dtmf",
    "waiting_tone",
]

FULL_SCALE_DBM0 = 3.14
#: At most this many digits in one ``send_dtmf`` (a card number and some).
MAX_DTMF_DIGITS = 32
DTMF_DIGITS_PATTERN = rf"^[0-9*#A-D]{{1,{MAX_DTMF_DIGITS}}}$"
_DIGITS = re.compile(DTMF_DIGITS_PATTERN)

_LOW = (697.0, 770.0, 852.0, 941.0)
_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYS = ("123A", "456B", "789C", "*0#D")
#: digit -> (low-group Hz, high-group Hz)
DTMF_FREQUENCIES: dict[str, tuple[float, float]] = {
    key: (_LOW[row], _HIGH[col]) for row, keys in enumerate(_KEYS) for col, key in enumerate(keys)
}
DTMF_ON_MS = 100.0
DTMF_OFF_MS = 70.0
DTMF_LEVEL_DBM0 = -10.0

WAITING_HZ = 520.0
WAITING_ON_S = 0.4
WAITING_PERIOD_S = 1.0
HOLD_NOTES_HZ = (330.0, 392.0, 262.0, 392.0)
HOLD_NOTE_S = 0.25
#: Level of the waiting tone and the hold music (fraction of full scale, ~-20 dBFS).
TONE_AMPLITUDE = 0.1


def _amplitude(dbm0: float) -> float:
    return float(32767 * 10 ** ((dbm0 - FULL_SCALE_DBM0) / 20))


def _sine(freq: float, n: int, amplitude: float) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(n) / SAMPLE_RATE)


def _fade(x: np.ndarray, ms: float = 10.0) -> np.ndarray:
    n = min(int(SAMPLE_RATE * ms / 1000), len(x) // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def validate_dtmf(digits: str) -> str:
    """``digits`` if they are 1 to ``MAX_DTMF_DIGITS`` of 0-9 * # A-D, else ValueError."""
    if not isinstance(digits, str) or not _DIGITS.match(digits):
        raise ValueError(
            f"DTMF digits must be 1 to {MAX_DTMF_DIGITS} of 0-9, *, #, A-D; got {digits!r}"
        )
    return digits


def dtmf_samples(
    digits: str,
    on_ms: float = DTMF_ON_MS,
    off_ms: float = DTMF_OFF_MS,
    level_dbm0: float = DTMF_LEVEL_DBM0,
) -> np.ndarray:
    """The in-band tones for ``digits`` (validated), each followed by its pause."""
    validate_dtmf(digits)
    on = int(SAMPLE_RATE * on_ms / 1000)
    off = int(SAMPLE_RATE * off_ms / 1000)
    amplitude = _amplitude(level_dbm0)
    parts = []
    for digit in digits:
        low, high = DTMF_FREQUENCIES[digit]
        tone = _sine(low, on, amplitude) + _sine(high, on, amplitude)
        parts += [_fade(tone, 3.0), np.zeros(off)]
    samples: np.ndarray = np.rint(np.concatenate(parts)).astype(DTYPE)
    return samples


def _frozen(x: np.ndarray) -> np.ndarray:
    x.setflags(write=False)
    return x


@functools.cache
def waiting_tone() -> np.ndarray:
    """One period of the waiting tone (loop it); made once, read-only."""
    period = int(SAMPLE_RATE * WAITING_PERIOD_S)
    on = int(SAMPLE_RATE * WAITING_ON_S)
    out = np.zeros(period)
    out[:on] = _fade(_sine(WAITING_HZ, on, TONE_AMPLITUDE * 32767))
    return _frozen(np.rint(out).astype(DTYPE))


#: The call-waiting beep in the agent's headset: two short bursts (ITU-T
#: E.180's 400-450 Hz), quiet, over the call they are on.
CALL_WAITING_HZ = 425.0
CALL_WAITING_BURST_S = 0.2
CALL_WAITING_DBM0 = -24.0


@functools.cache
def call_waiting_beep() -> np.ndarray:
    """Two 200 ms bursts 200 ms apart; made once, read-only."""
    n = int(SAMPLE_RATE * CALL_WAITING_BURST_S)
    burst = _fade(_sine(CALL_WAITING_HZ, n, _amplitude(CALL_WAITING_DBM0)), 5.0)
    return _frozen(np.rint(np.concatenate([burst, np.zeros(n), burst])).astype(DTYPE))


@functools.cache
def hold_music() -> np.ndarray:
    """One bar of the hold music (loop it); made once, read-only."""
    n = int(SAMPLE_RATE * HOLD_NOTE_S)
    notes = [_fade(_sine(f, n, TONE_AMPLITUDE * 32767)) for f in HOLD_NOTES_HZ]
    return _frozen(np.rint(np.concatenate(notes)).astype(DTYPE))


class LoopedTone:
    """An ``AudioSource`` looping a fixed pattern in 20 ms blocks, from its start.

    ``restart()`` goes back to the beginning (a new waiting spell starts with
    a beep, not in the middle of a pause).
    """

    def __init__(self, pattern: np.ndarray) -> None:
        if pattern.size == 0:
            raise ValueError("an empty pattern")
        self._pattern = pattern if pattern.dtype == DTYPE else pattern.astype(DTYPE)
        self._position = 0

    def restart(self) -> None:
        self._position = 0

    async def start(self) -> None:
        pass

    def read(self) -> np.ndarray:
        indices = np.arange(self._position, self._position + FRAME_SAMPLES)
        self._position = (self._position + FRAME_SAMPLES) % self._pattern.size
        return np.take(self._pattern, indices, mode="wrap")

    async def stop(self) -> None:
        pass


# --- recognition ----------------------------------------------------------------


def _basis(freqs: np.ndarray, n: int) -> np.ndarray:
    """Rows of e^(-j 2 pi f t): one Goertzel (single-bin DFT) per frequency."""
    return np.exp(-2j * np.pi * np.outer(freqs, np.arange(n)) / SAMPLE_RATE)


def _power(basis: np.ndarray, x: np.ndarray) -> np.ndarray:
    """2|X(f)|^2/N for each row: the power a sine at f contributes, comparable
    with ``sum(x**2)``."""
    power: np.ndarray = 2 * np.abs(basis @ x) ** 2 / len(x)
    return power


_DTMF_FREQS = np.array(_LOW + _HIGH)
_DTMF_BASIS_N = FRAME_SAMPLES // 2


class DtmfDetector:
    """Digits from audio, 10 ms at a time (Goertzel at the eight DTMF frequencies).

    A 10 ms block is a key when the strongest low and high frequencies carry
    most of its power (both present, neither 8 dB weaker than the other, each
    at least 6 dB over the rest of its group) and it is loud enough. A digit
    is reported once it was seen in 3 blocks in a row (30 ms); it must then
    stop for 2 blocks before the same or another digit counts again.
    """

    MIN_BLOCKS = 3
    GAP_BLOCKS = 2
    MIN_RMS = 300.0

    def __init__(self) -> None:
        self.digits = ""
        self._pending = np.zeros(0)
        self._current: str | None = None
        self._run = 0
        self._quiet = self.GAP_BLOCKS
        self._reported = False
        self._basis = _basis(_DTMF_FREQS, _DTMF_BASIS_N)

    def _key(self, x: np.ndarray) -> str | None:
        total = float(np.dot(x, x))
        if total < self.MIN_RMS**2 * len(x):
            return None
        power = _power(self._basis, x)
        low, high = power[:4], power[4:]
        li, hi = int(np.argmax(low)), int(np.argmax(high))
        pl, ph = float(low[li]), float(high[hi])
        if pl + ph < 0.6 * total or not 1 / 6.3 < ph / pl < 6.3:
            return None
        if np.sort(low)[-2] * 4 > pl or np.sort(high)[-2] * 4 > ph:
            return None
        return _KEYS[li][hi]

    def feed(self, samples: np.ndarray) -> None:
        x = np.concatenate([self._pending, np.asarray(samples, dtype=np.float64).reshape(-1)])
        n = _DTMF_BASIS_N
        blocks = len(x) // n
        for i in range(blocks):
            self._step(self._key(x[i * n : (i + 1) * n]))
        self._pending = x[blocks * n :]

    def _step(self, key: str | None) -> None:
        if key is None:
            self._quiet += 1
            if self._quiet >= self.GAP_BLOCKS:
                self._current = None
                self._run = 0
            return
        if key == self._current:
            # The same key again, or back after a dropout shorter than a gap.
            self._run += 1
        else:
            self._current = key
            self._run = 1
            self._reported = False
        self._quiet = 0
        if not self._reported and self._run >= self.MIN_BLOCKS:
            self.digits += key
            self._reported = True


@dataclass
class HeardAnalysis:
    """What a listener heard, built 20 ms at a time with bounded memory.

    - ``digits``: DTMF digits, in order (``DtmfDetector``);
    - ``waiting_s`` / ``hold_s``: seconds in which the waiting tone / the hold
      music was the main thing heard (judged per 100 ms);
    - ``timeline``: the dominant frequency (Hz, rounded; 0 for silence) of
      each whole second heard, the first ``max_seconds`` of them.
    """

    max_seconds: int = 900
    digits_detector: DtmfDetector = field(default_factory=DtmfDetector)
    waiting_s: float = 0.0
    hold_s: float = 0.0
    timeline: list[int] = field(default_factory=list)
    _block: list[np.ndarray] = field(default_factory=list)
    _second: list[np.ndarray] = field(default_factory=list)
    _second_len: int = 0

    BLOCK = SAMPLE_RATE // 10
    _BASIS = _basis(np.array([WAITING_HZ, *sorted(set(HOLD_NOTES_HZ))]), BLOCK)

    @property
    def digits(self) -> str:
        return self.digits_detector.digits

    def write(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        self.digits_detector.feed(x)
        self._block.append(x)
        if sum(len(b) for b in self._block) >= self.BLOCK:
            block = np.concatenate(self._block)
            self._block = [block[self.BLOCK :]] if len(block) > self.BLOCK else []
            self._classify(block[: self.BLOCK])
        if len(self.timeline) < self.max_seconds:
            self._second.append(x)
            self._second_len += len(x)
            if self._second_len >= SAMPLE_RATE:
                second = np.concatenate(self._second)
                rest = second[SAMPLE_RATE:]
                self._second, self._second_len = ([rest], len(rest)) if len(rest) else ([], 0)
                self.timeline.append(_dominant_hz(second[:SAMPLE_RATE]))

    def _classify(self, x: np.ndarray) -> None:
        total = float(np.dot(x, x))
        if total < 100.0**2 * len(x):
            return
        power = _power(self._BASIS, x)
        seconds = len(x) / SAMPLE_RATE
        if power[0] > 0.5 * total:
            self.waiting_s += seconds
        # A block across a change of note holds each note for part of it,
        # which the single-bin DFT sees squared: a lower bar for the music.
        elif float(power[1:].sum()) > 0.35 * total:
            self.hold_s += seconds

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def _dominant_hz(x: np.ndarray) -> int:
    if float(np.sqrt(np.mean(x * x))) < 30.0:
        return 0
    power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)))) ** 2
    power[0] = 0.0
    return int(round(int(np.argmax(power)) * SAMPLE_RATE / len(x)))
