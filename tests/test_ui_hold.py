"""Hold and the DTMF keypad in the real window, against the real platform.

As in test_ui_window.py: the app's parts as ``run_gui`` builds them on one
offscreen ``qapp``, asyncio on a qasync loop over it, the platform and the
caller as processes, the phone's audio on the virtual sound card (its
microphone fed an 880 Hz tone). The caller reports what the customer heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import keyring.backend
import pytest
import qasync
from audio_analysis import make_tone
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from agent_phone.app import parse_args
from agent_phone.media.tones import HOLD_NOTES_HZ
from agent_phone.ui.app import GuiApp
from agent_phone.ui.call_panel import CallView
from agent_phone.ui.controller import SessionState
from agent_phone.ui.passwords import PasswordVault
from agent_phone.ui.settings import SettingsStore

AGENT_HZ = 880


class MemoryKeyring(keyring.backend.KeyringBackend):
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
    qapp.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    yield loop
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.wait_for(asyncio.gather(*left, return_exceptions=True), 5))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    asyncio.set_event_loop(None)


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def window(tmp_path: Path) -> AsyncIterator[GuiApp]:
    store = SettingsStore.at(tmp_path / "settings.ini")
    gui = GuiApp(parse_args([]), store, PasswordVault(MemoryKeyring()))
    gui.window.show()
    try:
        yield gui
    finally:
        gui.window.close()
        await gui.close()
        gui.window.deleteLater()


async def sign_in(gui: GuiApp, url: str, user: str) -> None:
    dialog = gui.window.sign_in.open_dialog(gui.window)
    dialog.platform.setText(url)
    dialog.user.setText(user)
    dialog.password.setText("demo")
    dialog.remember.setChecked(False)
    QTest.mouseClick(dialog.sign_in_button, Qt.MouseButton.LeftButton)
    await until(lambda: gui.controller.state is SessionState.SIGNED_IN, f"{user} signed in")
    await until(lambda: gui.window.sign_in.dialog is None, "the sign-in dialog closed")


def test_hold_button_and_keypad_act_through_the_real_platform(
    qloop, qtbot, virtual_audio, platform, start_caller, tmp_path
):
    feed = virtual_audio.play_into_mic(make_tone(AGENT_HZ, 1.0), loop=True)

    async def steps() -> dict:
        async with window(tmp_path) as gui:
            win = gui.window
            panel = win.call_panel
            hold = panel.buttons["hold"]
            await sign_in(gui, platform.url, "bob")
            win.agent_panel.queue_action.trigger()
            await until(lambda: win.agent_panel.on_queue, "on queue")
            assert not hold.isVisible() and not panel.keypad.isVisible()
            assert not panel.call_actions.hold.isEnabled()

            caller = start_caller(platform.url, "--tone", "440", "--duration", "0")
            await until(lambda: panel.view is CallView.INCOMING, "the incoming call", 20)
            assert not panel.keypad.isVisible() and not panel.call_actions.hold.isEnabled()
            qtbot.mouseClick(panel.buttons["answer"], Qt.MouseButton.LeftButton)
            await until(lambda: panel.view is CallView.CONNECTED, "the call connected")
            assert hold.isVisible() and hold.isEnabled() and hold.accessibleName() == "Hold"
            assert panel.keypad.isVisible() and panel.keypad.isEnabled()
            assert [panel.keys[d].accessibleName() for d in "1*#"] == [
                "Key 1",
                "Key star",
                "Key pound",
            ]
            await asyncio.sleep(2.0)

            qtbot.mouseClick(hold, Qt.MouseButton.LeftButton)
            await until(lambda: panel.held, "the platform's hold")
            assert hold.isChecked() and hold.accessibleName() == "Resume"
            assert panel.title.text() == "On hold" and "customer hears music" in panel.detail.text()
            assert not panel.keypad.isEnabled()
            QTest.keyClicks(panel, "7")  # the keypad is off while held: nothing is sent
            await asyncio.sleep(2.0)
            qtbot.mouseClick(hold, Qt.MouseButton.LeftButton)
            await until(lambda: not panel.held, "off hold")
            assert not hold.isChecked() and panel.title.text() == "On a call"
            assert "You can hear the customer" in panel.detail.text()
            assert panel.keypad.isEnabled()
            await asyncio.sleep(1.5)

            # Two keys clicked, two typed while the panel has focus.
            qtbot.mouseClick(panel.keys["1"], Qt.MouseButton.LeftButton)
            qtbot.mouseClick(panel.keys["5"], Qt.MouseButton.LeftButton)
            panel.setFocus()
            QTest.keyClicks(panel, "9#")
            sent = await asyncio.to_thread(platform.wait_count, "dtmf", 4, 10)
            assert "".join(e["digits"] for e in sent) == "159#"
            await asyncio.sleep(1.5)
            qtbot.mouseClick(panel.buttons["hangup"], Qt.MouseButton.LeftButton)
            await until(lambda: panel.view is CallView.ENDED, "the call ended")
            assert not panel.keypad.isVisible() and not panel.call_actions.hold.isEnabled()
            code, summary = await asyncio.to_thread(caller.result, 20)
            assert code == 0 and summary["agent"] == "bob", summary
            return summary

    try:
        summary = qloop.run_until_complete(asyncio.wait_for(steps(), 75))
    finally:
        feed.stop()
    assert [e["on"] for e in platform.matching("call_held")] == [True, False]
    assert summary["dtmf_heard"] == "159#", summary
    assert summary["hold_tone_s"] >= 1.0, summary
    # The customer heard the agent, then the hold music, then the agent again.
    # (The virtual sound card's clock runs a little fast: 880 Hz comes out at
    # up to ~884 Hz.)
    timeline = summary["heard_timeline"]
    music = [i for i, hz in enumerate(timeline) if any(abs(hz - f) < 3 for f in HOLD_NOTES_HZ)]
    agent = [i for i, hz in enumerate(timeline) if abs(hz - AGENT_HZ) < 8]
    assert music and agent, timeline
    assert agent[0] < music[0] and agent[-1] > music[-1], timeline
    assert not [i for i in agent if music[0] <= i <= music[-1]], timeline
