"""Noise suppression and automatic gain control for the agent's microphone.

The microphone's audio goes through WebRTC's audio processing module (APM)
before it is encoded: libwebrtc's noise suppressor, high-pass filter and AGC2
gain controller, the code inside Chrome. The APM comes from the
``livekit`` wheel (``livekit.rtc.AudioProcessingModule``). It was chosen over
pywebrtc-audio, pyrnnoise, webrtc-noise-gain and the Speex bindings
(docs/voice-processing.md, measured): wheels for Linux, macOS and Windows,
upstream libwebrtc's APM rather than a re-assembly of its parts, and the only
AGC measured that brings a quiet talker up within the first sentence without
boosting a normal one.

Why the choices below:

* **48 kHz, no resampling.** The APM takes 48 kHz directly, so a 20 ms frame
  of the phone's format (``agent_phone.media.audio``) is two 10 ms APM frames.
  Nothing is buffered: the samples of frame *n* come back in frame *n*. The
  signal is still delayed *within* the stream, by about 7 ms with noise
  suppression (its overlapping analysis window, 6 ms, plus the band-split
  filter bank) and about 1 ms with only the AGC (the filter bank and the
  high-pass filter; the AGC itself adds none), measured by cross-correlation:
  :attr:`VoiceProcessor.delay_ms`.
* **High-pass filter on with either feature**, as in Chrome: it removes DC and
  rumble below about 80 Hz that would otherwise bias the noise estimate and
  the AGC's level estimate.
* **No echo cancellation**: agents wear headsets, and AEC needs the far-end
  signal fed in with a known delay. The APM has it (``process_reverse_stream``)
  for a later speakerphone mode.
* **Adaptive state is kept across calls.** The AGC needs a few seconds of
  speech to settle; one processor per microphone (not per call) means only the
  first call after start-up hears that. :meth:`VoiceProcessor.reset` is for a
  change of microphone.
* **Cheap enough for the asyncio loop**: about 0.16 ms of CPU per 20 ms frame
  (median, 2-core test machine), most of it the library's protobuf calls.

The library is imported lazily, when a processor with something switched on is
built: the platform and the caller tool never need it. When it is missing or
fails, :class:`VoiceProcessingError` is raised, so the phone can send the
microphone's audio unprocessed instead.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, SAMPLE_RATE, AudioSource

if TYPE_CHECKING:
    from livekit.rtc import AudioFrame, AudioProcessingModule

__all__ = [
    "AGC_ONLY_DELAY_MS",
    "LIBRARY",
    "NS_DELAY_MS",
    "ProcessedSource",
    "VoiceProcessingError",
    "VoiceProcessor",
    "is_available",
]

logger = logging.getLogger(__name__)

#: The PyPI distribution that provides the APM (docs/voice-processing.md).
LIBRARY = "livekit"

#: Delay the processing adds to the signal, in ms, measured by cross-correlating
#: input and output speech (docs/voice-processing.md); no frames are buffered.
#: With noise suppression on: its analysis window (6 ms) plus the filter bank.
NS_DELAY_MS = 7.0
#: With only the AGC on: the band-split filter bank and high-pass filter.
AGC_ONLY_DELAY_MS = 1.0

# The APM works on 10 ms blocks; one of the phone's 20 ms frames is two.
_APM_SAMPLES = SAMPLE_RATE // 100
_BLOCKS = FRAME_SAMPLES // _APM_SAMPLES


class VoiceProcessingError(RuntimeError):
    """The voice-processing library is missing or failed.

    Raised by :class:`VoiceProcessor` instead of the library's own exceptions,
    so the caller has one thing to catch before falling back to unprocessed
    audio.
    """


def is_available() -> bool:
    """Whether the library is installed (without importing it).

    For a settings dialog that greys out the switches; building a
    :class:`VoiceProcessor` is the real test, since the native library can
    still fail to load.
    """
    try:
        return importlib.util.find_spec("livekit.rtc") is not None
    except (ImportError, ValueError):  # "livekit" missing, or a module without a spec
        return False


class VoiceProcessor:
    """Noise suppression and AGC on the phone's 20 ms, 48 kHz int16 frames.

    One instance per microphone stream, used from one thread (the asyncio
    loop). ``process()`` returns a new array and never changes its argument.
    With both features off it copies the frame and the library is not used.

    The first instance in a process costs about 0.2 s (importing the library
    and starting its native runtime): build it when the phone starts, not as
    a call is answered. Later ones take under 10 ms.

    Raises :class:`VoiceProcessingError` from the constructor,
    :meth:`set_enabled`, :meth:`reset` and :meth:`process` when the library is
    missing or fails. After a failure in :meth:`process` it keeps raising
    until :meth:`reset` succeeds, so a caller that fell back to unprocessed
    audio can retry when it chooses.
    """

    def __init__(self, *, noise_suppression: bool = True, auto_gain_control: bool = True) -> None:
        self._noise_suppression = noise_suppression
        self._auto_gain_control = auto_gain_control
        self._apm: AudioProcessingModule | None = None
        # Two 10 ms blocks, each in a bytearray the APM processes in place.
        # livekit copies sliced or read-only buffers, so each block has its own.
        self._buffers = [bytearray(_APM_SAMPLES * 2) for _ in range(_BLOCKS)]
        self._views = [np.frombuffer(buf, dtype=DTYPE) for buf in self._buffers]
        self._frames: list[AudioFrame] = []
        self._build()

    @property
    def noise_suppression(self) -> bool:
        return self._noise_suppression

    @property
    def auto_gain_control(self) -> bool:
        return self._auto_gain_control

    @property
    def active(self) -> bool:
        """Whether frames go through the library (either feature on)."""
        return self._noise_suppression or self._auto_gain_control

    @property
    def delay_ms(self) -> float:
        """How much later the processed signal comes out, in ms (within the same frames)."""
        if self._noise_suppression:
            return NS_DELAY_MS
        return AGC_ONLY_DELAY_MS if self._auto_gain_control else 0.0

    def set_enabled(
        self, *, noise_suppression: bool | None = None, auto_gain_control: bool | None = None
    ) -> None:
        """Switch noise suppression and/or AGC on or off (``None`` keeps a setting).

        The APM's features are fixed when it is created, so a change builds a
        new one: the noise estimate and the AGC's gain start over.
        """
        ns = self._noise_suppression if noise_suppression is None else noise_suppression
        agc = self._auto_gain_control if auto_gain_control is None else auto_gain_control
        if (ns, agc) == (self._noise_suppression, self._auto_gain_control):
            return
        logger.info(
            "voice processing: ns %s -> %s, agc %s -> %s",
            _on(self._noise_suppression),
            _on(ns),
            _on(self._auto_gain_control),
            _on(agc),
        )
        self._noise_suppression, self._auto_gain_control = ns, agc
        self._build()

    def reset(self) -> None:
        """Forget the noise estimate and the AGC's gain (e.g. after a change of microphone)."""
        self._build()

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Process one 20 ms frame: ``FRAME_SAMPLES`` int16 samples in, the same out.

        Raises ``ValueError`` for a frame of the wrong shape or type (a bug in
        the caller) and :class:`VoiceProcessingError` when the library fails.
        """
        if frame.dtype != DTYPE or frame.shape != (FRAME_SAMPLES,):
            raise ValueError(
                f"expected {FRAME_SAMPLES} {np.dtype(DTYPE).name} samples, "
                f"got shape {frame.shape} of {frame.dtype}"
            )
        if not self.active:
            return frame.copy()
        if self._apm is None:
            raise VoiceProcessingError("voice processing failed earlier; reset() to retry")
        for i, (view, block) in enumerate(zip(self._views, self._frames, strict=True)):
            view[:] = frame[i * _APM_SAMPLES : (i + 1) * _APM_SAMPLES]
            try:
                self._apm.process_stream(block)
            except Exception as exc:  # the library's RuntimeError, ctypes errors...
                self._apm = None
                raise VoiceProcessingError(f"{LIBRARY} audio processing failed: {exc}") from exc
        return np.concatenate(self._views)

    def close(self) -> None:
        """Release the library's processor. Safe to call twice.

        Afterwards ``process`` raises while a feature is on; ``reset`` builds a new one.
        """
        self._apm = None
        self._frames = []

    def _build(self) -> None:
        """(Re)create the APM for the current settings, or none when both are off."""
        self._apm = None
        self._frames = []
        if not self.active:
            return
        rtc = _import_rtc()
        try:
            apm = rtc.AudioProcessingModule(
                echo_cancellation=False,
                noise_suppression=self._noise_suppression,
                high_pass_filter=True,
                auto_gain_control=self._auto_gain_control,
            )
            frames = [rtc.AudioFrame(buf, SAMPLE_RATE, 1, _APM_SAMPLES) for buf in self._buffers]
        except Exception as exc:  # ImportError when the native library fails to load
            raise VoiceProcessingError(f"{LIBRARY} audio processing unavailable: {exc}") from exc
        self._apm, self._frames = apm, frames
        logger.debug(
            "voice processing ready: ns %s, agc %s",
            _on(self._noise_suppression),
            _on(self._auto_gain_control),
        )


def preload() -> None:
    """Import the library now (0.2-0.3 s: call it in a worker thread at
    start-up, so the first call does not wait); errors are left for the
    processor to report."""
    try:
        _import_rtc()
    except VoiceProcessingError:
        pass


def _import_rtc() -> Any:
    """``livekit.rtc``, imported on first use (0.2-0.3 s, 25 MB: not at the phone's import)."""
    try:
        from livekit import rtc
    except Exception as exc:  # ImportError, or a broken install failing at import
        raise VoiceProcessingError(
            f"voice processing needs the {LIBRARY!r} package ({exc}): "
            "pip install 'agent-phone[gui]', or switch noise suppression and AGC off"
        ) from exc
    return rtc


def _on(flag: bool) -> str:
    return "on" if flag else "off"


class ProcessedSource:
    """An ``AudioSource`` whose frames go through a ``VoiceProcessor`` on the
    way out (the agent's microphone), while ``enabled``.

    The processor is built when first needed (the first call, or when the
    setting is switched on) and kept, with its adaptation, from call to
    call. When the library is missing or fails, the frames go out as they
    came, ``error`` says why, and ``on_error`` is told once.
    """

    def __init__(
        self,
        source: AudioSource,
        enabled: bool = True,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.enabled = enabled
        self.error: str | None = None
        #: Told once, with the reason, when processing fails.
        self.on_error = on_error
        self._processor: VoiceProcessor | None = None

    @property
    def processing(self) -> bool:
        """Frames are being processed now (on, and working)."""
        return self.enabled and self.error is None

    def prepare(self) -> None:
        """Build the processor now (0.2 s the first time in a process) rather
        than on the first frame of a call."""
        if self.enabled and self._processor is None and self.error is None:
            try:
                self._processor = VoiceProcessor()
            except VoiceProcessingError as exc:
                self._failed(str(exc))

    async def start(self) -> None:
        await self.source.start()

    def read_packet(self) -> bytes | None:
        """The source's own encoded packet, for a source that has them (a
        sound encoded once) and only while not processing; otherwise None,
        and the track reads PCM (``read``)."""
        read_packet = getattr(self.source, "read_packet", None)
        if read_packet is None or self.processing:
            return None
        packet: bytes | None = read_packet()
        return packet

    def read(self) -> np.ndarray | None:
        frame = self.source.read()
        if frame is None or not self.enabled or self.error is not None:
            return frame
        if self._processor is None:
            self.prepare()
            if self._processor is None:
                return frame
        try:
            return self._processor.process(frame)
        except VoiceProcessingError as exc:
            self._failed(str(exc))
            return frame

    def _failed(self, why: str) -> None:
        logger.error("voice processing off, the microphone goes out unprocessed: %s", why)
        self.error = why
        if self.on_error is not None:
            self.on_error(why)

    async def stop(self) -> None:
        await self.source.stop()

    def close(self) -> None:
        if self._processor is not None:
            self._processor.close()
            self._processor = None
