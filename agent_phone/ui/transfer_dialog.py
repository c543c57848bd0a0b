"""The transfer dialog: whom to hand the call to (or add to it).

Call ▸ Transfer… (Ctrl+T) lists the other agents and every queue, as the
platform named them at sign-in, and the numbers of recent calls; typing
filters the list, and a number typed in full can be picked as it is. With
"Consult first" (on by default for an agent) the customer is held while the
agent talks with the target, then completes or cancels from the call panel;
without it the call goes at once. Call ▸ Conference… (Ctrl+Shift+C) is the
same dialog without the queues: the agent or number picked joins the call.

Enter picks the selected entry; the arrow keys move from the filter field
into the list and back. It holds no call logic: ``chosen`` hands (kind,
target, consult) to the window, which passes it to the controller.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from agent_phone.protocol import PHONE_NUMBER_PATTERN

#: What an entry is: the kind of target and its name, as the protocol has them.
KIND = Qt.ItemDataRole.UserRole
TARGET = Qt.ItemDataRole.UserRole + 1
_LABELS = {"agent": "Agent", "queue": "Queue", "number": "Number"}


class TransferDialog(QDialog):
    #: (kind, target, consult): ``agent``/``queue``/``number``, its name.
    chosen = Signal(str, str, bool)

    def __init__(
        self,
        agents: list[str],
        queues: list[str],
        numbers: list[str],
        conference: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.conference = conference
        verb = "Add to the Call" if conference else "Transfer"
        self.setWindowTitle("Conference" if conference else "Transfer")
        self.setAccessibleName(self.windowTitle())
        self.filter = QLineEdit(self)
        self.filter.setObjectName("transferFilter")
        self.filter.setAccessibleName("Find an agent, a queue or a number")
        self.filter.setPlaceholderText("Name or number")
        label = QLabel("&To:", self)
        label.setBuddy(self.filter)
        self.targets = QListWidget(self)
        self.targets.setObjectName("transferTargets")
        self.targets.setAccessibleName("Targets")
        entries = [("agent", a) for a in agents]
        if not conference:
            entries += [("queue", q) for q in queues]
        entries += [("number", n) for n in numbers]
        for kind, target in entries:
            item = QListWidgetItem(f"{_LABELS[kind]}: {target}", self.targets)
            item.setData(KIND, kind)
            item.setData(TARGET, target)
        #: The entry for a number typed in full (not in the list already).
        self._typed: QListWidgetItem | None = None
        self.consult = QCheckBox("&Consult first (the customer is held meanwhile)", self)
        self.consult.setChecked(True)
        self.consult.setAccessibleName("Consult first")
        self.consult.setVisible(not conference)
        self.buttons = QDialogButtonBox(self)
        self.go: QPushButton = self.buttons.addButton(
            f"&{verb}", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.go.setObjectName("transferGo")
        self.go.setAccessibleName(verb)
        self.go.setDefault(True)
        cancel = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setAccessibleName("Cancel")
        self.buttons.accepted.connect(self._go)
        self.buttons.rejected.connect(self.reject)
        self.filter.textChanged.connect(self._filter)
        self.targets.currentItemChanged.connect(self._selected)
        self.targets.itemActivated.connect(lambda _item: self._go())
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addWidget(self.filter)
        layout.addWidget(self.targets)
        layout.addWidget(self.consult)
        layout.addWidget(self.buttons)
        self._filter("")
        self.filter.setFocus(Qt.FocusReason.OtherFocusReason)

    def _filter(self, text: str) -> None:
        """Show the entries that contain ``text``; a whole number typed is an
        entry of its own; the first one shown is selected."""
        needle = text.strip().lower()
        if self._typed is not None:
            self.targets.takeItem(self.targets.row(self._typed))
            self._typed = None
        listed = {self.targets.item(i).data(TARGET) for i in range(self.targets.count())}
        if re.fullmatch(PHONE_NUMBER_PATTERN, text.strip()) and text.strip() not in listed:
            self._typed = QListWidgetItem(f"Number: {text.strip()}")
            self._typed.setData(KIND, "number")
            self._typed.setData(TARGET, text.strip())
            self.targets.insertItem(0, self._typed)
        first: QListWidgetItem | None = None
        for i in range(self.targets.count()):
            item = self.targets.item(i)
            hidden = needle not in item.text().lower()
            item.setHidden(hidden)
            if not hidden and first is None:
                first = item
        # (None clears the selection: nothing matches; the stubs say otherwise)
        self.targets.setCurrentItem(first)  # type: ignore[arg-type]
        self._selected(first)

    def _selected(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        self.go.setEnabled(item is not None and not item.isHidden())
        # A consult is with an agent; a queue or a number is blind.
        self.consult.setEnabled(item is not None and item.data(KIND) == "agent")

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        # Up and Down from the filter field move in the list.
        if self.filter.hasFocus() and event.key() in (Qt.Key.Key_Down, Qt.Key.Key_Up):
            self.targets.setFocus(Qt.FocusReason.OtherFocusReason)
            self.targets.keyPressEvent(event)
            return
        super().keyPressEvent(event)

    def _go(self) -> None:
        item = self.targets.currentItem()
        if item is None or item.isHidden():
            return
        kind, target = item.data(KIND), item.data(TARGET)
        consult = kind == "agent" and self.consult.isChecked() and not self.conference
        self.chosen.emit(kind, target, consult)
        self.accept()
