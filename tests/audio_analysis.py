"""Small signal-analysis helpers for audio tests: which tone did a side hear?

All functions take 1-D sample arrays (a 2-D ``(frames, channels)`` array is
averaged over its channels first). Levels are in int16 units: int16 samples are
used as they are, float samples within [-1, 1] are scaled by 32767 (float32 is
what sounddevice gives by default). Nothing here needs a sound card.

Tone detection (``has_tone``)
-----------------------------
The samples are multiplied by a Hann window and transformed with a real FFT;
``P[k]`` is the power in bin ``k`` (bin width ``rate / len(samples)`` Hz).

* The *tone band* is ``freq ± (tolerance_hz + 2 bins)``: a Hann window spreads a
  pure tone over its main lobe, two bins on each side of the peak.
* The *reference* is the mean power per bin outside the band (DC excluded):
  everything else the signal holds (noise, distortion, other tones).
* ``SNR dB = 10 log10(mean(P[band]) / mean(P[outside]))``: how far the tone band
  stands above the signal's average spectral density. White noise gives ~0 dB;
  a tone gains ~10 log10(bins / band bins) over it, so a 1 s tone is found
  even 10 dB under noise. A tone 20 dB weaker than another one in the same
  1 s signal still scores ~+12 dB, so each of several tones is reported.

  (Not the median: a median floor is the quantisation noise of a clean
  recording, and the broadband clicks of a single underrun then put any
  wrong frequency 20-30 dB above it. Against the mean, a 440 Hz tone cut by
  up to five 2-50 ms gaps scored at most +5 dB at 220, 660, 880, 1000 or
  1320 Hz, in 600 random trials of 0.25-2 s.)

``has_tone`` is true when the signal is not silent (``rms >= min_rms``), the
strongest bin of the band, refined by parabolic interpolation, lies within
``tolerance_hz`` of ``freq``, and the SNR is at least ``min_snr_db``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "dominant_frequency",
    "has_tone",
    "make_tone",
    "rms",
    "speech_heard",
    "speech_level_db",
    "tone_snr_db",
]

#: Below this RMS (in int16 units, i.e. about -70 dBFS) a signal counts as silence.
SILENCE_RMS = 10.0


def _mono(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim == 2:
        x = x.astype(np.float64).mean(axis=1)
    elif x.ndim != 1:
        raise ValueError(f"expected 1-D (or frames x channels) samples, got shape {x.shape}")
    x = x.astype(np.float64, copy=False)
    if np.issubdtype(np.asarray(samples).dtype, np.floating) and len(x) and np.abs(x).max() <= 1.0:
        x = x * 32767.0
    return x


def _power_spectrum(x: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2


def _interpolated_peak(power: np.ndarray, k: int) -> float:
    """Sub-bin position of the peak at bin k (parabola through log powers)."""
    if 0 < k < len(power) - 1:
        a, b, c = np.log(power[k - 1 : k + 2] + 1e-30)
        denom = a - 2 * b + c
        if denom < 0:
            return k + 0.5 * (a - c) / denom
    return float(k)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def rms(samples: np.ndarray) -> float:
    """Root mean square of the samples, in int16 units."""
    return _rms(_mono(samples))


def dominant_frequency(samples: np.ndarray, rate: int = 48000) -> float:
    """Frequency in Hz of the strongest spectral peak (DC excluded), Hann-windowed FFT.

    Returns 0.0 for silence or fewer than 4 samples.
    """
    x = _mono(samples)
    if len(x) < 4 or _rms(x) == 0.0:
        return 0.0
    power = _power_spectrum(x - x.mean())
    power[0] = 0.0
    k = int(np.argmax(power))
    return _interpolated_peak(power, k) * rate / len(x)


def tone_snr_db(
    samples: np.ndarray, freq: float, rate: int = 48000, tolerance_hz: float = 5
) -> tuple[float, float]:
    """(SNR in dB of the band around ``freq``, interpolated peak frequency in that band).

    See the module docstring for the definition. Silence gives (-inf, 0.0).
    """
    x = _mono(samples)
    n = len(x)
    if n < 4 or _rms(x) == 0.0:
        return float("-inf"), 0.0
    power = _power_spectrum(x - x.mean())
    bin_hz = rate / n
    half = tolerance_hz + 2 * bin_hz
    lo = max(1, int(np.floor((freq - half) / bin_hz)))
    hi = min(len(power) - 1, int(np.ceil((freq + half) / bin_hz)))
    if hi < lo:
        raise ValueError(f"{freq} Hz is outside the spectrum of a {rate} Hz signal")
    band = power[lo : hi + 1]
    outside = np.concatenate([power[1:lo], power[hi + 1 :]])
    # A floor for digital silence around a synthetic tone: below int16 quantisation
    # noise (which gives ~0.03 * n per bin through a Hann window).
    reference = max(float(outside.mean()) if len(outside) else 0.0, 1e-3 * n)
    snr = 10 * np.log10(float(band.mean()) / reference + 1e-30)
    k = lo + int(np.argmax(band))
    peak_hz = _interpolated_peak(power, k) * bin_hz
    return float(snr), float(peak_hz)


def has_tone(
    samples: np.ndarray,
    freq: float,
    rate: int = 48000,
    tolerance_hz: float = 5,
    min_snr_db: float = 10,
    min_rms: float = SILENCE_RMS,
) -> bool:
    """True if ``samples`` hold a tone at ``freq`` ± ``tolerance_hz`` Hz.

    The SNR is the tone band's mean power per bin against that of the rest of the
    spectrum (module docstring); ``min_rms`` (int16 units) rejects silence and
    near-silence.
    """
    if rms(samples) < min_rms:
        return False
    snr, peak_hz = tone_snr_db(samples, freq, rate, tolerance_hz)
    return snr >= min_snr_db and abs(peak_hz - freq) <= tolerance_hz


def make_tone(freq: float, seconds: float, rate: int = 48000, amplitude: float = 0.3) -> np.ndarray:
    """A sine tone as int16 mono samples; ``amplitude`` is a fraction of full scale."""
    t = np.arange(int(round(seconds * rate))) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


# --- speech: how much of it a listener heard, and how loud ------------------------------


def _blocks(x: np.ndarray, block: int) -> np.ndarray:
    n = x.size // block
    b = x[: n * block].astype(np.float64).reshape(n, block)
    out: np.ndarray = np.sqrt((b**2).mean(axis=1))
    return out


def _aligned(sent: np.ndarray, played: np.ndarray, piece: int, reach: int):  # type: ignore[no-untyped-def]
    """Each ``piece`` of ``sent`` with the stretch of ``played`` it best matches
    (cross-correlation), up to ``reach`` samples later."""
    ref, out = sent.astype(np.float64), played.astype(np.float64)
    for start in range(0, ref.size - piece + 1, piece):
        seg = ref[start : start + piece]
        window = out[start : start + piece + reach]
        if window.size < piece:
            yield seg, None
            continue
        n = 1 << (window.size + piece).bit_length()
        corr = np.fft.irfft(np.fft.rfft(window, n) * np.conj(np.fft.rfft(seg, n)), n)
        lag = int(np.argmax(corr[: window.size - piece + 1]))
        yield seg, window[lag : lag + piece]


def speech_heard(
    sent: np.ndarray, played: np.ndarray, rate: int = 48000, max_delay_s: float = 0.5
) -> float:
    """The share of the speech in ``sent`` (by energy, in 10 ms blocks) that
    ``played`` holds at no less than half its level (-6 dB): a lost or
    silenced block is not heard, a well concealed one may be. Each quarter
    second of ``sent`` is lined up with where it best matches in ``played``,
    up to ``max_delay_s`` later (a jitter buffer's delay changes as it adapts)."""
    block = rate // 100
    loud_level = 0.05 * _blocks(sent, block).max()
    heard = total = 0.0
    for seg, got in _aligned(sent, played, rate // 4, int(max_delay_s * rate)):
        env = _blocks(seg, block)
        loud = env > loud_level
        total += float(env[loud].sum())
        if got is not None and loud.any():
            heard += float(env[loud & (_blocks(got, block) >= 0.5 * env)].sum())
    return heard / total if total else 0.0


def speech_level_db(
    sent: np.ndarray, played: np.ndarray, rate: int = 48000, max_delay_s: float = 0.5
) -> float:
    """How much louder (dB; negative: quieter) the speech in ``played`` is than
    in ``sent``, over the 10 ms blocks where ``sent`` has speech and
    ``played`` has it too (lost blocks are ``speech_heard``'s business)."""
    block = rate // 100
    loud_level = 0.05 * _blocks(sent, block).max()
    energy_sent = energy_played = 0.0
    for seg, got in _aligned(sent, played, rate // 4, int(max_delay_s * rate)):
        if got is None:
            continue
        a, b = _blocks(seg, block), _blocks(got, block)
        keep = (a > loud_level) & (b >= 0.5 * a)
        energy_sent += float((a[keep] ** 2).sum())
        energy_played += float((b[keep] ** 2).sum())
    if not energy_sent or not energy_played:
        return float("-inf")
    return 10 * float(np.log10(energy_played / energy_sent))
