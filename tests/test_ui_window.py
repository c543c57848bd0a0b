"""The real window against the real platform and caller processes.

Each test builds the app's parts as ``run_gui`` does (``GuiApp``) on one
offscreen ``qapp`` and drives it with qtbot's clicks and key presses. The
asyncio side runs on a qasync ``QEventLoop`` over that qapp: a test's steps
are one coroutine given to ``loop.run_until_complete``, so Qt events and
asyncio tasks are processed together, exactly as in the app. Waits are
``until(...)`` polls on that loop (never ``qtbot.waitUntil``, whose nested
event loop would re-enter running asyncio tasks), each with a time limit.
Blocking helpers of the process fixtures run in threads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import keyring.backend
import pytest
import qasync
from PySide6.QtCore import QEvent, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from agent_phone.app import parse_args
from agent_phone.phone import events
from agent_phone.phone.connection_state import Indicator
from agent_phone.ui.app import GuiApp
from agent_phone.ui.call_panel import CallView
from agent_phone.ui.controller import SessionState
from agent_phone.ui.passwords import PasswordVault
from agent_phone.ui.settings import (
    AUTO_ANSWER,
    CA_FILE,
    PERSISTENT,
    RECONNECT_ATTEMPTS,
    USER,
    SettingsStore,
)
from agent_phone.ui.settings_dialog import SettingsDialog


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring backend that exists (priority > 0) and keeps passwords in a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.saved: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.saved.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.saved[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.saved.pop((service, username), None)


@pytest.fixture
def qloop(qapp: Any) -> Iterator[asyncio.AbstractEventLoop]:
    # As run_gui: the loop ends when the test's steps do, not when Qt sees
    # no window (closing the last one would stop the loop under a test).
    qapp.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    yield loop
    # As asyncio.run does: whatever is left (aiortc's own tasks that a close
    # cancelled but did not await) finishes on this loop, not at interpreter exit.
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in left:
        task.cancel()
    if left:
        gather = asyncio.gather(*left, return_exceptions=True)
        loop.run_until_complete(asyncio.wait_for(gather, 5))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    asyncio.set_event_loop(None)
    # The test's Qt objects go now, while the app is idle: deferred deletes
    # first, then Python's collection of the wrappers, not at some random
    # point of the next test's event processing.
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    QApplication.processEvents()


def run(loop: asyncio.AbstractEventLoop, coro: Any, timeout: float = 45.0) -> Any:
    """Run one test's steps on the qasync loop, bounded."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def _args(**overrides: Any) -> argparse.Namespace:
    """``agent-phone``'s own command line (no options), with ``overrides``."""
    args = parse_args([])
    vars(args).update(overrides)
    return args


class Recorder:
    """Every connection status the engine reported and every one the indicator showed."""

    def __init__(self, gui: GuiApp) -> None:
        self.engine: list[tuple[Any, ...]] = []
        self.shown: list[tuple[Any, ...]] = []
        gui.phone.connection.connect(self._on_engine)
        indicator = gui.window.indicator
        # Connected after the indicator's own slot, so it has already updated.
        gui.connection.changed.connect(lambda _s: self.shown.append(self._key(indicator)))

    @staticmethod
    def _key(indicator: Any) -> tuple[Any, ...]:
        s = indicator.shown_status
        return (s.state.value, s.reason, s.in_call, s.expires_at, s.connection_id)

    def _on_engine(self, e: events.Connection) -> None:
        self.engine.append((e.state, e.reason, e.in_call, e.expires_at, e.connection_id))

    def states(self) -> list[str]:
        return [s[0] for s in self.shown]

    def steps(self) -> list[tuple[str, str]]:
        """(state, reason) as shown, repeats of the same pair merged."""
        out: list[tuple[str, str]] = []
        for s in self.shown:
            if not out or out[-1] != s[:2]:
                out.append(s[:2])
        return out


@contextlib.asynccontextmanager
async def window(tmp_path: Path, **args: Any) -> AsyncIterator[GuiApp]:
    store = SettingsStore.at(tmp_path / "settings.ini")
    gui = GuiApp(
        _args(**args),
        store,
        PasswordVault(MemoryKeyring()),
        history_path=tmp_path / "call-history.jsonl",
    )
    gui.window.show()
    try:
        yield gui
    finally:
        gui.window.close()
        await gui.close()
        gui.window.deleteLater()


