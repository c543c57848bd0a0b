"""The agent's keys reach a customer whose endpoint negotiated RFC 4733
telephone-events as events, not tones: the customer (the caller's
``place_call`` with ``rfc4733``, as a browser offers) gets each key once,
and hears no DTMF tone; a customer that did not negotiate them still hears
the tones (tests/test_hold_dtmf_e2e.py). A real platform process; bob a
phone engine in this process. (A customer's keys to the agent:
tests/test_browser_customer.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from inprocess import signed_in_agent

from agent_phone.caller.client import CallPlan, place_call
from agent_phone.media.wav import ToneSource
from agent_phone.phone import events
from agent_phone.phone.errors import PhoneError


async def test_the_agents_keys_reach_the_customer_as_events(start_platform, tmp_path: Path):
    platform = start_platform()
    async with signed_in_agent(platform, "bob", tmp_path, auto_answer=True) as bob:
        plan = CallPlan(
            platform.url,
            "support",
            duration_s=None,
            wait_s=20,
            trunk_token=platform.trunk_token or "",
            listen=True,
            rfc4733=True,
        )
        hangup = asyncio.Event()
        customer = asyncio.create_task(place_call(plan, ToneSource(440.0), None, hangup))
        call = await bob.wait_for(events.CallChanged, lambda e: e.state == "connected")
        await asyncio.sleep(0.5)
        await bob.engine.send_dtmf("159#")
        sent = await asyncio.to_thread(platform.wait_for, "dtmf", 10, digits="159#")
        assert sent["how"] == "rfc4733" and sent["duration_s"] == pytest.approx(0.96)
        with pytest.raises(PhoneError):
            await bob.engine.send_dtmf("12x")
        await asyncio.sleep(sent["duration_s"] + 0.5)
        hangup.set()
        result = await asyncio.wait_for(customer, 20)
    assert result.answered and result.call_id == call.call_id  # type: ignore[attr-defined]
    assert result.dtmf_events == "159#"
    assert result.dtmf_heard == ""  # no tones: the keys came as events
