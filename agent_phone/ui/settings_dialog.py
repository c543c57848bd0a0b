"""The Settings dialog, built from the settings registry.

Each field's label and help text come from its ``Setting``; the dialog holds
no defaults of its own. The dialog itself stays synchronous: the device
lists, the Test buttons and the microphone meter are served by
``DeviceTools`` (agent_phone/ui/device_tools.py), which does the blocking
PortAudio work off the loop and hands results back here.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from agent_phone.phone.devices import DeviceInfo
from agent_phone.phone.sounds import level_db
from agent_phone.ui.settings import (
    AUTO_ANSWER,
    CA_FILE,
    ICE_ADDRESSES,
    MIC,
    ON_QUEUE_AT_SIGN_IN,
    PERSISTENT,
    PLATFORM_URL,
    RECONNECT_ATTEMPTS,
    RINGER,
    RINGER_VOLUME,
    SPEAKER,
    VOICE_PROCESSING,
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
    #: Test: play the test sound on this output device ("" = default) at this volume.
    test_sound_requested = Signal(str, int)
    #: The microphone chosen in the list changed ("" = default): meter that one.
    mic_changed = Signal(str)

    def __init__(self, store: SettingsStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self._checks: dict[str, tuple[Setting[bool], QCheckBox]] = {}
        self._texts: dict[str, tuple[Setting[str], QLineEdit]] = {}
        self._devices: dict[str, tuple[Setting[str], QComboBox]] = {}
        self._numbers: dict[str, tuple[Setting[int], QSpinBox | QSlider]] = {}
        self._test_buttons: dict[str, QPushButton] = {}
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
            field: QWidget = combo
            if device is not MIC:
                # The combo and its Test button on one row.
                field = QWidget(audio)
                row = QHBoxLayout(field)
                row.setContentsMargins(0, 0, 0, 0)
                row.addWidget(combo, 1)
                test = QPushButton("Test", field)
                test.setAccessibleName(f"Play a test sound on the {device.label.lower()}")
                test.setToolTip(f"Play a short sound on the {device.label.lower()} chosen here")
                test.clicked.connect(lambda _c=False, key=device.key: self._on_test(key))
                row.addWidget(test)
                self._test_buttons[device.key] = test
            audio_form.addRow(f"{device.label}:", field)
            label = audio_form.labelForField(field)
            if isinstance(label, QLabel):
                label.setBuddy(combo)
            self._devices[device.key] = (device, combo)
            if device is MIC:
                self.meter = QProgressBar(audio)
                self.meter.setRange(-60, 0)
                self.meter.setValue(-60)
                self.meter.setFormat("%v dB")
                self.meter.setMaximumHeight(16)
                self.meter.setAccessibleName("Microphone level")
                self.meter.setAccessibleDescription(
                    "How loud the chosen microphone is now, in dB below full scale."
                )
                audio_form.addRow("Mic level:", self.meter)
                self._label_for(audio_form, self.meter)
                combo.currentIndexChanged.connect(self._on_mic_index)
                # Under the meter: the meter shows what the customer would
                # hear, processed while this is ticked.
                box = QCheckBox(VOICE_PROCESSING.label, audio)
                box.setChecked(self._store.get(VOICE_PROCESSING))
                box.setAccessibleName(VOICE_PROCESSING.label)
                box.setAccessibleDescription(VOICE_PROCESSING.description)
                box.setToolTip(VOICE_PROCESSING.description)
                box.toggled.connect(self._on_mic_index)
                audio_form.addRow(box)
                self._checks[VOICE_PROCESSING.key] = (VOICE_PROCESSING, box)
        slider = QSlider(Qt.Orientation.Horizontal, audio)
        slider.setRange(0, 100)
        slider.setSingleStep(5)
        slider.setPageStep(10)
        slider.setValue(self._store.get(RINGER_VOLUME))
        slider.setAccessibleName(RINGER_VOLUME.label)
        slider.setAccessibleDescription(RINGER_VOLUME.description)
        slider.setToolTip(RINGER_VOLUME.description)
        volume_row = QWidget(audio)
        volume_layout = QHBoxLayout(volume_row)
        volume_layout.setContentsMargins(0, 0, 0, 0)
        volume_layout.addWidget(slider, 1)
        self.volume_value = QLabel(f"{slider.value()} %", volume_row)
        self.volume_value.setMinimumWidth(44)
        slider.valueChanged.connect(lambda v: self.volume_value.setText(f"{v} %"))
        volume_layout.addWidget(self.volume_value)
        audio_form.addRow(f"{RINGER_VOLUME.label}:", volume_row)
        volume_label = audio_form.labelForField(volume_row)
        if isinstance(volume_label, QLabel):
            volume_label.setBuddy(slider)
        self._numbers[RINGER_VOLUME.key] = (RINGER_VOLUME, slider)
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
        for text in (PLATFORM_URL, ICE_ADDRESSES, CA_FILE):
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

    # --- slots for DeviceTools ---------------------------------------------------------

    def set_devices(self, devices: list[DeviceInfo], note: str = "") -> None:
        for setting, combo in self._devices.values():
            chosen = combo.currentData() or ""
            names = [combo.itemData(i) for i in range(combo.count())]
            combo.blockSignals(True)  # the same choice stays: no new meter for it
            self._fill_combo(combo, devices, chosen, DEVICE_KINDS[setting.key])
            combo.blockSignals(False)
            if names != [combo.itemData(i) for i in range(combo.count())]:
                logger.info("%s list changed: %d entries", setting.label, combo.count())
        count = sum(1 for d in devices if d.max_input_channels or d.max_output_channels)
        text = (
            f"{count} audio devices found."
            if count
            else "No audio devices found: plug a headset in, then Refresh Devices."
        )
        self.device_status.setText(f"{text} {note}".strip())
        self.refresh.setEnabled(True)

    def device_names(self, key: str) -> list[str]:
        """The device names a list offers (the system default excluded)."""
        combo = self._devices[key][1]
        return [str(combo.itemData(i)) for i in range(1, combo.count())]

    def _on_mic_index(self, _index: int) -> None:
        self.mic_changed.emit(self.chosen_mic())

    def chosen_mic(self) -> str:
        return str(self._devices[MIC.key][1].currentData() or "")

    def voice_processing_ticked(self) -> bool:
        """The meter shows the microphone as processed (the box, not yet saved)."""
        return self._checks[VOICE_PROCESSING.key][1].isChecked()

    def set_level(self, peak: float | None) -> None:
        """The microphone meter: a peak (0-1), or None when it cannot be metered."""
        self.meter.setEnabled(peak is not None)
        self.meter.setValue(round(level_db(peak)) if peak is not None else -60)

    def _on_test(self, key: str) -> None:
        device = str(self._devices[key][1].currentData() or "")
        if key == RINGER.key and not device:
            device = str(self._devices[SPEAKER.key][1].currentData() or "")
        volume = self._numbers[RINGER_VOLUME.key][1].value() if key == RINGER.key else 100
        self._test_buttons[key].setEnabled(False)
        self.test_sound_requested.emit(device, volume)

    def test_sound_done(self) -> None:
        for button in self._test_buttons.values():
            button.setEnabled(True)

    def set_device_error(self, message: str) -> None:
        self.device_status.setText(message)
        self.refresh.setEnabled(True)
        self.test_sound_done()

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
