"""The agent strip at the top of the window: who is signed in, and the queue toggle.

The toggle is one click (or Ctrl+O) and always visible. It shows the
platform's word on presence, not the click: clicking sends the request and
the button follows the ``presence`` event that answers it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from agent_phone.phone import events
from agent_phone.ui.bridges import PhoneBridge
from agent_phone.ui.controller import PhoneController, SessionState

PRESENCE_REASONS = {
    "not_responding": "You were set off queue: a call was not answered in time.",
    "requested": "",
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
        phone.signed_in.connect(self._on_signed_in)
        phone.presence.connect(self._on_presence)
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
        top = QHBoxLayout()
        top.addWidget(self.agent, 1)
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

    def _on_presence(self, event: events.Presence) -> None:
        self._on_queue = event.on_queue
        self.note.setText(PRESENCE_REASONS.get(event.reason, ""))
        self._show()

    def _on_session(self, state: SessionState) -> None:
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
        self.queue_action.setEnabled(signed_in)
        self.queue_action.setChecked(self._on_queue)
        text = "On Queue" if self._on_queue else "Off Queue"
        self.queue_action.setText(f"&{text}")
        tip = "Go off queue" if self._on_queue else "Go on queue to take calls"
        self.queue_action.setToolTip(f"{tip} (Ctrl+O)")
        self.toggle.setAccessibleName(f"Queue: {text.lower()}. Press to change")
        if not signed_in and not self.agent.text():
            self.agent.setText("Not signed in")
