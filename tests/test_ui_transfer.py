"""The transfer dialog and the consult buttons in the real window, against
the real platform: bob (the window) takes a customer's call, consults carol
(a phone engine in the same loop) by keyboard, and completes the transfer;
the customer ends up with carol (as test_ui_dial.py: offscreen window,
qasync, the platform and the caller as processes)."""

from __future__ import annotations

import asyncio

import test_ui_window
from inprocess import signed_in_agent
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from test_ui_window import active, signed_in, until, window

from agent_phone.phone import events
from agent_phone.ui.call_panel import CallView
from agent_phone.ui.transfer_dialog import TransferDialog

qloop = test_ui_window.qloop  # the same fixture


def test_a_consult_transfer_by_keyboard(qloop, virtual_audio, platform, start_caller, tmp_path):
    async def steps() -> dict:
        async with (
            window(tmp_path) as gui,
            signed_in_agent(platform, "carol", tmp_path, hz=1000.0) as carol,
        ):
            await carol.engine.set_status("busy")  # no queue calls for her
            win = gui.window
            panel, strip = win.call_panel, win.agent_panel
            await signed_in(gui, platform.url, "bob")
            strip.queue_action.trigger()
            await until(lambda: strip.on_queue, "on queue")
            customer = start_caller(platform.url, "--tone", "440", "--duration", "20")
            await until(lambda: panel.buttons["answer"].isVisible(), "the call alerting", 20)
            panel.buttons["answer"].click()
            await until(lambda: panel.view is CallView.CONNECTED, "connected", 20)
            # The strip says the agent is on a call, not just "on queue".
            assert strip.status.text().startswith("Available · on a call")
            assert (
                panel.buttons["transfer"].isVisible() and not panel.buttons["complete"].isVisible()
            )

            # Ctrl+T: the dialog lists agents, queues; typing filters.
            await active(gui)
            QTest.keyClick(win, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
            await until(lambda: isinstance(win.transfer_dialog, TransferDialog), "the dialog")
            dialog = win.transfer_dialog
            assert dialog is not None
            listed = [dialog.targets.item(i).text() for i in range(dialog.targets.count())]
            assert "Agent: carol" in listed and "Queue: support" in listed
            assert "Agent: bob" not in listed
            QTest.keyClicks(dialog.filter, "car")
            assert dialog.targets.currentItem().text() == "Agent: carol"
            assert dialog.consult.isChecked()
            QTest.keyClick(dialog.filter, Qt.Key.Key_Return)

            # carol is asked to consult; bob's panel waits for her.
            offered = await carol.wait_for(events.CallChanged, lambda e: e.state == "alerting")
            assert offered.purpose == "consult" and offered.from_agent == "bob"  # type: ignore[attr-defined]
            await until(lambda: panel.buttons["cancel_transfer"].isVisible(), "consulting")
            assert "Calling carol to consult" in panel.detail.text()
            assert not panel.call_actions.complete.isEnabled()  # she has not answered
            await carol.engine.answer(offered.call_id)  # type: ignore[attr-defined]
            await until(lambda: panel.call_actions.complete.isEnabled(), "carol on the line")
            assert "Consulting carol" in panel.detail.text()

            # Ctrl+Shift+T completes: the call is carol's, bob's panel ends it.
            await active(gui)
            QTest.keyClick(
                win,
                Qt.Key.Key_T,
                Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
            )
            await until(lambda: panel.view is CallView.ENDED, "bob's part ended")
            assert "You transferred the call" in panel.detail.text()
            await carol.wait_for(events.Party, lambda e: e.reason == "transferred")
            await carol.engine.hangup()
            return await asyncio.to_thread(customer.result, 20)

    code, summary = qloop.run_until_complete(asyncio.wait_for(steps(), 75))
    assert code == 0 and summary["answered"] and summary["agent"] == "carol"
    transferred = platform.matching("call_transferred")
    assert [(e["from"], e["to"], e["consult"]) for e in transferred] == [("bob", "carol", True)]
