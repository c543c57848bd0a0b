"""The menu-bar corner: the phone icon and the persistent-connection indicator.

The indicator shows exactly what ``ConnectionStateModel`` says, through
``ConnectionStateBridge`` and nothing else (docs/persistent-connection.md):
green bars for ``active``, amber half-built bars for ``connecting``, flat
grey bars for ``inactive``, struck-through outlines for ``off``. Shape and
colour both differ, so the states read without colour vision too. The
tooltip gives the state, its reason and, while an idle connection is kept,
the time left before the platform's timeout, updated each second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QSize, QTimer, Signal
from PySide6.QtGui import QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from agent_phone.phone.connection_state import ConnectionStatus, Indicator
from agent_phone.resources import resource
from agent_phone.ui.bridges import ConnectionStateBridge

logger = logging.getLogger(__name__)

ICON_SIZE = QSize(20, 20)

STATE_TEXT = {
    Indicator.ACTIVE: "active: the next call arrives at once",
    Indicator.CONNECTING: "connecting",
    Indicator.INACTIVE: "inactive: the next call sets a connection up",
    Indicator.OFF: "off",
}

#: The model's reasons, in words (unknown ones are shown as they are).
REASON_TEXT = {
    "sign_in": "set up at sign-in",
    "signed_in": "signed in",
    "signed_out": "signed out",
    "call": "set up for a call",
    "call_ended": "kept after the call",
    "timeout": "closed by the platform after the idle timeout",
    "stopped_by_agent": "ended by you",
    "persistent_off": "the setting is off",
    "setting_on": "the setting was turned on",
    "setting_off": "the setting is off",
    "closing_after_call": "closes when this call ends",
    "heartbeat_lost": "the connection stopped answering",
    "signed_in_elsewhere": "you signed in on another phone",
    "connection_lost": "the connection to the platform was lost",
    "closed": "the phone closed",
    "shutdown": "the platform shut down",
}


def reason_text(reason: str) -> str:
    return REASON_TEXT.get(reason, reason.replace("_", " "))


def seconds_left(status: ConnectionStatus, now: float) -> float | None:
    """Time before the platform closes the idle connection, if it is counting down."""
    if status.state is not Indicator.ACTIVE or status.in_call or status.expires_at is None:
        return None
    return max(0.0, status.expires_at - now)


def describe(status: ConnectionStatus, now: float) -> str:
    """The tooltip: state, reason and time left."""
    lines = [
        f"Persistent connection: {STATE_TEXT[status.state]}",
        f"Why: {reason_text(status.reason)}",
    ]
    if status.in_call:
        lines.append("A call is using it.")
    left = seconds_left(status, now)
    if left is not None:
        minutes, seconds = divmod(int(left + 0.5), 60)
        lines.append(f"The platform closes it in {minutes}:{seconds:02d} unless a call comes.")
    return "\n".join(lines)


def summary(status: ConnectionStatus, now: float) -> str:
    """One line, for a menu entry and screen readers."""
    text = f"Persistent connection {status.state.value} ({reason_text(status.reason)})"
    left = seconds_left(status, now)
    if left is not None:
        minutes, seconds = divmod(int(left + 0.5), 60)
        text += f", closes in {minutes}:{seconds:02d}"
    return text


def _icon(name: str) -> QIcon:
    icon = QIcon(str(resource("icons", name)))
    if icon.isNull():  # the SVG plugin is missing from the Qt install
        logger.error("cannot load icon %s", name)
    return icon


#: Icons drawn in neutral grey, re-tinted to the palette's text colour on a
#: dark palette (the green and amber states read on both).
NEUTRAL_ICONS = frozenset({"phone.svg", "signal-off.svg", "signal-inactive.svg"})


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def icon_pixmap(name: str, palette: QPalette) -> QPixmap:
    """The icon at ICON_SIZE, readable on the palette's window colour."""
    pixmap = _icon(name).pixmap(ICON_SIZE)
    if name in NEUTRAL_ICONS and is_dark(palette):
        tint = palette.color(QPalette.ColorRole.WindowText)
        tint.setAlphaF(0.8)
        painter = QPainter(pixmap)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
        painter.fillRect(pixmap.rect(), tint)
        painter.end()
    return pixmap


class ConnectionIndicator(QWidget):
    """Phone icon + signal icon, for the menu bar's corner."""

    #: The one-line summary changed (state, reason or the countdown).
    summary_changed = Signal(str)

    def __init__(
        self,
        bridge: ConnectionStateBridge,
        clock: Callable[[], float] = time.time,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._clock = clock
        self._status = bridge.status
        self._countdown = QTimer(self)
        self._countdown.setInterval(1000)
        self._countdown.timeout.connect(self._on_tick)
        self._setup_ui()
        bridge.changed.connect(self._on_status)
        self._show(self._status)

    def _setup_ui(self) -> None:
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 8, 0)
        layout.setSpacing(4)
        self._phone = QLabel(self)
        self._phone.setPixmap(icon_pixmap("phone.svg", self.palette()))
        self._phone.setAccessibleName("Agent Phone")
        self._signal = QLabel(self)
        self._signal.setObjectName("signalIcon")
        layout.addWidget(self._phone)
        layout.addWidget(self._signal)
        self.setAccessibleName("Persistent connection indicator")

    @property
    def shown_state(self) -> Indicator:
        """The state on screen (tests compare it with the model)."""
        return self._status.state

    @property
    def shown_status(self) -> ConnectionStatus:
        return self._status

    def _on_status(self, status: ConnectionStatus) -> None:
        self._status = status
        self._show(status)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt's name)
        super().changeEvent(event)
        if event.type() is QEvent.Type.PaletteChange and hasattr(self, "_signal"):
            # A light/dark theme switch: the neutral icons follow it.
            self._phone.setPixmap(icon_pixmap("phone.svg", self.palette()))
            self._show(self._status)

    def _show(self, status: ConnectionStatus) -> None:
        self._signal.setPixmap(icon_pixmap(f"signal-{status.state.value}.svg", self.palette()))
        counting = seconds_left(status, self._clock()) is not None
        if counting and not self._countdown.isActive():
            self._countdown.start()
        elif not counting:
            self._countdown.stop()
        self._on_tick()

    def _on_tick(self) -> None:
        now = self._clock()
        tip = describe(self._status, now)
        self.setToolTip(tip)
        self._signal.setToolTip(tip)
        line = summary(self._status, now)
        self._signal.setAccessibleName(line)
        self.setAccessibleDescription(line)
        self.summary_changed.emit(line)
