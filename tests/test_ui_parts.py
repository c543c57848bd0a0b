"""The window's parts on one offscreen qapp, with no platform: fast checks.

The PySide6 refcount guard, the bridges, the indicator against a real
connection-state model, the settings registry and store, the keyring
fallback, sign-in messages, and the window's accessibility and size.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keyring.backends.fail
import pytest
import qasync
from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QAbstractButton, QComboBox, QLineEdit, QMessageBox, QWidget

from agent_phone.phone import events
from agent_phone.phone.connection_state import ConnectionStateModel, Indicator
from agent_phone.phone.errors import PhoneError
from agent_phone.phone.settings import PhoneSettings
from agent_phone.protocol import ConnectionState
from agent_phone.ui.bridges import ConnectionStateBridge, PhoneBridge
from agent_phone.ui.controller import PhoneController
from agent_phone.ui.indicator import ConnectionIndicator
from agent_phone.ui.main_window import MainWindow
from agent_phone.ui.passwords import PasswordVault
from agent_phone.ui.settings import (
    AUTO_ANSWER,
    MIC,
    PERSISTENT,
    REGISTRY,
    VOICE_PROCESSING,
    SettingsStore,
    phone_settings,
)
from agent_phone.ui.settings_dialog import SettingsDialog
from agent_phone.ui.sign_in import SignInDialog, SignInForm, explain
from agent_phone.ui.tasks import OwnedTasks
from agent_phone.ui.transfer_dialog import TransferDialog

# --- PySide6 6.12.0 drops a reference to True on every Signal.emit() -----------------


class _Emitter(QObject):
    flag = Signal(bool)
    bare = Signal()


def test_signal_emit_keeps_the_refcount_of_true(qapp):
    """Would catch the PySide6 6.12.0 bug that crashed calls under qasync
    with ``Fatal Python error: bool_dealloc`` (shared/notes/webrtc-and-qt.md)."""
    emitter = _Emitter()
    count = [0]

    def bump(*_args: Any) -> None:
        count[0] += 1  # keeps no reference to what it received

    emitter.flag.connect(bump)
    emitter.bare.connect(bump)
    n = 20000
    before = sys.getrefcount(True)
    for _ in range(n):
        emitter.flag.emit(True)
        emitter.bare.emit()
    drift = sys.getrefcount(True) - before
    assert count[0] == 2 * n
    assert abs(drift) < n // 10, (
        f"Signal.emit changed sys.getrefcount(True) by {drift} over {2 * n} emits "
        f"(PySide6 {pyside_version}); pin PySide6 below 6.12 on Python 3.11"
    )


def test_qasync_wakeups_keep_the_refcount_of_true(qapp):
    # qasync's call_soon_threadsafe emits a Qt signal: aiortc's path per audio frame.
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:

        async def many() -> int:
            done = asyncio.Event()
            calls = [0]

            def tick() -> None:
                calls[0] += 1
                if calls[0] == 3000:
                    done.set()

            for _ in range(3000):
                loop.call_soon_threadsafe(tick)
            await asyncio.wait_for(done.wait(), 10)
            return calls[0]

        # Earlier tests' garbage (reference cycles holding bools, e.g. a whole
        # GuiApp) must not be collected mid-measurement: it moved the count
        # by ~330 here once the window grew more parts.
        gc.collect()
        before = sys.getrefcount(True)
        assert loop.run_until_complete(many()) == 3000
        assert abs(sys.getrefcount(True) - before) < 300
    finally:
        loop.close()
        asyncio.set_event_loop(None)


# --- bridges ----------------------------------------------------------------------------


class _Observable:
    """The engine's observer interface, for feeding the bridge known events."""

    def __init__(self) -> None:
        self.observers: list[Callable[[events.PhoneEvent], None]] = []

    def subscribe(self, observer: Callable[[events.PhoneEvent], None]) -> Callable[[], None]:
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)

    def emit(self, event: events.PhoneEvent) -> None:
        for observer in list(self.observers):
            observer(event)


def test_phone_bridge_has_a_signal_for_every_engine_event(qapp):
    kinds = events.PhoneEvent.__subclasses__()
    bridge = PhoneBridge()
    assert set(bridge._signals) == set(kinds)  # a new event type needs its signal

    engine = _Observable()
    bridge.attach(engine)  # type: ignore[arg-type]
    got: list[Any] = []
    bridge.alerting.connect(got.append)
    bridge.any_event.connect(lambda e: got.append(("any", e.name)))
    alert = events.Alerting(
        call_id="c1",
        caller="Dana",
        queue="support",
        over_persistent_connection=True,
        delivery_ms=0.4,
        auto_answer=False,
    )
    engine.emit(alert)
    assert got == [alert, ("any", "alerting")]
    bridge.detach()
    assert engine.observers == []


def _report(state: str, reason: str, **kw: Any) -> ConnectionState:
    return ConnectionState(connection_id="c1", state=state, reason=reason, kept=True, **kw)


