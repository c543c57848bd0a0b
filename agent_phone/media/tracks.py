"""The audio tracks every side sends and the loop that receives audio.

One ``OutboundAudioTrack`` lives as long as its sender and stays attached to
it. Between calls it is *parked*: its ``recv()`` waits, so the sender sends
nothing and does not even wake up (a sender with no track polls every 20 ms,
and a new track would need ``replaceTrack``). Stopping a track kills its
sender for good (shared/notes/webrtc-and-qt.md), so it is stopped only with
its connection. Its ``pts`` rise with wall-clock time across calls: a
timestamp that restarts at 0 looks like a wrap to the receiver, and a
repeated one makes the jitter buffer merge packets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, PTIME, SAMPLE_RATE, AudioSource

logger = logging.getLogger(__name__)

TIME_BASE = Fraction(1, SAMPLE_RATE)
#: Silence sent before a track is detached. The receiver's jitter buffer keeps
#: its last 4 frames (80 ms) and would play them at the start of the next call.
FLUSH_FRAMES = 6
#: When the track was not read for longer than this (detached, or the sender
#: starved), its clock jumps forward instead of bursting to catch up.
_RESYNC_S = 0.1


def make_frame(samples: np.ndarray, pts: int) -> AudioFrame:
    frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


class OutboundAudioTrack(MediaStreamTrack):
    """20 ms frames paced in real time from whatever ``source`` is attached.

    Sends silence when there is no source, when the source has nothing yet,
    and while ``muted``.
    """

    kind = "audio"

    def __init__(self, source: AudioSource | None = None, parked: bool = False) -> None:
        super().__init__()
        self.source = source
        self._playing = asyncio.Event()
        if not parked:
            self._playing.set()
        self.muted = False
        self.frames_sent = 0
        self._epoch: float | None = None
        self._index = 0
        self._flush_left = 0
        self._flushed = asyncio.Event()
        self._silence = np.zeros(FRAME_SAMPLES, dtype=DTYPE)

    async def recv(self) -> AudioFrame:
        if not self._playing.is_set():
            await self._playing.wait()
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._epoch is None:
            self._epoch = now
        else:
            self._index += 1
            due = self._epoch + self._index * PTIME
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > _RESYNC_S:
                self._index = int((now - self._epoch) / PTIME)
        samples: np.ndarray | None = None
        if self._flush_left > 0:
            self._flush_left -= 1
            if self._flush_left == 0:
                self._flushed.set()
        elif self.source is not None:
            samples = self.source.read()
            if self.muted:
                samples = None
        self.frames_sent += 1
        return make_frame(
            self._silence if samples is None else samples, self._index * FRAME_SAMPLES
        )

    @property
    def playing(self) -> bool:
        return self._playing.is_set()

    def play(self, source: AudioSource) -> None:
        """Send ``source`` from now on (a call starts)."""
        self.source = source
        self._flush_left = 0
        self._playing.set()

    async def park(self, timeout: float = 0.3) -> None:
        """Send ``FLUSH_FRAMES`` of silence (bounded wait), then nothing (a call ended)."""
        if not self._playing.is_set():
            return
        self.source = None
        self.muted = False
        self._flushed.clear()
        self._flush_left = FLUSH_FRAMES
        try:
            await asyncio.wait_for(self._flushed.wait(), timeout)
        except TimeoutError:
            pass  # not being read: nothing to flush
        self._flush_left = 0
        self._playing.clear()

    def stop(self) -> None:
        super().stop()
        self._playing.set()  # a parked recv() wakes up and ends


class _ToMono:
    """Decoded frames (Opus gives s16 stereo 48 kHz) to int16 mono 48 kHz."""

    def __init__(self) -> None:
        self._resampler: AudioResampler | None = None

    def __call__(self, frame: AudioFrame) -> np.ndarray:
        if frame.format.name == "s16" and frame.sample_rate == SAMPLE_RATE:
            data: np.ndarray = frame.to_ndarray().reshape(-1)
            channels = len(frame.layout.channels)
            if channels == 1:
                return data.astype(DTYPE, copy=False)
            if channels == 2:
                # The two channels' mean in integers (5x cheaper than .mean(),
                # which goes through float64; rounds down instead of to zero).
                pairs = data.reshape(-1, 2).astype(np.int32)
                return ((pairs[:, 0] + pairs[:, 1]) >> 1).astype(DTYPE)
            mono: np.ndarray = data.reshape(-1, channels).mean(axis=1).astype(DTYPE)
            return mono
        if self._resampler is None:
            self._resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(parts).astype(DTYPE) if parts else np.zeros(0, DTYPE)


async def receive_audio(track: MediaStreamTrack, deliver: Callable[[np.ndarray], None]) -> None:
    """Read ``track`` until it ends, handing each frame's samples to ``deliver``.

    Something must keep reading a remote track, in a call or not, or it
    stops being ``live`` (shared/notes/webrtc-and-qt.md); ``deliver`` decides
    whether the audio goes anywhere.
    """
    to_mono = _ToMono()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        assert isinstance(frame, AudioFrame)
        deliver(to_mono(frame))


async def receive_timed_audio(
    track: MediaStreamTrack, deliver: Callable[[np.ndarray, int], None]
) -> None:
    """``receive_audio``, also handing over each frame's place on the sender's
    clock: its RTP timestamp in samples (48 kHz for Opus; it wraps at 2**32).
    A listener places audio by it, not by when it arrived."""
    to_mono = _ToMono()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        assert isinstance(frame, AudioFrame)
        deliver(to_mono(frame), int(frame.pts or 0))
