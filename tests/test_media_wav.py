"""Tests for agent_phone.media.wav: WAV files and tones. No sound device needed."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from agent_phone.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.media.wav import ToneSource, WavFileSink, WavLoopSource, read_wav, write_wav


def _peak_hz(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Frequency of the strongest FFT bin (Hann window, DC removed)."""
    x = samples.astype(np.float64)
    x -= x.mean()
    power = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(power) * rate / x.size)


def _sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return amplitude * 32767 * np.sin(2 * np.pi * freq * t)


def _write_raw_wav(path: Path, frames: bytes, rate: int, width: int, channels: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames)


def _extensible_wav(
    frames: bytes, rate: int, bits: int, channels: int, subformat_tag: int = 1
) -> bytes:
    """A WAVE_FORMAT_EXTENSIBLE file, as DAWs write 24-bit and multichannel audio."""
    block_align = channels * bits // 8
    guid = struct.pack("<H", subformat_tag) + bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack(
        "<HHIIHHHHI",
        0xFFFE,
        channels,
        rate,
        rate * block_align,
        block_align,
        bits,
        22,  # size of the extension
        bits,  # valid bits per sample
        0,  # channel mask: unspecified
    )
    fmt += guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(frames)) + frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_round_trip_is_exact(tmp_path: Path) -> None:
    samples = np.random.default_rng(1).integers(-32768, 32767, 4800, dtype=np.int16)
    write_wav(tmp_path / "a.wav", samples)

    back = read_wav(tmp_path / "a.wav")

    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, samples)
    with wave.open(str(tmp_path / "a.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 48000)


def test_16khz_stereo_is_mixed_to_mono_and_resampled(tmp_path: Path) -> None:
    left = _sine(1000, 1.0, 16000, amplitude=0.5)
    right = np.zeros_like(left)  # the mix must average, halving the level
    stereo = np.rint(np.column_stack([left, right])).astype("<i2")
    _write_raw_wav(tmp_path / "s.wav", stereo.tobytes(), rate=16000, width=2, channels=2)

    mono = read_wav(tmp_path / "s.wav")

    assert mono.dtype == np.int16
    assert mono.ndim == 1
    assert mono.size == SAMPLE_RATE
    assert abs(_peak_hz(mono) - 1000) <= 2
    assert np.abs(mono).max() == pytest.approx(0.25 * 32767, rel=0.02)


@pytest.mark.parametrize(
    ("width", "encode"),
    [
        (1, lambda v: (v // 256 + 128).astype(np.uint8).tobytes()),
        (3, lambda v: b"".join(int(x * 256).to_bytes(3, "little", signed=True) for x in v)),
        (4, lambda v: (v.astype(np.int64) * 65536).astype("<i4").tobytes()),
    ],
    ids=["8-bit", "24-bit", "32-bit"],
)
def test_other_sample_widths_scale_to_int16(tmp_path: Path, width: int, encode: object) -> None:
    values = np.array([-32768, -256, 0, 256, 32512], dtype=np.int64)
    assert callable(encode)
    _write_raw_wav(tmp_path / "w.wav", encode(values), rate=48000, width=width, channels=1)

    np.testing.assert_array_equal(read_wav(tmp_path / "w.wav"), values)


def test_extensible_24bit_multichannel_file(tmp_path: Path) -> None:
    # Python 3.11's wave module rejects these; read_wav parses them itself.
    values = np.array([[256, 512, 768], [-256, -512, -768]], dtype=np.int64)
    frames = b"".join(int(v * 256).to_bytes(3, "little", signed=True) for v in values.ravel())
    (tmp_path / "x.wav").write_bytes(_extensible_wav(frames, 48000, 24, 3))

    np.testing.assert_array_equal(read_wav(tmp_path / "x.wav"), [512, -512])


def test_extensible_float_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "float.wav"
    path.write_bytes(_extensible_wav(b"\x00" * 8, 48000, 32, 1, subformat_tag=3))

    with pytest.raises(ValueError, match="float.wav"):
        read_wav(path)


@pytest.mark.parametrize(
    "content",
    [b"this is not audio at all", b"", b"RIFF\x10\x00\x00\x00WAVEfmt "],
    ids=["text", "empty", "truncated"],
)
def test_bad_file_gives_value_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.wav"
    path.write_bytes(content)

    with pytest.raises(ValueError, match="notes.wav"):
        read_wav(path)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_wav(tmp_path / "nope.wav")


def test_write_refuses_float_samples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int16"):
        write_wav(tmp_path / "f.wav", np.zeros(10, dtype=np.float32))


@pytest.mark.parametrize("length", [2500, 100], ids=["longer-than-a-block", "shorter"])
async def test_loop_source_wraps_without_gap(tmp_path: Path, length: int) -> None:
    ramp = np.arange(length, dtype=np.int16)
    write_wav(tmp_path / "ramp.wav", ramp)
    source = WavLoopSource(tmp_path / "ramp.wav")
    assert source.read() is None  # nothing before start()

    await source.start()
    await source.start()
    blocks = [source.read() for _ in range(7)]

    assert all(b is not None and b.shape == (FRAME_SAMPLES,) for b in blocks)
    got = np.concatenate([b for b in blocks if b is not None])
    expected = np.tile(ramp, got.size // length + 1)[: got.size]
    np.testing.assert_array_equal(got, expected)
    await source.stop()
    await source.stop()
    assert source.read() is None


async def test_loop_source_rejects_empty_file(tmp_path: Path) -> None:
    write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16))

    with pytest.raises(ValueError, match="empty.wav"):
        await WavLoopSource(tmp_path / "empty.wav").start()


async def test_tone_has_its_frequency_and_a_continuous_phase() -> None:
    tone = ToneSource(440, amplitude=0.3)
    await tone.start()
    blocks = [tone.read() for _ in range(100)]  # 2 s
    await tone.stop()

    got = np.concatenate([b for b in blocks if b is not None])
    assert got.size == 100 * FRAME_SAMPLES
    assert abs(_peak_hz(got) - 440) <= 1
    # Block boundaries must not show: the whole run equals one unbroken sine.
    reference = 0.3 * 32767 * np.sin(2 * np.pi * 440 * np.arange(got.size) / SAMPLE_RATE)
    assert np.abs(got - reference).max() <= 1
    assert tone.read() is None


def test_tone_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        ToneSource(30000)
    with pytest.raises(ValueError):
        ToneSource(440, amplitude=2)


async def test_sink_writes_what_it_got(tmp_path: Path) -> None:
    tone = ToneSource(1000)
    await tone.start()
    sink = WavFileSink(tmp_path / "rec.wav")
    await sink.start()
    written = []
    for _ in range(25):
        block = tone.read()
        assert block is not None
        written.append(block.copy())
        sink.write(block)
        block[:] = 0  # the sink must have copied it

    await sink.stop()
    await sink.stop()  # second stop: no error, file untouched

    expected = np.concatenate(written)
    np.testing.assert_array_equal(read_wav(tmp_path / "rec.wav"), expected)


async def test_sink_with_nothing_writes_an_empty_valid_wav(tmp_path: Path) -> None:
    sink = WavFileSink(tmp_path / "silent.wav")
    await sink.start()
    await sink.stop()

    with wave.open(str(tmp_path / "silent.wav"), "rb") as wav:
        assert wav.getnframes() == 0
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 48000)
    assert read_wav(tmp_path / "silent.wav").size == 0


async def test_sink_caps_its_memory(tmp_path: Path) -> None:
    sink = WavFileSink(tmp_path / "capped.wav", max_seconds=0.05)  # 2400 samples
    await sink.start()
    for _ in range(5):
        sink.write(np.ones(FRAME_SAMPLES, dtype=np.int16))

    assert sink.buffered_samples == 2400
    assert sink.dropped_samples == 5 * FRAME_SAMPLES - 2400
    await sink.stop()
    assert read_wav(tmp_path / "capped.wav").size == 2400
