"""Transfer, consult and conference, end to end with real audio: a real
platform process, three agents' ``PhoneEngine``s and a customer's
``place_call`` in this process, each party saying its own tone, each ear
checked with an FFT for whom it hears in each phase.
"""

from __future__ import annotations

import asyncio
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

from agent_phone.phone import events
from agent_phone.phone.errors import PhoneError

BILLING = '[queues.billing]\nmembers = ["carol"]'


async def test_a_consult_is_cancelled_then_completed(start_platform, tmp_path: Path):
    platform = start_platform()
    async with agents(platform, tmp_path) as (bob, carol):
        customer = Customer(platform, tmp_path)
        try:
            call_id = await answered(bob)
            t = await phase()
            assert hears(customer.ear, t, BOB_HZ) and hears(bob.ear, t, CUSTOMER_HZ)

            # Consult carol: the customer is held, bob and carol talk.
            await bob.engine.transfer(agent="carol", consult=True)
            await bob.wait_for(events.CallChanged, lambda e: e.state == "held")
            await answered(carol, from_agent="bob", purpose="consult")
            await bob.wait_for(events.Party, lambda e: e.state == "connected")
            t = await phase()
            assert hears(bob.ear, t, CAROL_HZ) and hears(carol.ear, t, BOB_HZ)
            assert not has_tone(customer.ear.since(t), BOB_HZ)  # the hold music
            assert not has_tone(customer.ear.since(t), CAROL_HZ)
            assert rms(customer.ear.since(t)) > 300

            # Cancelled: carol leaves, the customer is back with bob.
            await bob.engine.cancel_transfer()
            ended = await carol.wait_for(events.CallChanged, lambda e: e.state == "ended")
            assert ended.reason == "cancelled"  # type: ignore[attr-defined]
            await bob.wait_for(events.CallChanged, lambda e: e.previous == "held")
            assert not bob.engine.calls[call_id].parties
            t = await phase()
            assert hears(customer.ear, t, BOB_HZ) and hears(bob.ear, t, CUSTOMER_HZ)

            # Completed: carol has the customer, bob's part is over.
            bob_mark, carol_mark = bob.mark(), carol.mark()
            await bob.engine.transfer(agent="carol", consult=True)
            await answered(carol, carol_mark, from_agent="bob")
            await bob.wait_for(events.Party, lambda e: e.state == "connected", bob_mark)
            await bob.engine.complete_transfer()
            gone = await bob.wait_for(
                events.CallChanged, lambda e: e.state == "ended" and e.reason == "transferred"
            )
            assert gone.call_id == call_id  # type: ignore[attr-defined]
            await carol.wait_for(events.Party, lambda e: e.reason == "transferred")
            t = await phase()
            assert hears(customer.ear, t, CAROL_HZ) and hears(carol.ear, t, CUSTOMER_HZ)
            assert hears(bob.ear, t)  # bob hears no one now
            # bob's phone reported what he heard of the call, as after any
            # call he answered, and it was taken without a complaint.
            assert not [e for e in bob.events if isinstance(e, events.Error)]
            assert carol.engine.calls[call_id].state.value == "connected"
        finally:
            result = await customer.end()
    assert result.answered and result.agent == "carol" and result.call_id == call_id
    record = platform.call_records()[call_id]
    assert record["answered_by"] == "carol" and record["end_reason"] == "customer_hangup"
    assert [(x["from"], x["to"], x["consult"]) for x in record["transfers"]] == [
        ("bob", "carol", True)
    ]