async def sign_in_with_dialog(
    gui: GuiApp, url: str, user: str, password: str, remember: bool = False
) -> None:
    dialog = gui.window.sign_in.open_dialog(gui.window)
    dialog.platform.setText(url)
    dialog.user.setText(user)
    dialog.password.setText(password)
    dialog.remember.setChecked(remember)
    QTest.mouseClick(dialog.sign_in_button, Qt.MouseButton.LeftButton)


async def signed_in(gui: GuiApp, url: str, user: str, password: str = "demo") -> None:
    await sign_in_with_dialog(gui, url, user, password)
    await until(lambda: gui.controller.state is SessionState.SIGNED_IN, f"{user} signed in")
    await until(lambda: gui.window.sign_in.dialog is None, "the sign-in dialog closed")


async def active(gui: GuiApp) -> None:
    """Make the window the active one: shortcuts go to the active window only."""
    gui.window.activateWindow()
    await until(lambda: QApplication.activeWindow() is gui.window, "the window active")


def test_sign_in_take_a_call_and_hang_up(
    qloop, qtbot, virtual_audio, platform, start_caller, tmp_path
):
    async def steps() -> None:
        async with window(tmp_path) as gui:
            recorder = Recorder(gui)
            win = gui.window
            await sign_in_with_dialog(gui, platform.url, "bob", "demo", remember=True)
            await until(lambda: gui.controller.state is SessionState.SIGNED_IN, "signed in")
            await until(lambda: win.sign_in.dialog is None, "the dialog closed")
            assert "bob" in win.agent_panel.agent.text()
            assert win.call_panel.view is CallView.IDLE

            # One click on the always-visible toggle; it follows the platform's answer.
            qtbot.mouseClick(win.agent_panel.toggle, Qt.MouseButton.LeftButton)
            await until(lambda: win.agent_panel.on_queue, "on queue")
            assert win.agent_panel.toggle.isChecked()

            caller = start_caller(
                platform.url, "--tone", "440", "--duration", "0", "--caller", "Dana"
            )
            panel = win.call_panel
            await until(lambda: panel.view is CallView.INCOMING, "the incoming call", 20)
            assert panel.caller.text() == "Dana"
            assert win.windowTitle().startswith("Incoming call: Dana")
            assert "Queue: support" in panel.detail.text()
            answer = panel.buttons["answer"]
            assert answer.isVisible() and answer.isEnabled()
            assert panel.buttons["decline"].isVisible()
            assert not panel.buttons["hangup"].isVisible()

            qtbot.mouseClick(answer, Qt.MouseButton.LeftButton)
            await until(lambda: panel.view is CallView.CONNECTED, "the call connected")
            assert win.windowTitle() == "Agent Phone"
            assert panel.elapsed.isVisible() and panel.elapsed.text().startswith("0:0")
            await until(lambda: "You can hear the customer" in panel.detail.text(), "audio")
            assert recorder.shown[-1][:3] == ("active", "call", True)

            qtbot.mouseClick(panel.buttons["mute"], Qt.MouseButton.LeftButton)
            await until(lambda: panel.call_actions.mute.isChecked(), "muted")
            qtbot.mouseClick(panel.buttons["hangup"], Qt.MouseButton.LeftButton)
            await until(lambda: panel.view is CallView.ENDED, "the call ended")
            assert "You hung up" in panel.detail.text()
            actions = panel.call_actions
            assert not actions.hangup.isEnabled() and not actions.answer.isEnabled()

            code, summary = await asyncio.to_thread(caller.result, 20)
            assert code == 0 and summary["answered"] is True, summary
            assert summary["agent"] == "bob" and summary["ended_by"] == "agent"

            # Kept after the call: green, counting down to the platform's timeout.
            await until(lambda: recorder.shown[-1][1] == "call_ended", "connection kept")
            assert win.indicator.shown_state is Indicator.ACTIVE
            assert "The platform closes it in" in win.indicator.toolTip()
            assert recorder.steps() == [
                ("inactive", "signed_in"),
                ("connecting", "call"),
                ("active", "call"),
                ("active", "call_ended"),
            ]
            assert recorder.shown == recorder.engine  # exactly what the model said

            # The password went to the keyring, and only there.
            assert "demo" in gui.window.sign_in._vault._backend.saved.values()  # type: ignore[attr-defined]
            assert gui.store.get(USER) == "bob"
            assert "demo" not in (tmp_path / "settings.ini").read_text()

    run(qloop, steps())


