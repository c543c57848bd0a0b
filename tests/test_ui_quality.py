"""The call-quality icon and the call panel's poor-network line, offscreen.

The panel is the real one, on a real ``PhoneBridge`` fed the engine's event
dataclasses through the bridge's observer interface (as the engine feeds
it), and a controller with no engine: no platform, no audio, fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtGui import QColor, QIcon, QPalette

from agent_phone.phone import events
from agent_phone.resources import resource
from agent_phone.ui.bridges import ConnectionStateBridge, PhoneBridge
from agent_phone.ui.call_panel import CallPanel, CallView
from agent_phone.ui.controller import PhoneController
from agent_phone.ui.quality_view import (
    BARS,
    POOR_NETWORK_TEXT,
    QualityGrade,
    QualityIndicator,
    describe,
    icon_pixmap,
)


def report(call_id: str = "c1", grade: str = "good", **kw: Any) -> events.Quality:
    figures: dict[str, Any] = {
        "final": False,
        "packets_received": 979,
        "packets_lost": 21,
        "fraction_lost": 0.021,
        "jitter_ms": 12.6,
        "rtt_ms": 61.8,
        "packets_sent": 1000,
        "remote_packets_lost": 10,
        "remote_fraction_lost": 0.0098,
        "total_samples_received": 480_000,
        "concealed_samples": 2_100,
        "fec_recovered_samples": 7_680,
        "jitter_buffer_delay_ms": 45.2,
        "jitter_buffer_target_delay_ms": 40.0,
        "concealed_ratio": 0.0041,
    }
    figures.update(kw)
    return events.Quality(call_id=call_id, grade=grade, **figures)


# --- the icon ------------------------------------------------------------------------------


def filled_bars(grade: QualityGrade) -> int:
    """Bars whose middle is solid, on the icon drawn large."""
    image = QIcon(str(resource("icons", f"quality-{grade.value}.svg"))).pixmap(96).toImage()
    scale = image.width() / 24
    # Each bar's middle column, at a height all three bars cover (viewBox units).
    return sum(
        QColor.fromRgba(image.pixel(int(x * scale), int(17.5 * scale))).alpha() > 200
        for x in (5, 12, 19)
    )


@pytest.mark.parametrize(
    ("grade", "name", "meaning"),
    [
        ("good", "Call quality: good", "clearly"),
        ("fair", "Call quality: fair", "Small gaps or a slight delay"),
        ("poor", "Call quality: poor", "may hear gaps"),
    ],
)
def test_each_grade_has_its_shape_name_and_tooltip(qapp, qtbot, grade, name, meaning):
    icon = QualityIndicator()
    qtbot.addWidget(icon)
    assert icon.grade is QualityGrade.UNKNOWN
    icon.show_report(report(grade=grade))
    assert icon.grade is QualityGrade(grade)
    assert icon.accessibleName() == name
    tip = icon.toolTip().splitlines()
    assert tip[0] == name and meaning in tip[1]
    assert icon.accessibleDescription() == icon.toolTip()
    assert filled_bars(icon.grade) == BARS[icon.grade]


def test_four_states_four_pictures_and_unknown_is_outlines(qapp, qtbot):
    icon = QualityIndicator()
    qtbot.addWidget(icon)
    pictures = {}
    for grade in QualityGrade:
        if grade is QualityGrade.UNKNOWN:
            icon.reset()
        else:
            icon.show_report(report(grade=grade.value))
        pictures[icon.grade] = icon.pixmap().toImage()
    assert set(pictures) == set(QualityGrade)
    images = list(pictures.values())
    assert all(a != b for i, a in enumerate(images) for b in images[i + 1 :])
    assert [filled_bars(g) for g in QualityGrade] == [0, 3, 2, 1]
    assert icon.accessibleName() == "Call quality: poor"
    icon.reset()
    assert icon.grade is QualityGrade.UNKNOWN and icon.report is None
    assert icon.accessibleName() == "Call quality: not measured yet"
    assert icon.toolTip().startswith("Call quality: not measured yet\n")


def test_unknown_follows_a_dark_palette(qapp):
    light = QPalette(QColor("#efefef"))
    dark = QPalette(QColor("#2b2b2b"))
    dark.setColor(QPalette.ColorRole.WindowText, QColor("#e8e8e8"))

    def brightest(grade: QualityGrade, palette: QPalette) -> int:
        image = icon_pixmap(grade, palette).toImage()
        return max(
            QColor(image.pixel(x, y)).lightness()
            for x in range(image.width())
            for y in range(image.height())
            if QColor.fromRgba(image.pixel(x, y)).alpha() > 128
        )

    assert brightest(QualityGrade.UNKNOWN, dark) > max(160, brightest(QualityGrade.UNKNOWN, light))
    assert brightest(QualityGrade.POOR, dark) == brightest(QualityGrade.POOR, light)


def test_the_tooltip_speaks_plainly_and_skips_what_is_not_known():
    assert describe(report(grade="fair")).splitlines() == [
        "Call quality: fair",
        "Small gaps or a slight delay are possible.",
        "Network loss: 2.1 % (1.6 % rebuilt from redundancy)",
        "Audio concealed: 0.4 %",
        "Jitter: 13 ms; buffering 45 ms (aiming for 40 ms)",
        "Round trip: 62 ms",
        "The customer's side lost 1.0 % of your audio",
    ]
    early = report(
        grade="good",
        fraction_lost=0.0,
        packets_lost=0,
        fec_recovered_samples=0,
        jitter_ms=None,
        rtt_ms=None,
        remote_fraction_lost=None,
        jitter_buffer_target_delay_ms=None,
        concealed_ratio=0.0,
    )
    assert describe(early).splitlines()[2:] == [
        "Network loss: 0 %",
        "Audio concealed: 0 %",
        "Buffering: 45 ms",
    ]
    nothing = report(packets_received=0, packets_lost=0, total_samples_received=0)
    lines = describe(nothing).splitlines()
    assert not any(line.startswith(("Network loss", "Audio concealed")) for line in lines)
    assert "12 %" in describe(report(fraction_lost=0.1234))


# --- in the call panel ----------------------------------------------------------------------


class _Engine:
    """The engine's observer interface, to feed the bridge events."""

    def __init__(self) -> None:
        self.observers: list[Callable[[events.PhoneEvent], None]] = []

    def subscribe(self, observer: Callable[[events.PhoneEvent], None]) -> Callable[[], None]:
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)

    def emit(self, event: events.PhoneEvent) -> None:
        for observer in list(self.observers):
            observer(event)


