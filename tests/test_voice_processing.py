"""Tests for agent_phone.media.voice_processing, through the real library (livekit's APM).

Speech is the project's own sample (resources/sounds/customer.wav, 6.7 s),
noise is seeded pink noise, so every run processes the same samples. Clean
speech is checked with an energy envelope (pesq is not a test dependency);
when pesq happens to be installed, a PESQ test runs as well. Thresholds sit
well away from the measured values (docs/voice-processing.md) and from what a
no-op, a muting or a pumping processor would give. No sound device needed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from itertools import pairwise
from types import ModuleType

import numpy as np
import pytest

from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.media.voice_processing import (
    NS_DELAY_MS,
    ProcessedSource,
    VoiceProcessingError,
    VoiceProcessor,
    is_available,
)
from agent_phone.media.wav import read_wav
from agent_phone.resources import resource

GAP = np.zeros(SAMPLE_RATE // 2)


@pytest.fixture(scope="module")
def rtc() -> ModuleType:
    """The library's module; the tests that need it skip when it is not installed."""
    return pytest.importorskip("livekit.rtc", reason="voice processing library not installed")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """customer.wav as float samples (int16 scale), at 48 kHz."""
    return read_wav(resource("sounds", "customer.wav")).astype(np.float64)


def _active_db(x: np.ndarray) -> float:
    """Active speech level, dBFS: mean power of the 20 ms frames within 30 dB of the loudest."""
    n = len(x) // FRAME_SAMPLES
    power = np.mean((x[: n * FRAME_SAMPLES].reshape(n, -1) / 32768.0) ** 2, axis=1) + 1e-20
    db = 10 * np.log10(power)
    return float(10 * np.log10(power[db > db.max() - 30].mean()))


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean((np.asarray(x, np.float64) / 32768.0) ** 2) + 1e-20))


def _at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * 10 ** ((dbfs - _active_db(x)) / 20)


@pytest.fixture(scope="module")
def pink() -> np.ndarray:
    """22 s of pink (1/f) noise, unit RMS, seeded: broadband like a fan or air conditioning.

    Made once (a power-of-two FFT); tests take different slices of it.
    """
    size = 1 << 20
    spectrum = np.fft.rfft(np.random.default_rng(1).standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    spectrum /= np.sqrt(freqs)
    spectrum[freqs < 20] = 0
    x = np.fft.irfft(spectrum, size)
    return x / np.sqrt(np.mean(x**2))


def _noise(pink: np.ndarray, n: int, dbfs: float, offset: int = 0) -> np.ndarray:
    """``n`` samples of the pink noise at ``dbfs`` RMS, starting at ``offset``."""
    return np.roll(pink, -offset)[:n] * 32768 * 10 ** (dbfs / 20)


def _int16(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME_SAMPLES * FRAME_SAMPLES
    return np.clip(np.round(x[:n]), -32768, 32767).astype(DTYPE)


def _frames(x: np.ndarray) -> Iterator[np.ndarray]:
    for i in range(0, len(x) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        yield x[i : i + FRAME_SAMPLES]


def _run(processor: VoiceProcessor, x: np.ndarray) -> np.ndarray:
    return np.concatenate([processor.process(f) for f in _frames(x)])


def _reps(speech: np.ndarray, count: int) -> tuple[np.ndarray, list[int]]:
    """``count`` copies of the speech separated by 0.5 s pauses, and where each starts."""
    parts, starts, pos = [GAP], [], len(GAP)
    for _ in range(count):
        starts.append(pos)
        parts += [speech, GAP]
        pos += len(speech) + len(GAP)
    return np.concatenate(parts), starts


def _delay(x: np.ndarray, y: np.ndarray, most: int = 2400) -> int:
    """How many samples ``y`` lags ``x`` (peak of the cross-correlation, 0..most)."""
    size = 1 << (len(x) + len(y)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size)), size)
    return int(np.argmax(corr[: most + 1]))


def _envelope_db(x: np.ndarray, block: int = 480) -> np.ndarray:
    n = len(x) // block
    return 10 * np.log10(np.mean((x[: n * block].reshape(n, block) / 32768.0) ** 2, axis=1) + 1e-12)


# -- frames in, frames out ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "agc"), [(True, True), (True, False), (False, True), (False, False)]
)
def test_each_frame_comes_back_as_one_frame_of_int16(
    rtc: ModuleType, speech: np.ndarray, ns: bool, agc: bool
) -> None:
    processor = VoiceProcessor(noise_suppression=ns, auto_gain_control=agc)
    frames = list(_frames(_int16(speech[:SAMPLE_RATE])))
    outputs, snapshots = [], []
    for frame in frames:
        before = frame.copy()
        out = processor.process(frame)
        assert out.shape == (FRAME_SAMPLES,) and out.dtype == np.int16
        assert out is not frame and np.array_equal(frame, before)  # input left alone
        outputs.append(out)
        snapshots.append(out.copy())
    assert len(outputs) == len(frames)
    # No result shares memory with the processor's buffers: later calls changed none.
    assert all(np.array_equal(o, s) for o, s in zip(outputs, snapshots, strict=True))
    if not (ns or agc):
        assert all(np.array_equal(o, f) for o, f in zip(outputs, frames, strict=True))


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros(FRAME_SAMPLES // 2, DTYPE),
        np.zeros(FRAME_SAMPLES, np.float32),
        np.zeros((FRAME_SAMPLES, 2), DTYPE),
    ],
)
def test_a_frame_of_the_wrong_shape_or_type_is_refused(rtc: ModuleType, frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="960"):
        VoiceProcessor().process(frame)


