"""The phone engine in this process against the real platform process: its
call model through real calls, and observers that cannot break it.

The agent is a ``PhoneEngine`` with a tone for a microphone and a WAV file
for a speaker; the customer is ``place_call`` in the same event loop, so a
test waits on events, never on sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from inprocess import Agent, signed_in_agent

from agent_phone.caller.client import CallPlan, place_call
from agent_phone.media.wav import ToneSource
from agent_phone.phone import events
from agent_phone.phone.call import CallState, Direction
from agent_phone.phone.errors import PhoneError


@pytest.fixture
async def agent(platform, tmp_path: Path) -> AsyncIterator[Agent]:
    async with signed_in_agent(platform, "bob", tmp_path) as watched:
        yield watched


def _customer(platform, duration_s: float | None = 30.0) -> CallPlan:
    return CallPlan(
        platform.url,
        "support",
        caller="Dana",
        duration_s=duration_s,
        wait_s=20,
        trunk_token=platform.trunk_token or "",
    )


async def test_a_call_lives_in_one_object_and_each_change_is_told_once(agent, platform):
    hangup, connected = asyncio.Event(), asyncio.Event()
    customer = asyncio.create_task(
        place_call(_customer(platform), ToneSource(440.0), hangup=hangup, connected=connected)
    )
    try:
        await _first_call(agent, customer, hangup, connected)
    finally:  # a failed assertion must not leave the customer's call running
        hangup.set()
        await asyncio.wait_for(customer, 20)


async def _first_call(
    agent: Agent, customer: asyncio.Task, hangup: asyncio.Event, connected: asyncio.Event
) -> None:
    offered = await agent.wait_for(events.CallChanged, lambda e: e.state == "alerting")
    assert isinstance(offered, events.CallChanged)
    call_id = offered.call_id
    call = agent.engine.calls[call_id]
    assert agent.engine.call is call and call.direction is Direction.INBOUND
    assert offered.previous is None and offered.peer == "Dana" and offered.queue == "support"

    # Wrong state and unknown calls are refused by the phone, and change nothing.
    with pytest.raises(
        PhoneError, match="alerting, not dialing or ringing or answering or connected or held"
    ):
        await agent.engine.hangup()
    with pytest.raises(PhoneError, match="there is no call 'call-nope'"):
        await agent.engine.answer("call-nope")

    await agent.engine.answer(call_id)
    # (answering until the platform's word arrives, which may already have)
    with pytest.raises(PhoneError, match="(answering|connected), not alerting"):
        await agent.engine.decline(call_id)
    await agent.wait_for(events.CallChanged, lambda e: e.state == "connected")
    assert call.state is CallState.CONNECTED and call.answered

    # The customer hangs up once their side, too, knows it was answered (the
    # agent's word and the customer's travel separately).
    await asyncio.wait_for(connected.wait(), 10)
    hangup.set()
    ended = await agent.wait_for(events.CallChanged, lambda e: e.state == "ended")
    assert isinstance(ended, events.CallChanged)
    result = await asyncio.wait_for(customer, 20)
    assert result.answered and result.agent == "bob"
    assert call.ended and call_id not in agent.engine.calls and agent.engine.call is None
    assert [(e.previous, e.state) for e in agent.calls(call_id)] == [
        (None, "alerting"),
        ("alerting", "connected"),
        ("connected", "ended"),
    ]
    assert ended.reason == "customer_hangup" and ended.answered and ended.duration_s > 0
    # The older per-step events still come, each after its ``call`` event.
    names = [e.name for e in agent.events if getattr(e, "call_id", None) == call_id]
    for older in ("alerting", "answered", "ended"):
        assert names.index(older) > names.index("call"), names


async def test_an_observer_that_raises_does_not_end_the_session(agent, platform):
    def broken(_event: events.PhoneEvent) -> None:
        raise RuntimeError("a front-end's bug")

    agent.engine.subscribe(broken)
    customer = asyncio.create_task(
        place_call(_customer(platform, duration_s=0.5), ToneSource(440.0))
    )
    offered = await agent.wait_for(events.CallChanged, lambda e: e.state == "alerting")
    await agent.engine.answer(offered.call_id)  # type: ignore[attr-defined]
    ended = await agent.wait_for(events.CallChanged, lambda e: e.state == "ended")
    assert ended.reason == "customer_hangup"  # type: ignore[attr-defined]
    assert (await asyncio.wait_for(customer, 20)).answered
    # Still signed in, on the same socket: no loss, no reconnect.
    assert agent.engine.agent == "bob" and not agent.engine.closed.is_set()
    assert not [e for e in agent.events if isinstance(e, events.Reconnecting | events.Resuming)]
    await agent.engine.set_on_queue(False)
    await agent.wait_for(events.Presence, lambda e: not e.on_queue)
