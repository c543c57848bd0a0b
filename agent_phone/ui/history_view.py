"""The Call History window: the calls ``CallHistory`` keeps, newest first.

A table with one row per call (time, caller, queue, talk time, answered or
missed, how it ended, over the kept connection, delivery time). It follows
the store: a call that ends while the window is open appears at the top.
Opened from Phone -> Call History (Ctrl+Shift+H); non-modal, so the agent can keep
it beside the main window; keyboard: Tab into the table, arrows to move,
Esc to close.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from agent_phone.phone.history import CallHistory, CallRecord
from agent_phone.protocol import PHONE_NUMBER_PATTERN
from agent_phone.ui.call_panel import END_REASONS

logger = logging.getLogger(__name__)

COLUMNS = (
    "Time",
    "Caller",
    "Queue",
    "Duration",
    "Result",
    "How it ended",
    "Kept connection",
    "Delivery",
)
#: At most this many rows are shown (the store keeps up to its own limit).
MAX_ROWS = 500


def _duration(seconds: float) -> str:
    # Whole seconds, cut as the call panel's clock cuts them: the same call
    # reads the same in both.
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def row_texts(record: CallRecord) -> list[str]:
    """The table's cells for one call."""
    when = time.localtime(record.time)
    today = time.localtime()
    fmt = "%H:%M:%S" if when[:3] == today[:3] else "%Y-%m-%d %H:%M"
    result = {"answered": "Answered", "declined": "Declined", "missed": "Missed"}[record.outcome]
    if record.answered and record.auto_answered:
        result = "Answered (auto)"
    reason = END_REASONS.get(record.end_reason, record.end_reason.replace("_", " ").capitalize())
    return [
        time.strftime(fmt, when),
        record.caller,
        "(outbound)" if record.direction == "outbound" else record.queue,
        _duration(record.duration_s) if record.answered else "",
        result,
        reason.rstrip("."),
        "Yes" if record.over_persistent_connection else "No",
        f"{record.delivery_ms:.1f} ms",
    ]


class HistoryDialog(QDialog):
    #: Emitted after the table was refilled (for tests and screenshots).
    updated = Signal()
    #: "Call back" on a call whose other end is a number: that number.
    call_back = Signal(str)

    def __init__(self, history: CallHistory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._history = history
        self._setup_ui()
        self._fill()
        self._unsubscribe: Callable[[], None] | None = history.subscribe(self._on_record)
        self.finished.connect(self._on_finished)

    def _setup_ui(self) -> None:
        self.setWindowTitle("Call History - Agent Phone")
        self.setAccessibleName("Call history")
        layout = QVBoxLayout(self)
        self.summary = QLabel(self)
        self.summary.setAccessibleName("Call history summary")
        layout.addWidget(self.summary)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setAccessibleName("Calls, newest first")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setTabKeyNavigation(False)  # Tab leaves the table, arrows move in it
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setAccessibleName("Close the call history")
        buttons.rejected.connect(self.reject)
        self.call_back_button = buttons.addButton(
            "Call &Back", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.call_back_button.setObjectName("callBack")
        self.call_back_button.setToolTip("Call the selected call's number (Alt+B)")
        self.call_back_button.setEnabled(False)
        self.call_back_button.clicked.connect(self._on_call_back)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemActivated.connect(lambda _item: self._on_call_back())
        layout.addWidget(buttons)
        self.resize(900, 420)

    def _fill(self) -> None:
        records = self._history.records()[:MAX_ROWS]
        self.table.setRowCount(len(records))
        for row, record in enumerate(records):
            missed = not record.answered
            for column, text in enumerate(row_texts(record)):
                item = QTableWidgetItem(text)
                if missed and column == 4:
                    item.setForeground(QColor("#c62828"))
                if column in (3, 7):
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(row, column, item)
        answered = sum(1 for r in records if r.answered)
        self.summary.setText(
            f"{len(records)} calls: {answered} answered, {len(records) - answered} not answered."
            if records
            else "No calls yet."
        )
        self.updated.emit()

    def selected_number(self) -> str | None:
        """The selected call's other end, when it is a number one can dial."""
        row = self.table.currentRow()
        if row < 0 or not self.table.selectionModel().hasSelection():
            return None
        peer = _text(self.table.item(row, 1))
        return peer if re.fullmatch(PHONE_NUMBER_PATTERN, peer) else None

    def _selection_changed(self) -> None:
        self.call_back_button.setEnabled(self.selected_number() is not None)

    def _on_call_back(self) -> None:
        number = self.selected_number()
        if number is not None:
            self.call_back.emit(number)

    def rows(self) -> list[list[str]]:
        """What the table shows, cell by cell (for tests)."""
        return [
            [_text(self.table.item(r, c)) for c in range(self.table.columnCount())]
            for r in range(self.table.rowCount())
        ]

    def _on_record(self, _record: CallRecord) -> None:
        self._fill()

    def _on_finished(self, _result: int) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def _text(item: QTableWidgetItem | None) -> str:
    return item.text() if item is not None else ""
