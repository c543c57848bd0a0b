"""The tray icon and the desktop notification for an incoming call.

``TrayNotifier`` shows a system-tray icon (with a menu: Show Agent Phone,
Quit) where the desktop has a tray, and, for a call that rings while the
window is hidden or minimised, a desktop notification through it. Clicking
the icon, the notification or **Show Agent Phone** brings the window back,
in front, with the call panel's Answer button focused.

Where there is no tray (``QSystemTrayIcon.isSystemTrayAvailable()`` is
False: a bare X server, some Wayland desktops, the tests' offscreen
platform) nothing is shown in a tray; the decision and the bring-forward
action still work, and the window's taskbar entry flashes instead
(``QApplication.alert``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QApplication, QMainWindow, QMenu, QSystemTrayIcon, QWidget

from agent_phone.phone import events
from agent_phone.resources import resource
from agent_phone.ui.bridges import PhoneBridge

logger = logging.getLogger(__name__)

NOTIFICATION_MS = 12000


@dataclass(frozen=True)
class Notification:
    title: str
    text: str
    call_id: str


def should_notify(*, visible: bool, minimized: bool, auto_answer: bool) -> bool:
    """A notification for a ringing call is for an agent who cannot see the window.

    An auto-answered call needs no action: the connect tone says it is there.
    """
    return not auto_answer and (not visible or minimized)


class TrayNotifier(QObject):
    def __init__(
        self,
        window: QMainWindow,
        phone: PhoneBridge,
        focus: Callable[[], QWidget | None] = lambda: None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._window = window
        self._focus = focus
        #: Every notification decided on (shown in the tray when there is one).
        self.notifications: list[Notification] = []
        # Parented to the window: deleted with it by Qt, never by Python's
        # garbage collector at some later moment (a parentless widget is).
        self.menu = QMenu(window)
        self.menu.setAccessibleName("Agent Phone tray menu")
        self.show_action = QAction("&Show Agent Phone", self)
        self.show_action.triggered.connect(self.bring_forward)
        self.quit_action = QAction("&Quit", self)
        self.quit_action.triggered.connect(window.close)
        self.menu.addAction(self.show_action)
        self.menu.addSeparator()
        self.menu.addAction(self.quit_action)
        self.icon: QSystemTrayIcon | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            icon = QSystemTrayIcon(QIcon(str(resource("icons", "phone.svg"))), self)
            icon.setToolTip("Agent Phone")
            icon.setContextMenu(self.menu)
            icon.activated.connect(self._on_activated)
            icon.messageClicked.connect(self.bring_forward)
            icon.show()
            self.icon = icon
        else:
            logger.info("no system tray: incoming calls flash the taskbar entry instead")
        phone.call.connect(self._on_call)

    @property
    def tray_available(self) -> bool:
        return self.icon is not None

    def _on_call(self, event: events.CallChanged) -> None:
        if event.state == "alerting" and event.previous is None:
            self._on_alerting(event)
        elif event.state != "alerting" and self.icon is not None:
            self.icon.setToolTip("Agent Phone")

    def _on_alerting(self, event: events.CallChanged) -> None:
        w = self._window
        if not should_notify(
            visible=w.isVisible(), minimized=w.isMinimized(), auto_answer=event.auto_answer
        ):
            return
        note = Notification(
            title=f"Incoming call: {event.peer}",
            text=f"Queue {event.queue}. Click to answer in Agent Phone.",
            call_id=event.call_id,
        )
        self.notifications.append(note)
        logger.info("notification: %s", note.title)
        if self.icon is not None:
            self.icon.showMessage(
                note.title, note.text, QSystemTrayIcon.MessageIcon.Information, NOTIFICATION_MS
            )
        QApplication.alert(w)

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            self.bring_forward()

    def bring_forward(self) -> None:
        """The window shown, restored, raised and active; the call panel in focus."""
        w = self._window
        if w.isMinimized():
            w.setWindowState(w.windowState() & ~Qt.WindowState.WindowMinimized)
        w.showNormal() if w.isMinimized() else w.show()
        w.raise_()
        w.activateWindow()
        target = self._focus()
        if target is not None:
            target.setFocus(Qt.FocusReason.OtherFocusReason)

    def close(self) -> None:
        if self.icon is not None:
            self.icon.hide()
