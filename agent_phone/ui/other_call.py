"""The agent's other call, under the one the call panel shows (call waiting).

An agent can be in two calls at once: the one they talk in, shown by the
panel, and one more, either offered while they talk (waiting) or put on
hold. This bar names that other call and what can be done with it:

- waiting: Answer (Ctrl+Shift+A; the call they are on goes on hold) or
  Decline (Ctrl+Shift+D);
- held: Swap (Ctrl+Shift+S; it comes off hold and the other goes on hold)
  or Hang Up (Ctrl+Shift+Backspace).

It is a view: the panel tells it which call to show (``show_call``) and
the actions go to the controller with that call's id.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from agent_phone.phone import events
from agent_phone.ui.controller import PhoneController

_STYLE = "QFrame#otherCall { background: #fff8e1; border: 1px solid #f9a825; border-radius: 4px; }"
_BUTTON = (
    "QToolButton { background: #eceff1; color: #263238; border: 1px solid #90a4ae;"
    " border-radius: 4px; padding: 4px 10px; }"
    "QToolButton:hover { background: #e3e8eb; }"
    "QToolButton:focus { border: 2px solid #1565c0; }"
)


class OtherCallActions:
    """What can be done with the other call, as actions (the Call menu shows them too)."""

    def __init__(self, parent: QObject) -> None:
        self.answer = QAction("Answer &Waiting Call", parent)
        self.answer.setShortcut(QKeySequence("Ctrl+Shift+A"))
        self.decline = QAction("Decline Waiting Call", parent)
        self.decline.setShortcut(QKeySequence("Ctrl+Shift+D"))
        self.swap = QAction("&Swap Calls", parent)
        self.swap.setShortcut(QKeySequence("Ctrl+Shift+S"))
        self.hangup = QAction("Hang Up Held Call", parent)
        self.hangup.setShortcut(QKeySequence("Ctrl+Shift+Backspace"))
        for action in self.all():
            action.setEnabled(False)
            action.setToolTip(f"{action.text().replace('&', '')} ({action.shortcut().toString()})")

    def all(self) -> tuple[QAction, ...]:
        return (self.answer, self.decline, self.swap, self.hangup)


def describe(call: events.CallChanged) -> str:
    """One line about the other call, for the bar."""
    who = call.peer
    if call.from_agent and call.purpose not in ("", "internal"):
        who = f"{call.peer} ({call.purpose} from {call.from_agent})"
    elif call.queue:
        who = f"{call.peer} ({call.queue})"
    if call.state == "alerting":
        return f"Call waiting: {who}. Answering it puts your call on hold."
    if call.state == "held":
        return f"On hold: {who}. The caller hears music."
    return f"{call.state.capitalize()}: {who}"


class OtherCallBar(QFrame):
    def __init__(self, controller: PhoneController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._controller = controller
        self._call: events.CallChanged | None = None
        self.setObjectName("otherCall")
        self.setStyleSheet(_STYLE)
        self.setAccessibleName("Your other call")
        self.actions_ = OtherCallActions(self)
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.text.setAccessibleName("Other call")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(self.text, 1)
        self.buttons: dict[str, QToolButton] = {}
        for name, action in zip(
            ("answer", "decline", "swap", "hangup"), self.actions_.all(), strict=True
        ):
            button = QToolButton(self)
            button.setDefaultAction(action)
            button.setObjectName(f"other_{name}Button")
            button.setAccessibleName(action.text().replace("&", ""))
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            button.setStyleSheet(_BUTTON)
            self.buttons[name] = button
            layout.addWidget(button)
        a = self.actions_
        a.answer.triggered.connect(lambda: self._act(controller.answer_call))
        a.decline.triggered.connect(lambda: self._act(controller.decline_call))
        a.swap.triggered.connect(lambda: self._act(controller.resume_call))
        a.hangup.triggered.connect(lambda: self._act(controller.hangup_call))
        self.show_call(None)

    @property
    def call_id(self) -> str | None:
        return self._call.call_id if self._call is not None else None

    def _act(self, command) -> None:  # noqa: ANN001 - one of the controller's *_call
        if self._call is not None:
            command(self._call.call_id)

    def show_call(self, call: events.CallChanged | None, swappable: bool = True) -> None:
        """The other call as it is now (None: there is none); ``swappable``:
        the call shown can go on hold (an internal call, or one with another
        agent on it, cannot: it is ended first)."""
        self._call = call
        waiting = call is not None and call.state == "alerting"
        held = call is not None and call.state == "held"
        text = describe(call) if call is not None else ""
        if held and not swappable:
            text += " Hang up this call to take it back."
        self.text.setText(text)
        a = self.actions_
        for action, on in (
            (a.answer, waiting),
            (a.decline, waiting),
            (a.swap, held and swappable),
            (a.hangup, held),
        ):
            action.setEnabled(on)
        for name, on in (
            ("answer", waiting),
            ("decline", waiting),
            ("swap", held),
            ("hangup", held),
        ):
            self.buttons[name].setVisible(on)
        self.setVisible(call is not None)
