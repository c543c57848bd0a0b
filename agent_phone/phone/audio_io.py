"""The microphone and speaker a call uses, opened only while there is a call.

Devices (PortAudio through sounddevice) are opened when a call is answered
and closed when it ends, so the microphone is live only during a call. The
received audio is pulled from the jitter buffer on the speaker's own clock
(``play``: agent_phone/media/playout.py). What the call sends is
``outgoing``: the microphone through noise suppression and automatic gain
control (agent_phone/media/voice_processing.py) while that is on. For
automation, a WAV file can stand in for either (``--mic-file``,
``--speaker-file``, as baresip's aufile does); a speaker file collects every
call of the session and is written when the phone closes.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from agent_phone.media.audio import AudioSink, AudioSource
from agent_phone.media.playout import Playout, Pull
from agent_phone.media.voice_processing import ProcessedSource
from agent_phone.media.wav import WavFileSink, WavLoopSource
from agent_phone.phone.devices import (
    AudioDeviceError,
    DeviceKind,
    MicrophoneSource,
    SpeakerSink,
    list_devices,
    resolve_device,
)

logger = logging.getLogger(__name__)


class CallAudio:
    def __init__(
        self,
        mic: AudioSource,
        speaker: AudioSink,
        mic_per_call: bool = True,
        speaker_per_call: bool = True,
        voice_processing: bool = True,
    ) -> None:
        self.mic = mic
        #: What a call sends: the microphone, processed while that is on.
        self.outgoing = ProcessedSource(mic, voice_processing)
        self.speaker = speaker
        #: Devices to check before going on queue: (choice, kind).
        self.devices: list[tuple[str | None, DeviceKind]] = []
        self._mic_per_call = mic_per_call
        self._speaker_per_call = speaker_per_call
        self._playout: Playout | None = None
        self.in_call = False

    async def check(self) -> None:
        """Raise AudioDeviceError, naming the device, if a chosen device (or
        the system default) is missing; opens nothing (the microphone stays
        closed until a call)."""
        if self.devices:
            await asyncio.to_thread(_check_devices, self.devices)

    async def begin(self) -> None:
        """Open both ends for a call (in worker threads: opening blocks)."""
        self.in_call = True
        results = await asyncio.gather(
            self.mic.start(), self.speaker.start(), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.end()
            raise errors[0]

    def play(self, pull: Pull) -> None:
        """Play the call's received audio: ``pull`` is read on the speaker's clock."""
        if self.in_call and self._playout is None:
            self._playout = Playout(pull, self.speaker)
            self._playout.start()

    async def _stop_playout(self) -> None:
        playout, self._playout = self._playout, None
        if playout is not None:
            await playout.stop()

    async def end(self) -> None:
        self.in_call = False
        await self._stop_playout()
        stops = []
        if self._mic_per_call:
            stops.append(self.mic.stop())
        if self._speaker_per_call:
            stops.append(self.speaker.stop())
        await asyncio.gather(*stops)

    async def close(self) -> None:
        self.in_call = False
        await self._stop_playout()
        await asyncio.gather(self.mic.stop(), self.speaker.stop())
        self.outgoing.close()

    def use_devices(self, mic_device: str | None, speaker_device: str | None) -> bool:
        """Use these devices from the next call; False if it cannot now.

        Only between calls, and only for real devices (a WAV file standing in
        for a device stays): between calls the device objects are closed, so
        new ones can take their place.
        """
        if self.in_call:
            return False
        if isinstance(self.mic, MicrophoneSource) and self.mic.device != mic_device:
            if self.mic.active:
                return False
            self.mic = MicrophoneSource(mic_device)
            self.outgoing.source = self.mic
            logger.info("microphone for the next call: %s", mic_device or "the default")
        if isinstance(self.speaker, SpeakerSink) and self.speaker.device != speaker_device:
            if self.speaker.active:
                return False
            self.speaker = SpeakerSink(speaker_device)
            logger.info("speaker for the next call: %s", speaker_device or "the default")
        # What the phone checks before going on queue follows the new choice.
        checks: list[tuple[str | None, DeviceKind]] = []
        if isinstance(self.mic, MicrophoneSource):
            checks.append((mic_device, "input"))
        if isinstance(self.speaker, SpeakerSink):
            checks.append((speaker_device, "output"))
        self.devices = checks
        return True


def call_audio(
    mic_device: str | None = None,
    mic_file: Path | None = None,
    speaker_device: str | None = None,
    speaker_file: Path | None = None,
    voice_processing: bool | None = None,
) -> CallAudio:
    """Devices by default (system defaults when none is named), or files.

    ``voice_processing`` None: on for a microphone, off for a file standing in
    for one (a recording has no room noise and a level set already)."""
    mic: AudioSource = WavLoopSource(mic_file) if mic_file else MicrophoneSource(mic_device)
    speaker: AudioSink = WavFileSink(speaker_file) if speaker_file else SpeakerSink(speaker_device)
    if voice_processing is None:
        voice_processing = mic_file is None
    audio = CallAudio(
        mic,
        speaker,
        mic_per_call=True,
        speaker_per_call=speaker_file is None,
        voice_processing=voice_processing,
    )
    if mic_file is None:
        audio.devices.append((mic_device, "input"))
    if speaker_file is None:
        audio.devices.append((speaker_device, "output"))
    return audio


def _check_devices(devices: list[tuple[str | None, DeviceKind]]) -> None:
    names = {"input": "microphone", "output": "speaker"}
    for spec, kind in devices:
        if spec:
            resolve_device(spec, kind)
            continue
        found = list_devices()
        default = "is_default_input" if kind == "input" else "is_default_output"
        if not any(getattr(d, default) for d in found):
            raise AudioDeviceError(
                f"no default {names[kind]}: PortAudio sees "
                + (", ".join(d.name for d in found) or "no audio devices at all")
            )
