"""Short sounds of the phone itself (ring, connect tone, test sound) and a level meter.

The sounds are made here at run time (numpy), so there is no file to lose:
the ring is the North American cadence, 440 + 480 Hz for 2 s then 4 s of
silence; the connect tone that greets an auto-answered call is two short
1 kHz beeps; the test sound is 0.8 s of 660 Hz with soft edges.

``SoundPlayer`` plays one clip (once or looped) on an output device, and
``LevelMeter`` reports how loud an input device is. Both open their PortAudio
stream through ``portaudio.StreamHandle``, so ``sounddevice`` is still imported
only in ``agent_phone.phone.portaudio``, and the same thread rules hold
(STYLE.md habit 6): the callbacks touch only numpy buffers and plain numbers;
the end of a clip reaches the loop through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import numpy as np

from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.media.voice_processing import ProcessedSource
from agent_phone.phone.devices import MicrophoneSource
from agent_phone.phone.portaudio import DeviceSpec, StreamHandle

logger = logging.getLogger(__name__)

RING_HZ = (440.0, 480.0)
RING_ON_S = 2.0
RING_OFF_S = 4.0
CONNECT_HZ = 1000.0
#: The ringback the agent hears while their outbound call rings.
RINGBACK_HZ = 425.0
TEST_HZ = 660.0
#: Played after a clip, so the device's buffer has drained before the stream closes.
_TAIL_S = 0.25


def _ramp(samples: np.ndarray, ms: float = 10.0) -> np.ndarray:
    """Fade in and out over ``ms``: no click at the edges."""
    n = min(int(SAMPLE_RATE * ms / 1000), samples.size // 2)
    if n:
        window = np.linspace(0.0, 1.0, n)
        samples[:n] *= window
        samples[-n:] *= window[::-1]
    return samples


def _tone(freqs: tuple[float, ...], seconds: float, level: float) -> np.ndarray:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    return _ramp(np.asarray(wave, dtype=np.float64) * level)


def _int16(wave: np.ndarray) -> np.ndarray:
    return np.clip(np.round(wave * 32767), -32768, 32767).astype(DTYPE)


def _frozen(samples: np.ndarray) -> np.ndarray:
    # Made once and shared (functools.cache): nobody may write into them.
    samples.setflags(write=False)
    return samples


@functools.cache
def ring_cadence() -> np.ndarray:
    """One ring cycle (6 s), to be looped: 2 s of 440 + 480 Hz, 4 s of silence."""
    on = _tone(RING_HZ, RING_ON_S, 0.5)
    return _frozen(_int16(np.concatenate([on, np.zeros(int(SAMPLE_RATE * RING_OFF_S))])))


@functools.cache
def ringback() -> np.ndarray:
    """One ringback cycle (5 s), to be looped: 1 s of 425 Hz, 4 s of silence
    (ITU-T E.180's most common ringing tone), quieter than the ring."""
    on = _tone((RINGBACK_HZ,), 1.0, 0.2)
    return _frozen(_int16(np.concatenate([on, np.zeros(int(SAMPLE_RATE * 4.0))])))


@functools.cache
def connect_tone() -> np.ndarray:
    """Two 120 ms beeps at 1 kHz, 80 ms apart (0.32 s)."""
    beep = _tone((CONNECT_HZ,), 0.12, 0.4)
    return _frozen(_int16(np.concatenate([beep, np.zeros(int(SAMPLE_RATE * 0.08)), beep])))


@functools.cache
def test_tone() -> np.ndarray:
    """0.8 s of 660 Hz, for the settings dialog's Test Sound button."""
    return _frozen(_int16(_tone((TEST_HZ,), 0.8, 0.4)))


test_tone.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def scaled(samples: np.ndarray, volume: int) -> np.ndarray:
    """``samples`` at ``volume`` percent (0-100), with a perceptual (squared) curve."""
    if volume >= 100:
        return samples
    gain = (max(0, min(100, volume)) / 100.0) ** 2
    return _int16(samples.astype(np.float64) / 32767 * gain)


class SoundPlayer:
    """Plays one clip on an output device; a new ``play()`` replaces the last.

    ``play()`` opens the device (raises ``AudioDeviceError``); ``done()``
    waits until a clip that does not loop has been played; ``stop()`` closes
    the device and is idempotent. The stream is open only while a clip plays.
    """

    def __init__(self, device: DeviceSpec = None, name: str = "sound") -> None:
        self.device = device
        self.name = name
        self._handle: StreamHandle | None = None
        self._clip = np.zeros(0, dtype=DTYPE)
        self._pos = 0
        self._loop = False
        self._loop_ref: asyncio.AbstractEventLoop | None = None
        self._finished = asyncio.Event()
        # Written only by the PortAudio thread.
        self._end_signalled = False

    @property
    def playing(self) -> bool:
        return self._handle is not None and self._handle.open

    async def play(self, samples: np.ndarray, *, loop: bool = False) -> None:
        await self.stop()
        tail = np.zeros(0 if loop else int(SAMPLE_RATE * _TAIL_S), dtype=DTYPE)
        self._clip = np.concatenate([np.asarray(samples, dtype=DTYPE), tail])
        self._pos = 0
        self._loop = loop
        self._end_signalled = False
        self._finished = asyncio.Event()
        self._loop_ref = asyncio.get_running_loop()
        handle = StreamHandle("output", self.device)
        self._handle = handle
        try:
            await handle.start(self._make_stream)
        except BaseException:
            self._handle = None
            raise
        logger.info(
            "%s playing (%.1f s%s)",
            self.name,
            self._clip.size / SAMPLE_RATE,
            ", looped" if loop else "",
        )

    async def done(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) for a clip that does not loop to finish."""
        try:
            await asyncio.wait_for(self._finished.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.stop()
            self._finished.set()

    def _make_stream(self, sd: Any, index: int) -> Any:
        return sd.OutputStream(
            samplerate=SAMPLE_RATE,
            blocksize=FRAME_SAMPLES,
            device=index,
            channels=1,
            dtype="int16",
            callback=self._callback,
        )

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's real-time thread: numpy and plain numbers only.
        out = outdata[:, 0]
        clip, n = self._clip, 0
        while n < frames and clip.size:
            if self._pos >= clip.size:
                if not self._loop:
                    break
                self._pos = 0
            k = min(frames - n, clip.size - self._pos)
            out[n : n + k] = clip[self._pos : self._pos + k]
            self._pos += k
            n += k
        out[n:] = 0
        if n < frames and not self._end_signalled and self._loop_ref is not None:
            self._end_signalled = True
            try:
                self._loop_ref.call_soon_threadsafe(self._finished.set)
            except RuntimeError:
                pass  # the loop is closed (teardown)


class LevelMeter:
    """How loud an input device is: the peak since the last ``take_peak()``.

    For the settings dialog's microphone meter: the GUI polls ``take_peak()``
    about ten times a second (a "latest value", STYLE.md's sounddevice note).
    """

    def __init__(self, device: DeviceSpec = None) -> None:
        self.device = device
        self._handle: StreamHandle | None = None
        # Written by the PortAudio thread, read and reset by the loop.
        self._peak = 0

    @property
    def running(self) -> bool:
        return self._handle is not None and self._handle.open

    async def start(self) -> None:
        if self._handle is not None:
            return
        handle = StreamHandle("input", self.device)
        self._handle = handle
        self._peak = 0
        try:
            await handle.start(self._make_stream)
        except BaseException:
            self._handle = None
            raise

    def take_peak(self) -> float:
        """The loudest sample since the last call, 0.0 (silence) to 1.0 (full scale)."""
        peak, self._peak = self._peak, 0
        return peak / 32768

    async def stop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.stop()

    def _make_stream(self, sd: Any, index: int) -> Any:
        return sd.InputStream(
            samplerate=SAMPLE_RATE,
            blocksize=FRAME_SAMPLES,
            device=index,
            channels=1,
            dtype="int16",
            callback=self._callback,
        )

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's real-time thread: numpy and plain numbers only.
        peak = int(np.abs(indata[:, 0].astype(np.int32)).max()) if frames else 0
        if peak > self._peak:
            self._peak = peak


class ProcessedLevelMeter:
    """A ``LevelMeter`` of the microphone as the customer would hear it:
    through noise suppression and AGC (agent_phone/media/voice_processing.py),
    on the loop, a 20 ms frame at a time. Where the processing cannot run,
    it meters the microphone as it is."""

    def __init__(self, device: DeviceSpec = None) -> None:
        self.device = device
        self._mic = MicrophoneSource(device)
        self._source = ProcessedSource(self._mic)
        self._task: asyncio.Task[None] | None = None
        self._peak = 0

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        if self._task is not None:
            return
        await self._mic.start()
        self._source.prepare()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="level-meter")

    async def _run(self) -> None:
        while True:
            for _ in range(10):  # what has come in since the last look, bounded
                frame = self._source.read()
                if frame is None:
                    break
                self._peak = max(self._peak, int(np.abs(frame.astype(np.int32)).max()))
            await asyncio.sleep(0.02)

    def take_peak(self) -> float:
        peak, self._peak = self._peak, 0
        return peak / 32768

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._mic.stop()
        self._source.close()


def level_db(peak: float) -> float:
    """A peak (0-1) in dBFS, floored at -60."""
    return max(-60.0, 20 * float(np.log10(max(peak, 1e-6))))
