"""The call-quality icon beside the talk time, from the engine's ``quality`` reports.

Three rising bars, as an agent reads a phone's signal: all three filled and
green for ``good``, two and amber for ``fair``, one and red for ``poor``, and
three grey outlines before a call's first report. The number of filled bars
differs as well as the colour, and the accessible name, description and
tooltip say it in words. The tooltip turns the report's figures
(agent_phone/media/quality.py) into sentences an agent can act on.

The widget shows the report it is given; which call's reports it gets is
the call panel's business (``CallPanel._on_quality``).
"""

from __future__ import annotations

import enum
import logging

from PySide6.QtCore import QEvent, QSize
from PySide6.QtGui import QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QLabel, QWidget

from agent_phone.phone import events
from agent_phone.resources import resource
from agent_phone.ui.indicator import is_dark

logger = logging.getLogger(__name__)

#: A little taller than the menu-bar icons: it sits beside the enlarged talk time.
ICON_SIZE = QSize(22, 22)

#: The call panel's line while the grade is poor.
POOR_NETWORK_TEXT = "Poor network: the customer may hear gaps. Check your Wi-Fi or VPN."

#: The engine's audio is Opus at 48 kHz (``total_samples_received`` counts these).
SAMPLE_RATE_HZ = 48000


class QualityGrade(enum.Enum):
    UNKNOWN = "unknown"
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"


#: Filled bars per grade: the shape that tells the grades apart without colour.
BARS = {QualityGrade.UNKNOWN: 0, QualityGrade.GOOD: 3, QualityGrade.FAIR: 2, QualityGrade.POOR: 1}

GRADE_TEXT = {
    QualityGrade.UNKNOWN: "not measured yet",
    QualityGrade.GOOD: "good",
    QualityGrade.FAIR: "fair",
    QualityGrade.POOR: "poor",
}

#: What the grade means for the conversation, for the tooltip and screen readers.
GRADE_MEANING = {
    QualityGrade.UNKNOWN: "The first figures come a few seconds into the call.",
    QualityGrade.GOOD: "The customer hears you clearly.",
    QualityGrade.FAIR: "Small gaps or a slight delay are possible.",
    QualityGrade.POOR: "The customer may hear gaps, or you may talk over each other.",
}


def grade_of(report: events.Quality | None) -> QualityGrade:
    if report is None:
        return QualityGrade.UNKNOWN
    try:
        return QualityGrade(report.grade)
    except ValueError:
        logger.warning("%s: unknown quality grade %r", report.call_id, report.grade)
        return QualityGrade.UNKNOWN


def percent(fraction: float) -> str:
    """A share as an agent would say it: one decimal below 10 %, none above."""
    value = fraction * 100
    if value <= 0:
        return "0 %"
    if value < 0.1:
        return "under 0.1 %"
    return f"{value:.1f} %" if value < 10 else f"{value:.0f} %"


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


def figures(report: events.Quality) -> list[str]:
    """The report's figures in plain words, one a line; figures not known are left out.
    Loss and concealment are counted since the call was answered; jitter,
    buffering and the round trip are the latest values."""
    lines = []
    if report.packets_received + report.packets_lost > 0:
        loss = f"Network loss: {percent(report.fraction_lost)}"
        if report.fec_recovered_samples > 0 and report.total_samples_received > 0:
            rebuilt = report.fec_recovered_samples / report.total_samples_received
            loss += f" ({percent(rebuilt)} rebuilt from redundancy)"
        lines.append(loss)
    if report.total_samples_received > 0:
        lines.append(f"Audio concealed: {percent(report.concealed_ratio)}")
    delay = []
    if report.jitter_ms is not None:
        delay.append(f"Jitter: {_ms(report.jitter_ms)}")
    if report.jitter_buffer_delay_ms is not None:
        buffering = _ms(report.jitter_buffer_delay_ms)
        if report.jitter_buffer_target_delay_ms is not None:
            buffering += f" (aiming for {_ms(report.jitter_buffer_target_delay_ms)})"
        delay.append(f"buffering {buffering}" if delay else f"Buffering: {buffering}")
    if delay:
        lines.append("; ".join(delay))
    if report.rtt_ms is not None:
        lines.append(f"Round trip: {_ms(report.rtt_ms)}")
    if report.remote_fraction_lost is not None:
        lines.append(
            f"The customer's side lost {percent(report.remote_fraction_lost)} of your audio"
        )
    return lines


def summary(report: events.Quality | None) -> str:
    """One line: the accessible name."""
    return f"Call quality: {GRADE_TEXT[grade_of(report)]}"


def describe(report: events.Quality | None) -> str:
    """The tooltip: the grade, what it means, and the figures behind it."""
    grade = grade_of(report)
    lines = [summary(report), GRADE_MEANING[grade]]
    if report is not None:
        lines += figures(report)
    return "\n".join(lines)


def _icon(grade: QualityGrade) -> QIcon:
    name = f"quality-{grade.value}.svg"
    icon = QIcon(str(resource("icons", name)))
    if icon.isNull():  # the SVG plugin is missing from the Qt install
        logger.error("cannot load icon %s", name)
    return icon


def icon_pixmap(grade: QualityGrade, palette: QPalette) -> QPixmap:
    """The grade's icon, readable on the palette's window colour: the grey
    outlines of ``unknown`` take the text colour on a dark palette, as the
    menu-bar indicator's neutral icons do (``indicator.icon_pixmap``)."""
    pixmap = _icon(grade).pixmap(ICON_SIZE)
    if grade is QualityGrade.UNKNOWN and is_dark(palette):
        tint = palette.color(QPalette.ColorRole.WindowText)
        tint.setAlphaF(0.8)
        painter = QPainter(pixmap)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
        painter.fillRect(pixmap.rect(), tint)
        painter.end()
    return pixmap


class QualityIndicator(QLabel):
    """The signal-bars icon for the current call's quality."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._report: events.Quality | None = None
        self._grade = QualityGrade.UNKNOWN
        self.setObjectName("qualityIcon")
        self.setFixedSize(ICON_SIZE)
        self._show()

    @property
    def grade(self) -> QualityGrade:
        """The grade on screen."""
        return self._grade

    @property
    def report(self) -> events.Quality | None:
        """The report shown (None before a call's first one)."""
        return self._report

    def reset(self) -> None:
        """A new call: nothing measured yet."""
        self._report = None
        self._set_grade(QualityGrade.UNKNOWN, "new call")
        self._show()

    def show_report(self, report: events.Quality) -> None:
        self._report = report
        self._set_grade(grade_of(report), report.call_id + (" final" if report.final else ""))
        self._show()

    def _set_grade(self, grade: QualityGrade, why: str) -> None:
        if grade is not self._grade:
            logger.info("call quality %s -> %s (%s)", self._grade.value, grade.value, why)
            self._grade = grade

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt's name)
        super().changeEvent(event)
        if event.type() is QEvent.Type.PaletteChange and hasattr(self, "_grade"):
            self._show()  # a light/dark theme switch: the grey outlines follow it

    def _show(self) -> None:
        self.setPixmap(icon_pixmap(self._grade, self.palette()))
        tip = describe(self._report)
        self.setToolTip(tip)
        self.setAccessibleName(summary(self._report))
        self.setAccessibleDescription(tip)