def test_indicator_follows_the_model_through_setting_and_timeout(
    qloop, virtual_audio, start_platform, tmp_path
):
    platform = start_platform(persistent_timeout_s=2)

    async def steps() -> None:
        async with window(tmp_path) as gui:
            recorder = Recorder(gui)
            win = gui.window
            indicator = win.indicator
            # alice holds acceptOffQueue: her connection is set up at sign-in (R5).
            await signed_in(gui, platform.url, "alice")
            await until(lambda: indicator.shown_state is Indicator.ACTIVE, "active", 10)
            assert "The platform closes it in 0:0" in indicator.toolTip()
            assert "closes in" in win.connection_info.text()
            tip = indicator.toolTip()
            await asyncio.sleep(1.1)
            assert indicator.toolTip() != tip  # the countdown ticks each second

            await until(lambda: recorder.shown[-1][1] == "timeout", "the timeout", 6)
            assert indicator.shown_state is Indicator.INACTIVE
            assert "closes in" not in indicator.toolTip()

            win.persistent_action.trigger()  # off
            await until(lambda: indicator.shown_state is Indicator.OFF, "off")
            assert gui.store.get(PERSISTENT) is False
            win.persistent_action.trigger()  # on again
            # alice's connection comes straight back (R5): wait for it to settle.
            await until(lambda: recorder.states()[-1] == "active", "active again")

            assert recorder.shown == recorder.engine
            # The platform may report "active" once or twice (the second time
            # with its expires_at): compare the distinct steps.
            assert recorder.steps() == [
                ("inactive", "signed_in"),
                ("connecting", "sign_in"),
                ("active", "sign_in"),
                ("inactive", "timeout"),
                ("off", "setting_off"),
                ("inactive", "setting_on"),
                ("connecting", "sign_in"),
                ("active", "sign_in"),
            ]

            win.sign_out_action.trigger()
            await until(lambda: gui.controller.state is SessionState.SIGNED_OUT, "signed out")
            assert indicator.shown_state is Indicator.OFF

    run(qloop, steps())


