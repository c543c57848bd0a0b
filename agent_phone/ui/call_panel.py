"""The call panel: the incoming call, the call in progress, how the last one ended.

It follows the engine's events through ``PhoneBridge`` and sends commands
through the controller; it keeps no call logic, only what to show. The
buttons and the Call menu share one set of ``QAction``s (``CallActions``),
so each shortcut exists once and a disabled action's shortcut does nothing.

Shortcuts: Ctrl+Return answers; Ctrl+Backspace is the red button, declining
a ringing call or hanging up a connected one (only one of the two is enabled
at a time); Ctrl+M mutes; Ctrl+H holds and resumes. While a call is
connected (and not held) the DTMF keypad is enabled, and the digits, ``*``
and ``#`` typed while the panel (or any of its buttons) has focus send
those keys too.

With two calls (call waiting), the panel shows the one the agent talks in
(else the one offered, else the held one) and ``OtherCallBar`` under it the
other, with its own actions: answering a waiting call or swapping to a held
one makes that the call shown.

Beside the talk time, while the call is connected, the call-quality icon
(``quality_view.QualityIndicator``) shows the current call's latest
``quality`` report; while its grade is poor, the detail lines say so in one
sentence. It starts at "not measured yet" with each new call and is hidden
once the call ends.
"""

from __future__ import annotations

import enum
import logging
import time

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QFont, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from agent_phone.phone import events
from agent_phone.ui.bridges import PhoneBridge
from agent_phone.ui.controller import PhoneController, SessionState
from agent_phone.ui.other_call import OtherCallBar
from agent_phone.ui.quality_view import POOR_NETWORK_TEXT, QualityGrade, QualityIndicator

logger = logging.getLogger(__name__)

END_REASONS = {
    "customer_hangup": "The customer hung up.",
    "agent_hangup": "You hung up.",
    "declined": "You declined the call; it went to another agent.",
    "alert_timeout": "Not answered in time; the call went to another agent.",
    "connection_lost": "The connection was lost.",
    "audio_failure": "Your audio device failed; the call went to another agent.",
    "shutdown": "The platform shut down.",
    "transferred": "You transferred the call.",
    "left": "You left the conference; the others are still talking.",
    "cancelled": "The consult was cancelled; the customer is back with the other agent.",
    "closed": "The phone closed.",
    "customer_media_lost": "The customer's audio stopped: their connection was lost.",
    # An outbound call's own endings.
    "unknown_number": "Nobody can be reached at that number.",
    "busy": "That number is on another call.",
    "no_answer": "No answer.",
    "connection_failed": "Your phone could not be connected for the call.",
    "media_failed": "The call's audio could not be connected.",
}
#: Where an outbound call's reason means something else than an inbound one's.
OUTBOUND_END_REASONS = {"declined": "They declined the call."}

# A full style (border included) so the colours are exactly these on every
# platform style; white on these greens and reds keeps a contrast above 4.5:1.
_BUTTON = (
    "QToolButton {{ background: {bg}; color: {fg}; border: 1px solid {edge};"
    " border-radius: 4px; padding: 6px 16px; font-weight: bold; }}"
    "QToolButton:hover {{ background: {hover}; }}"
    "QToolButton:focus {{ border: 2px solid #1565c0; }}"
)
_GREEN = {"bg": "#2e7d32", "fg": "white", "edge": "#1b5e20", "hover": "#388e3c"}
_RED = {"bg": "#c62828", "fg": "white", "edge": "#8e0000", "hover": "#d32f2f"}
_PLAIN = {"bg": "#eceff1", "fg": "#263238", "edge": "#90a4ae", "hover": "#e3e8eb"}
BUTTON_STYLE = {
    "dial": _BUTTON.format(**_PLAIN),
    "answer": _BUTTON.format(**_GREEN),
    "decline": _BUTTON.format(**_RED),
    "hangup": _BUTTON.format(**_RED),
    "mute": _BUTTON.format(**_PLAIN)
    + "QToolButton:checked { background: #f9a825; border-color: #c17900; }",
    "hold": _BUTTON.format(**_PLAIN)
    + "QToolButton:checked { background: #1565c0; color: white; border-color: #003c8f; }",
}
_SMALL = (
    "QToolButton { background: #eceff1; color: #263238; border: 1px solid #90a4ae;"
    " border-radius: 4px; padding: 4px 10px; }"
    "QToolButton:hover { background: #e3e8eb; }"
    "QToolButton:focus { border: 2px solid #1565c0; }"
)
#: The actions about other agents, in their own row of buttons.
OTHER_ACTIONS = ("transfer", "conference", "complete", "cancel_transfer", "leave")
#: What a call offered by another agent is, as the panel says it.
PURPOSES = {
    "transfer": "Transferred to you by {agent}",
    "consult": "{agent} wants to consult you (the customer is on hold)",
    "conference": "{agent} adds you to the call",
    "internal": "A call from {agent}",
}
#: The keypad: small plain keys (a real phone's layout, 3 by 4).
KEYPAD = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#")
KEY_NAMES = {"*": "star", "#": "pound"}
_KEY_STYLE = (
    "QToolButton { background: #eceff1; color: #263238; border: 1px solid #90a4ae;"
    " border-radius: 3px; font-weight: bold; }"
    "QToolButton:hover { background: #e3e8eb; }"
    "QToolButton:focus { border: 2px solid #1565c0; }"
    "QToolButton:disabled { color: #90a4ae; }"
)


