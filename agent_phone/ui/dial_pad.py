"""The dial pad: the agent types or clicks a number and calls it.

A small dialog (Call ▸ Dial…, Ctrl+D): a number field with the keys of a
phone under it, and a Call button that is enabled only while the number is
one the platform accepts (an optional ``+`` and 2 to 15 digits, the
protocol's own rule). Enter calls, Escape closes. It holds no call logic:
``number`` is handed to the controller's ``dial``, and the call panel shows
the call from the engine's events.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from agent_phone.protocol import PHONE_NUMBER_PATTERN

#: The keys, a phone's layout; ``+`` on the star key's place is what a
#: number can hold (``*`` and ``#`` are DTMF, sent during a call).
DIAL_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "+", "0", "⌫")


class DialPad(QDialog):
    #: The number to call, when the agent presses Call (or Enter).
    dial = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Dial")
        self.setAccessibleName("Dial pad")
        self.number = QLineEdit(self)
        self.number.setObjectName("dialNumber")
        self.number.setAccessibleName("Number to call")
        self.number.setPlaceholderText("+15550100")
        # Typing keeps to what a number may hold; the Call button to whole numbers.
        self.number.setValidator(QRegularExpressionValidator(r"^\+?[0-9]{0,15}$", self.number))
        label = QLabel("&Number:", self)
        label.setBuddy(self.number)
        grid = QGridLayout()
        grid.setSpacing(4)
        #: The keys by their text.
        self.keys: dict[str, QToolButton] = {}
        for index, text in enumerate(DIAL_KEYS):
            key = QToolButton(self)
            key.setText(text)
            key.setObjectName(f"dial_{'backspace' if text == '⌫' else text}")
            key.setAccessibleName("Delete" if text == "⌫" else f"Key {text}")
            key.setFixedSize(48, 36)
            key.clicked.connect(lambda _c=False, t=text: self._key(t))
            grid.addWidget(key, index // 3, index % 3)
            self.keys[text] = key
        self.buttons = QDialogButtonBox(self)
        self.call_button: QPushButton = self.buttons.addButton(
            "&Call", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.call_button.setObjectName("dialCall")
        self.call_button.setDefault(True)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._call)
        self.buttons.rejected.connect(self.reject)
        self.number.textChanged.connect(self._changed)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addWidget(self.number)
        layout.addLayout(grid)
        layout.addWidget(self.buttons)
        self._changed(self.number.text())
        self.number.setFocus(Qt.FocusReason.OtherFocusReason)

    def _key(self, text: str) -> None:
        if text == "⌫":
            self.number.backspace()
        else:
            self.number.insert(text)
        self.number.setFocus(Qt.FocusReason.OtherFocusReason)

    def _changed(self, text: str) -> None:
        self.call_button.setEnabled(re.fullmatch(PHONE_NUMBER_PATTERN, text) is not None)

    def _call(self) -> None:
        number = self.number.text()
        if re.fullmatch(PHONE_NUMBER_PATTERN, number):
            self.dial.emit(number)
            self.accept()
