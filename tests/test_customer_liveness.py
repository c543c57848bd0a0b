"""A customer whose media dies while their WebSocket stays open (a browser's
peer connection closed, a network change) is noticed by the platform: the
call ends within seconds with ``customer_media_lost``, the agent is told,
the record says so, and the agent's kept connection carries the next call.

The customer is a caller process whose network (its UDP, not its WebSocket)
is cut through its netem control file (agent_phone/media/netem.py); bob is
a phone engine in this process; the platform a real process.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from inprocess import signed_in_agent
from procs import child_env

from agent_phone.phone import events


async def test_a_customer_whose_media_dies_is_ended_with_customer_media_lost(
    start_platform, start_caller, tmp_path: Path
):
    platform = start_platform(customer_media_timeout_s=2.0)
    control = tmp_path / "customer.netem"
    control.write_text("")  # no impairment yet
    async with signed_in_agent(platform, "bob", tmp_path, auto_answer=True) as bob:
        customer = start_caller(
            platform.url, "--duration", "0", env=child_env(AGENT_PHONE_NETEM_FILE=str(control))
        )
        answered = await bob.wait_for(events.CallChanged, lambda e: e.state == "connected")
        call_id = answered.call_id  # type: ignore[attr-defined]
        connection = bob.engine.connection
        await asyncio.sleep(1.0)

        cut_at = time.time()
        control.write_text("cut=1\n")  # the customer's media dies; their socket lives
        ended = await bob.wait_for(
            events.CallChanged, lambda e: e.call_id == call_id and e.state == "ended"
        )
        assert ended.reason == "customer_media_lost"  # type: ignore[attr-defined]
        lost = await asyncio.to_thread(platform.wait_for, "customer_media_lost", 5, call_id=call_id)
        assert lost["why"] == "media_stopped" and lost["party"] is None
        detection_s = lost["t"] - cut_at
        print(f"customer media cut -> call ended: {detection_s * 1000:.0f} ms")
        assert detection_s < 10.0
        # The customer, still on their socket, was told why.
        code, summary = await asyncio.to_thread(customer.result, 20)
        assert summary["answered"] and summary["ended_by"] == "platform"
        assert summary["reason"] == "customer_media_lost"

        # bob's kept connection is untouched, and the next call comes over it.
        assert bob.engine.connection is connection and not connection.closed
        mark = bob.mark()
        second = start_caller(platform.url, "--duration", "1")
        next_call = await bob.wait_for(events.CallChanged, lambda e: e.state == "connected", mark)
        assert next_call.over_persistent_connection  # type: ignore[attr-defined]
        code, summary = await asyncio.to_thread(second.result, 20)
        assert code == 0 and summary["answered"]
    record = platform.call_records()[call_id]
    assert record["end_reason"] == "customer_media_lost"