def test_indicator_shows_exactly_what_the_model_says(qapp, qtbot):
    now = [1000.0]
    model = ConnectionStateModel(persistent=True)
    history: list[Any] = []
    model.subscribe(history.append)
    bridge = ConnectionStateBridge()
    indicator = ConnectionIndicator(bridge, clock=lambda: now[0])
    qtbot.addWidget(indicator)
    bridge.attach(model)
    shown: list[Any] = []
    bridge.changed.connect(lambda _s: shown.append(indicator.shown_status))
    images: dict[Indicator, QImage] = {}

    def snap() -> None:
        images[indicator.shown_state] = indicator._signal.pixmap().toImage()

    snap()  # off
    model.signed_in()
    snap()  # inactive
    model.platform_reported(_report("connecting", "call"))
    snap()
    model.platform_reported(_report("active", "call", in_call=True))
    assert "A call is using it" in indicator.toolTip()
    model.platform_reported(_report("active", "call_ended", expires_at=1125.0))
    snap()
    assert "closes it in 2:05" in indicator.toolTip()
    assert "closes in 2:05" in indicator.accessibleDescription()
    now[0] += 5
    qtbot.waitUntil(lambda: "closes it in 2:00" in indicator.toolTip(), timeout=2500)
    model.setting_changed(False)
    model.platform_reported(_report("closed", "persistent_off"))
    model.signed_out("requested")

    assert shown == history  # every change, in order, nothing more
    assert [s.state for s in shown][-1] is Indicator.OFF
    # Four states, four different pictures.
    assert set(images) == set(Indicator)
    pictures = list(images.values())
    assert all(a != b for i, a in enumerate(pictures) for b in pictures[i + 1 :])


# --- settings -----------------------------------------------------------------------------


def test_every_setting_is_declared_once_with_type_default_and_description():
    keys = [s.key for s in REGISTRY]
    assert len(keys) == len(set(keys))
    for setting in REGISTRY:
        assert isinstance(setting.default, setting.type), setting.key
        assert setting.label and len(setting.description) > 10, setting.key
        assert "password" not in setting.key  # secrets live in the keyring
    assert PERSISTENT.default is True


def test_store_round_trip_and_frozen_phone_settings(qapp, tmp_path: Path):
    path = tmp_path / "settings.ini"
    store = SettingsStore.at(path)
    assert store.get(PERSISTENT) is True and store.get(AUTO_ANSWER) is False
    changed: list[str] = []
    store.changed.connect(changed.append)
    store.set(PERSISTENT, False)
    store.set(AUTO_ANSWER, True)
    store.set(MIC, "USB Headset")
    store.set(AUTO_ANSWER, True)  # unchanged: no signal
    assert changed == [PERSISTENT.key, AUTO_ANSWER.key, MIC.key]
    with pytest.raises(TypeError):
        store.set(PERSISTENT, "no")  # type: ignore[arg-type]

    again = SettingsStore.at(path)  # booleans come back as booleans from the INI file
    assert again.get(PERSISTENT) is False and again.get(AUTO_ANSWER) is True
    settings = phone_settings(again, "ws://x/ws", "bob", "secret", auto_answer=False)
    assert isinstance(settings, PhoneSettings)
    assert (settings.persistent, settings.auto_answer, settings.mic_device) == (
        False,
        False,
        "USB Headset",
    )
    assert "secret" not in path.read_text()
    # Noise suppression and AGC: on unless switched off, and the engine gets it.
    assert settings.voice_processing is True
    again.set(VOICE_PROCESSING, False)
    assert phone_settings(again, "ws://x/ws", "bob", "secret").voice_processing is False
    dialog = SettingsDialog(again)
    assert dialog.voice_processing_ticked() is False  # the box shows the stored value
    dialog.deleteLater()


def test_without_a_keyring_nothing_is_stored_and_the_dialog_says_so(qapp, qtbot):
    vault = PasswordVault(keyring.backends.fail.Keyring())
    assert not vault.available
    assert asyncio.run(vault.load("ws://x/ws", "bob")) is None
    asyncio.run(vault.save("ws://x/ws", "bob", "pw"))  # a no-op, no error
    dialog = SignInDialog(keyring_available=False)
    qtbot.addWidget(dialog)
    assert not dialog.remember.isEnabled()
    assert "no system keyring" in dialog.remember.text()
    assert "pw" not in repr(SignInForm("ws://x/ws", "bob", "pw"))


def test_sign_in_errors_read_as_sentences():
    assert "Wrong agent name or password" in explain("wrong user name or password", "ws://p")
    unreachable = explain("cannot reach the platform at ws://p: refused", "ws://p")
    assert unreachable.startswith("Cannot reach the platform at ws://p.")
    assert explain("odd", "ws://p") == "Sign-in failed: odd"


