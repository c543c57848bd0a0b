"""Time-stretching one decoded frame by a pitch period, so the jitter buffer
can shrink or grow its delay without dropping speech or inserting gaps.

The method is NetEq's (libwebrtc ``accelerate.cc``/``preemptive_expand.cc``),
simplified: find the lag ``L`` (a pitch period, 2.5-10 ms) at which the frame
best repeats itself, then cross-fade one period into the next (removing
``L`` samples) or into a copy of itself (adding ``L``). In voiced speech the
seam falls on the same point of two near-identical periods, so it is not
heard; in quiet audio (pauses, background) any lag will do, and more can go.
Unvoiced, poorly repeating speech is left alone (``None``): the caller tries
again on a later frame.
"""

from __future__ import annotations

import numpy as np

from agent_phone.media.audio import DTYPE, SAMPLE_RATE

#: Lags searched: 2.5 ms (400 Hz) to 10 ms (100 Hz), which covers the pitch
#: of adult voices; a frame of 20 ms holds two periods of the longest.
MIN_LAG = SAMPLE_RATE * 25 // 10_000
MAX_LAG = SAMPLE_RATE * 10 // 1000
#: The lag search runs at 8 kHz, then is refined at full rate.
_DECIMATE = 6
#: A frame this quiet (RMS, int16) is a pause: stretched whatever it holds.
QUIET_RMS = 300.0  # about -40 dBFS
#: Voiced speech repeats at its pitch period at least this well.
MIN_CORRELATION = 0.75


def rms(frame: np.ndarray) -> float:
    x = frame.astype(np.float64)
    return float(np.sqrt(np.dot(x, x) / max(1, x.size)))


def _best_lag(x: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The lag L in [MIN_LAG, max_lag] where x[:L] best matches x[L:2L],
    and its normalised correlation."""
    coarse = x[: 2 * max_lag : _DECIMATE]
    best, best_c = MIN_LAG, -1.0
    for lag in range(MIN_LAG // _DECIMATE, max_lag // _DECIMATE + 1):
        c = _correlation(coarse[:lag], coarse[lag : 2 * lag])
        if c > best_c:
            best, best_c = lag * _DECIMATE, c
    lo, hi = max(MIN_LAG, best - _DECIMATE), min(max_lag, best + _DECIMATE)
    for lag in range(lo, hi + 1):
        c = _correlation(x[:lag], x[lag : 2 * lag])
        if c >= best_c:
            best, best_c = lag, c
    return best, best_c


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    energy = float(np.dot(a, a) * np.dot(b, b))
    if energy <= 0.0:
        return 0.0
    return float(np.dot(a, b)) / float(np.sqrt(energy))


def _fade(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.float64) + 0.5) / n


def _period(frame: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The frame as floats and the period to cut or repeat: its pitch period
    when it repeats well enough to be stretched unheard, 10 ms when it is
    quiet, None otherwise."""
    x = frame.astype(np.float64)
    max_lag = min(MAX_LAG, x.size // 2)
    if max_lag < MIN_LAG:
        return None
    if rms(frame) < QUIET_RMS:
        return x, max_lag
    lag, correlation = _best_lag(x, max_lag)
    return (x, lag) if correlation >= MIN_CORRELATION else None


def shorten(frame: np.ndarray) -> np.ndarray | None:
    """``frame`` less one pitch period (or, when quiet, 10 ms), or None."""
    found = _period(frame)
    if found is None:
        return None
    x, lag = found
    # x[:L] and x[L:2L] become one cross-faded period: L samples fewer.
    w = _fade(lag)
    seam = x[:lag] * (1.0 - w) + x[lag : 2 * lag] * w
    return _pcm(np.concatenate([seam, x[2 * lag :]]))


def lengthen(frame: np.ndarray) -> np.ndarray | None:
    """``frame`` with one more pitch period (or, when quiet, 10 ms), or None."""
    found = _period(frame)
    if found is None:
        return None
    x, lag = found
    # The first period, then one that fades from the second into the first
    # (it starts where the first ends and ends where the second starts),
    # then the second and the rest: L samples more, no seam heard.
    w = _fade(lag)
    seam = x[lag : 2 * lag] * (1.0 - w) + x[:lag] * w
    return _pcm(np.concatenate([x[:lag], seam, x[lag:]]))


def _pcm(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.clip(np.rint(x), -32768, 32767).astype(DTYPE)
    return out
