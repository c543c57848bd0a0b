"""The call's microphone and speaker on the sound card, via PortAudio.

``MicrophoneSource`` and ``SpeakerSink`` open their streams through
``portaudio.StreamHandle`` (the device list, choosing a device and opening
streams are in ``agent_phone.phone.portaudio``; its public names are
re-exported here).

Threads (STYLE.md habit 6): PortAudio calls our stream callbacks on its own
real-time thread. They touch only plain integers and numpy buffers, never log,
never touch asyncio objects; captured audio crosses into the loop only through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.phone.portaudio import (
    AudioDeviceError,
    DeviceInfo,
    DeviceKind,
    DeviceSpec,
    StreamHandle,
    list_devices,
    match_device,
    refresh_devices,
    resolve_device,
)

__all__ = [
    "AudioDeviceError",
    "DeviceInfo",
    "DeviceKind",
    "DeviceSpec",
    "MicrophoneSource",
    "MicrophoneStats",
    "SpeakerSink",
    "SpeakerStats",
    "StreamHandle",
    "list_devices",
    "match_device",
    "refresh_devices",
    "resolve_device",
]

# Half a 20 ms frame per callback: with latency="low" this measured ~26-34 ms
# capture latency on the virtual device versus ~44-47 ms for larger blocks
# (shared/notes/audio-in-ci.md), and it lets read() find a full frame sooner.
_BLOCK_SAMPLES = FRAME_SAMPLES // 2
# Bounds on buffered audio: beyond these the oldest samples are dropped, so a
# stalled reader or a bursty writer costs a glitch, never growing latency.
_MIC_BUFFER_SAMPLES = SAMPLE_RATE * 120 // 1000
_SPEAKER_BUFFER_SAMPLES = SAMPLE_RATE * 200 // 1000
# Audio kept queued for the output callback: it covers the playout tick
# (agent_phone/media/playout.py, 10 ms) and the loop's own hiccups; more
# would only add delay (the jitter buffer absorbs the network's).
_SPEAKER_LEAD_SAMPLES = SAMPLE_RATE * 30 // 1000


@dataclass(frozen=True, slots=True)
class MicrophoneStats:
    """Counters of a ``MicrophoneSource`` since it was created."""

    samples_captured: int  # samples the device delivered
    frames_read: int  # 20 ms frames handed out by read()
    underruns: int  # read() calls that found less than a frame, after the first frame
    overflows: int  # callbacks PortAudio flagged as input overflow (samples lost)
    dropped: int  # samples discarded because the buffer exceeded ~120 ms


@dataclass(frozen=True, slots=True)
class SpeakerStats:
    """Counters of a ``SpeakerSink`` since it was created."""

    samples_written: int  # samples given to write()
    samples_played: int  # samples handed to PortAudio (silence excluded)
    underruns: int  # times playback ran dry mid-stream (a run of silent callbacks counts once)
    xruns: int  # callbacks PortAudio flagged as output underflow
    dropped: int  # samples discarded because the buffer exceeded ~200 ms


class MicrophoneSource:
    """An ``AudioSource`` capturing 48 kHz mono int16 from an input device.

    ``device`` is anything ``resolve_device`` takes; ``loop`` is the loop that
    calls ``read()`` (the running loop at ``start()`` if omitted). The device
    is resolved and opened by ``start()``, which raises ``AudioDeviceError``.
    Captured audio waits in a buffer bounded to ~120 ms, the oldest dropped
    beyond that; ``read()`` returns exactly one 20 ms frame, or ``None`` when
    less than that is buffered. ``start()`` and ``stop()`` are idempotent.
    """

    def __init__(
        self, device: DeviceSpec = None, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._device = device
        self._loop = loop
        self._stream = StreamHandle("input", device)
        self._buffer = _SampleRing(_MIC_BUFFER_SAMPLES)
        self._capturing = False
        # Loop-side counters.
        self._samples_captured = 0
        self._frames_read = 0
        self._underruns = 0
        self._dropped = 0
        # Written only by the PortAudio thread.
        self._overflows = 0

    @property
    def device(self) -> DeviceSpec:
        return self._device

    @property
    def active(self) -> bool:
        return self._stream.open

    @property
    def stats(self) -> MicrophoneStats:
        return MicrophoneStats(
            samples_captured=self._samples_captured,
            frames_read=self._frames_read,
            underruns=self._underruns,
            overflows=self._overflows,
            dropped=self._dropped,
        )

    async def start(self) -> None:
        if self._stream.open:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._buffer.clear()
        self._capturing = True
        try:
            await self._stream.start(self._make_stream)
        except BaseException:
            self._capturing = False
            raise

    def read(self) -> np.ndarray | None:
        if self._buffer.size < FRAME_SAMPLES:
            # Only a starved reader after audio flowed is an underrun: the
            # reads before the first frame are the device warming up.
            if self._capturing and self._frames_read:
                self._underruns += 1
            return None
        frame = np.empty(FRAME_SAMPLES, dtype=DTYPE)
        self._buffer.read_into(frame)
        self._frames_read += 1
        return frame

    async def stop(self) -> None:
        # Blocks already queued by the callback arrive after this and are ignored.
        self._capturing = False
        await self._stream.stop()
        self._buffer.clear()

    def _make_stream(self, sd: ModuleType, index: int) -> Any:
        return sd.InputStream(
            samplerate=SAMPLE_RATE,
            blocksize=_BLOCK_SAMPLES,
            device=index,
            channels=1,
            dtype="int16",
            latency="low",
            callback=self._callback,
        )

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's real-time thread: plain objects only (module docstring).
        if status.input_overflow:
            self._overflows += 1
        loop = self._loop
        if loop is None:
            return
        try:
            # Copy: PortAudio reuses indata's memory as soon as we return.
            loop.call_soon_threadsafe(self._deliver, indata[:, 0].copy())
        except RuntimeError:
            # The loop was closed while the stream still ran (teardown); the
            # block has nowhere to go.
            pass

    def _deliver(self, block: np.ndarray) -> None:
        # On the loop.
        if not self._capturing:
            return
        self._dropped += self._buffer.write(block)
        self._samples_captured += block.size


class SpeakerSink:
    """An ``AudioSink`` playing 48 kHz mono int16 on an output device.

    ``device`` is anything ``resolve_device`` takes; ``start()`` resolves and
    opens it and raises ``AudioDeviceError``. ``write()`` queues samples in a
    buffer bounded to ~200 ms (the oldest dropped beyond it) that the output
    callback drains, playing silence whenever it runs dry. Samples written
    while stopped are discarded. ``start()`` and ``stop()`` are idempotent.
    """

    def __init__(self, device: DeviceSpec = None) -> None:
        self._device = device
        self._stream = StreamHandle("output", device)
        self._buffer = _LockedSampleRing(_SPEAKER_BUFFER_SAMPLES)
        # Loop-side counters.
        self._samples_written = 0
        self._dropped = 0
        # Written only by the PortAudio thread.
        self._samples_played = 0
        self._underruns = 0
        self._xruns = 0
        self._starved = True

    @property
    def device(self) -> DeviceSpec:
        return self._device

    @property
    def active(self) -> bool:
        return self._stream.open

    @property
    def stats(self) -> SpeakerStats:
        return SpeakerStats(
            samples_written=self._samples_written,
            samples_played=self._samples_played,
            underruns=self._underruns,
            xruns=self._xruns,
            dropped=self._dropped,
        )

    async def start(self) -> None:
        if self._stream.open:
            return
        self._buffer.clear()
        self._starved = True
        await self._stream.start(self._make_stream)

    def begin(self, now: float) -> None:
        """The device's own clock paces playout: nothing to set."""

    def wanted(self, now: float) -> int:
        """Enough to keep ``_SPEAKER_LEAD_SAMPLES`` queued ahead of the device."""
        if not self._stream.open:
            return 0
        return _SPEAKER_LEAD_SAMPLES - self._buffer.size

    def play_time(self, now: float) -> float:
        """The next sample plays once what is queued has (the device's own
        output latency, the same for every sample, is left out)."""
        return now + self._buffer.size / SAMPLE_RATE

    def write(self, samples: np.ndarray) -> None:
        if not self._stream.open:
            return
        data = np.asarray(samples)
        if data.dtype != DTYPE or data.ndim != 1:
            raise ValueError(
                f"expected 1-D int16 samples, got {data.dtype} with shape {data.shape}"
            )
        self._samples_written += data.size
        self._dropped += self._buffer.write(data)

    async def stop(self) -> None:
        await self._stream.stop()
        self._buffer.clear()

    def _make_stream(self, sd: ModuleType, index: int) -> Any:
        return sd.OutputStream(
            samplerate=SAMPLE_RATE,
            blocksize=_BLOCK_SAMPLES,
            device=index,
            channels=1,
            dtype="int16",
            latency="low",
            callback=self._callback,
        )

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's real-time thread: plain objects only (module docstring).
        if status.output_underflow:
            self._xruns += 1
        out = outdata[:, 0]
        played = self._buffer.read_into(out)
        self._samples_played += played
        if played < frames:
            # Always fill the whole buffer: whatever is left in it would play.
            out[played:] = 0
            if not self._starved:
                self._underruns += 1
            self._starved = True
        else:
            self._starved = False