class CallView(enum.Enum):
    IDLE = "idle"
    #: The agent's own call, dialing or ringing at the far end.
    CALLING = "calling"
    INCOMING = "incoming"
    ANSWERING = "answering"
    CONNECTED = "connected"
    ENDED = "ended"


def _facts_of(event: events.CallChanged) -> list[str]:
    """What the panel says of an offered call: who offered it, its queue,
    how it was delivered."""
    if event.direction == "outbound":
        return ["Outbound call"]
    how = "Over the kept connection" if event.over_persistent_connection else "New connection"
    facts = [f"{how}, delivered in {event.delivery_ms:.1f} ms"]
    if event.queue:
        facts.insert(0, f"Queue: {event.queue}")
    if event.from_agent:
        facts.insert(0, PURPOSES.get(event.purpose, "From {agent}").format(agent=event.from_agent))
    return facts


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class CallActions:
    """The call commands as actions, for the panel's buttons and the Call menu."""

    def __init__(self, parent: QObject) -> None:
        self.answer = QAction("&Answer", parent)
        self.answer.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.decline = QAction("&Decline", parent)
        self.decline.setShortcut(QKeySequence("Ctrl+Backspace"))
        # The same key as Decline: the "red button". Never both enabled.
        self.hangup = QAction("&Hang Up", parent)
        self.hangup.setShortcut(QKeySequence("Ctrl+Backspace"))
        self.mute = QAction("&Mute", parent)
        self.mute.setCheckable(True)
        self.mute.setShortcut(QKeySequence("Ctrl+M"))
        self.hold = QAction("H&old", parent)
        self.hold.setCheckable(True)
        self.hold.setShortcut(QKeySequence("Ctrl+H"))
        self.dial = QAction("&Dial…", parent)
        self.dial.setShortcut(QKeySequence("Ctrl+D"))
        # Another agent: a transfer (blind or consult first), a conference.
        self.transfer = QAction("&Transfer…", parent)
        self.transfer.setShortcut(QKeySequence("Ctrl+T"))
        self.conference = QAction("Con&ference…", parent)
        self.conference.setShortcut(QKeySequence("Ctrl+Shift+C"))
        self.complete = QAction("&Complete Transfer", parent)
        self.complete.setShortcut(QKeySequence("Ctrl+Shift+T"))
        self.cancel_transfer = QAction("Cancel T&ransfer", parent)
        self.cancel_transfer.setShortcut(QKeySequence("Ctrl+Shift+R"))
        self.leave = QAction("&Leave Conference", parent)
        self.leave.setShortcut(QKeySequence("Ctrl+Shift+L"))
        for action in self.all():
            action.setEnabled(False)
            action.setToolTip(f"{action.text().replace('&', '')} ({action.shortcut().toString()})")

    def all(self) -> tuple[QAction, ...]:
        return (
            self.dial,
            self.answer,
            self.decline,
            self.hangup,
            self.mute,
            self.hold,
            self.transfer,
            self.conference,
            self.complete,
            self.cancel_transfer,
            self.leave,
        )