# -- what it does to the voice ------------------------------------------------------------


def test_noise_in_pauses_is_reduced_and_speech_kept(
    rtc: ModuleType, speech: np.ndarray, pink: np.ndarray
) -> None:
    """Pink noise 15 dB under the speech: the pauses must get >= 8 dB quieter (measured 13)."""
    clean, starts = _reps(_at_level(speech, -20.0), 2)
    noisy = _int16(clean + _noise(pink, len(clean), -35.0))
    out = _run(VoiceProcessor(noise_suppression=True, auto_gain_control=False), noisy)

    # The pause between the two copies: the estimator has had 7 s to learn the noise.
    pause = slice(starts[1] - len(GAP) + 4800, starts[1] - 2400)
    reduction = _rms_db(noisy[pause]) - _rms_db(out[pause])
    assert reduction >= 8.0, f"noise in the pause reduced by only {reduction:.1f} dB"
    second = slice(starts[1], starts[1] + len(speech))
    speech_change = _active_db(out[second].astype(np.float64)) - _active_db(
        noisy[second].astype(np.float64)
    )
    assert abs(speech_change) <= 2.0, f"speech level changed by {speech_change:+.1f} dB"


@pytest.fixture(scope="module")
def clean_run(rtc: ModuleType, speech: np.ndarray) -> tuple[np.ndarray, np.ndarray, slice, float]:
    """Two copies of clean speech at -20 dBFS through NS + AGC: input, output, 2nd copy, delay."""
    clean, starts = _reps(_at_level(speech, -20.0), 2)
    x = _int16(clean)
    processor = VoiceProcessor()
    out = _run(processor, x)
    return x, out, slice(starts[1], starts[1] + len(speech)), processor.delay_ms


def test_clean_speech_passes_nearly_unchanged(
    clean_run: tuple[np.ndarray, np.ndarray, slice, float],
) -> None:
    """Energy envelope (10 ms blocks) and band levels of the 2nd copy, delay compensated.

    The delay is measured (cross-correlation) and must match ``delay_ms``.
    """
    x, out, second, delay_ms = clean_run
    x, out = x.astype(np.float64), out.astype(np.float64)
    delay = _delay(x[second][: 2 * SAMPLE_RATE], out[second][: 2 * SAMPLE_RATE])
    assert abs(delay * 1000 / SAMPLE_RATE - delay_ms) < 1.5, f"delay {delay} samples"
    out = np.concatenate([out[delay:], np.zeros(delay)])

    env_in, env_out = _envelope_db(x[second]), _envelope_db(out[second])
    voiced = env_in > env_in.max() - 30
    diff = env_out[voiced] - env_in[voiced]
    assert np.corrcoef(env_in[voiced], env_out[voiced])[0, 1] > 0.97
    assert abs(float(np.median(diff))) < 1.0, f"median level change {np.median(diff):+.2f} dB"
    assert np.percentile(diff, 10) > -3.0, "more than 10 % of the speech lost over 3 dB"

    def band_powers(y: np.ndarray) -> np.ndarray:
        power = np.abs(np.fft.rfft(y, 1 << 19)) ** 2  # 10.9 s: the whole copy, fast
        freqs = np.fft.rfftfreq(1 << 19, 1 / SAMPLE_RATE)
        edges = [150, 500, 1500, 4000, 8000]
        bands = [power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in pairwise(edges)]
        return 10 * np.log10(np.array(bands))

    change = band_powers(out[second]) - band_powers(x[second])
    assert np.all(np.abs(change) < 1.5), f"band levels changed by {np.round(change, 1)} dB"


