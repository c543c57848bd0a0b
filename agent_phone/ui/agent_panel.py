"""The agent strip at the top of the window: who is signed in, their
status, and the queue toggle.

The toggle is one click (or Ctrl+O) and always visible. It shows the
platform's word on presence, not the click: clicking sends the request and
the button follows the ``presence`` event that answers it.

The Status menu (``status_menu``, in the menu bar as Alt+S) sets any status
an agent may set, with a submenu of the reasons the platform lists for it;
the strip shows the platform's status, its reason and the time in it.
In after-call work both are disabled: the wrap-up form ends it (wrap_up.py).
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMenu, QToolButton, QVBoxLayout, QWidget

from agent_phone.phone import events
from agent_phone.protocol import AGENT_STATUSES
from agent_phone.ui.bridges import PhoneBridge
from agent_phone.ui.controller import PhoneController, SessionState

PRESENCE_REASONS = {
    "not_responding": "You were set off queue: a call was not answered in time.",
    "requested": "",
}

#: How each status reads.
STATUS_NAMES = {
    "available": "Available (on queue)",
    "busy": "Busy",
    "away": "Away",
    "break": "Break",
    "meal": "Meal",
    "training": "Training",
    "meeting": "Meeting",
    "offline": "Offline",
    "not_responding": "Not responding",
    "after_call_work": "After-call work",
}

TOGGLE_STYLE = (
    "QToolButton { padding: 4px 12px; border-radius: 4px; border: 1px solid #90a4ae;"
    " background: #eceff1; color: #263238; font-weight: bold; }"
    "QToolButton:checked { background: #2e7d32; color: white; border-color: #1b5e20; }"
    "QToolButton:disabled { color: #90a4ae; }"
    "QToolButton:focus { border: 2px solid #1565c0; }"
)


class AgentPanel(QWidget):
    def __init__(
        self, phone: PhoneBridge, controller: PhoneController, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self._on_queue = False
        self.queue_action = QAction("&On Queue", self)
        self.queue_action.setCheckable(True)
        self.queue_action.setShortcut(QKeySequence("Ctrl+O"))
        self.queue_action.setEnabled(False)
        self._setup_ui()
        self.queue_action.triggered.connect(self._on_toggle)
        self.status_menu = QMenu("&Status", self)
        self.status_menu.setEnabled(False)
        self._status: events.Status | None = None
        #: The agent's calls that have not ended (the strip says "on a call").
        self._calls: set[str] = set()
        self._status_actions = QActionGroup(self)
        self._status_clock = QTimer(self)
        self._status_clock.setInterval(1000)
        self._status_clock.timeout.connect(self._show_status)
        self._build_status_menu({})
        phone.signed_in.connect(self._on_signed_in)
        phone.presence.connect(self._on_presence)
        phone.status.connect(self._on_status)
        phone.call.connect(self._on_call)
        controller.state_changed.connect(self._on_session)
        self._show()

    def _setup_ui(self) -> None:
        self.agent = QLabel(self)
        self.agent.setAccessibleName("Signed-in agent")
        self.note = QLabel(self)
        self.note.setAccessibleName("Presence note")
        self.note.setWordWrap(True)
        self.toggle = QToolButton(self)
        self.toggle.setObjectName("queueToggle")
        self.toggle.setDefaultAction(self.queue_action)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toggle.setMinimumSize(130, 34)
        self.toggle.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.toggle.setStyleSheet(TOGGLE_STYLE)
        self.status = QLabel(self)
        self.status.setObjectName("agentStatus")
        self.status.setAccessibleName("Your status")
        top = QHBoxLayout()
        top.addWidget(self.agent, 1)
        top.addWidget(self.status)
        top.addWidget(self.toggle)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.note)

    @property
    def on_queue(self) -> bool:
        return self._on_queue

    def _on_signed_in(self, event: events.SignedIn) -> None:
        queues = ", ".join(event.queues) or "none"
        self.agent.setText(f"<b>{event.agent}</b> · queues: {queues}")
        self._build_status_menu(event.status_reasons)

    # --- the status --------------------------------------------------------------------

    def _build_status_menu(self, reasons: dict[str, list[str]]) -> None:
        """One entry per status; a status with reasons opens a submenu of them."""
        self.status_menu.clear()
        for action in self._status_actions.actions():
            self._status_actions.removeAction(action)
        #: The menu's actions by (status, reason).
        self.status_entries: dict[tuple[str, str], QAction] = {}
        for status in AGENT_STATUSES:
            name = STATUS_NAMES[status]
            choices = reasons.get(status, [])
            if choices:
                sub = self.status_menu.addMenu(f"&{name}")
                self._status_entry(sub, status, "", "&Without a reason")
                sub.addSeparator()
                for reason in choices:
                    self._status_entry(sub, status, reason, reason)
            else:
                self._status_entry(self.status_menu, status, "", f"&{name}")

    def _status_entry(self, menu: QMenu, status: str, reason: str, text: str) -> None:
        action = menu.addAction(text)
        action.setCheckable(True)
        self._status_actions.addAction(action)
        action.triggered.connect(lambda _c=False: self._ask_status(status, reason))
        self.status_entries[(status, reason)] = action

    def _ask_status(self, status: str, reason: str) -> None:
        self._show_status()  # the check mark stays on the platform's status until it answers
        self._controller.set_status(status, reason)

    def _on_call(self, event: events.CallChanged) -> None:
        if event.state == "ended":
            self._calls.discard(event.call_id)
        else:
            self._calls.add(event.call_id)
        self._show_status()

    def _on_status(self, event: events.Status) -> None:
        self._status = event
        self._show_status()
        self._status_clock.start()
        self._show()

    def _show_status(self) -> None:
        event = self._status
        for (status, reason), action in self.status_entries.items():
            action.setChecked(
                event is not None and (status, reason) == (event.status, event.reason)
            )
        if event is None or self._controller.state is not SessionState.SIGNED_IN:
            self.status.setText("")
            self._status_clock.stop()
            return
        seconds = int(max(0.0, time.time() - event.since))
        minutes, secs = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        spent = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
        name = STATUS_NAMES.get(event.status, event.status)
        if self._calls and event.status == "available":
            name = "Available"  # (on queue, but no call comes while on one)
        reason = f" ({event.reason})" if event.reason else ""
        on_call = " · on a call" if self._calls else ""
        self.status.setText(f"{name}{reason}{on_call} · {spent}")

    def _on_presence(self, event: events.Presence) -> None:
        self._on_queue = event.on_queue
        self.note.setText(PRESENCE_REASONS.get(event.reason, ""))
        self._show()

    def _on_session(self, state: SessionState) -> None:
        if state is not SessionState.SIGNED_IN:
            self._status = None
            self._calls.clear()
            self._show_status()
        if state is SessionState.SIGNED_OUT:
            self._on_queue = False
            self.agent.setText("Not signed in")
            self.note.setText("")
        elif state is SessionState.SIGNING_IN:
            self.agent.setText("Signing in…")
        elif state is SessionState.RECONNECTING:
            self._on_queue = False  # the platform forgot; restored after signing in again
            self.note.setText("Lost the platform: signing in again…")
        elif state is SessionState.SIGNED_IN and self.note.text().startswith("Lost"):
            self.note.setText("")
        self._show()

    def _on_toggle(self, checked: bool) -> None:
        # Keep showing the platform's state until its presence event arrives.
        self.queue_action.setChecked(self._on_queue)
        self._controller.set_on_queue(checked)

    def _show(self) -> None:
        signed_in = self._controller.state is SessionState.SIGNED_IN
        # In after-call work the wrap-up form is the way out, not a status.
        in_acw = self._status is not None and self._status.status == "after_call_work"
        self.queue_action.setEnabled(signed_in and not in_acw)
        self.status_menu.setEnabled(signed_in and not in_acw)
        self.queue_action.setChecked(self._on_queue)
        text = "On Queue" if self._on_queue else "Off Queue"
        self.queue_action.setText(f"&{text}")
        tip = "Go off queue" if self._on_queue else "Go on queue to take calls"
        self.queue_action.setToolTip(f"{tip} (Ctrl+O)")
        self.toggle.setAccessibleName(f"Queue: {text.lower()}. Press to change")
        if not signed_in and not self.agent.text():
            self.agent.setText("Not signed in")