class _SampleRing:
    """A bounded FIFO of int16 samples in a preallocated numpy array.

    Writing beyond the capacity drops the oldest samples. Not thread-safe.
    """

    def __init__(self, capacity: int) -> None:
        self._buffer = np.zeros(capacity, dtype=DTYPE)
        self._capacity = capacity
        self._start = 0
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def clear(self) -> None:
        self._start = 0
        self._size = 0

    def write(self, samples: np.ndarray) -> int:
        """Append ``samples``; return how many old samples were dropped."""
        count = samples.size
        capacity = self._capacity
        if count >= capacity:
            dropped = self._size + count - capacity
            samples = samples[count - capacity :]
            count = capacity
            self._start = 0
            self._size = 0
        else:
            dropped = max(0, self._size + count - capacity)
            if dropped:
                self._start = (self._start + dropped) % capacity
                self._size -= dropped
        end = (self._start + self._size) % capacity
        first = min(count, capacity - end)
        self._buffer[end : end + first] = samples[:first]
        self._buffer[: count - first] = samples[first:]
        self._size += count
        return dropped

    def read_into(self, out: np.ndarray) -> int:
        """Move up to ``out.size`` of the oldest samples into ``out``; return the count."""
        count = min(out.size, self._size)
        first = min(count, self._capacity - self._start)
        out[:first] = self._buffer[self._start : self._start + first]
        out[first:count] = self._buffer[: count - first]
        self._start = (self._start + count) % self._capacity
        self._size -= count
        return count


class _LockedSampleRing:
    """A ``_SampleRing`` shared by the loop (writer) and PortAudio (reader).

    The lock is held only for two array copies, so the real-time thread never
    waits long.
    """

    def __init__(self, capacity: int) -> None:
        self._ring = _SampleRing(capacity)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._ring.size  # one int read: no lock needed

    def clear(self) -> None:
        with self._lock:
            self._ring.clear()

    def write(self, samples: np.ndarray) -> int:
        with self._lock:
            return self._ring.write(samples)

    def read_into(self, out: np.ndarray) -> int:
        with self._lock:
            return self._ring.read_into(out)
