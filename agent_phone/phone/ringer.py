"""The phone's own sounds for calls: the ringer, and the auto-answer connect tone.

``AlertSounds`` is an engine observer (``engine.subscribe(sounds.on_event)``)
with no Qt in it, so every front-end rings the same way:

* ``alerting`` for a call the agent must answer (unless they are on another
  call: the engine beeps in their headset then): the ring cadence loops on
  the ringer device at the ringer volume, until the call is answered,
  declined or ended (the alert timeout ends it too), the agent signs out, or
  ``MAX_RING_S`` passes, whichever comes first;
* ``answered`` with ``auto``: the connect tone plays once on the speaker
  device (the customer is already on the line; the tone tells the agent);
* ``ringing`` for the agent's own outbound call: the ringback (425 Hz, 1 s
  in 5) loops on the speaker device, until the far end answers or the call
  ends;
* anything that ends the call stops the ring.

Opening a device blocks (and may fail); that happens in owned tasks, so
``on_event`` returns at once, and a missing ringer device is logged and
reported to ``on_error`` rather than disturbing the call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent_phone.phone import events
from agent_phone.phone.devices import AudioDeviceError
from agent_phone.phone.sounds import SoundPlayer, connect_tone, ring_cadence, ringback, scaled
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)

#: A bound on one ring, whatever happens to the events (the platform's alert
#: timeout, 12 s by default, normally ends it much sooner).
MAX_RING_S = 90.0


@dataclass(frozen=True)
class AlertSoundSettings:
    #: Where the ring plays (None: the system default output).
    ringer_device: str | None = None
    #: Where the connect tone plays: the call's speaker (None: the default).
    speaker_device: str | None = None
    #: Ringer volume in percent.
    ringer_volume: int = 80
    #: Play the connect tone for auto-answered calls.
    connect_tone: bool = True
    #: False: no sound at all (e.g. a demo on a machine with no sound card).
    enabled: bool = True


class AlertSounds:
    """Rings for offered calls and beeps for auto-answered ones (see the module)."""

    def __init__(
        self,
        settings: AlertSoundSettings,
        on_error: Callable[[str], None] | None = None,
        max_ring_s: float = MAX_RING_S,
    ) -> None:
        self.settings = settings
        #: Told (a sentence) when a sound cannot play.
        self.on_error = on_error
        self._max_ring_s = max_ring_s
        self._tasks = TaskSet("sounds")
        self._ring: asyncio.Task[None] | None = None
        #: The ring at the last volume used: made once, not at each call
        #: (6 s of samples: a few ms of the loop's time).
        self._ring_samples: tuple[int, np.ndarray] | None = None
        # Made now, at start-up, rather than on the loop when a call rings.
        self._ring_at(settings.ringer_volume)
        connect_tone()
        ringback()
        self._ring_call: str | None = None
        #: Counters, for logs and tests.
        self.rings_started = 0
        self.tones_played = 0

    @property
    def ringing(self) -> bool:
        return self._ring is not None and not self._ring.done()

    def configure(self, settings: AlertSoundSettings) -> None:
        """New devices and volume; used from the next ring."""
        self.settings = settings

    def on_event(self, event: events.PhoneEvent) -> None:
        if not self.settings.enabled:
            return
        match event:
            case events.CallChanged(
                state="alerting", previous=None, auto_answer=False, waiting=False
            ):
                self._start_ring(event.call_id)
            case events.CallChanged(state="ringing", direction="outbound"):
                self._start_ring(event.call_id, ringback=True)
            case events.CallChanged(state="connected", previous="alerting", auto_answer=True):
                if self.settings.connect_tone:
                    self._tasks.spawn(self._connect_tone(), "connect tone")
            case events.CallChanged(call_id=call_id) if event.state != "alerting":
                self._stop_ring(call_id)
            case events.SignedOut():
                self._stop_ring(None)

    def stop(self) -> None:
        """Stop ringing now (e.g. the agent clicked Answer)."""
        self._stop_ring(None)

    def _start_ring(self, call_id: str, ringback: bool = False) -> None:
        self._stop_ring(None)
        self._ring_call = call_id
        self.rings_started += 1
        self._ring = self._tasks.spawn(
            self._ring_until_stopped(call_id, ringback), f"ring {call_id}"
        )

    def _stop_ring(self, call_id: str | None) -> None:
        if self._ring is None or (call_id is not None and call_id != self._ring_call):
            return
        ring, self._ring = self._ring, None
        self._ring_call = None
        ring.cancel()  # its finally closes the device

    async def _ring_until_stopped(self, call_id: str, back: bool) -> None:
        s = self.settings
        if back:  # in the headset: the agent placed the call
            player = SoundPlayer(s.speaker_device, name=f"ringback for {call_id}")
            samples = ringback()
        else:
            player = SoundPlayer(s.ringer_device, name=f"ringer for {call_id}")
            samples = self._ring_at(s.ringer_volume)
        try:
            await player.play(samples, loop=True)
            await asyncio.sleep(self._max_ring_s)
            logger.info("ringer for %s stopped after %.0f s", call_id, self._max_ring_s)
        except AudioDeviceError as exc:
            self._report(f"The ringer cannot ring: {exc}")
        finally:
            await asyncio.shield(player.stop())

    def _ring_at(self, volume: int) -> np.ndarray:
        if self._ring_samples is None or self._ring_samples[0] != volume:
            self._ring_samples = (volume, scaled(ring_cadence(), volume))
        return self._ring_samples[1]

    async def _connect_tone(self) -> None:
        player = SoundPlayer(self.settings.speaker_device, name="connect tone")
        try:
            await player.play(connect_tone())
            self.tones_played += 1
            await player.done(timeout=3.0)
        except AudioDeviceError as exc:
            self._report(f"The connect tone cannot play: {exc}")
        finally:
            await asyncio.shield(player.stop())

    def _report(self, message: str) -> None:
        logger.warning("%s", message)
        if self.on_error is not None:
            self.on_error(message)

    async def close(self) -> None:
        """Stop any sound and wait for the devices to close. Idempotent."""
        self._stop_ring(None)
        await self._tasks.close()
