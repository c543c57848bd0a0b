"""Hold and the DTMF keypad in the real window, against the real platform.

As in test_ui_window.py: the app's parts as ``run_gui`` builds them on one
offscreen ``qapp``, asyncio on a qasync loop over it, the platform and the
caller as processes, the phone's audio on the virtual sound card (its
microphone fed an 880 Hz tone). The caller reports what the customer heard.
"""

from __future__ import annotations

import asyncio

import test_ui_window
from audio_analysis import make_tone
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from test_ui_window import signed_in, until, window

from agent_phone.media.tones import HOLD_NOTES_HZ
from agent_phone.ui.call_panel import CallView

AGENT_HZ = 880


qloop = test_ui_window.qloop  # the same fixture


def test_hold_button_and_keypad_act_through_the_real_platform(
    qloop, qtbot, virtual_audio, platform, start_caller, tmp_path
):
    feed = virtual_audio.play_into_mic(make_tone(AGENT_HZ, 1.0), loop=True)

    async def steps() -> dict:
        async with window(tmp_path) as gui:
            win = gui.window
            panel = win.call_panel
            hold = panel.buttons["hold"]
            await signed_in(gui, platform.url, "bob")
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