async def test_blind_transfers_to_a_queue_and_an_agent_and_a_decline(
    start_platform, tmp_path: Path
):
    platform = start_platform(more=BILLING)
    async with agents(platform, tmp_path) as (bob, carol):
        customer = Customer(platform, tmp_path)
        try:
            call_id = await answered(bob)
            # Refused at once, the call unchanged: nobody, himself, a queue
            # that does not exist, a number nobody answers.
            for kwargs, words in [
                ({"agent": "zed"}, "there is no agent 'zed'"),
                ({"agent": "bob"}, "that is you"),
                ({"queue": "sales"}, "there is no queue 'sales'"),
                ({"number": "+15550100"}, "+15550100 cannot be reached"),
            ]:
                await bob.engine.transfer(**kwargs)
                await bob.wait_for(events.Error, lambda e, w=words: w in e.message)
            with pytest.raises(PhoneError, match="name one target"):
                await bob.engine.transfer(agent="carol", queue="billing")

            # Blind to queue billing (carol's): the customer waits there...
            await bob.engine.set_status("busy")  # (billing's calls are not his anyway)
            await bob.engine.transfer(queue="billing")
            await bob.wait_for(
                events.CallChanged, lambda e: e.state == "ended" and e.reason == "transferred"
            )
            await asyncio.to_thread(platform.wait_for, "call_requeued", reason="transferred")
            # ...until carol is available, and she takes it.
            await carol.engine.set_status("available")
            await answered(carol, queue="billing")
            t = await phase()
            assert hears(customer.ear, t, CAROL_HZ) and hears(carol.ear, t, CUSTOMER_HZ)

            # Blind to bob, who declines: the customer goes back to the head
            # of the queue, and the queue's agent (carol) has them again.
            await carol.engine.transfer(agent="bob")
            offered = await bob.wait_for(
                events.CallChanged,
                lambda e: e.state == "alerting" and e.from_agent == "carol",
            )
            assert offered.purpose == "transfer" and offered.peer == "Dana"  # type: ignore[attr-defined]
            mark = carol.mark()
            await bob.engine.decline(call_id)
            await answered(carol, mark, queue="billing")
            t = await phase()
            assert hears(customer.ear, t, CAROL_HZ)
        finally:
            result = await customer.end()
    assert result.answered and result.agent == "carol" and result.positions
    record = platform.call_records()[call_id]
    assert [(x["from"], x["to"]) for x in record["transfers"]] == [
        ("bob", "billing"),
        ("carol", "bob"),
    ]
    assert "declined" in record["requeue_reasons"]


async def test_a_conference_of_three_then_the_agent_leaves_then_a_hang_up_ends_it_for_all(
    start_platform, tmp_path: Path
):
    platform = start_platform()
    async with agents(platform, tmp_path) as (bob, carol):
        customer = Customer(platform, tmp_path)
        try:
            call_id = await answered(bob)
            await bob.engine.conference(agent="carol")
            await answered(carol, from_agent="bob", purpose="conference")
            await bob.wait_for(events.Party, lambda e: e.state == "connected")
            t = await phase()
            # Each of the three hears the two others.
            assert hears(customer.ear, t, BOB_HZ, CAROL_HZ)
            assert hears(bob.ear, t, CUSTOMER_HZ, CAROL_HZ)
            assert hears(carol.ear, t, CUSTOMER_HZ, BOB_HZ)
            joined = await asyncio.to_thread(platform.wait_for, "conference_joined")
            assert joined["party"] == "carol" and joined["call_id"] == call_id

            # bob leaves; the customer and carol stay connected.
            await bob.engine.leave_conference()
            await bob.wait_for(events.CallChanged, lambda e: e.state == "ended")
            await carol.wait_for(events.Party, lambda e: e.state == "ended" and e.agent == "bob")
            t = await phase()
            assert hears(customer.ear, t, CAROL_HZ) and hears(carol.ear, t, CUSTOMER_HZ)

            # carol adds bob back, then hangs up: the call ends for all three.
            mark, carol_mark = bob.mark(), carol.mark()
            await carol.engine.conference(agent="bob")
            await answered(bob, mark, from_agent="carol", purpose="conference")
            await carol.wait_for(
                events.Party, lambda e: (e.agent, e.state) == ("bob", "connected"), carol_mark
            )
            await carol.engine.hangup()
            ended = await bob.wait_for(
                events.CallChanged, lambda e: e.state == "ended" and e.call_id == call_id, mark
            )
            assert ended.reason == "agent_hangup"  # type: ignore[attr-defined]
            result = await asyncio.wait_for(customer.task, 10)
            assert result.ended_by == "agent"
        finally:
            if not customer.task.done():
                await customer.end()
    assert result.answered and result.agent == "carol"
    left = platform.matching("conference_left", call_id=call_id)
    assert [e["party"] for e in left] == ["bob"]
    record = platform.call_records()[call_id]
    assert record["end_reason"] == "agent_hangup" and record["answered_by"] == "carol"