def test_owned_tasks_log_and_report_failures(qapp, caplog):
    async def go() -> list[str]:
        tasks = OwnedTasks("test")
        seen: list[str] = []
        tasks.failed.connect(seen.append)

        async def refused() -> None:
            raise PhoneError("there is no call")

        async def broken() -> None:
            raise ValueError("bug")

        tasks.spawn("hang up", refused())
        tasks.spawn("do a thing", broken())
        await asyncio.sleep(0.01)
        assert len(tasks) == 0
        return seen

    seen = asyncio.run(go())
    assert seen[0] == "Cannot hang up: there is no call"
    assert seen[1].startswith("Could not do a thing (unexpected error: bug)")
    assert "do a thing failed" in caplog.text


# --- the window ---------------------------------------------------------------------------


@pytest.fixture
def main_window(qapp, qtbot, tmp_path: Path) -> MainWindow:
    phone, connection = PhoneBridge(), ConnectionStateBridge()
    controller = PhoneController(phone, connection)
    store = SettingsStore.at(tmp_path / "settings.ini")
    window = MainWindow(
        controller, phone, connection, store, PasswordVault(keyring.backends.fail.Keyring())
    )
    qtbot.addWidget(window)
    window._keep = (phone, connection, controller)  # type: ignore[attr-defined]
    return window


def _unnamed_controls(root: QWidget) -> list[str]:
    controls = root.findChildren(QAbstractButton) + root.findChildren(QLineEdit)
    controls += root.findChildren(QComboBox)
    return [
        f"{type(c).__name__} {c.objectName() or c.text() if hasattr(c, 'text') else ''}"
        for c in controls
        if not c.accessibleName()
        and not isinstance(c.parent(), QComboBox)
        and not c.objectName().startswith("qt_")  # Qt's own, e.g. the menu bar's ">>"
    ]


def test_menu_bar_indicator_survives_garbage_collection(main_window):
    main_window.show()
    gc.collect()
    corner = main_window.menuBar().cornerWidget(Qt.Corner.TopRightCorner)
    assert corner is main_window.indicator and corner.isVisible()
    assert main_window.indicator.shown_state is Indicator.OFF


def test_every_control_is_named_and_the_window_fits_a_small_laptop(main_window, qtbot):
    main_window.show()
    assert _unnamed_controls(main_window) == []
    hint = main_window.minimumSizeHint()
    assert hint.width() <= 1366 and hint.height() <= 700
    assert main_window.width() <= 1366 and main_window.height() <= 700
    settings = SettingsDialog(main_window._store)
    sign_in = SignInDialog(keyring_available=True)
    transfer = TransferDialog(["carol"], ["support"], ["+15550100"])
    for dialog in (settings, sign_in, transfer):
        qtbot.addWidget(dialog)
        dialog.show()
        assert _unnamed_controls(dialog) == []
        assert dialog.sizeHint().height() <= 700, type(dialog).__name__
    # Every call command has a shortcut, and the menu reaches all of them.
    for action in main_window.call_panel.call_actions.all():
        assert not action.shortcut().isEmpty(), action.text()
    menu_actions = {a.text() for m in main_window.menuBar().actions() for a in m.menu().actions()}
    assert {"&Answer", "&Decline", "&Hang Up", "&Mute", "Se&ttings…", "&Quit"} <= menu_actions


def test_f1_lists_the_shortcuts_without_blocking(main_window, qtbot):
    main_window.show()
    main_window.shortcuts_action.trigger()  # returns at once: open(), not exec()
    box = main_window.findChild(QMessageBox, "shortcutsBox")
    assert box is not None and box.isVisible()
    assert "Ctrl+Return" in box.text() and "Ctrl+Backspace" in box.text()
    box.close()


def test_about_box_shows_the_version(main_window, qtbot):
    from agent_phone import __version__

    main_window.show()
    main_window.about_action.trigger()
    box = main_window.findChild(QMessageBox, "aboutBox")
    assert box is not None and box.isVisible()
    assert __version__ in box.text()
    box.close()


def test_neutral_icons_are_retinted_for_a_dark_palette(qapp):
    from PySide6.QtGui import QColor, QPalette

    from agent_phone.ui.indicator import icon_pixmap, is_dark

    def brightest(name: str, palette: QPalette) -> int:
        image = icon_pixmap(name, palette).toImage()
        return max(
            QColor(image.pixel(x, y)).lightness()
            for x in range(image.width())
            for y in range(image.height())
            if QColor.fromRgba(image.pixel(x, y)).alpha() > 128
        )

    light = QPalette(QColor("#efefef"))
    dark = QPalette(QColor("#2b2b2b"))
    dark.setColor(QPalette.ColorRole.WindowText, QColor("#e8e8e8"))
    assert not is_dark(light) and is_dark(dark)
    for name in ("phone.svg", "signal-off.svg", "signal-inactive.svg"):
        assert brightest(name, dark) > max(160, brightest(name, light)), name
    # The coloured states keep their colour on both.
    assert brightest("signal-active.svg", light) == brightest("signal-active.svg", dark)
