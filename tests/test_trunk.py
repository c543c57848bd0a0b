"""Only the platform's trunks place calls: the caller presents its trunk token.

Real platform, headless phone and caller processes on loopback. A caller
with a wrong or missing token is refused (``auth_failed``, one clear line,
exit 1), the attempt is logged as a platform event naming no token, and no
call is queued; the caller with the right token, from the command line or
from ``AGENT_PHONE_TRUNK_TOKEN``, is answered.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from audio_analysis import make_tone
from test_tls import stderr_of

from agent_phone.caller.client import CallPlan, place_call
from agent_phone.media.wav import ToneSource, write_wav

CONFIGURED = "trunk-" + "k3y" * 8


def test_wrong_or_missing_token_is_refused_and_logged_the_right_one_served(
    platform, start_phone, start_caller, tmp_path: Path
):
    token = platform.trunk_token
    assert token and len(token) >= 16  # generated, and shown once, in ready
    mic = tmp_path / "mic.wav"
    write_wav(mic, make_tone(880.0, 1.0))
    phone = start_phone(platform.url, "bob", "--on-queue", "--auto-answer", "--mic-file", str(mic))
    phone.wait_for("presence", on_queue=True)

    for given, reason in (("not-" + token, "wrong_token"), (None, "missing_token")):
        caller = start_caller(platform.url, "--caller", reason, "--wait", "10", trunk_token=given)
        code, summary = caller.result(timeout=40)
        assert code == 1 and summary["answered"] is False and summary["call_id"] is None
        assert summary["error"] == "auth_failed: a valid trunk token is needed to place calls"
        lines = [line for line in stderr_of(caller).splitlines() if line.strip()]
        assert lines == [f"agent-phone-caller: {summary['error']}"]
        refused = platform.wait_for("trunk_refused", caller=reason)
        assert refused["reason"] == reason and refused["queue"] == "support"
        assert refused["peer"] == "127.0.0.1"
    assert not platform.matching("call_queued") and not phone.matching("alerting")

    code, summary = start_caller(platform.url, "--duration", "1").result(timeout=40)
    assert code == 0 and summary["answered"] is True and summary["agent"] == "bob"
    assert len(platform.matching("call_queued")) == 1
    # The token given is never written to the platform's events or log.
    refusals = json.dumps(platform.matching("trunk_refused"))
    assert "not-" + token not in refusals + stderr_of(platform)
    assert phone.quit() == 0


def test_a_configured_token_from_the_environment(
    start_platform, start_phone, start_caller, tmp_path: Path
):
    platform = start_platform(trunk_token=CONFIGURED)
    ready = platform.wait_for("ready")
    assert ready["trunk_token"] is None  # configured: not printed
    assert CONFIGURED not in "\n".join(platform.lines) + stderr_of(platform)
    phone = start_phone(platform.url, "carol", "--on-queue", "--auto-answer")
    phone.wait_for("presence", on_queue=True)
    caller = start_caller(
        platform.url,
        "--duration",
        "1",
        trunk_token=None,
        env={"AGENT_PHONE_TRUNK_TOKEN": CONFIGURED},
    )
    assert not any(a.startswith("--trunk-token") for a in caller.args)
    code, summary = caller.result(timeout=40)
    assert code == 0 and summary["answered"] is True and summary["agent"] == "carol"
    assert not platform.matching("trunk_refused")
    assert phone.quit() == 0


async def test_refused_place_call_over_a_raw_socket(platform):
    """The refusal is an ``error`` message with the stable code; the socket
    stays usable and a second, correct attempt on it is accepted."""
    place = {"type": "place_call", "version": 1, "queue": "support", "caller": "raw", "sdp": "v=0"}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(platform.url) as ws:
            await ws.send_str(json.dumps(place))
            error = json.loads((await ws.receive(10)).data)
            assert error["type"] == "error" and error["code"] == "auth_failed"
            assert error["in_reply_to"] == "place_call"
            # With the token, the platform goes on to look at the offer itself.
            await ws.send_str(json.dumps({**place, "trunk_token": platform.trunk_token}))
            error = json.loads((await ws.receive(10)).data)
            assert error["code"] == "invalid" and "SDP" in error["message"]
    assert platform.wait_for("trunk_refused", caller="raw")["reason"] == "missing_token"
    assert not platform.matching("call_queued")


async def test_a_call_cancelled_while_it_waits_ends_cleanly_and_leaves_the_queue(
    platform, tmp_path: Path
):
    """A caller's task cancelled while it waits for a message (a demo closed
    mid-call): it ends with CancelledError, nothing else, and the platform
    takes the call off its queue. (Before: closing the message generator
    that the cancelled wait was still running raised RuntimeError.)"""
    plan = CallPlan(
        platform.url, "support", caller="Erin", wait_s=30, trunk_token=platform.trunk_token or ""
    )
    task = asyncio.create_task(place_call(plan, ToneSource(440.0), None))
    queued = await asyncio.to_thread(platform.wait_for, "call_queued", 15, caller="Erin")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    ended = await asyncio.to_thread(platform.wait_for, "call_ended", 15, call_id=queued["call_id"])
    assert ended["agent"] is None
