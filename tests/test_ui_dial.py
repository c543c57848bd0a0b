"""The dial pad in the real window, against the real platform: the agent
dials a customer's number by keyboard and by clicks, and the call panel
follows the outbound call (as test_ui_hold.py: offscreen window, qasync,
the platform and the answering caller as processes)."""

from __future__ import annotations

import asyncio

import test_ui_window
from audio_analysis import has_tone
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from test_ui_window import active, signed_in, until, window

from agent_phone.phone.sounds import RINGBACK_HZ
from agent_phone.ui.call_panel import CallView
from agent_phone.ui.dial_pad import DialPad
from agent_phone.ui.history_view import HistoryDialog

NUMBER = "+15550100"

qloop = test_ui_window.qloop  # the same fixture


def test_the_dial_pad_calls_a_number_and_the_panel_follows_the_call(
    qloop, qtbot, virtual_audio, platform, start_caller, tmp_path
):
    async def steps() -> dict:
        async with window(tmp_path) as gui:
            win = gui.window
            panel = win.call_panel
            dial = panel.call_actions.dial
            assert not dial.isEnabled()  # signed out: nothing to dial with
            await signed_in(gui, platform.url, "bob")
            await until(lambda: dial.isEnabled(), "Dial enabled once signed in")
            assert panel.buttons["dial"].isVisible()

            customer = start_caller(
                platform.url, "--answer", NUMBER, "--tone", "440", "--duration", "0", "--ring", "3"
            )
            await asyncio.to_thread(platform.wait_for, "number_awaiting", 15, number=NUMBER)

            # Ctrl+D opens the pad with the focus in the number field.
            await active(gui)
            QTest.keyClick(panel, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
            await until(lambda: isinstance(win.dial_pad, DialPad), "the dial pad")
            pad = win.dial_pad
            assert pad is not None
            await until(lambda: pad.isVisible(), "the dial pad shown")
            assert not pad.call_button.isEnabled()
            # Typed: letters are refused, digits kept; then corrected by clicks.
            QTest.keyClicks(pad.number, "+1555abc01")
            assert pad.number.text() == "+155501"
            qtbot.mouseClick(pad.keys["⌫"], Qt.MouseButton.LeftButton)
            assert pad.number.text() == "+15550" and pad.call_button.isEnabled()
            for key in "100":
                qtbot.mouseClick(pad.keys[key], Qt.MouseButton.LeftButton)
            assert pad.number.text() == NUMBER and pad.call_button.isEnabled()
            QTest.keyClick(pad.number, Qt.Key.Key_Return)  # Enter calls

            # It rings at the far end: "Calling…", and the ringback in the headset.
            await until(lambda: "Ringing" in panel.detail.text(), "ringing", 20)
            assert panel.view is CallView.CALLING and panel.title.text() == "Calling…"
            assert panel.buttons["hangup"].isVisible()  # the red button cancels
            speaker = virtual_audio.start_recording(1.5)
            await until(lambda: speaker.full.is_set(), "1.5 s recorded", 5)
            assert has_tone(speaker.stop(), RINGBACK_HZ, tolerance_hz=10)

            await until(lambda: panel.view is CallView.CONNECTED, "the call connected", 20)
            assert win.dial_pad is None or not win.dial_pad.isVisible()
            assert panel.caller.text() == NUMBER and "They answered" in panel.detail.text()
            assert not dial.isEnabled() and panel.buttons["hangup"].isVisible()
            await asyncio.sleep(1.0)
            qtbot.mouseClick(panel.buttons["hangup"], Qt.MouseButton.LeftButton)
            await until(lambda: panel.view is CallView.ENDED, "the call ended")
            assert "You hung up" in panel.detail.text()
            assert dial.isEnabled()
            code, summary = await asyncio.to_thread(customer.result, 20)
            assert code == 0 and summary["agent"] == "bob", summary

            # Call back from the history: the call is there, with its number.
            again = start_caller(platform.url, "--answer", NUMBER, "--duration", "1")
            await asyncio.to_thread(platform.wait_count, "number_awaiting", 2, 15)
            win.history_action.trigger()
            history = win.findChild(HistoryDialog)
            assert history is not None and history.isVisible()
            assert history.rows()[0][1:3] == [NUMBER, "(outbound)"]
            assert not history.call_back_button.isEnabled()  # nothing selected yet
            history.table.setFocus()
            QTest.keyClick(history.table, Qt.Key.Key_Down)  # the newest call selected
            await until(lambda: history.call_back_button.isEnabled(), "Call Back enabled")
            qtbot.mouseClick(history.call_back_button, Qt.MouseButton.LeftButton)
            await until(lambda: panel.view is CallView.CONNECTED, "called back", 20)
            assert panel.caller.text() == NUMBER
            await until(lambda: panel.view is CallView.ENDED, "they hung up", 20)
            code, summary = await asyncio.to_thread(again.result, 20)
            assert code == 0 and summary["ended_by"] == "customer", summary
            history.close()

            # An unknown number: the panel says so, and the pad can dial again.
            dial.trigger()
            await until(lambda: win.dial_pad is not None and win.dial_pad.isVisible(), "pad")
            pad = win.dial_pad
            assert pad is not None
            QTest.keyClicks(pad.number, "+15550199")
            qtbot.mouseClick(pad.call_button, Qt.MouseButton.LeftButton)
            await until(
                lambda: panel.view is CallView.ENDED and "Nobody" in panel.detail.text(),
                "the refusal shown",
            )
            # Escape closes a pad opened by mistake.
            dial.trigger()
            await until(lambda: win.dial_pad is not None and win.dial_pad.isVisible(), "pad")
            QTest.keyClick(win.dial_pad, Qt.Key.Key_Escape)
            await until(lambda: win.dial_pad is None, "the pad closed")
            QApplication.processEvents()
            return summary

    qloop.run_until_complete(asyncio.wait_for(steps(), 75))
    assert len(platform.matching("call_answered")) == 2  # the call, and the call back


def test_the_status_menu_sets_a_status_with_a_reason_and_shows_the_time_in_it(
    qloop, qtbot, virtual_audio, platform, tmp_path
):
    async def steps() -> None:
        async with window(tmp_path) as gui:
            win = gui.window
            strip = win.agent_panel
            menu = strip.status_menu
            assert not menu.isEnabled()
            await signed_in(gui, platform.url, "carol")
            await until(lambda: strip.status.text().startswith("Away"), "the status shown")
            assert menu.isEnabled() and menu.title() == "&Status"
            # The reasons the platform lists are a submenu of their status.
            titles = [a.text() for a in menu.actions()]
            assert "&Break" in titles and "&Busy" in titles
            assert strip.status_entries[("away", "")].isChecked()
            breaks = next(a.menu() for a in menu.actions() if a.text() == "&Break")
            entries = [a.text() for a in breaks.actions() if not a.isSeparator()]
            assert entries == ["&Without a reason", "coffee", "rest"]

            strip.status_entries[("break", "coffee")].trigger()
            await until(lambda: strip.status.text().startswith("Break (coffee) · 0:0"), "break")
            assert strip.status_entries[("break", "coffee")].isChecked()
            changed = await asyncio.to_thread(
                platform.wait_for, "status_changed", 10, agent="carol", status="break"
            )
            assert changed["reason"] == "coffee"
            # The time in it counts.
            await until(lambda: strip.status.text() == "Break (coffee) · 0:01", "a second", 4)

            # By keyboard: the menu opened, Up to its last entry (Offline), Enter.
            menu.popup(win.mapToGlobal(win.rect().center()))
            await until(lambda: menu.isVisible(), "the menu open")
            QTest.keyClick(menu, Qt.Key.Key_Up)
            QTest.keyClick(menu, Qt.Key.Key_Return)
            await until(lambda: strip.status.text().startswith("Offline"), "offline")
            # Available is on queue, as the queue toggle shows.
            strip.status_entries[("available", "")].trigger()
            await until(lambda: strip.on_queue, "on queue")
            assert strip.status.text().startswith("Available (on queue)")

    qloop.run_until_complete(asyncio.wait_for(steps(), 60))
    statuses = [e["status"] for e in platform.matching("status_changed", agent="carol")]
    # (and offline again when the window closed: signed out)
    assert statuses == ["away", "break", "offline", "available", "offline"]