async def test_an_internal_call_from_agent_to_agent(start_platform, tmp_path: Path):
    platform = start_platform()
    async with agents(platform, tmp_path) as (bob, carol):
        # Nobody by that name: refused, and the call ends with the reason.
        call = await bob.engine.dial(agent="zed")
        await bob.wait_for(
            events.CallChanged,
            lambda e: e.call_id == call.call_id and e.reason == "unknown_target",
        )
        # carol declines the first call, answers the second.
        call = await bob.engine.dial(agent="carol")
        assert call.direction.value == "internal"
        await bob.wait_for(events.CallChanged, lambda e: e.state == "ringing")
        offered = await carol.wait_for(events.CallChanged, lambda e: e.state == "alerting")
        assert (offered.direction, offered.peer, offered.from_agent) == (  # type: ignore[attr-defined]
            "internal",
            "bob",
            "bob",
        )
        await carol.engine.decline(call.call_id)
        declined = await bob.wait_for(
            events.CallChanged, lambda e: e.call_id == call.call_id and e.state == "ended"
        )
        assert declined.reason == "declined"  # type: ignore[attr-defined]

        mark = carol.mark()
        call = await bob.engine.dial(agent="carol")
        await answered(carol, mark, peer="bob", direction="internal")
        await bob.wait_for(
            events.CallChanged, lambda e: e.call_id == call.call_id and e.state == "connected"
        )
        t = await phase()
        assert hears(bob.ear, t, CAROL_HZ) and hears(carol.ear, t, BOB_HZ)
        # No customer on it: nothing to hold, transfer or send keys to.
        await bob.engine.hold()
        await bob.wait_for(events.Error, lambda e: "no customer to hold" in e.message)
        await carol.engine.hangup()
        ended = await bob.wait_for(
            events.CallChanged, lambda e: e.call_id == call.call_id and e.state == "ended"
        )
        assert ended.reason == "agent_hangup"  # type: ignore[attr-defined]
    record = platform.call_records()[call.call_id]
    assert record["direction"] == "internal" and record["caller"] == "carol"
    assert record["answered_by"] == "carol" and record["end_reason"] == "agent_hangup"


async def test_numbers_in_a_conference_and_a_declined_blind_transfer(
    start_platform, tmp_path: Path
):
    platform = start_platform()
    async with agents(platform, tmp_path) as (bob, _carol):
        outside = Number(platform, tmp_path, "+15550100", NUMBER_HZ)
        refusing = Number(platform, tmp_path, "+15550111", 300.0, decline=True)
        for n in ("+15550100", "+15550111"):
            await asyncio.to_thread(platform.wait_for, "number_awaiting", number=n)
        customer = Customer(platform, tmp_path)
        try:
            call_id = await answered(bob)
            # A blind transfer to a number that declines: the customer goes
            # back to the head of the queue, and to bob, the free agent.
            mark = bob.mark()
            await bob.engine.transfer(number="+15550111")
            await answered(bob, mark)
            assert (await asyncio.wait_for(refusing.task, 10)).reason == "declined"

            # A conference with a number: each of the three hears the two others.
            await bob.engine.conference(number="+15550100")
            await bob.wait_for(
                events.Party, lambda e: e.agent == "+15550100" and e.state == "connected"
            )
            t = await phase()
            assert hears(customer.ear, t, BOB_HZ, NUMBER_HZ)
            assert hears(bob.ear, t, CUSTOMER_HZ, NUMBER_HZ)
            assert hears(outside.ear, t, CUSTOMER_HZ, BOB_HZ)
            # One other party at a time: a transfer now is refused, clearly.
            mark = bob.mark()
            await bob.engine.transfer(agent="carol")
            refused = await bob.wait_for(events.Error, lambda e: True, mark)
            assert "+15550100 is already on call" in refused.message  # type: ignore[attr-defined]

            # bob leaves: the customer and the number go on, with no agent.
            await bob.engine.leave_conference()
            await bob.wait_for(
                events.CallChanged, lambda e: e.call_id == call_id and e.reason == "left"
            )
            t = await phase()
            assert hears(customer.ear, t, NUMBER_HZ) and hears(outside.ear, t, CUSTOMER_HZ)
            # The number hangs up: the call is over for the customer too.
            far = await outside.end()
            assert far.answered and far.call_id == call_id
            result = await asyncio.wait_for(customer.task, 10)
            assert result.reason == "far_end_hangup"
        finally:
            if not customer.task.done():
                await customer.end()
            for trunk in (outside, refusing):
                if not trunk.task.done():
                    await trunk.end()
    record = platform.call_records()[call_id]
    assert record["end_reason"] == "far_end_hangup"
    assert "transfer_declined" in record["requeue_reasons"]


