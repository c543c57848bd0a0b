"""The settings dialog's live audio tools: device refresh, test sound, microphone meter.

``DeviceTools`` lives as long as one open settings dialog. It drives the
no-Qt ``AudioCheck`` (agent_phone/phone/device_check.py) from the dialog's
signals, on owned tasks, and feeds results back to the dialog:

* the device lists are re-read from the system (PortAudio re-initialised)
  when the dialog opens, on **Refresh Devices**, and every
  ``REFRESH_MS`` while the dialog stays open, at most ``MAX_AUTO_REFRESHES``
  times; never while a stream is open (``AudioCheck`` pauses the meter, and
  during a call it keeps the list it has);
* **Test** plays the test sound on the device chosen in the dialog (not yet
  saved), at the ringer volume for the ringer;
* the meter shows the chosen microphone's level, polled ``METER_MS``.
"""

from __future__ import annotations

import logging

import shiboken6
from PySide6.QtCore import QObject, QTimer

from agent_phone.phone.device_check import AudioCheck
from agent_phone.phone.devices import AudioDeviceError
from agent_phone.ui.settings_dialog import SettingsDialog
from agent_phone.ui.tasks import OwnedTasks

logger = logging.getLogger(__name__)

REFRESH_MS = 5000
#: 5 s x 120: ten minutes of watching for new devices per opening of the dialog.
MAX_AUTO_REFRESHES = 120
METER_MS = 100


class DeviceTools(QObject):
    def __init__(
        self,
        dialog: SettingsDialog,
        tasks: OwnedTasks,
        refresh_ms: int = REFRESH_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._dialog = dialog
        self._tasks = tasks
        self._check = AudioCheck()
        self._busy = False
        self._auto_refreshes = 0
        self._closed = False
        self.refreshes = 0  # completed device-list reads, for tests and logs
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(refresh_ms)
        self._refresh_timer.timeout.connect(self._on_auto_refresh)
        self._meter_timer = QTimer(self)
        self._meter_timer.setInterval(METER_MS)
        self._meter_timer.timeout.connect(self._on_meter_tick)
        dialog.refresh_requested.connect(self.refresh)
        dialog.test_sound_requested.connect(self._on_test_sound)
        dialog.mic_changed.connect(self._on_mic_changed)
        dialog.finished.connect(lambda _result: self.close())

    def start(self) -> None:
        self.refresh()
        self._on_mic_changed(self._dialog.chosen_mic())
        if self._refresh_timer.interval() > 0:
            self._refresh_timer.start()
        self._meter_timer.start()

    def refresh(self) -> None:
        if self._busy or self._closed:
            return
        self._busy = True
        self._tasks.spawn("refresh the audio devices", self._refresh())

    async def _refresh(self) -> None:
        try:
            result = await self._check.devices(refresh=True)
        except AudioDeviceError as exc:
            logger.warning("device list: %s", exc)
            if self._alive():
                self._dialog.set_device_error(str(exc))
            return
        finally:
            self._busy = False
        self.refreshes += 1
        if self._alive():
            self._dialog.set_devices(result.devices, note=result.note)

    def _on_auto_refresh(self) -> None:
        self._auto_refreshes += 1
        if self._auto_refreshes >= MAX_AUTO_REFRESHES:
            self._refresh_timer.stop()
        self.refresh()

    def _on_test_sound(self, device: str, volume: int) -> None:
        self._tasks.spawn("play the test sound", self._test_sound(device or None, volume))

    async def _test_sound(self, device: str | None, volume: int) -> None:
        try:
            await self._check.test_sound(device, volume)
        except AudioDeviceError as exc:
            if self._alive():
                self._dialog.set_device_error(f"Cannot play the test sound: {exc}")
            return
        if self._alive():
            self._dialog.test_sound_done()

    def _on_mic_changed(self, device: str) -> None:
        if not self._closed:
            self._tasks.spawn("meter the microphone", self._meter(device or None))

    async def _meter(self, device: str | None) -> None:
        try:
            await self._check.start_meter(device, self._dialog.voice_processing_ticked())
        except AudioDeviceError as exc:
            logger.info("microphone meter: %s", exc)
            if self._alive():
                self._dialog.set_level(None)

    def _on_meter_tick(self) -> None:
        if self._alive():
            self._dialog.set_level(self._check.take_peak())

    def _alive(self) -> bool:
        return not self._closed and shiboken6.isValid(self._dialog)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._refresh_timer.stop()
        self._meter_timer.stop()
        self._tasks.spawn("close the audio tools", self._check.close())