def test_clean_speech_pesq_when_pesq_is_installed(
    clean_run: tuple[np.ndarray, np.ndarray, slice, float],
) -> None:
    """PESQ P.862.2 wideband of clean speech in vs out (measured 4.4; 4.64 is the ceiling).

    Scored on the 2nd copy, when the AGC has settled. PESQ aligns the signals itself.
    """
    pesq = pytest.importorskip("pesq", reason="pesq is not a test dependency").pesq
    x, out, second, _ = clean_run

    def to_16k(y: np.ndarray) -> np.ndarray:
        """Low-pass at 7.8 kHz in the frequency domain, then keep every 3rd sample."""
        size = 1 << 19
        spectrum = np.fft.rfft(y.astype(np.float64) / 32768, size)
        spectrum[np.fft.rfftfreq(size, 1 / SAMPLE_RATE) > 7800] = 0
        return np.fft.irfft(spectrum, size)[: len(y)][::3]

    score = pesq(16000, to_16k(x[second]), to_16k(out[second]), "wb")
    assert score >= 3.8, f"PESQ {score:.2f}"


def test_a_quiet_talker_is_brought_up(
    rtc: ModuleType, speech: np.ndarray, pink: np.ndarray
) -> None:
    """-38 dBFS in (a headset mic far from the mouth): >= 10 dB up from the first sentence."""
    quiet, starts = _reps(_at_level(speech, -38.0), 2)
    x = _int16(quiet + _noise(pink, len(quiet), -75.0, offset=SAMPLE_RATE))
    out = _run(VoiceProcessor(), x).astype(np.float64)
    for start in starts:
        level = _active_db(out[start : start + len(speech)])
        assert -28.0 <= level <= -14.0, f"quiet talker came out at {level:.1f} dBFS (measured -22)"


def test_a_normal_talker_is_neither_clipped_nor_pumped(
    rtc: ModuleType, speech: np.ndarray, pink: np.ndarray
) -> None:
    """-20 dBFS in, peaks at -1.6 dBFS: the AGC must leave the level alone once settled.

    While the AGC starts from its initial gain (+8 dB, the first ~2 s of its
    life) the limiter may touch full scale on single samples; hard clipping
    would give runs of them. After that: no sample at full scale, the level of
    the 2nd copy within 1.5 dB of the input, and a steady gain (pumping would
    make the gain over 250 ms windows swing: a +-1.5 dB swing gives a spread
    of 1 dB, measured 0.07 dB).
    """
    loud, starts = _reps(_at_level(speech, -20.0), 2)
    x = _int16(loud + _noise(pink, len(loud), -65.0, offset=2 * SAMPLE_RATE))
    out = _run(VoiceProcessor(), x).astype(np.int32)

    settled = starts[0] + 3 * SAMPLE_RATE
    full_scale = np.flatnonzero(np.abs(out) >= 32767)
    assert not np.any(full_scale >= settled), f"clipped at {full_scale[-1] / SAMPLE_RATE:.2f} s"
    runs = np.split(full_scale, np.flatnonzero(np.diff(full_scale) > 1) + 1)
    longest_run = max((len(run) for run in runs), default=0)
    assert longest_run <= 3, f"{longest_run} consecutive samples at full scale"

    second = slice(starts[1], starts[1] + len(speech))
    x_in, x_out = x[second].astype(np.float64), out[second].astype(np.float64)
    level = _active_db(x_out)
    assert abs(level + 20.0) <= 1.5, f"normal talker came out at {level:.1f} dBFS"

    window = SAMPLE_RATE // 4
    n = len(x_in) // window
    power_in = np.sum(x_in[: n * window].reshape(n, window) ** 2, axis=1)
    power_out = np.sum(x_out[: n * window].reshape(n, window) ** 2, axis=1)
    loud_windows = power_in > power_in.max() / 100  # within 20 dB of the loudest
    gain_db = 10 * np.log10(power_out[loud_windows] / power_in[loud_windows])
    assert np.std(gain_db) < 0.5, f"gain swings: {np.round(gain_db, 1)} dB"


# -- switching, reset, errors -------------------------------------------------------------


def test_switching_features_off_and_on(rtc: ModuleType, speech: np.ndarray) -> None:
    processor = VoiceProcessor()
    assert processor.active and processor.delay_ms == NS_DELAY_MS
    frame = _int16(speech[SAMPLE_RATE : SAMPLE_RATE + FRAME_SAMPLES])
    processor.set_enabled(noise_suppression=False, auto_gain_control=False)
    assert not processor.active and processor.delay_ms == 0.0
    assert np.array_equal(processor.process(frame), frame)  # bypass: bit-exact
    processor.set_enabled(auto_gain_control=True)
    assert (processor.noise_suppression, processor.auto_gain_control) == (False, True)
    assert processor.process(frame).shape == (FRAME_SAMPLES,)


