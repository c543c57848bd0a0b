"""The wrap-up form in the real window, against the real platform: after a
call from a queue with wrap-up codes the form shows, the status menu waits,
and the agent wraps up by keyboard (Ctrl+W, arrows, Enter); the code lands
with the platform (as test_ui_dial.py: offscreen window, qasync, the
platform and the caller as processes)."""

from __future__ import annotations

import asyncio

import test_ui_window
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from test_ui_window import active, signed_in, until, window

qloop = test_ui_window.qloop  # the same fixture


def test_after_a_call_the_agent_wraps_up_by_keyboard(
    qloop, virtual_audio, start_platform, start_caller, tmp_path
):
    platform = start_platform(queue={"wrap_up_codes": ["resolved", "escalated"]})

    async def steps() -> None:
        async with window(tmp_path) as gui:
            win = gui.window
            form, strip = win.wrap_up, win.agent_panel
            assert not form.isVisible()
            await signed_in(gui, platform.url, "bob")
            strip.queue_action.trigger()
            await until(lambda: strip.on_queue, "on queue")

            customer = start_caller(platform.url, "--tone", "440", "--duration", "0.5")
            answer = win.call_panel.buttons["answer"]
            await until(lambda: answer.isVisible(), "the call alerting", 20)
            answer.click()
            await until(lambda: form.isVisible(), "the wrap-up form", 20)
            assert [form.codes.item(i).text() for i in range(form.codes.count())] == [
                "Resolved",
                "Escalated",
            ]
            assert not form.button.isEnabled()  # no code picked yet
            assert "back to your status in 0:" in form.countdown.text()
            assert strip.status.text().startswith("After-call work")
            # The form is the way out: no status, no queue toggle meanwhile.
            assert not strip.status_menu.isEnabled() and not strip.queue_action.isEnabled()

            # By keyboard: Ctrl+W to the codes, Down to the second, Enter.
            await active(gui)
            QTest.keyClick(win, Qt.Key.Key_W, Qt.KeyboardModifier.ControlModifier)
            await until(lambda: form.codes.hasFocus(), "the codes focused")
            assert form.codes.currentItem().text() == "Resolved"
            QTest.keyClick(form.codes, Qt.Key.Key_Down)
            QTest.keyClick(form.codes, Qt.Key.Key_Return)
            await until(lambda: not form.isVisible(), "the form closed")
            await until(lambda: strip.status.text().startswith("Available"), "available")
            assert strip.on_queue and strip.status_menu.isEnabled()
            code, summary = await asyncio.to_thread(customer.result, 20)
            assert code == 0 and summary["answered"] and summary["agent"] == "bob"
            done = await asyncio.to_thread(platform.wait_for, "after_call_work", 10, agent="bob")
            assert done["code"] == "escalated" and done["call_id"] == summary["call_id"]

    qloop.run_until_complete(asyncio.wait_for(steps(), 60))
