"""The main window: menus, the agent strip, the call panel, the indicator.

It assembles the panels and routes menu actions to the controller; the
panels and the indicator do their own showing. Nothing here holds the
engine: the controller and the bridges are handed in by the app.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox, QVBoxLayout, QWidget

from agent_phone import __version__
from agent_phone.phone import events
from agent_phone.phone.history import CallHistory
from agent_phone.phone.ringer import AlertSounds
from agent_phone.protocol import PHONE_NUMBER_PATTERN
from agent_phone.resources import resource
from agent_phone.ui.agent_panel import AgentPanel
from agent_phone.ui.bridges import ConnectionStateBridge, PhoneBridge
from agent_phone.ui.call_panel import CallPanel
from agent_phone.ui.controller import PhoneController, SessionState
from agent_phone.ui.device_tools import REFRESH_MS, DeviceTools
from agent_phone.ui.dial_pad import DialPad
from agent_phone.ui.history_view import HistoryDialog
from agent_phone.ui.indicator import ConnectionIndicator, reason_text
from agent_phone.ui.passwords import PasswordVault
from agent_phone.ui.settings import (
    AUTO_ANSWER,
    MIC,
    PERSISTENT,
    RINGER,
    RINGER_VOLUME,
    SPEAKER,
    VOICE_PROCESSING,
    SettingsStore,
    alert_sound_settings,
)
from agent_phone.ui.settings_dialog import SettingsDialog
from agent_phone.ui.sign_in import SignInFlow
from agent_phone.ui.transfer_dialog import TransferDialog
from agent_phone.ui.wrap_up import WrapUpForm

logger = logging.getLogger(__name__)

MESSAGE_MS = 15000

SHORTCUTS = """\
<table>
<tr><td><b>Ctrl+D</b></td><td>Dial a number (the dial pad; Enter calls)</td></tr>
<tr><td><b>Ctrl+Return</b></td><td>Answer the ringing call</td></tr>
<tr><td><b>Ctrl+Backspace</b></td><td>Decline the ringing call, or hang up</td></tr>
<tr><td><b>Ctrl+M</b></td><td>Mute / unmute</td></tr>
<tr><td><b>Ctrl+W</b></td><td>The wrap-up codes, in after-call work (Enter wraps up)</td></tr>
<tr><td><b>Ctrl+O</b></td><td>Go on / off queue</td></tr>
<tr><td><b>Ctrl+,</b></td><td>Settings</td></tr>
<tr><td><b>Ctrl+H</b></td><td>Hold / resume the connected call</td></tr>
<tr><td><b>Ctrl+T</b></td><td>Transfer the call (to an agent, a queue or a number)</td></tr>
<tr><td><b>Ctrl+Shift+T</b> / <b>R</b></td><td>Complete / cancel a consult transfer</td></tr>
<tr><td><b>Ctrl+Shift+C</b> / <b>L</b></td><td>Add an agent to the call / leave it</td></tr>
<tr><td><b>Ctrl+Shift+A</b> / <b>D</b></td><td>Answer / decline a call waiting (yours goes on
hold)</td></tr>
<tr><td><b>Ctrl+Shift+S</b></td><td>Swap to the held call (the other goes on hold)</td></tr>
<tr><td><b>Ctrl+Shift+Backspace</b></td><td>Hang up the held call</td></tr>
<tr><td><b>0-9, *, #</b></td><td>DTMF keys (call panel focused, call connected)</td></tr>
<tr><td><b>Ctrl+Shift+H</b></td><td>Call history</td></tr>
<tr><td><b>Ctrl+Q</b></td><td>Quit (hangs up first)</td></tr>
<tr><td><b>Alt+P</b>, <b>Alt+S</b>, <b>Alt+C</b></td><td>The Phone, Status and Call menus</td></tr>
</table>"""


class MainWindow(QMainWindow):
    #: The window was closed: the app hangs up, signs out and quits.
    closed = Signal()

    def __init__(
        self,
        controller: PhoneController,
        phone: PhoneBridge,
        connection: ConnectionStateBridge,
        store: SettingsStore,
        vault: PasswordVault,
        history: CallHistory | None = None,
        sounds: AlertSounds | None = None,
    ) -> None:
        super().__init__()
        self._history = history
        self._sounds = sounds
        self._history_dialog: HistoryDialog | None = None
        self._device_tools: DeviceTools | None = None
        #: How often an open settings dialog re-reads the device list (0: only
        #: on opening and on Refresh).
        self.device_refresh_ms = REFRESH_MS
        #: A microphone/speaker change made during a call, applied when it ends.
        self._devices_pending = False
        self._controller = controller
        self._phone = phone
        self._connection = connection
        self._store = store
        self._settings_dialog: SettingsDialog | None = None
        #: The dial pad while it is open.
        self.dial_pad: DialPad | None = None
        #: The transfer (or conference) dialog while it is open.
        self.transfer_dialog: TransferDialog | None = None
        #: Whom calls may go to, as the platform said at sign-in.
        self._directory: tuple[list[str], list[str]] = ([], [])
        self._title = "Agent Phone"
        self.sign_in = SignInFlow(controller, store, vault, parent=self)
        self._setup_ui()
        controller.state_changed.connect(self._on_session)
        controller.failed.connect(self._on_message)
        controller.note.connect(self._on_message)
        controller.signed_out.connect(self._on_signed_out)
        phone.error.connect(self._on_engine_error)
        phone.signed_in.connect(
            lambda e: setattr(self, "_directory", (e.directory_agents, e.directory_queues))
        )
        phone.call.connect(self._on_call)
        phone.reconnecting.connect(self._on_reconnecting)
        phone.resuming.connect(self._on_resuming)
        phone.resumed.connect(self._on_resumed)
        phone.resume_failed.connect(self._on_resume_failed)
        store.changed.connect(self._on_setting_changed)
        self._on_session(controller.state)

    def _setup_ui(self) -> None:
        self.setWindowTitle(self._title)
        self.setWindowIcon(QIcon(str(resource("icons", "phone.svg"))))
        self.setAccessibleName("Agent Phone")
        self.agent_panel = AgentPanel(self._phone, self._controller, self)
        self.call_panel = CallPanel(self._phone, self._controller, self)
        self.wrap_up = WrapUpForm(self._phone, self._controller, self)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.addWidget(self.agent_panel)
        layout.addWidget(self.call_panel, 1)
        layout.addWidget(self.wrap_up)
        self.setCentralWidget(central)
        self._setup_menus()
        # A Python reference as well as the parent: a corner widget with
        # neither is garbage-collected and silently vanishes
        # (shared/notes/webrtc-and-qt.md).
        self.indicator = ConnectionIndicator(self._connection, parent=self.menuBar())
        self.indicator.summary_changed.connect(self.connection_info.setText)
        self.connection_info.setText(self.indicator.accessibleDescription())
        self.menuBar().setCornerWidget(self.indicator, Qt.Corner.TopRightCorner)
        self.statusBar().setAccessibleName("Messages")
        self.setMinimumSize(440, 360)
        geometry = self._store.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(540, 440)

    def _action(self, text: str, slot: Any, shortcut: str | None = None) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    def _setup_menus(self) -> None:
        c = self._controller
        phone = self.menuBar().addMenu("&Phone")
        self.sign_in_action = self._action("&Sign In…", self._on_sign_in)
        self.sign_out_action = self._action("Sign &Out", c.sign_out)
        self.persistent_action = QAction("Maintain &Persistent Connection", self)
        self.persistent_action.setCheckable(True)
        self.persistent_action.setChecked(self._store.get(PERSISTENT))
        self.persistent_action.setToolTip(PERSISTENT.description)
        self.persistent_action.toggled.connect(self._on_persistent_toggled)
        self.end_connection_action = self._action("&End Persistent Connection", c.end_connection)
        self.connection_info = QAction("", self)
        self.connection_info.setEnabled(False)
        self.settings_action = self._action("Se&ttings…", self._on_settings, "Ctrl+,")
        self.history_action = self._action("Call &History…", self._on_history, "Ctrl+Shift+H")
        self.history_action.setEnabled(self._history is not None)
        self.quit_action = self._action("&Quit", self.close, "Ctrl+Q")
        for item in (
            self.sign_in_action,
            self.sign_out_action,
            None,
            self.agent_panel.queue_action,
            None,
            self.persistent_action,
            self.end_connection_action,
            self.connection_info,
            None,
            self.history_action,
            self.settings_action,
            None,
            self.quit_action,
        ):
            phone.addAction(item) if item else phone.addSeparator()
        self.menuBar().addMenu(self.agent_panel.status_menu)
        call = self.menuBar().addMenu("&Call")
        call.addActions(list(self.call_panel.call_actions.all()))
        call.addSeparator()
        call.addActions(list(self.call_panel.other_call.actions_.all()))
        self.call_panel.call_actions.dial.triggered.connect(self._on_dial)
        self.call_panel.call_actions.transfer.triggered.connect(lambda: self._on_transfer(False))
        self.call_panel.call_actions.conference.triggered.connect(lambda: self._on_transfer(True))
        help_menu = self.menuBar().addMenu("&Help")
        self.shortcuts_action = self._action("&Keyboard Shortcuts", self._on_shortcuts, "F1")
        help_menu.addAction(self.shortcuts_action)
        self.about_action = self._action("&About Agent Phone", self._on_about)
        help_menu.addAction(self.about_action)

    # --- controller and engine -------------------------------------------------------

    def _on_session(self, state: SessionState) -> None:
        signed_in = state is SessionState.SIGNED_IN
        self.sign_in_action.setVisible(state is SessionState.SIGNED_OUT)
        self.sign_in_action.setEnabled(state is SessionState.SIGNED_OUT)
        self.sign_out_action.setVisible(state is not SessionState.SIGNED_OUT)
        self.sign_out_action.setEnabled(
            state in (SessionState.SIGNED_IN, SessionState.RECONNECTING)
        )
        self.end_connection_action.setEnabled(signed_in)
        if state is SessionState.SIGNED_IN:
            self.statusBar().showMessage("Signed in.", 5000)

    def _on_message(self, text: str) -> None:
        self.statusBar().showMessage(text, MESSAGE_MS)

    def _on_engine_error(self, event: events.Error) -> None:
        self.statusBar().showMessage(event.message[:1].upper() + event.message[1:], MESSAGE_MS)

    def _on_call(self, event: events.CallChanged) -> None:
        if event.state == "alerting" and event.previous is None:
            # Besides the ringer (AlertSounds) and the tray's notification: the
            # taskbar entry flashes and the title names the caller, so a call is
            # noticed with the window behind others.
            self.setWindowTitle(f"Incoming call: {event.peer} - {self._title}")
            if not event.auto_answer:
                QApplication.alert(self)
            return
        self.setWindowTitle(self._title)
        if event.state == "ended" and self._devices_pending:
            self._apply_devices()

    def _on_reconnecting(self, event: events.Reconnecting) -> None:
        self._on_message(
            f"Lost the platform: signing in again in {event.delay_s:g} s (attempt {event.attempt})."
        )

    def _on_resuming(self, event: events.Resuming) -> None:
        # The call and its audio carry on: only the signaling link is being restored.
        self._on_message(
            f"Lost the link to the platform: restoring it (attempt {event.attempt}); "
            "a call in progress carries on."
        )

    def _on_resumed(self, event: events.Resumed) -> None:
        self._on_message(f"Link to the platform restored after {event.away_s:.1f} s.")

    def _on_resume_failed(self, event: events.ResumeFailed) -> None:
        self._on_message(f"Could not restore the session ({event.message}).")

    def _on_signed_out(self, reason: str) -> None:
        if reason in ("requested", "closed") or not self.isVisible():
            self.statusBar().showMessage("Signed out.", MESSAGE_MS)
            return
        self.sign_in.open_dialog(self, f"You were signed out: {reason_text(reason)}.")

    # --- menu actions ---------------------------------------------------------------------

    def _on_sign_in(self) -> None:
        self.sign_in.open_dialog(self)

    def _on_persistent_toggled(self, on: bool) -> None:
        self._controller.set_persistent(on)
        self._store.set(PERSISTENT, on)

    def set_title(self, title: str) -> None:
        self._title = title
        self.setWindowTitle(title)

    def show_persistent_override(self, on: bool) -> None:
        """The command line overrode the setting for this session: show, don't store."""
        self.persistent_action.blockSignals(True)
        self.persistent_action.setChecked(on)
        self.persistent_action.blockSignals(False)

    def _on_setting_changed(self, key: str) -> None:
        # Settings changed in the dialog reach the engine here.
        if key == PERSISTENT.key:
            # From the dialog: ticking the menu entry applies it (its toggled slot).
            self.persistent_action.setChecked(self._store.get(PERSISTENT))
        elif key == AUTO_ANSWER.key:
            self._controller.set_auto_answer(self._store.get(AUTO_ANSWER))
        elif key == VOICE_PROCESSING.key:
            self._controller.set_voice_processing(self._store.get(VOICE_PROCESSING))
        if key in (SPEAKER.key, RINGER.key, RINGER_VOLUME.key) and self._sounds is not None:
            self._sounds.configure(alert_sound_settings(self._store))
        if key in (MIC.key, SPEAKER.key):
            self._apply_devices()

    def _apply_devices(self) -> None:
        mic, speaker = self._store.get(MIC) or None, self._store.get(SPEAKER) or None
        if self._controller.switch_devices(mic, speaker):
            self._devices_pending = False
            if self._controller.state is not SessionState.SIGNED_OUT:
                self._on_message("The new audio devices are used from the next call.")
        else:
            self._devices_pending = True
            self._on_message("The new audio devices are used when this call ends.")

    def _on_dial(self) -> None:
        """The dial pad, one at a time; the call it places shows in the panel."""
        if self.dial_pad is None:
            self.dial_pad = DialPad(self)
            self.dial_pad.dial.connect(self._controller.dial)
            self.dial_pad.finished.connect(self._on_dial_finished)
        self.dial_pad.show()
        self.dial_pad.raise_()
        self.dial_pad.activateWindow()

    def _on_transfer(self, conference: bool) -> None:
        """The transfer (or conference) dialog: the other agents, the queues
        and recent numbers; what is picked goes to the controller."""
        if self.transfer_dialog is not None:
            self.transfer_dialog.close()
        agents, queues = self._directory
        numbers: list[str] = []
        for record in self._history.records() if self._history is not None else []:
            if re.fullmatch(PHONE_NUMBER_PATTERN, record.caller) and record.caller not in numbers:
                numbers.append(record.caller)
        dialog = TransferDialog(agents, queues, numbers[:10], conference, self)
        if conference:
            add = self._controller.conference
            dialog.chosen.connect(lambda kind, who, _consult: add(kind, who))
        else:
            dialog.chosen.connect(self._controller.transfer)
        dialog.finished.connect(self._on_transfer_finished)
        self.transfer_dialog = dialog
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def _on_transfer_finished(self, _result: int) -> None:
        if self.transfer_dialog is not None:
            self.transfer_dialog.deleteLater()
            self.transfer_dialog = None

    def _on_dial_finished(self, _result: int) -> None:
        if self.dial_pad is not None:
            self.dial_pad.deleteLater()
            self.dial_pad = None

    def _on_history(self) -> None:
        if self._history is None:
            return
        if self._history_dialog is None:
            dialog = HistoryDialog(self._history, self)
            dialog.finished.connect(self._on_history_finished)
            dialog.call_back.connect(self._call_back)
            self._history_dialog = dialog
        self._history_dialog.show()
        self._history_dialog.raise_()
        self._history_dialog.activateWindow()
        self._history_dialog.table.setFocus()

    def _call_back(self, number: str) -> None:
        """Call back from the history: refused (and said so) during a call."""
        if not self.call_panel.call_actions.dial.isEnabled():
            self._on_message(f"Cannot call {number} now: finish the current call first.")
            return
        self._controller.dial(number)

    def _on_history_finished(self, _result: int) -> None:
        dialog, self._history_dialog = self._history_dialog, None
        if dialog is not None:
            dialog.deleteLater()

    def _on_settings(self) -> None:
        if self._settings_dialog is not None:
            self._settings_dialog.raise_()
            return
        dialog = SettingsDialog(self._store, self)
        dialog.finished.connect(self._on_settings_finished)
        self._settings_dialog = dialog
        self._device_tools = DeviceTools(
            dialog, self._controller.tasks, refresh_ms=self.device_refresh_ms, parent=dialog
        )
        dialog.open()
        self._device_tools.start()

    def _on_settings_finished(self, result: int) -> None:
        dialog, self._settings_dialog = self._settings_dialog, None
        self._device_tools = None  # closed by the dialog's finished signal; a child of it
        if dialog is None:
            return
        if result == SettingsDialog.DialogCode.Accepted:
            changed = dialog.save()
            logger.info("settings changed: %s", ", ".join(changed) or "none")
        dialog.deleteLater()

    def _on_shortcuts(self) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Keyboard shortcuts",
            SHORTCUTS,
            QMessageBox.StandardButton.Close,
            self,
        )
        box.setObjectName("shortcutsBox")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _on_about(self) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "About Agent Phone",
            f"Agent Phone {__version__}\n\nA softphone for contact-center agents.",
            QMessageBox.StandardButton.Close,
            self,
        )
        box.setObjectName("aboutBox")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        self._store.save_geometry(self.saveGeometry())
        event.accept()
        self.closed.emit()
