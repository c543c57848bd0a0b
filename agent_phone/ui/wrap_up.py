"""The wrap-up form: after a call from a queue with wrap-up codes, the agent
is in after-call work and no call comes until they pick a code.

It shows in the window under the call panel while the platform says the
agent is in after-call work (the ``after_call_work`` event), and hides as
soon as the status changes (wrapped up, timed out, signed out). The codes
are a list (arrow keys, type-ahead); Enter or a double click wraps up with
the selected one. A countdown says when the platform ends it by itself.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from agent_phone.phone import events
from agent_phone.ui.bridges import PhoneBridge
from agent_phone.ui.controller import PhoneController


def code_name(code: str) -> str:
    """``callback_promised`` reads as "Callback promised"."""
    return code.replace("_", " ").capitalize()


class WrapUpForm(QFrame):
    def __init__(
        self, phone: PhoneBridge, controller: PhoneController, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._controller = controller
        self._work: events.AfterCallWork | None = None
        self.setObjectName("wrapUpForm")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName("Wrap-up")
        self.title = QLabel(self)
        self.title.setObjectName("wrapUpTitle")
        self.countdown = QLabel(self)
        self.countdown.setAccessibleName("After-call work ends in")
        self.codes = QListWidget(self)
        self.codes.setAccessibleName("Wrap-up codes")
        self.codes.setMaximumHeight(110)
        self.codes.itemActivated.connect(lambda _item: self._wrap_up())
        self.button = QPushButton("&Wrap Up", self)
        self.button.setAccessibleName("Wrap up with the selected code")
        self.button.setToolTip("Wrap up with the selected code (Enter)")
        self.button.clicked.connect(self._wrap_up)
        self.codes.currentRowChanged.connect(lambda row: self.button.setEnabled(row >= 0))
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.countdown)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.codes)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignRight)
        # Ctrl+W from anywhere in the window: straight to the codes.
        self.shortcut = QShortcut(QKeySequence("Ctrl+W"), parent or self)
        self.shortcut.activated.connect(self._focus_codes)
        self._clock = QTimer(self)
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._tick)
        phone.after_call_work.connect(self._on_after_call_work)
        phone.status.connect(self._on_status)
        phone.signed_out.connect(lambda _e: self._close())
        self.hide()

    @property
    def work(self) -> events.AfterCallWork | None:
        return self._work

    def _on_after_call_work(self, event: events.AfterCallWork) -> None:
        self._work = event
        self.title.setText("<b>After-call work</b>: pick a wrap-up code")
        self.codes.clear()
        for code in event.codes:
            item = QListWidgetItem(code_name(code), self.codes)
            item.setData(Qt.ItemDataRole.UserRole, code)
        self.codes.setCurrentRow(-1)
        self.button.setEnabled(False)
        self._tick()
        self._clock.start()
        self.show()

    def _on_status(self, event: events.Status) -> None:
        if event.status != "after_call_work":
            self._close()

    def _close(self) -> None:
        self._work = None
        self._clock.stop()
        self.hide()

    def _focus_codes(self) -> None:
        if self._work is not None:
            self.codes.setFocus(Qt.FocusReason.ShortcutFocusReason)
            if self.codes.currentRow() < 0:
                self.codes.setCurrentRow(0)

    def _tick(self) -> None:
        if self._work is None:
            return
        left = int(max(0.0, self._work.deadline - time.time()))
        self.countdown.setText(f"back to your status in {left // 60}:{left % 60:02d}")

    def _wrap_up(self) -> None:
        item = self.codes.currentItem()
        if self._work is None or item is None:
            return
        self.button.setEnabled(False)  # once; the status change closes the form
        self._controller.wrap_up(item.data(Qt.ItemDataRole.UserRole))