def test_reset_forgets_what_was_learned(
    rtc: ModuleType, speech: np.ndarray, pink: np.ndarray
) -> None:
    noisy = _int16(_at_level(speech, -20.0) + _noise(pink, len(speech), -35.0))
    learn, probe = noisy[: 3 * SAMPLE_RATE], noisy[3 * SAMPLE_RATE : 5 * SAMPLE_RATE]

    used = VoiceProcessor()
    _run(used, learn)
    stale = _run(used, probe)
    used.reset()
    after_reset = _run(used, probe)
    fresh = _run(VoiceProcessor(), probe)

    assert not np.array_equal(stale, fresh)  # there was state to forget
    assert np.array_equal(after_reset, fresh)


def test_is_available_when_installed(rtc: ModuleType) -> None:
    assert is_available()


def test_a_missing_library_raises_voice_processing_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "livekit", None)  # "import livekit" now fails
    monkeypatch.setitem(sys.modules, "livekit.rtc", None)
    assert not is_available()
    with pytest.raises(VoiceProcessingError, match="livekit"):
        VoiceProcessor()
    # With both features off the library is not needed: audio passes unchanged.
    bypass = VoiceProcessor(noise_suppression=False, auto_gain_control=False)
    frame = np.arange(FRAME_SAMPLES, dtype=DTYPE)
    assert np.array_equal(bypass.process(frame), frame)
    with pytest.raises(VoiceProcessingError):
        bypass.set_enabled(noise_suppression=True)


def test_a_native_library_that_fails_to_load_raises_voice_processing_error(
    rtc: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(**_: object) -> None:
        raise ImportError("failed to load liblivekit_ffi.so: cannot open shared object file")

    monkeypatch.setattr(rtc, "AudioProcessingModule", fail)
    with pytest.raises(VoiceProcessingError, match="liblivekit_ffi"):
        VoiceProcessor()


def test_a_failure_while_processing_raises_until_reset(
    rtc: ModuleType, speech: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    processor = VoiceProcessor()
    frame = _int16(speech[:FRAME_SAMPLES])

    def broken(self: object, data: object) -> None:
        raise RuntimeError("apm_process_stream: invalid handle")

    with monkeypatch.context() as patch:
        patch.setattr(rtc.AudioProcessingModule, "process_stream", broken)
        with pytest.raises(VoiceProcessingError, match="invalid handle"):
            processor.process(frame)
    with pytest.raises(VoiceProcessingError, match="reset"):
        processor.process(frame)  # stays failed: the caller has switched to raw audio
    processor.reset()
    assert processor.process(frame).shape == (FRAME_SAMPLES,)


def test_close_is_idempotent(rtc: ModuleType) -> None:
    processor = VoiceProcessor()
    processor.close()
    processor.close()
    with pytest.raises(VoiceProcessingError):
        processor.process(np.zeros(FRAME_SAMPLES, DTYPE))


# -- the phone's microphone path: ProcessedSource --------------------------------------------


class _Mic:
    """A microphone stand-in that hands out given frames (the source, not
    the thing under test: that is ProcessedSource and the real library)."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = list(frames)

    async def start(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        return self.frames.pop(0) if self.frames else None

    async def stop(self) -> None:
        pass


def test_the_microphone_is_processed_while_on_and_passes_as_it_is_while_off(
    rtc: ModuleType, speech: np.ndarray, pink: np.ndarray
) -> None:
    quiet = _int16(_at_level(speech, -40) + _noise(pink, len(speech), -55))
    frames = list(_frames(quiet))
    source = ProcessedSource(_Mic(frames))
    source.prepare()
    out = [source.read() for _ in frames[:-50]]
    assert source.processing and all(f is not None and f.shape == (FRAME_SAMPLES,) for f in out)
    # The AGC brought the quiet talker up: what the customer gets is louder.
    processed = np.concatenate([f for f in out if f is not None])
    assert _active_db(processed[-SAMPLE_RATE * 3 :]) > _active_db(quiet[-SAMPLE_RATE * 3 :]) + 6
    # Off: the frames go out exactly as the microphone gave them.
    source.enabled = False
    rest = frames[len(frames) - 50 :]
    for expected in rest:
        got = source.read()
        assert got is not None and np.array_equal(got, expected)
    assert source.read() is None  # the microphone had nothing: nothing is made up


def test_without_the_library_the_microphone_goes_out_unprocessed_and_the_agent_is_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "livekit", None)
    monkeypatch.setitem(sys.modules, "livekit.rtc", None)
    told: list[str] = []
    frames = [np.full(FRAME_SAMPLES, i, dtype=DTYPE) for i in range(3)]
    source = ProcessedSource(_Mic(frames), on_error=told.append)
    out = [source.read() for _ in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(out, frames, strict=True))  # type: ignore[arg-type]
    assert len(told) == 1 and "livekit" in told[0]  # once, with the reason
    assert not source.processing and source.error is not None
