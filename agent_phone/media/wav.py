"""WAV files and tones as audio sources and sinks, in the internal format.

Reading accepts the PCM WAV files people actually have (8/16/24/32-bit
integer, any channel count, any rate), mixes them to mono and resamples them
to 48 kHz, so everything past this module sees only the one format defined in
``agent_phone.media.audio``. Writing produces 48 kHz mono 16-bit files.

Only numpy and the standard library are used here: this module must work on
machines with no sound device (tests, the platform's media edge).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import struct
import time
import wave
from pathlib import Path

import numpy as np

from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.media.playout import SpeakerClock

__all__ = [
    "DEFAULT_MAX_SINK_SECONDS",
    "ToneSource",
    "WavFileSink",
    "WavLoopSource",
    "read_wav",
    "write_wav",
]

logger = logging.getLogger(__name__)

StrPath = str | os.PathLike[str]

# WAVE_FORMAT_EXTENSIBLE: Python 3.11's ``wave`` rejects it ("unknown format:
# 65534"; support arrived in 3.12, https://github.com/python/cpython/issues/60729),
# yet 24-bit and multichannel files are usually written that way.
_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# The first two bytes of the SubFormat GUID carry the format tag; the rest is
# the fixed KSDATAFORMAT suffix.
_PCM_SUBFORMAT_SUFFIX = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

# A recording sink keeps everything in memory until stop(); one hour of
# 48 kHz int16 mono is 330 MiB, the most a call recording should ever need.
DEFAULT_MAX_SINK_SECONDS = 3600.0


def read_wav(path: StrPath) -> np.ndarray:
    """Read a PCM WAV file as 48 kHz mono int16 samples.

    Channels are averaged; other rates are resampled by linear interpolation
    (good enough for prompts and test material, not for music mastering).
    Raises ``FileNotFoundError`` if the file is missing and ``ValueError``
    naming the file if it is not a PCM WAV file this function understands.
    """
    path = Path(path)
    try:
        rate, width, channels, raw = _read_pcm(path)
    except (wave.Error, EOFError, struct.error) as exc:
        raise ValueError(f"{path}: not a readable PCM WAV file ({exc})") from exc
    if channels < 1:
        raise ValueError(f"{path}: WAV header declares {channels} channels")
    if rate <= 0:
        raise ValueError(f"{path}: WAV header declares a sample rate of {rate} Hz")
    if width not in (1, 2, 3, 4):
        raise ValueError(
            f"{path}: {8 * width}-bit samples are not supported (8/16/24/32-bit PCM only)"
        )
    frame_bytes = width * channels
    # A truncated last frame (a file cut off mid-write) is dropped, not fatal.
    raw = raw[: len(raw) - len(raw) % frame_bytes]
    mono = _decode(raw, width).reshape(-1, channels).mean(axis=1)
    mono = _resample(mono, rate, SAMPLE_RATE)
    result: np.ndarray = np.clip(np.rint(mono), -32768, 32767).astype(DTYPE)
    return result


def write_wav(path: StrPath, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write int16 mono ``samples`` to ``path`` as a 16-bit PCM WAV file."""
    data = _as_mono_int16(samples)
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    with wave.open(os.fspath(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        # WAV is little-endian whatever the machine is.
        wav.writeframes(data.astype("<i2", copy=False).tobytes())


class WavLoopSource:
    """An ``AudioSource`` that plays a WAV file in a loop, forever.

    The file is read (in a worker thread) by ``start()``, which raises
    ``ValueError`` for an unreadable or empty file. Between ``start()`` and
    ``stop()``, ``read()`` always returns the next 960 samples, wrapping to
    the beginning without a gap; before ``start()`` and after ``stop()`` it
    returns ``None``.
    """

    def __init__(self, path: StrPath) -> None:
        self._path = Path(path)
        self._samples: np.ndarray | None = None
        self._position = 0
        self._started = False

    @property
    def path(self) -> Path:
        return self._path

    async def start(self) -> None:
        if self._started:
            return
        if self._samples is None:
            samples = await asyncio.to_thread(read_wav, self._path)
            if samples.size == 0:
                raise ValueError(f"{self._path}: WAV file has no samples to loop")
            self._samples = samples
            logger.debug("loaded %s: %.2f s", self._path, samples.size / SAMPLE_RATE)
        self._started = True

    def read(self) -> np.ndarray | None:
        if not self._started or self._samples is None:
            return None
        # mode="wrap" also covers files shorter than one block.
        indices = np.arange(self._position, self._position + FRAME_SAMPLES)
        block = np.take(self._samples, indices, mode="wrap")
        self._position = (self._position + FRAME_SAMPLES) % self._samples.size
        return block

    async def stop(self) -> None:
        self._started = False


class ToneSource:
    """An ``AudioSource`` producing a continuous sine tone.

    ``amplitude`` is a fraction of full scale (0 to 1). The phase carries over
    from block to block, so consecutive blocks join without clicks.
    ``read()`` returns ``None`` before ``start()`` and after ``stop()``.
    """

    def __init__(self, frequency_hz: float, amplitude: float = 0.3) -> None:
        if not 0 < frequency_hz < SAMPLE_RATE / 2:
            raise ValueError(
                f"tone frequency must be between 0 and {SAMPLE_RATE // 2} Hz, got {frequency_hz}"
            )
        if not 0 <= amplitude <= 1:
            raise ValueError(f"tone amplitude must be between 0 and 1, got {amplitude}")
        self._frequency_hz = float(frequency_hz)
        self._amplitude = float(amplitude)
        self._step = 2 * math.pi * self._frequency_hz / SAMPLE_RATE
        self._ramp = self._step * np.arange(FRAME_SAMPLES)
        self._phase = 0.0
        self._started = False

    @property
    def frequency_hz(self) -> float:
        return self._frequency_hz

    async def start(self) -> None:
        self._started = True

    def read(self) -> np.ndarray | None:
        if not self._started:
            return None
        block = self._amplitude * 32767 * np.sin(self._phase + self._ramp)
        # Keep the phase small: a sample counter growing for hours would lose
        # float precision and the tone would drift.
        self._phase = (self._phase + self._step * FRAME_SAMPLES) % (2 * math.pi)
        samples: np.ndarray = np.rint(block).astype(DTYPE)
        return samples

    async def stop(self) -> None:
        self._started = False


class WavFileSink:
    """An ``AudioSink`` that records what it is given into a WAV file, on
    its own clock, as a speaker would play it.

    From ``begin(now)`` its clock runs with the wall clock (a
    ``SpeakerClock``): ``wanted`` asks for as many samples as a speaker
    would have played by then, plus the 20 ms a sound card holds ahead,
    and where the audio came too late the file gets the silence a speaker
    would have played. So the file has the silence and concealment the
    listener got, where they got them. Each ``begin`` (a call) notes
    ``clock_started_at`` (Unix time) and ``clock_offset_s`` (where in the
    file that playout starts), so a benchmark can tell when each sample
    was played.

    Samples written between ``start()`` and ``stop()`` are kept in memory and
    written to ``path`` (48 kHz mono 16-bit) by ``stop()``, in a worker
    thread; a sink that received nothing still writes a valid, empty WAV.
    Memory is bounded: beyond ``max_seconds`` (one hour by default, about
    330 MiB) further samples are discarded and counted in ``dropped_samples``,
    so a forgotten recording cannot exhaust memory. ``stop()`` without
    ``start()``, or a second ``stop()``, does nothing.
    """

    def __init__(self, path: StrPath, max_seconds: float = DEFAULT_MAX_SINK_SECONDS) -> None:
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self._path = Path(path)
        self._max_samples = int(max_seconds * SAMPLE_RATE)
        self._chunks: list[np.ndarray] = []
        self._buffered = 0
        self._dropped = 0
        self._started = False
        self._clock = SpeakerClock()
        self.clock_started_at: float | None = None
        self.clock_offset_s: float | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def underrun_samples(self) -> int:
        """Silence the file got because audio came too late for the speaker."""
        return self._clock.underrun_samples

    def begin(self, now: float) -> None:
        self._clock.begin(now)
        self.clock_started_at = time.time()
        self.clock_offset_s = round((self._buffered + self._dropped) / SAMPLE_RATE, 6)

    def wanted(self, now: float) -> int:
        if not self._started:
            return 0
        if gap := self._clock.fill(now):
            self._keep(np.zeros(gap, dtype=DTYPE))
        return self._clock.wanted(now)

    def play_time(self, now: float) -> float:
        return self._clock.play_time(now)

    @property
    def buffered_samples(self) -> int:
        """Samples kept so far (what the file will contain)."""
        return self._buffered

    @property
    def dropped_samples(self) -> int:
        """Samples discarded because the recording reached ``max_seconds``."""
        return self._dropped

    async def start(self) -> None:
        self._started = True

    def write(self, samples: np.ndarray) -> None:
        if not self._started:
            return
        data = _as_mono_int16(samples)
        self._clock.advance(data.size)
        self._keep(data)

    def _keep(self, data: np.ndarray) -> None:
        room = self._max_samples - self._buffered
        if data.size > room:
            if self._dropped == 0:
                logger.warning(
                    "recording %s reached its %.0f s limit; discarding the rest",
                    self._path,
                    self._max_samples / SAMPLE_RATE,
                )
            self._dropped += data.size - room
            data = data[:room]
        if data.size:
            # Copy: the caller may reuse its buffer for the next block.
            self._chunks.append(data.copy())
            self._buffered += data.size

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._clock.stop()
        chunks, self._chunks = self._chunks, []
        self._buffered = 0
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=DTYPE)
        await asyncio.to_thread(write_wav, self._path, samples)
        logger.debug("wrote %s: %.2f s", self._path, samples.size / SAMPLE_RATE)


def _as_mono_int16(samples: np.ndarray) -> np.ndarray:
    """Check that ``samples`` are int16 mono and return them as a 1-D array."""
    data = np.asarray(samples)
    if data.dtype != DTYPE:
        # Casting floats silently would turn a [-1, 1] signal into silence.
        raise ValueError(f"expected int16 samples, got {data.dtype}")
    if data.ndim == 2 and data.shape[1] == 1:
        data = data[:, 0]
    if data.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {data.shape}")
    return data


def _read_pcm(path: Path) -> tuple[int, int, int, bytes]:
    """Return (rate, sample width in bytes, channels, raw frames) of a PCM WAV."""
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            return (
                wav.getframerate(),
                wav.getsampwidth(),
                wav.getnchannels(),
                wav.readframes(wav.getnframes()),
            )
    except wave.Error as exc:
        if "unknown format: 65534" not in str(exc):
            raise
    return _read_extensible(path)


def _read_extensible(path: Path) -> tuple[int, int, int, bytes]:
    """Read a WAVE_FORMAT_EXTENSIBLE file with integer PCM samples.

    Only needed until Python 3.12 is the minimum; see ``_WAVE_FORMAT_EXTENSIBLE``.
    """
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise wave.Error("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, bytes] | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = data[offset + 8 : offset + 8 + size]
        if chunk_id == b"fmt ":
            tag, channels, rate = struct.unpack_from("<HHI", body, 0)
            (bits,) = struct.unpack_from("<H", body, 14)
            if tag == _WAVE_FORMAT_EXTENSIBLE:
                subformat = body[24:40]
                if (
                    len(subformat) != 16
                    or subformat[2:] != _PCM_SUBFORMAT_SUFFIX
                    or struct.unpack_from("<H", subformat)[0] != _WAVE_FORMAT_PCM
                ):
                    # Most often IEEE float, which this reader does not take.
                    raise wave.Error("extensible WAV whose samples are not integer PCM")
            elif tag != _WAVE_FORMAT_PCM:
                raise wave.Error(f"unknown format: {tag}")
            fmt = (rate, (bits + 7) // 8, channels, b"")
        elif chunk_id == b"data":
            if fmt is None:
                raise wave.Error("data chunk before fmt chunk")
            return fmt[0], fmt[1], fmt[2], body
        # Chunks are padded to an even length.
        offset += 8 + size + (size & 1)
    raise wave.Error("no data chunk")


def _decode(raw: bytes, width: int) -> np.ndarray:
    """Decode little-endian PCM to float64 on the int16 scale."""
    if width == 1:
        # 8-bit WAV is unsigned, centred on 128.
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if width == 3:
        # numpy has no 24-bit type: place the three bytes in the top of an
        # int32 so the sign comes out right, then scale down.
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        packed = np.zeros((triples.shape[0], 4), dtype=np.uint8)
        packed[:, 1:] = triples
        return packed.view("<i4")[:, 0].astype(np.float64) / 65536.0
    return np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0


def _resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample by linear interpolation (no anti-aliasing filter)."""
    if rate_in == rate_out or samples.size == 0:
        return samples
    n_out = max(1, round(samples.size * rate_out / rate_in))
    positions = np.arange(n_out) * (rate_in / rate_out)
    resampled: np.ndarray = np.interp(positions, np.arange(samples.size), samples)
    return resampled