class CallPanel(QFrame):
    def __init__(
        self, phone: PhoneBridge, controller: PhoneController, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self._view = CallView.IDLE
        self._caller = ""
        #: The call shown; quality reports for any other are ignored.
        self._call_id: str | None = None
        self._connected_at: float | None = None
        self._on_queue = False
        #: What is known about the current call, shown as its detail line.
        self._facts: list[str] = []
        self._answered = ""
        self._hearing = False
        #: The latest quality report of the call said "poor".
        self._poor = False
        self._ended_text = ""
        #: On hold, as the platform last confirmed.
        self._held = False
        #: Other agents on the shown call: name -> (role, state).
        self._parties: dict[str, tuple[str, str]] = {}
        #: The shown call was offered to this agent for a consult by another.
        self._consulted = False
        #: The agent is in after-call work (their status says so).
        self._after_call_work = False
        #: Keys the caller pressed on the shown call (RFC 4733 events).
        self._keys_received = ""
        #: The shown call's direction: inbound, outbound or internal.
        self._direction = "inbound"
        #: Every call not ended: its latest event, and when that came (monotonic).
        self._known: dict[str, tuple[events.CallChanged, float]] = {}
        self.call_actions = CallActions(self)
        self._clock = QTimer(self)
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._on_tick)
        self._setup_ui()
        self.call_actions.answer.triggered.connect(self._on_answer)
        self.call_actions.decline.triggered.connect(controller.decline)
        self.call_actions.hangup.triggered.connect(controller.hangup)
        self.call_actions.mute.triggered.connect(controller.set_mute)
        self.call_actions.hold.triggered.connect(self._on_hold_clicked)
        self.call_actions.complete.triggered.connect(controller.complete_transfer)
        self.call_actions.cancel_transfer.triggered.connect(controller.cancel_transfer)
        self.call_actions.leave.triggered.connect(controller.leave_conference)
        phone.call.connect(self._on_call)
        phone.party.connect(self._on_party)
        phone.dtmf_received.connect(self._on_dtmf_received)
        phone.status.connect(self._on_status)
        phone.hearing.connect(self._on_hearing)
        phone.muted.connect(self._on_muted)
        phone.presence.connect(self._on_presence)
        phone.quality.connect(self._on_quality)
        controller.state_changed.connect(self._on_session)
        controller.answer_failed.connect(self._on_answer_failed)
        self._show()

    def _setup_ui(self) -> None:
        self.setObjectName("callPanel")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName("Call")
        self.title = QLabel(self)
        self.title.setAccessibleName("Call status")
        title_font = QFont(self.title.font())
        title_font.setPointSizeF(title_font.pointSizeF() * 1.15)
        title_font.setBold(True)
        self.title.setFont(title_font)
        # No colour of its own: the palette's text colour reads on light and dark themes.
        self.caller = QLabel(self)
        self.caller.setAccessibleName("Caller")
        font = QFont(self.caller.font())
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.caller.setFont(font)
        self.caller.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail = QLabel(self)
        self.detail.setWordWrap(True)
        self.detail.setAccessibleName("Call details")
        self.elapsed = QLabel(self)
        self.elapsed.setAccessibleName("Call duration")
        elapsed_font = QFont(self.elapsed.font())
        elapsed_font.setPointSizeF(elapsed_font.pointSizeF() * 1.6)
        self.elapsed.setFont(elapsed_font)
        self.quality = QualityIndicator(self)
        self.buttons: dict[str, QToolButton] = {}
        row = QHBoxLayout()
        for name in ("dial", "answer", "decline", "mute", "hold", "hangup"):
            action: QAction = getattr(self.call_actions, name)
            button = QToolButton(self)
            button.setDefaultAction(action)
            button.setObjectName(f"{name}Button")
            button.setAccessibleName(action.text().replace("&", ""))
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setMinimumSize(110, 40)
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            button.setStyleSheet(BUTTON_STYLE[name])
            self.buttons[name] = button
            row.addWidget(button)
        row.addStretch(1)
        others = QHBoxLayout()
        for name in OTHER_ACTIONS:
            action = getattr(self.call_actions, name)
            button = QToolButton(self)
            button.setDefaultAction(action)
            button.setObjectName(f"{name}Button")
            button.setAccessibleName(action.text().replace("&", "").rstrip("…"))
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            button.setStyleSheet(_SMALL)
            self.buttons[name] = button
            others.addWidget(button)
        others.addStretch(1)
        self.other_call = OtherCallBar(self._controller, self)
        self._setup_keypad()
        info = QVBoxLayout()
        info.setSpacing(8)
        info.addWidget(self.title)
        info.addWidget(self.caller)
        info.addWidget(self.detail)
        talk = QHBoxLayout()
        talk.setSpacing(10)
        talk.addWidget(self.elapsed, 0, Qt.AlignmentFlag.AlignVCenter)
        talk.addWidget(self.quality, 0, Qt.AlignmentFlag.AlignVCenter)
        talk.addStretch(1)
        info.addLayout(talk)
        info.addStretch(1)
        # The keypad beside what it acts on, not under it: the panel stays
        # as tall as before (1366x768 screens).
        top = QHBoxLayout()
        top.addLayout(info, 1)
        top.addWidget(self.keypad, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setSpacing(8)
        layout.addLayout(top)
        layout.addSpacing(6)
        # The buttons sit right under what they act on, not at the far bottom.
        layout.addLayout(row)
        layout.addLayout(others)
        layout.addWidget(self.other_call)
        layout.addStretch(1)

    def _setup_keypad(self) -> None:
        self.keypad = QWidget(self)
        self.keypad.setObjectName("keypad")
        self.keypad.setAccessibleName("Keypad")
        grid = QGridLayout(self.keypad)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        #: The keypad's keys by digit.
        self.keys: dict[str, QToolButton] = {}
        for index, digit in enumerate(KEYPAD):
            key = QToolButton(self.keypad)
            key.setText(digit)
            name = KEY_NAMES.get(digit, digit)
            key.setObjectName(f"key_{name}")
            key.setAccessibleName(f"Key {name}")
            key.setToolTip(f"Send {digit} to the caller (type {digit})")
            key.setFixedSize(40, 30)
            key.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            key.setStyleSheet(_KEY_STYLE)
            key.clicked.connect(lambda _checked=False, d=digit: self._send_keys(d))
            grid.addWidget(key, index // 3, index % 3)
            self.keys[digit] = key
        # A click on the panel's background gives it focus, for typed digits.
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)

    @property
    def view(self) -> CallView:
        return self._view

    @property
    def held(self) -> bool:
        return self._held

    def _set_view(self, view: CallView, why: str) -> None:
        if view is not self._view:
            logger.info("call panel %s -> %s (%s)", self._view.value, view.value, why)
            self._view = view
        self._show()

    # --- engine events ---------------------------------------------------------------

    def _on_call(self, event: events.CallChanged) -> None:
        """Every change of every call. The panel shows one: the latest begun,
        unless it is busy with another; a call that becomes the one the
        agent talks in (a waiting call answered, a held one resumed) is shown
        instead, and an ended one gives way to the agent's other call."""
        if event.state == "ended":
            self._known.pop(event.call_id, None)
        else:
            self._known[event.call_id] = (event, time.monotonic())
        busy = self._view in (
            CallView.CALLING,
            CallView.INCOMING,
            CallView.ANSWERING,
            CallView.CONNECTED,
        )
        if event.call_id != self._call_id and busy:
            if event.state == "connected":
                self._adopt(event, time.monotonic())
            else:
                logger.debug("%s %s: not the call shown", event.call_id, event.state)
            self._show_other()
            return
        if event.call_id != self._call_id and event.previous is not None:
            self._caller = event.peer  # begun before the panel saw it
            self._new_call(event.call_id)
        self._direction = event.direction
        self._follow(event)
        if event.state == "ended" and self._known:
            # The agent's other call takes the panel.
            self._adopt(*self._known[self._focus()])
        self._show_other()

    def _follow(self, event: events.CallChanged) -> None:
        """A change of the call shown."""
        match event.state:
            case "dialing" | "ringing":
                self._on_calling(event)
            case "alerting":
                self._on_alerting(event)
            case "connected" if event.previous == "held":
                self._on_held(False)
            case "connected":
                self._on_answered(event)
            case "held":
                self._on_held(True)
            case "ended":
                self._on_ended(event)

    def _focus(self) -> str:
        """Of the calls not ended, the one to show: the one the agent talks
        in, else the one offered, else the one being dialed, else a held one."""
        order = ("connected", "alerting", "dialing", "ringing", "held")
        return min(self._known, key=lambda c: order.index(self._known[c][0].state))

    def _show_other(self) -> None:
        others = [e for call_id, (e, _at) in self._known.items() if call_id != self._call_id]
        swappable = self._direction != "internal" and not self._parties
        self.other_call.show_call(others[0] if others else None, swappable)
        self._show()

    def _adopt(self, event: events.CallChanged, at: float) -> None:
        """Show ``event``'s call (told at ``at``) in place of the one shown,
        from what its latest event says of it."""
        self._new_call(event.call_id)
        self._caller = event.peer
        self._direction = event.direction
        self._facts = _facts_of(event)
        self._consulted = event.purpose == "consult"
        self._hearing = False
        talking = event.state in ("connected", "held")
        self._connected_at = at - event.duration_s if talking else None
        self._answered = ""
        if talking and event.direction == "outbound":
            self._answered = "They answered"
        elif talking:
            self._answered = "Answered automatically" if event.auto_answer else "Answered"
        self._set_held(event.state == "held")
        self._show_facts()
        views = {"alerting": CallView.INCOMING, "dialing": CallView.CALLING}
        views["ringing"] = CallView.CALLING
        self._set_view(views.get(event.state, CallView.CONNECTED), f"{event.call_id} shown")

    def _on_alerting(self, event: events.CallChanged) -> None:
        self._caller = event.peer
        self._new_call(event.call_id)
        self._connected_at = None
        self._facts = _facts_of(event)
        self._consulted = event.purpose == "consult"
        self._answered = ""
        self._hearing = False
        self._show_facts()
        self.call_actions.mute.setChecked(False)
        self._set_held(False)
        view = CallView.ANSWERING if event.auto_answer else CallView.INCOMING
        self._set_view(view, event.call_id)

    def _on_calling(self, event: events.CallChanged) -> None:
        """The agent's own call: dialing, then ringing at the far end."""
        self._caller = event.peer
        if event.state == "dialing":
            self._new_call(event.call_id)
            self._connected_at = None
            self._facts = ["Outbound call", "Dialing…"]
            self._answered = ""
            self._hearing = False
            self.call_actions.mute.setChecked(False)
            self._set_held(False)
        else:
            how = (
                "over the kept connection" if event.over_persistent_connection else "new connection"
            )
            self._facts = ["Outbound call", f"Ringing ({how})"]
        self._show_facts()
        self._set_view(CallView.CALLING, event.call_id)

    def _on_answered(self, event: events.CallChanged) -> None:
        self._connected_at = time.monotonic() - event.duration_s
        if event.direction == "outbound":
            self._facts = ["Outbound call"]
            self._answered = "They answered"
        else:
            self._answered = "Answered automatically" if event.auto_answer else "Answered"
        self._show_facts()
        self._set_view(CallView.CONNECTED, event.call_id)

    def _on_hearing(self, event: events.Hearing) -> None:
        # May come just before "answered": the customer's audio can beat the
        # platform's confirmation.
        if event.call_id != self._call_id:
            return
        self._hearing = True
        self._show_facts()

    def _new_call(self, call_id: str) -> None:
        self._call_id = call_id
        self._keys_received = ""
        self._poor = False
        self._parties = {}
        self._consulted = False
        self.quality.reset()

    def _on_dtmf_received(self, event: events.DtmfReceived) -> None:
        """A key the caller pressed: shown, the last 32 of them."""
        if event.call_id != self._call_id:
            return
        self._keys_received = (self._keys_received + event.digit)[-32:]
        self._show_facts()

    def _on_party(self, event: events.Party) -> None:
        """Another agent on the shown call came, answered or went."""
        if event.call_id != self._call_id:
            return
        if event.state == "ended":
            self._parties.pop(event.agent, None)
            if event.reason == "transferred" and self._consulted:
                self._consulted = False  # the customer is this agent's now
                self._facts = [f"Transferred to you by {event.agent}"]
        else:
            self._parties[event.agent] = (event.role, event.state)
        self._show_facts()
        self._show_other()

    def _on_quality(self, event: events.Quality) -> None:
        if event.call_id != self._call_id:
            logger.debug("quality report for %s ignored (showing %s)", event.call_id, self._call_id)
            return
        self.quality.show_report(event)
        poor = self.quality.grade is QualityGrade.POOR
        if poor != self._poor:
            self._poor = poor
            # An ended call's detail is its ending; the facts are for the call in progress.
            if self._view in (CallView.ANSWERING, CallView.CONNECTED):
                self._show_facts()

    def _show_facts(self) -> None:
        lines = list(self._facts)
        if self._answered:
            lines.append(self._answered)
        for agent, (role, state) in self._parties.items():
            if role == "consult" and self._consulted:
                lines.append(f"Consulting with {agent}; the customer is on hold")
            elif role == "consult":
                lines.append(
                    f"Calling {agent} to consult; the customer hears hold music"
                    if state == "alerting"
                    else f"Consulting {agent} (the customer is on hold):"
                    " complete the transfer, or cancel it"
                )
            elif role == "conference":
                lines.append(
                    f"Adding {agent}…" if state == "alerting" else f"In conference with {agent}"
                )
        if self._held and not self._parties:
            lines.append("On hold: the customer hears music, and neither of you the other")
        elif self._hearing and not self._held:
            who = self._caller if self._direction == "internal" else "the customer"
            lines.append(f"You can hear {who}")
        if self._keys_received:
            lines.append(f"The caller pressed: {' '.join(self._keys_received)}")
        if self._poor:
            lines.append(POOR_NETWORK_TEXT)
        self.detail.setText("\n".join(lines))

    def _on_ended(self, event: events.CallChanged) -> None:
        reason = (OUTBOUND_END_REASONS if event.direction == "outbound" else {}).get(
            event.reason
        ) or END_REASONS.get(event.reason, f"Ended: {event.reason.replace('_', ' ')}.")
        if event.duration_s:
            reason += f" Talk time {_duration(event.duration_s)}."
        self._ended_text = reason
        self._connected_at = None
        self._set_held(False)
        self._set_view(CallView.ENDED, event.reason)

    def _on_muted(self, event: events.Muted) -> None:
        self.call_actions.mute.setChecked(event.on)
        self.call_actions.mute.setText("Un&mute" if event.on else "&Mute")
        self.buttons["mute"].setAccessibleName("Unmute" if event.on else "Mute")

    def _on_held(self, on: bool) -> None:
        self._set_held(on)
        self._show_facts()
        self._show()

    def _set_held(self, on: bool) -> None:
        self._held = on
        hold = self.call_actions.hold
        hold.setChecked(on)
        hold.setText("Res&ume" if on else "H&old")
        self.buttons["hold"].setAccessibleName("Resume" if on else "Hold")

    def _on_presence(self, event: events.Presence) -> None:
        self._on_queue = event.on_queue
        self._show()

    def _on_session(self, state: SessionState) -> None:
        if state in (SessionState.SIGNED_OUT, SessionState.RECONNECTING):
            self._on_queue = False
            if self._view is not CallView.ENDED:
                self._set_view(CallView.IDLE, "signed out")
        self._show()

    def _on_answer_failed(self) -> None:
        # An answer that did not go through leaves the call ringing (if it still is).
        if self._view is CallView.ANSWERING and self._connected_at is None:
            self._set_view(CallView.INCOMING, "answer failed")

    # --- actions -----------------------------------------------------------------------

    def _on_answer(self) -> None:
        self._set_view(CallView.ANSWERING, "answer clicked")
        self._controller.answer()

    def _on_hold_clicked(self, _checked: bool) -> None:
        # The button shows what the platform confirmed (``held``), not the click.
        self.call_actions.hold.setChecked(self._held)
        self._controller.set_hold(not self._held)

    def _send_keys(self, digits: str) -> None:
        if self.keypad.isEnabled():
            self._controller.send_dtmf(digits)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        text = event.text()
        plain = not event.modifiers() & ~(
            Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.KeypadModifier
        )
        if plain and len(text) == 1 and text in KEYPAD and self.keypad.isEnabled():
            self.keys[text].animateClick()  # shows which key went, and sends it
            event.accept()
            return
        super().keyPressEvent(event)

    def _on_tick(self) -> None:
        if self._connected_at is not None:
            self.elapsed.setText(_duration(time.monotonic() - self._connected_at))

    # --- what is shown -------------------------------------------------------------------

    def _connected_title(self) -> str:
        roles = {role for role, _state in self._parties.values()}
        if "consult" in roles:
            return "Consulting"
        if "conference" in roles:
            return "Conference"
        return "On hold" if self._held else "On a call"

    def _on_status(self, event: events.Status) -> None:
        self._after_call_work = event.status == "after_call_work"
        self._show()

    def _waiting_text(self) -> str:
        state = self._controller.state
        if state is SessionState.RECONNECTING:
            return "Lost the platform: signing in again…"
        if state is not SessionState.SIGNED_IN:
            return "Signed out. Sign in from the Phone menu."
        if self._after_call_work:
            return "After-call work: pick a wrap-up code below."
        if self._on_queue:
            return "On queue: waiting for calls."
        return "Off queue: go on queue to take calls."

    def _show(self) -> None:
        view = self._view
        titles = {
            CallView.IDLE: "No call",
            CallView.CALLING: "Calling…",
            CallView.INCOMING: "Incoming call",
            CallView.ANSWERING: "Connecting…",
            CallView.CONNECTED: self._connected_title(),
            CallView.ENDED: "Call ended",
        }
        self.title.setText(titles[view])
        self.caller.setText(self._caller if view is not CallView.IDLE else "")
        self.caller.setVisible(view is not CallView.IDLE)
        if view is CallView.IDLE:
            self.detail.setText(self._waiting_text())
        elif view is CallView.ENDED:
            self.detail.setText(f"{self._ended_text}\n\n{self._waiting_text()}")
        self.elapsed.setVisible(view is CallView.CONNECTED)
        self.quality.setVisible(view is CallView.CONNECTED)
        if view is CallView.CONNECTED:
            self._on_tick()
            self._clock.start()
        else:
            self._clock.stop()
            self.elapsed.setText("")
        ringing = view is CallView.INCOMING
        talking = view in (CallView.ANSWERING, CallView.CONNECTED)
        calling = view is CallView.CALLING
        free = view in (CallView.IDLE, CallView.ENDED)
        # (With the one call on hold, the agent may place another.)
        can_dial = free or (view is CallView.CONNECTED and self._held and len(self._known) == 1)
        signed_in = self._controller.state is SessionState.SIGNED_IN
        self.call_actions.dial.setEnabled(can_dial and signed_in)
        self.call_actions.answer.setEnabled(ringing)
        self.call_actions.decline.setEnabled(ringing)
        self.call_actions.hangup.setEnabled(talking or calling)
        self.call_actions.mute.setEnabled(talking)
        self.buttons["dial"].setVisible(can_dial)
        self.buttons["answer"].setVisible(ringing)
        self.buttons["decline"].setVisible(ringing)
        self.buttons["hangup"].setVisible(talking or calling)
        self.buttons["mute"].setVisible(talking)
        connected = view is CallView.CONNECTED
        roles = {role: state for role, state in self._parties.values()}
        # (An internal call has no customer to hold, transfer or add to.)
        customer = self._direction != "internal"
        self.call_actions.hold.setEnabled(connected and not self._parties and customer)
        # (in a consult the customer is held by the platform, not by the button)
        self.buttons["hold"].setVisible(talking and not self._parties and customer)
        # Other agents: transfer or add one while none is on the call; then
        # complete or cancel a consult (the consulting agent's), or leave.
        a = self.call_actions
        alone = connected and not self._parties and customer
        consulting = "consult" in roles and not self._consulted
        a.transfer.setEnabled(alone)
        a.conference.setEnabled(alone and not self._held)
        a.complete.setEnabled(consulting and roles["consult"] == "connected")
        a.cancel_transfer.setEnabled(consulting)
        a.leave.setEnabled(roles.get("conference") == "connected")
        for name, shown in (
            ("transfer", alone),
            ("conference", alone),
            ("complete", consulting),
            ("cancel_transfer", consulting),
            ("leave", "conference" in roles),
        ):
            self.buttons[name].setVisible(shown and talking)
        self.keypad.setVisible(talking)
        self.keypad.setEnabled(connected and not self._held)
