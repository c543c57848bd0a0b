"""Call waiting, end to end with real audio: an agent on a call is offered
another (by another agent) and answers it with the first put on hold, or
holds a customer to call out, and swaps between the two. One call is live
on the agent's kept connection at a time; the held one hears the hold music.

A real platform process; the agents' ``PhoneEngine``s, the customer and the
outside number in this process, each saying its own tone, each ear checked
with an FFT for whom it hears in each phase.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from audio_analysis import has_tone
from parties import (
    BOB_HZ,
    CAROL_HZ,
    CUSTOMER_HZ,
    NUMBER_HZ,
    Customer,
    Number,
    agents,
    answered,
    hears,
    phase,
    rms,
)

from agent_phone.media.tones import CALL_WAITING_HZ
from agent_phone.phone import events
from agent_phone.phone.errors import PhoneError


def state_of(agent, call_id: str, state: str, since: int = 0):
    return agent.wait_for(
        events.CallChanged, lambda e: e.call_id == call_id and e.state == state, since
    )


async def test_a_call_waits_while_the_agent_talks_and_is_answered_with_the_customer_held(
    start_platform, tmp_path: Path
):
    platform = start_platform()
    async with agents(platform, tmp_path) as (bob, carol):
        customer = Customer(platform, tmp_path)
        try:
            customer_call = await answered(bob)

            # carol calls bob while he talks: it waits, and his call goes on.
            mark = bob.mark()
            offered_at = time.monotonic()
            first = await carol.engine.dial(agent="bob")
            waiting = await bob.wait_for(
                events.CallChanged, lambda e: e.state == "alerting" and e.peer == "carol", mark
            )
            assert waiting.waiting  # type: ignore[attr-defined]
            assert list(bob.engine.calls) == [customer_call, first.call_id]
            t = await phase()
            assert hears(customer.ear, t, BOB_HZ) and hears(bob.ear, t, CUSTOMER_HZ)
            # bob hears the call-waiting beep over his call (not the customer).
            beeped = offered_at, offered_at + 1.0  # (the first two bursts, in 0.7 s)
            assert has_tone(bob.ear.since(*beeped), CALL_WAITING_HZ)
            assert not has_tone(customer.ear.since(*beeped), CALL_WAITING_HZ)
            with pytest.raises(PhoneError, match="on hold first"):
                await bob.engine.dial(number="+15550100")

            # Declined: carol's call ends; bob's customer never noticed.
            await bob.engine.decline(first.call_id)
            ended = await state_of(carol, first.call_id, "ended")
            assert ended.reason == "declined"  # type: ignore[attr-defined]
            assert bob.engine.calls[customer_call].state.value == "connected"

            # Answered: the customer is held first (the hold music), then
            # bob and carol talk over bob's one connection.
            mark = bob.mark()
            second = await carol.engine.dial(agent="bob")
            await answered(bob, mark, peer="carol")
            await state_of(bob, customer_call, "held", mark)
            t = await phase()
            assert hears(bob.ear, t, CAROL_HZ) and hears(carol.ear, t, BOB_HZ)
            assert not has_tone(customer.ear.since(t), BOB_HZ)
            assert not has_tone(customer.ear.since(t), CAROL_HZ)
            assert rms(customer.ear.since(t)) > 300  # the hold music
            assert not has_tone(bob.ear.since(t), CUSTOMER_HZ)

            # carol hangs up: the customer waits on hold until bob takes
            # them back; his headset stayed open throughout.
            await carol.engine.hangup(second.call_id)
            await state_of(bob, second.call_id, "ended", mark)
            assert bob.engine.calls[customer_call].state.value == "held"
            assert bob.engine.audio.in_call
            mark = bob.mark()
            await bob.engine.unhold(customer_call)
            await state_of(bob, customer_call, "connected", mark)
            t = await phase()
            assert hears(customer.ear, t, BOB_HZ) and hears(bob.ear, t, CUSTOMER_HZ)
        finally:
            result = await customer.end()
    assert result.answered and result.agent == "bob" and result.requeued == 0
    record = platform.call_records()[second.call_id]
    assert record["direction"] == "internal" and record["answered_by"] == "bob"
    held = platform.matching("call_held", call_id=customer_call)
    assert [e["on"] for e in held] == [True, False]


async def test_the_agent_holds_a_customer_calls_out_and_swaps_between_the_two(
    start_platform, tmp_path: Path
):
    platform = start_platform()
    async with agents(platform, tmp_path) as (bob, carol):
        outside = Number(platform, tmp_path, "+15550100", NUMBER_HZ)
        await asyncio.to_thread(platform.wait_for, "number_awaiting", number="+15550100")
        customer = Customer(platform, tmp_path)
        try:
            customer_call = await answered(bob)
            mark = bob.mark()
            await bob.engine.hold()
            await state_of(bob, customer_call, "held", mark)

            # With the customer on hold bob calls out, over the same connection.
            connection = bob.engine.connection
            out = await bob.engine.dial(number="+15550100")
            await state_of(bob, out.call_id, "connected", mark)
            assert bob.engine.connection is connection
            t = await phase()
            assert hears(bob.ear, t, NUMBER_HZ) and hears(outside.ear, t, BOB_HZ)
            assert not has_tone(customer.ear.since(t), BOB_HZ)
            assert not has_tone(customer.ear.since(t), NUMBER_HZ)

            # Swap: taking the customer off hold holds the number.
            mark = bob.mark()
            await bob.engine.unhold(customer_call)
            await state_of(bob, out.call_id, "held", mark)
            await state_of(bob, customer_call, "connected", mark)
            t = await phase()
            assert hears(customer.ear, t, BOB_HZ) and hears(bob.ear, t, CUSTOMER_HZ)
            assert not has_tone(outside.ear.since(t), BOB_HZ)
            assert rms(outside.ear.since(t)) > 300  # the hold music

            # Two calls are all an agent takes: carol's call to bob is refused.
            carol_mark = carol.mark()
            third = await carol.engine.dial(agent="bob")
            refused = await state_of(carol, third.call_id, "ended", carol_mark)
            assert refused.reason == "busy"  # type: ignore[attr-defined]

            # And back; then the number hangs up, and the customer is still held.
            mark = bob.mark()
            await bob.engine.unhold(out.call_id)
            await state_of(bob, customer_call, "held", mark)
            t = await phase()
            assert hears(bob.ear, t, NUMBER_HZ) and hears(outside.ear, t, BOB_HZ)
            number_result = await outside.end()
            await state_of(bob, out.call_id, "ended", mark)
            assert bob.engine.calls[customer_call].state.value == "held"
            await bob.engine.unhold(customer_call)
            await state_of(bob, customer_call, "connected", mark)
            t = await phase()
            assert hears(customer.ear, t, BOB_HZ) and hears(bob.ear, t, CUSTOMER_HZ)
        finally:
            result = await customer.end()
            if not outside.task.done():
                await outside.end()
    assert result.answered and result.agent == "bob" and result.requeued == 0
    assert number_result.answered and number_result.ended_by == "customer"
    record = platform.call_records()[out.call_id]
    assert record["direction"] == "outbound" and record["end_reason"] == "customer_hangup"
