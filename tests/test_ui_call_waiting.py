"""Call waiting in the real window, against the real platform: bob (the
window) talks with a customer when carol (a phone engine in the same loop)
calls him. The other-call bar offers her call; Ctrl+Shift+A answers it with
the customer put on hold, the panel then shows carol's call and the bar the
held customer; carol hangs up, the customer takes the panel back, on hold,
and Resume (by its button) brings them back (as test_ui_transfer.py:
offscreen window, qasync, the platform and the caller as processes)."""

from __future__ import annotations

import asyncio

import test_ui_window
from inprocess import signed_in_agent
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from test_ui_window import active, signed_in, until, window

from agent_phone.phone import events
from agent_phone.ui.call_panel import CallView
from agent_phone.ui.dial_pad import DialPad

NUMBER = "+15550100"

qloop = test_ui_window.qloop  # the same fixture


def test_a_waiting_call_answered_by_keyboard_then_the_customer_resumed(
    qloop, virtual_audio, platform, start_caller, tmp_path
):
    async def steps() -> dict:
        async with (
            window(tmp_path) as gui,
            signed_in_agent(platform, "carol", tmp_path, hz=1000.0) as carol,
        ):
            await carol.engine.set_status("busy")  # no queue calls for her
            win = gui.window
            panel, strip = win.call_panel, win.agent_panel
            bar = panel.other_call
            await signed_in(gui, platform.url, "bob")
            strip.queue_action.trigger()
            await until(lambda: strip.on_queue, "on queue")
            customer = start_caller(
                platform.url, "--tone", "440", "--duration", "30", "--caller", "Dana"
            )
            await until(lambda: panel.buttons["answer"].isVisible(), "the call alerting", 20)
            panel.buttons["answer"].click()
            await until(lambda: panel.view is CallView.CONNECTED, "connected", 20)
            customer_call = panel._call_id
            assert not bar.isVisible() and not bar.actions_.answer.isEnabled()
            assert gui.sounds.rings_started == 1  # the customer's call rang

            # carol calls: the bar offers her call; the panel stays on the customer.
            await carol.engine.dial(agent="bob")
            await until(lambda: bar.isVisible(), "the call waiting")
            assert "Call waiting: carol" in bar.text.text()
            assert bar.buttons["answer"].isVisible() and bar.buttons["decline"].isVisible()
            assert panel.view is CallView.CONNECTED and panel.caller.text() == "Dana"
            # A beep in the headset (test_call_waiting.py), not the ringer.
            assert gui.sounds.rings_started == 1 and not gui.sounds.ringing

            # Ctrl+Shift+A: the customer goes on hold, carol's call is shown.
            await active(gui)
            QTest.keyClick(
                win,
                Qt.Key.Key_A,
                Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
            )
            await until(lambda: panel.caller.text() == "carol", "carol's call shown")
            await until(lambda: panel.view is CallView.CONNECTED, "carol connected")
            await until(lambda: "On hold: Dana" in bar.text.text(), "the customer held")
            assert bar.buttons["swap"].isVisible() and not bar.buttons["answer"].isVisible()
            # (carol's is an internal call: it cannot be held, so no swap to the customer)
            assert not bar.actions_.swap.isEnabled() and "Hang up this call" in bar.text.text()
            assert panel.title.text() == "On a call" and not panel.held

            # carol hangs up: the held customer takes the panel, on hold.
            await carol.wait_for(events.CallChanged, lambda e: e.state == "connected")
            await carol.engine.hangup()
            await until(lambda: panel.caller.text() == "Dana", "the customer shown again")
            assert panel.held and panel.title.text() == "On hold" and not bar.isVisible()
            assert panel._call_id == customer_call
            panel.buttons["hold"].click()  # Resume
            await until(lambda: not panel.held, "the customer back")
            assert not panel.call_actions.dial.isEnabled()  # (hold first)

            # Held again, bob dials a number from the pad; then swaps back.
            number = start_caller(platform.url, "--answer", NUMBER, "--duration", "0")
            await asyncio.to_thread(platform.wait_for, "number_awaiting", 15, number=NUMBER)
            await active(gui)
            QTest.keyClick(win, Qt.Key.Key_H, Qt.KeyboardModifier.ControlModifier)
            await until(lambda: panel.held and panel.call_actions.dial.isEnabled(), "held")
            QTest.keyClick(win, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
            await until(lambda: isinstance(win.dial_pad, DialPad), "the dial pad")
            assert win.dial_pad is not None
            QTest.keyClicks(win.dial_pad.number, NUMBER)
            QTest.keyClick(win.dial_pad.number, Qt.Key.Key_Return)
            await until(lambda: panel.caller.text() == NUMBER, "the number shown")
            await until(lambda: panel.view is CallView.CONNECTED, "the number answered", 20)
            assert "On hold: Dana" in bar.text.text() and bar.actions_.swap.isEnabled()
            await active(gui)
            QTest.keyClick(
                win,
                Qt.Key.Key_S,
                Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
            )
            await until(lambda: panel.caller.text() == "Dana", "swapped to the customer")
            await until(lambda: NUMBER in bar.text.text(), "the number held")
            assert not panel.held and "On hold" in bar.text.text()
            bar.buttons["hangup"].click()  # the held number
            await until(lambda: not bar.isVisible(), "the number hung up")
            await asyncio.sleep(1.0)
            panel.buttons["hangup"].click()
            return (
                await asyncio.to_thread(customer.result, 20),
                await asyncio.to_thread(number.result, 20),
            )

    (code, summary), (number_code, number_summary) = qloop.run_until_complete(
        asyncio.wait_for(steps(), 90)
    )
    assert code == 0 and summary["answered"] and summary["agent"] == "bob"
    assert number_code == 0 and number_summary["answered"]
    held = [(e["call_id"], e["on"]) for e in platform.matching("call_held")]
    customer_call = held[0][0]
    number_call = next(call for call, _on in held if call != customer_call)
    assert held == [
        (customer_call, True),  # carol's call answered
        (customer_call, False),  # Resume
        (customer_call, True),  # Ctrl+H
        (number_call, True),  # Ctrl+Shift+S: the number held, the customer back
        (customer_call, False),
    ]