async def test_a_consult_or_transfer_nobody_takes_leaves_the_customer_with_bob(
    start_platform, tmp_path: Path
):
    """Declined, or not answered within the alert timeout: a consult gives
    the customer back to bob off hold; a blind transfer sends them back to
    the queue, which routes them to bob again. Never lost."""
    platform = start_platform(alert_timeout_s=2)
    async with agents(platform, tmp_path) as (bob, carol):
        customer = Customer(platform, tmp_path)
        try:
            call_id = await answered(bob)
            for how in ("declined", "alert_timeout"):
                mark, carol_mark = bob.mark(), carol.mark()
                await bob.engine.transfer(agent="carol", consult=True)
                offered = await carol.wait_for(
                    events.CallChanged, lambda e: e.state == "alerting", carol_mark
                )
                if how == "declined":
                    await carol.engine.decline(offered.call_id)  # type: ignore[attr-defined]
                gone = await bob.wait_for(events.Party, lambda e: e.state == "ended", mark)
                assert gone.reason == how  # type: ignore[attr-defined]
                await bob.wait_for(events.CallChanged, lambda e: e.previous == "held", mark)
                t = await phase()
                assert hears(customer.ear, t, BOB_HZ) and hears(bob.ear, t, CUSTOMER_HZ)

            # Blind, and carol lets it ring out: back to the queue, and to bob.
            mark = bob.mark()
            await bob.engine.transfer(agent="carol")
            await bob.wait_for(events.CallChanged, lambda e: e.reason == "transferred", mark)
            await answered(bob, mark)
            t = await phase()
            assert hears(customer.ear, t, BOB_HZ)
        finally:
            result = await customer.end()
    assert result.answered and result.agent == "bob" and result.call_id == call_id
    assert platform.call_records()[call_id]["requeue_reasons"] == ["alert_timeout"]


async def test_when_the_agents_phone_is_lost_in_a_conference_the_other_agent_keeps_the_customer(
    start_platform, tmp_path: Path
):
    platform = start_platform()
    async with agents(platform, tmp_path) as (bob, carol):
        customer = Customer(platform, tmp_path)
        try:
            call_id = await answered(bob)
            await bob.engine.conference(agent="carol")
            await answered(carol, from_agent="bob", purpose="conference")
            await bob.wait_for(events.Party, lambda e: e.state == "connected")
            # bob's media connection dies (his phone's network, say).
            assert bob.engine.connection is not None
            await bob.engine.connection.pc.close()
            gone = await carol.wait_for(
                events.Party, lambda e: e.agent == "bob" and e.state == "ended"
            )
            assert gone.reason == "connection_lost"  # type: ignore[attr-defined]
            t = await phase()
            assert hears(customer.ear, t, CAROL_HZ) and hears(carol.ear, t, CUSTOMER_HZ)
            assert carol.engine.calls[call_id].state.value == "connected"
        finally:
            result = await customer.end()
    assert result.answered and result.agent == "carol" and result.requeued == 0
