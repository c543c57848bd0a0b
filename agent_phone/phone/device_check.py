"""Trying the sound devices out: the settings page's tools, with no Qt in them.

``AudioCheck`` serialises what a settings page does with the devices: read
the device list (re-initialising PortAudio to see devices plugged in since
it started), play a test sound on an output, and meter an input. PortAudio
only sees new devices after ``sd._terminate(); sd._initialize()``, which
would free every open stream; ``devices.refresh_devices`` refuses while one
of ours is open, so a refresh here first stops the meter, and during a call
(the call's microphone and speaker are open) it falls back to the list
PortAudio already has and says so.

(A changed microphone or speaker takes effect from the next call through
``PhoneEngine.switch_devices``.)
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from agent_phone.phone.devices import (
    AudioDeviceError,
    DeviceInfo,
    list_devices,
    refresh_devices,
)
from agent_phone.phone.sounds import (
    LevelMeter,
    ProcessedLevelMeter,
    SoundPlayer,
    scaled,
    test_tone,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceList:
    devices: list[DeviceInfo]
    #: True when PortAudio was re-initialised (new devices are in the list).
    refreshed: bool
    #: Why not, when it was not.
    note: str = ""


class AudioCheck:
    """Device list, test sound and level meter for a settings page (see the module)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._meter: LevelMeter | ProcessedLevelMeter | None = None
        self._meter_device: str | None = None
        self._closed = False

    async def devices(self, refresh: bool = True) -> DeviceList:
        """The device list; ``refresh`` re-reads it from the system when no stream is open."""
        async with self._lock:
            if not refresh:
                return DeviceList(await asyncio.to_thread(list_devices), refreshed=False)
            meter_device, had_meter = self._meter_device, self._meter is not None
            await self._stop_meter()
            try:
                found = await asyncio.to_thread(refresh_devices)
                result = DeviceList(found, refreshed=True)
            except AudioDeviceError as exc:
                if "stream" not in str(exc):
                    raise
                logger.info("device list not refreshed: %s", exc)
                result = DeviceList(
                    await asyncio.to_thread(list_devices),
                    refreshed=False,
                    note="Devices plugged in during a call appear after it.",
                )
            if had_meter and not self._closed:
                await self._start_meter(meter_device)
            return result

    async def test_sound(self, device: str | None, volume: int = 100) -> None:
        """Play the test sound on ``device`` and wait for it (raises AudioDeviceError)."""
        async with self._lock:
            player = SoundPlayer(device, name="test sound")
            try:
                await player.play(scaled(test_tone(), volume))
                await player.done(timeout=5.0)
            finally:
                await player.stop()

    async def start_meter(self, device: str | None, processed: bool = False) -> None:
        """Meter ``device`` (replacing a meter on another device), as the
        customer would hear it when ``processed`` (noise suppression and
        AGC); raises AudioDeviceError."""
        async with self._lock:
            await self._stop_meter()
            if not self._closed:
                await self._start_meter(device, processed)

    async def _start_meter(self, device: str | None, processed: bool = False) -> None:
        meter: LevelMeter | ProcessedLevelMeter = (
            ProcessedLevelMeter(device) if processed else LevelMeter(device)
        )
        await meter.start()
        self._meter, self._meter_device = meter, device

    def take_peak(self) -> float | None:
        """The meter's peak since the last call (0-1), or None with no meter running."""
        return self._meter.take_peak() if self._meter is not None else None

    async def stop_meter(self) -> None:
        async with self._lock:
            await self._stop_meter()

    async def _stop_meter(self) -> None:
        meter, self._meter = self._meter, None
        if meter is not None:
            await meter.stop()

    async def close(self) -> None:
        """Stop the meter; idempotent."""
        self._closed = True
        await self.stop_meter()