@pytest.fixture
def panel(qapp, qtbot) -> tuple[CallPanel, _Engine]:
    phone, connection = PhoneBridge(), ConnectionStateBridge()
    controller = PhoneController(phone, connection)
    engine = _Engine()
    phone.attach(engine)  # type: ignore[arg-type]
    widget = CallPanel(phone, controller)
    widget._keep = (phone, connection, controller)  # type: ignore[attr-defined]
    qtbot.addWidget(widget)
    widget.show()
    return widget, engine


def change(call_id: str, state: str, previous: str | None, **kw: Any) -> events.CallChanged:
    return events.CallChanged(
        call_id=call_id,
        state=state,
        direction="inbound",
        peer="Dana Whitfield",
        previous=previous,
        reason=kw.pop("reason", state),
        queue="support",
        over_persistent_connection=True,
        delivery_ms=0.9,
        **kw,
    )


def alerting(call_id: str) -> events.CallChanged:
    return change(call_id, "alerting", None)


def answered(call_id: str) -> events.CallChanged:
    return change(call_id, "connected", "alerting", answered=True)


def test_the_panel_shows_the_current_calls_quality_only_while_connected(panel):
    panel, engine = panel
    icon = panel.quality
    assert panel.view is CallView.IDLE and not icon.isVisible()

    engine.emit(alerting("c1"))
    assert panel.view is CallView.INCOMING and not icon.isVisible()
    engine.emit(answered("c1"))
    assert panel.view is CallView.CONNECTED and icon.isVisible() and panel.elapsed.isVisible()
    assert icon.grade is QualityGrade.UNKNOWN
    # Beside the talk time, on its line.
    assert abs(icon.geometry().center().y() - panel.elapsed.geometry().center().y()) <= 2
    assert icon.geometry().left() > panel.elapsed.geometry().right()

    engine.emit(report("c1", "fair"))
    assert icon.grade is QualityGrade.FAIR and icon.accessibleName() == "Call quality: fair"
    assert POOR_NETWORK_TEXT not in panel.detail.text()

    # Another call's report (a late one, another phone's) changes nothing.
    engine.emit(report("c0", "poor"))
    assert icon.grade is QualityGrade.FAIR and icon.report.call_id == "c1"
    assert POOR_NETWORK_TEXT not in panel.detail.text()

    engine.emit(report("c1", "poor"))
    engine.emit(report("c1", "poor"))
    assert icon.grade is QualityGrade.POOR
    assert panel.detail.text().count(POOR_NETWORK_TEXT) == 1
    assert "You can hear" not in panel.detail.text().split(POOR_NETWORK_TEXT)[1]

    engine.emit(change("c1", "held", "connected", answered=True))
    assert panel.detail.text().count(POOR_NETWORK_TEXT) == 1
    engine.emit(change("c1", "connected", "held", answered=True))

    engine.emit(report("c1", "good"))
    assert icon.grade is QualityGrade.GOOD
    assert POOR_NETWORK_TEXT not in panel.detail.text()
    assert "Answered" in panel.detail.text()  # the other facts are still there

    engine.emit(report("c1", "poor", final=True))
    engine.emit(
        change("c1", "ended", "connected", reason="customer_hangup", answered=True, duration_s=42)
    )
    assert panel.view is CallView.ENDED and not icon.isVisible()
    assert icon.grade is QualityGrade.POOR  # the final report's, kept but not shown
    assert POOR_NETWORK_TEXT not in panel.detail.text()

    # The next call starts unmeasured, and the last call's reports no longer count.
    engine.emit(alerting("c2"))
    assert icon.grade is QualityGrade.UNKNOWN and icon.report is None
    assert not icon.isVisible() and POOR_NETWORK_TEXT not in panel.detail.text()
    engine.emit(answered("c2"))
    engine.emit(report("c1", "poor", final=True))
    assert icon.isVisible() and icon.grade is QualityGrade.UNKNOWN
    assert POOR_NETWORK_TEXT not in panel.detail.text()