def test_auto_answer_from_the_settings_dialog_connects_with_no_click(
    qloop, qtbot, virtual_audio, platform, start_caller, tmp_path
):
    async def steps() -> None:
        async with window(tmp_path) as gui:
            win = gui.window
            await signed_in(gui, platform.url, "carol")
            # Keyboard only: Ctrl+O goes on queue.
            await active(gui)
            QTest.keyClick(win.call_panel, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
            await until(lambda: win.agent_panel.on_queue, "on queue")

            win.settings_action.trigger()
            dialog = win.findChild(SettingsDialog)
            assert dialog is not None and dialog.isVisible()
            await until(lambda: "devices found" in dialog.device_status.text(), "device list")
            box = dialog._checks[AUTO_ANSWER.key][1]
            assert not box.isChecked()
            box.setChecked(True)
            dialog.accept()
            assert gui.store.get(AUTO_ANSWER) is True

            caller = start_caller(platform.url, "--duration", "1", "--caller", "Eve")
            panel = win.call_panel
            await until(lambda: panel.view is CallView.CONNECTED, "auto-answered call", 20)
            assert "Answered automatically" in panel.detail.text()

            # Ending the persistent connection during a call waits for the call.
            indicator = win.indicator
            win.end_connection_action.trigger()
            assert "when the current call ends" in win.statusBar().currentMessage()
            code, summary = await asyncio.to_thread(caller.result, 20)
            assert code == 0 and summary["answered"] and summary["agent"] == "carol"
            await until(lambda: panel.view is CallView.ENDED, "the call ended")
            assert "The customer hung up" in panel.detail.text()
            await until(lambda: indicator.shown_state is Indicator.INACTIVE, "connection ended")
            assert indicator.shown_status.reason == "stopped_by_agent"

    run(qloop, steps())


def test_decline_by_keyboard(qloop, virtual_audio, platform, start_caller, tmp_path):
    async def steps() -> None:
        async with window(tmp_path) as gui:
            win = gui.window
            await signed_in(gui, platform.url, "bob")
            win.agent_panel.queue_action.trigger()
            await until(lambda: win.agent_panel.on_queue, "on queue")
            caller = start_caller(platform.url, "--duration", "0", "--wait", "3")
            panel = win.call_panel
            await until(lambda: panel.view is CallView.INCOMING, "the incoming call", 20)
            await active(gui)
            QTest.keyClick(panel, Qt.Key.Key_Backspace, Qt.KeyboardModifier.ControlModifier)
            await until(lambda: panel.view is CallView.ENDED, "declined")
            assert "You declined" in panel.detail.text()
            code, summary = await asyncio.to_thread(caller.result, 20)
            assert summary["answered"] is False

    run(qloop, steps())


def test_bad_password_and_unreachable_platform_say_so(qloop, platform, tmp_path):
    async def steps() -> None:
        async with window(tmp_path) as gui:
            await sign_in_with_dialog(gui, platform.url, "bob", "not-the-password")
            dialog = gui.window.sign_in.dialog
            assert dialog is not None
            await until(lambda: dialog.error.isVisible(), "the sign-in error")
            assert "Wrong agent name or password" in dialog.error.text()
            assert gui.controller.state is SessionState.SIGNED_OUT
            assert dialog.isVisible() and dialog.sign_in_button.isEnabled()

            dialog.platform.setText("ws://127.0.0.1:9/ws")  # nothing listens on port 9
            dialog.password.setText("demo")
            QTest.mouseClick(dialog.sign_in_button, Qt.MouseButton.LeftButton)
            await until(lambda: "Cannot reach" in dialog.error.text(), "unreachable error")
            assert "ws://127.0.0.1:9/ws" in dialog.error.text()
            assert gui.window.sign_in._vault._backend.saved == {}  # type: ignore[attr-defined]

    run(qloop, steps())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_reconnects_after_the_platform_restarts(qloop, start_platform, tmp_path):
    port = _free_port()
    platform = start_platform(port=port)

    async def steps() -> None:
        async with window(tmp_path) as gui:
            gui.store.set(RECONNECT_ATTEMPTS, 5)
            win = gui.window
            await signed_in(gui, platform.url, "bob")
            win.agent_panel.queue_action.trigger()
            await until(lambda: win.agent_panel.on_queue, "on queue")
            states: list[SessionState] = []
            gui.controller.state_changed.connect(states.append)

            platform.proc.kill()
            await until(lambda: gui.controller.state is SessionState.RECONNECTING, "reconnecting")
            assert not win.agent_panel.on_queue
            assert "signing in again" in win.call_panel.detail.text()
            await until(lambda: "attempt" in win.statusBar().currentMessage(), "the attempt note")
            await asyncio.to_thread(platform.stop)
            await asyncio.to_thread(start_platform, port=port)
            await until(lambda: gui.controller.state is SessionState.SIGNED_IN, "back", 20)
            await until(lambda: win.agent_panel.on_queue, "presence restored")
            assert states == [SessionState.RECONNECTING, SessionState.SIGNED_IN]

    run(qloop, steps())


def test_losing_the_platform_without_reconnecting_asks_to_sign_in(qloop, start_platform, tmp_path):
    platform = start_platform()

    async def steps() -> None:
        async with window(tmp_path) as gui:
            gui.store.set(RECONNECT_ATTEMPTS, 0)
            await signed_in(gui, platform.url, "bob")
            platform.proc.kill()
            await until(lambda: gui.controller.state is SessionState.SIGNED_OUT, "signed out")
            dialog = gui.window.sign_in.dialog
            assert dialog is not None and dialog.isVisible()
            assert "connection to the platform was lost" in dialog.error.text()
            assert gui.window.indicator.shown_state is Indicator.OFF

    run(qloop, steps())


def test_signs_in_to_a_wss_platform_with_the_ca_setting(qloop, start_platform, tmp_path):
    platform = start_platform(extra=("--dev-tls", str(tmp_path / "tls")))
    assert platform.url.startswith("wss://") and platform.tls_cert

    async def steps() -> None:
        # No CA file: the dev certificate is not in the system's store.
        async with window(tmp_path / "untrusted") as gui:
            await sign_in_with_dialog(gui, platform.url, "bob", "demo")
            dialog = gui.window.sign_in.dialog
            assert dialog is not None
            await until(lambda: "not trusted" in dialog.error.text(), "the untrusted error")
            assert gui.controller.state is SessionState.SIGNED_OUT
        # The setting names the platform's certificate: signed in.
        (tmp_path / "trusted").mkdir()
        SettingsStore.at(tmp_path / "trusted" / "settings.ini").set(CA_FILE, platform.tls_cert)
        async with window(tmp_path / "trusted") as gui:
            await signed_in(gui, platform.url, "bob")

    (tmp_path / "untrusted").mkdir()
    run(qloop, steps())
