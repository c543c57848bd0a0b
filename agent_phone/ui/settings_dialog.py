"""The Settings dialog, built from the settings registry.

Each field's label and help text come from its ``Setting``; the dialog holds
no defaults of its own. Device lists come from PortAudio, which blocks while
it probes the host APIs, so ``load_devices`` runs it in a worker thread and
hands the list to the open dialog (the dialog itself stays synchronous).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import shiboken6
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from agent_phone.phone.devices import AudioDeviceError, DeviceInfo, list_devices, refresh_devices
from agent_phone.ui.settings import (
    AUTO_ANSWER,
    ICE_ADDRESSES,
    MIC,
    ON_QUEUE_AT_SIGN_IN,
    PERSISTENT,
    PLATFORM_URL,
    RECONNECT_ATTEMPTS,
    RINGER,
    SPEAKER,
    Setting,
    SettingsStore,
)

logger = logging.getLogger(__name__)

SYSTEM_DEFAULT = "System default"
#: The dialog's minimum width, and the narrowest its help texts wrap at.
MIN_WIDTH = 560
HELP_WIDTH = MIN_WIDTH - 90
#: Which device kind each device setting lists.
DEVICE_KINDS = {MIC.key: "input", SPEAKER.key: "output", RINGER.key: "output"}


class SettingsDialog(QDialog):
    #: The agent asked to re-read the device list (a headset was plugged in).
    refresh_requested = Signal()

    def __init__(self, store: SettingsStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self._checks: dict[str, tuple[Setting[bool], QCheckBox]] = {}
        self._texts: dict[str, tuple[Setting[str], QLineEdit]] = {}
        self._devices: dict[str, tuple[Setting[str], QComboBox]] = {}
        self._numbers: dict[str, tuple[Setting[int], QSpinBox]] = {}
        self._setup_ui()
        self._registry: dict[str, Setting[bool] | Setting[int] | Setting[str]] = {
            key: setting
            for fields in (self._checks, self._devices, self._texts, self._numbers)
            for key, (setting, _) in fields.items()
        }

    def _setup_ui(self) -> None:
        self.setWindowTitle("Agent Phone Settings")
        self.setAccessibleName("Settings")
        layout = QVBoxLayout(self)

        calls = QGroupBox("Calls", self)
        calls_layout = QVBoxLayout(calls)
        for setting in (PERSISTENT, AUTO_ANSWER, ON_QUEUE_AT_SIGN_IN):
            box = QCheckBox(setting.label, calls)
            box.setChecked(self._store.get(setting))
            box.setAccessibleName(setting.label)
            box.setAccessibleDescription(setting.description)
            box.setToolTip(setting.description)
            calls_layout.addWidget(box)
            calls_layout.addWidget(self._help(setting, calls))
            self._checks[setting.key] = (setting, box)
        layout.addWidget(calls)

        audio = QGroupBox("Audio devices", self)
        audio_form = QFormLayout(audio)
        for device in (MIC, SPEAKER, RINGER):
            combo = QComboBox(audio)
            combo.setAccessibleName(device.label)
            combo.setAccessibleDescription(device.description)
            combo.setToolTip(device.description)
            combo.setMinimumContentsLength(28)
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            self._fill_combo(combo, [], self._store.get(device), DEVICE_KINDS[device.key])
            audio_form.addRow(f"{device.label}:", combo)
            self._label_for(audio_form, combo)
            self._devices[device.key] = (device, combo)
        self.device_status = QLabel("Reading the device list…", audio)
        self.device_status.setWordWrap(True)
        self.device_status.setAccessibleName("Device list status")
        self.refresh = QPushButton("&Refresh Devices", audio)
        self.refresh.setAccessibleName("Refresh the audio device list")
        self.refresh.clicked.connect(self._on_refresh)
        audio_form.addRow(self.device_status)
        audio_form.addRow(self.refresh)
        layout.addWidget(audio)

        network = QGroupBox("Platform", self)
        network_form = QFormLayout(network)
        for text in (PLATFORM_URL, ICE_ADDRESSES):
            line = QLineEdit(self._store.get(text), network)
            line.setAccessibleName(text.label)
            line.setAccessibleDescription(text.description)
            line.setToolTip(text.description)
            network_form.addRow(f"{text.label}:", line)
            self._label_for(network_form, line)
            self._texts[text.key] = (text, line)
        spin = QSpinBox(network)
        spin.setRange(0, 20)
        spin.setValue(self._store.get(RECONNECT_ATTEMPTS))
        spin.setAccessibleName(RECONNECT_ATTEMPTS.label)
        spin.setAccessibleDescription(RECONNECT_ATTEMPTS.description)
        spin.setToolTip(RECONNECT_ATTEMPTS.description)
        network_form.addRow(f"{RECONNECT_ATTEMPTS.label}:", spin)
        self._label_for(network_form, spin)
        self._numbers[RECONNECT_ATTEMPTS.key] = (RECONNECT_ATTEMPTS, spin)
        layout.addWidget(network)

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setAccessibleName("Save the settings")
        cancel = buttons.button(QDialogButtonBox.StandardButton.Cancel)
        cancel.setAccessibleName("Close without saving")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        # Wide enough for the help texts to wrap at a readable width.
        self.setMinimumWidth(MIN_WIDTH)

    @staticmethod
    def _help(setting: Setting[bool], parent: QWidget) -> QLabel:
        label = QLabel(setting.description, parent)
        label.setWordWrap(True)
        label.setIndent(22)
        label.setStyleSheet("color: #607d8b;")
        # A top-level dialog sizes itself from minimum heights, not heights for
        # its width, so a wrapped label would be cut to one line: reserve the
        # height it needs at the narrowest width the dialog allows.
        label.setMinimumHeight(label.heightForWidth(HELP_WIDTH))
        return label

    @staticmethod
    def _label_for(form: QFormLayout, field: QWidget) -> None:
        label = form.labelForField(field)
        if isinstance(label, QLabel):
            label.setBuddy(field)

    @staticmethod
    def _fill_combo(combo: QComboBox, devices: list[DeviceInfo], current: str, kind: str) -> None:
        combo.clear()
        combo.addItem(SYSTEM_DEFAULT, "")
        names: list[str] = []
        for device in devices:
            if device.channels(kind) and device.name not in names:  # type: ignore[arg-type]
                names.append(device.name)
        for name in names:
            combo.addItem(name, name)
        if current and current not in names:
            # Keep a saved device that is unplugged now, rather than lose the choice.
            combo.addItem(f"{current} (not found)", current)
        combo.setCurrentIndex(max(0, combo.findData(current)))

    # --- slots for load_devices ---------------------------------------------------------

    def set_devices(self, devices: list[DeviceInfo]) -> None:
        for setting, combo in self._devices.values():
            chosen = combo.currentData() or ""
            self._fill_combo(combo, devices, chosen, DEVICE_KINDS[setting.key])
        count = sum(1 for d in devices if d.max_input_channels or d.max_output_channels)
        self.device_status.setText(
            f"{count} audio devices found."
            if count
            else "No audio devices found: plug a headset in, then Refresh Devices."
        )
        self.refresh.setEnabled(True)

    def set_device_error(self, message: str) -> None:
        self.device_status.setText(message)
        self.refresh.setEnabled(True)

    def _on_refresh(self) -> None:
        self.refresh.setEnabled(False)
        self.device_status.setText("Reading the device list…")
        self.refresh_requested.emit()

    # --- result --------------------------------------------------------------------------

    def values(self) -> dict[str, bool | int | str]:
        """The chosen value of every setting in the dialog, by key."""
        out: dict[str, bool | int | str] = {}
        for key, (_, box) in self._checks.items():
            out[key] = box.isChecked()
        for key, (_, combo) in self._devices.items():
            out[key] = str(combo.currentData() or "")
        for key, (_, line) in self._texts.items():
            out[key] = line.text().strip()
        for key, (_, spin) in self._numbers.items():
            out[key] = spin.value()
        return out

    def save(self) -> list[str]:
        """Write the chosen values to the store; return the keys that changed."""
        changed = []
        for key, value in self.values().items():
            setting: Any = self._registry[key]  # each field holds its own setting's type
            if self._store.get(setting) != value:
                self._store.set(setting, value)
                changed.append(key)
        return changed


async def load_devices(dialog: SettingsDialog, refresh: bool = False) -> None:
    """Read the device list off the loop and give it to ``dialog``."""
    try:
        devices = await asyncio.to_thread(refresh_devices if refresh else list_devices)
    except AudioDeviceError as exc:
        logger.warning("device list: %s", exc)
        if shiboken6.isValid(dialog):
            dialog.set_device_error(str(exc))
        return
    if shiboken6.isValid(dialog):  # the agent may have closed it meanwhile
        dialog.set_devices(devices)
