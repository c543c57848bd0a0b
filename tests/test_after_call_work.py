"""After-call work: a call from a queue with wrap-up codes leaves its agent
in ``after_call_work``, and no call is routed to them until they wrap it up
with a code (kept in the call's record) or the queue's timeout passes.

The agent is a ``PhoneEngine`` in this process, the platform a real
process, the customers ``place_call`` in this event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from inprocess import Agent, signed_in_agent
from procs import write_config

from agent_phone.caller.client import CallPlan, place_call
from agent_phone.cloud.config import (
    DEFAULT_ACW_TIMEOUT_S,
    DEMO_ACW_TIMEOUT_S,
    DEMO_WRAP_UP_CODES,
    ConfigError,
    QueueConfig,
    demo_config,
    load_config,
)
from agent_phone.media.wav import ToneSource
from agent_phone.phone import events
from agent_phone.phone.errors import PhoneError
from agent_phone.protocol import SetStatus, WrapUp

CODES = ["resolved", "escalated"]


def _customer(platform, name: str) -> CallPlan:
    return CallPlan(
        platform.url,
        "support",
        caller=name,
        duration_s=0.5,
        wait_s=30,
        trunk_token=platform.trunk_token or "",
    )


async def _a_call_in_after_call_work(agent: Agent, platform, name: str) -> events.AfterCallWork:
    """``name`` calls, is answered (auto answer), hangs up; returns the
    after-call work that follows."""
    result = await place_call(_customer(platform, name), ToneSource(440.0))
    assert result.answered and result.agent == "bob"
    acw = await agent.wait_for(events.AfterCallWork, lambda e: e.call_id == result.call_id)
    assert isinstance(acw, events.AfterCallWork)
    return acw


async def test_no_call_is_routed_until_the_agent_wraps_up(start_platform, tmp_path: Path):
    platform = start_platform(queue={"wrap_up_codes": CODES, "acw_timeout_s": 120})
    async with signed_in_agent(platform, "bob", tmp_path, auto_answer=True) as bob:
        acw = await _a_call_in_after_call_work(bob, platform, "Dana")
        assert acw.codes == CODES and acw.queue == "support" and acw.timeout_s == 120
        status = await bob.wait_for(events.Status, lambda e: e.status == "after_call_work")
        assert status.cause == "call_ended"  # type: ignore[attr-defined]
        assert 100 < acw.deadline - status.since <= 120  # type: ignore[attr-defined]

        # A second customer waits: bob is not available.
        second = asyncio.create_task(place_call(_customer(platform, "Eve"), ToneSource(440.0)))
        queued = await asyncio.to_thread(platform.wait_for, "call_queued", caller="Eve")

        # Statuses wait for the wrap-up, and so do codes the queue does not list.
        with pytest.raises(PhoneError, match="finish after-call work first"):
            await bob.engine.set_status("break", "coffee")
        with pytest.raises(PhoneError, match="'lunch' is not a wrap-up code"):
            await bob.engine.wrap_up("lunch")
        # The platform holds the same rules, whatever a phone sends.
        await bob.engine.session.send(SetStatus(status="available"))
        await bob.wait_for(events.Error, lambda e: "wrap it up first" in e.message)
        await bob.engine.session.send(WrapUp(call_id=acw.call_id, code="lunch"))
        refused = await bob.wait_for(events.Error, lambda e: "'lunch' is not" in e.message)
        assert refused.code == "invalid" and "resolved, escalated" in refused.message  # type: ignore[attr-defined]
        await bob.engine.session.send(WrapUp(call_id="call-000000000000", code="resolved"))
        await bob.wait_for(events.Error, lambda e: e.code == "unknown_call")
        # Each refusal was answered after Eve was queued: had bob been
        # available, she would have been routed at once.
        assert not platform.matching("call_routed", call_id=queued["call_id"])

        await bob.engine.wrap_up("resolved")
        back = await bob.wait_for(events.Status, lambda e: e.cause == "wrapped_up")
        assert back.status == "available"  # type: ignore[attr-defined]
        assert bob.engine.after_call_work is None
        # Eve reaches bob now, and her call is wrapped up in turn.
        eve = await asyncio.wait_for(second, 30)
        assert eve.answered and eve.agent == "bob" and eve.call_id == queued["call_id"]
        await bob.wait_for(events.AfterCallWork, lambda e: e.call_id == eve.call_id)
        await bob.engine.wrap_up("escalated", eve.call_id)
        await bob.wait_for(events.Status, lambda e: e.cause == "wrapped_up" and e is not back)

    # The codes, and how long the work took, are in the call records.
    done = await asyncio.to_thread(platform.wait_for, "after_call_work", call_id=eve.call_id)
    assert done["agent"] == "bob" and done["code"] == "escalated"
    records = platform.call_records()
    first = records[acw.call_id]
    assert first["wrap_up_code"] == "resolved" and 0 < first["acw_s"] < 120
    assert records[eve.call_id]["wrap_up_code"] == "escalated"
    # ...and the status changes, for reporting.
    page = platform.admin_get("/statuses?agent=bob&limit=20")
    kept = [(c["status"], c["cause"]) for c in reversed(page["statuses"])]
    assert ("after_call_work", "call_ended") in kept and ("available", "wrapped_up") in kept


async def test_after_call_work_ends_by_itself_with_no_code(start_platform, tmp_path: Path):
    platform = start_platform(queue={"wrap_up_codes": CODES, "acw_timeout_s": 1})
    async with signed_in_agent(platform, "bob", tmp_path, auto_answer=True) as bob:
        acw = await _a_call_in_after_call_work(bob, platform, "Dana")
        back = await bob.wait_for(events.Status, lambda e: e.cause == "acw_timeout")
        assert back.status == "available" and bob.engine.after_call_work is None  # type: ignore[attr-defined]
        with pytest.raises(PhoneError, match="no after-call work"):
            await bob.engine.wrap_up("resolved")
        # On queue again: the next call is routed to bob.
        await _a_call_in_after_call_work(bob, platform, "Eve")
        # Signing out ends after-call work too; the record keeps no code.
    signed_out = await asyncio.to_thread(platform.wait_for, "after_call_work", cause="requested")
    timed_out = platform.matching("after_call_work", call_id=acw.call_id)[0]
    assert timed_out["code"] is None and timed_out["cause"] == "acw_timeout"
    assert 0.9 < timed_out["acw_s"] < 5
    record = platform.call_records()[signed_out["call_id"]]
    assert record["wrap_up_code"] is None and record["acw_s"] is not None


def test_wrap_up_codes_and_timeout_are_read_and_checked_from_the_configuration(tmp_path: Path):
    def load(**queue: object) -> QueueConfig:
        return load_config(write_config(tmp_path / "p.toml", queue)).queues["support"]

    assert not load().after_call_work  # no codes: no after-call work
    support = load(wrap_up_codes=["resolved", "escalated"])
    assert support.after_call_work and support.acw_timeout_s == DEFAULT_ACW_TIMEOUT_S
    assert load(wrap_up_codes=["resolved"], acw_timeout_s=5).acw_timeout_s == 5.0
    for bad, words in [
        ({"wrap_up_codes": "resolved"}, "must be a list of distinct codes"),
        ({"wrap_up_codes": ["a", "a"]}, "must be a list of distinct codes"),
        ({"wrap_up_codes": [""]}, "must be a list of distinct codes"),
        ({"wrap_up_codes": ["a"], "acw_timeout_s": 0}, "acw_timeout_s must be a positive"),
    ]:
        with pytest.raises(ConfigError, match=words):
            load(**bad)
    # The built-in demo has after-call work on its queue.
    demo = demo_config().queues["support"]
    assert demo.wrap_up_codes == DEMO_WRAP_UP_CODES and demo.acw_timeout_s == DEMO_ACW_TIMEOUT_S
