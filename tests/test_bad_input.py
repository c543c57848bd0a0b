"""Bad input against the running platform: every message gets a clear error,
and the platform goes on serving every other agent with no call lost."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from agent_phone.protocol import MAX_MESSAGE_BYTES


async def blocking(fn, *args, **kwargs):
    """Wait for a process helper without stalling this loop (the raw socket
    must keep answering the platform's pings)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


class RawClient:
    """A hand-driven WebSocket peer that can send anything at all.

    A reader task keeps receiving (aiohttp answers the platform's pings only
    while something reads), queueing each message for ``receive``.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._inbox: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            frame = await self.ws.receive()
            await self._inbox.put(frame)
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def send(self, payload: object) -> None:
        await self.ws.send_str(payload if isinstance(payload, str) else json.dumps(payload))

    async def next_frame(self, timeout: float = 10.0) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self._inbox.get(), timeout)

    async def receive(self, kind: str | None = None, timeout: float = 10.0) -> dict:
        """The next message (of type ``kind``, skipping others)."""
        while True:
            frame = await self.next_frame(timeout)
            assert frame.type is aiohttp.WSMsgType.TEXT, f"socket ended: {frame}"
            message = json.loads(frame.data)
            if kind is None or message["type"] == kind:
                return message

    async def error_for(self, payload: object) -> dict:
        await self.send(payload)
        return await self.receive("error")


@pytest.fixture
async def raw(platform):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(platform.url, max_msg_size=0) as ws:
            client = RawClient(ws)
            yield client
            await client.close()


def sign_in(user: str = "bob", password: str = "demo", version: int = 1) -> dict:
    return {"type": "sign_in", "version": version, "user": user, "password": password}


async def test_each_bad_message_gets_a_clear_error_and_calls_survive(
    platform, start_phone, start_caller, raw
):
    carol = start_phone(platform.url, "carol", "--on-queue", "--auto-answer")
    await blocking(carol.wait_for, "presence", on_queue=True)
    caller = start_caller(platform.url, "--duration", "6")
    carols_call = (await blocking(carol.wait_for, "answered"))["call_id"]

    e = await raw.error_for("{not json")
    assert e["code"] == "malformed" and "JSON" in e["message"]
    e = await raw.error_for({"type": "bogus"})
    assert e["code"] == "unknown_type" and "bogus" in e["message"]
    e = await raw.error_for({"type": "sign_in", "version": 1, "user": "bob"})
    assert e["code"] == "invalid" and "password" in e["message"]
    e = await raw.error_for({"type": "sign_in", "version": "1", "user": "bob", "password": "x"})
    assert e["code"] == "invalid" and "version" in e["message"]
    e = await raw.error_for(
        {"type": "set_presence", "on_queue": True, "pad": "x" * MAX_MESSAGE_BYTES}
    )
    assert e["code"] == "too_large" and str(MAX_MESSAGE_BYTES) in e["message"]
    e = await raw.error_for({"type": "answer_call", "call_id": carols_call})
    assert e["code"] == "not_signed_in"
    e = await raw.error_for(sign_in(password="wrong"))
    assert e["code"] == "auth_failed" and "password" in e["message"]
    e = await raw.error_for(sign_in(user="mallory"))
    assert e["code"] == "auth_failed"

    await raw.send(sign_in())
    assert (await raw.receive("signed_in"))["agent"] == "bob"
    e = await raw.error_for(sign_in())
    assert e["code"] == "already_signed_in"
    e = await raw.error_for({"type": "answer_call", "call_id": "call-nope"})
    assert e["code"] == "unknown_call" and e["call_id"] == "call-nope"
    # Another agent's call: refused, and carol's call is untouched.
    for kind in ("answer_call", "decline_call", "hangup"):
        e = await raw.error_for({"type": kind, "call_id": carols_call})
        assert e["code"] == "not_your_call", kind
        assert e["in_reply_to"] == kind
    # What the agent heard: for their own calls only, and within bounds.
    heard = {"concealed_samples": 960, "concealed_ratio": 0.01, "grade": "good"}
    report = {"type": "quality_report", "call_id": carols_call, "heard": heard}
    e = await raw.error_for(report)
    assert e["code"] == "not_your_call" and e["in_reply_to"] == "quality_report"
    e = await raw.error_for({**report, "call_id": "call-nope"})
    assert e["code"] == "unknown_call"
    e = await raw.error_for({**report, "heard": {**heard, "concealed_ratio": 7}})
    assert e["code"] == "invalid" and "concealed_ratio" in e["message"]
    e = await raw.error_for({"type": "connection_answer", "connection_id": "conn-x", "sdp": "v=0"})
    assert e["code"] == "unknown_connection"

    code, summary = await blocking(caller.result, timeout=30)
    assert code == 0 and summary["ended_by"] == "customer"
    assert summary["talk_s"] >= 5.5  # the call lasted its whole length
    assert carol.wait_for("ended", call_id=carols_call)["reason"] == "customer_hangup"
    ended = await blocking(platform.wait_count, "call_ended", 1)
    assert [e["reason"] for e in ended] == ["customer_hangup"]


async def test_wrong_state_is_refused_without_side_effects(
    platform, start_phone, start_caller, raw
):
    await raw.send(sign_in())
    await raw.receive("signed_in")
    await raw.send({"type": "set_presence", "on_queue": True})
    await raw.receive("presence")
    caller = start_caller(platform.url, "--duration", "1", "--wait", "20")
    offer = await raw.receive("connection_offer")
    # The raw client never answers the connection offer: the platform gives
    # up on it and the call goes back to the queue, to a real phone.
    carol = start_phone(platform.url, "carol", "--on-queue", "--auto-answer")
    await blocking(carol.wait_for, "presence", on_queue=True)
    e = await raw.error_for({"type": "hangup", "call_id": "call-x"})
    assert e["code"] == "unknown_call"
    code, summary = await blocking(caller.result, timeout=40)
    assert code == 0 and summary["agent"] == "carol"
    requeued = platform.wait_for("call_requeued", agent="bob")
    assert requeued["reason"] == "connection_failed"
    closed = platform.wait_for("connection_closed", connection_id=offer["connection_id"])
    assert closed["reason"] == "setup_failed"


async def test_unsupported_version_and_huge_frames(platform, raw):
    e = await raw.error_for(sign_in(version=99))
    assert e["code"] == "unsupported_version" and "99" in e["message"]
    # Far past every limit: the transport itself refuses and closes.
    await raw.send("x" * (32 * MAX_MESSAGE_BYTES))
    frame = await raw.next_frame(10)
    assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert raw.ws.close_code == 1009  # "message too big"
    # The platform still serves.
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(platform.url) as ws:
            await ws.send_str(json.dumps(sign_in()))
            assert json.loads((await ws.receive(10)).data)["type"] == "signed_in"


def test_caller_into_an_unknown_queue_is_told(platform, start_caller):
    code, summary = start_caller(platform.url, queue="nope").result(timeout=20)
    assert code == 1 and summary["answered"] is False
    assert "unknown_queue" in summary["error"]


def test_wrong_password_at_the_headless_phone(platform, start_phone):
    phone = start_phone(platform.url, "bob", password="wrong")
    error = phone.wait_for("error")
    assert "sign-in failed" in error["message"] and "password" in error["message"]
    assert phone.wait_exit(10) == 1


def test_a_missing_audio_device_is_named_at_start(platform, start_phone):
    phone = start_phone(platform.url, "bob", "--on-queue", "--mic", "nosuchdevice")
    error = phone.wait_for("error")
    assert error["code"] == "audio" and "nosuchdevice" in error["message"]
    assert phone.wait_exit(10) == 1
    assert "Traceback" not in phone.stderr_tail(50)
    assert not platform.matching("agent_signed_in")  # it never went on queue


@pytest.mark.parametrize("persistent", [True, False])
async def test_a_call_cancelled_while_its_connection_is_set_up_leaves_nothing_half_open(
    platform, start_caller, raw, persistent
):
    from aiortc import RTCSessionDescription

    from agent_phone.media.ice import ice_addresses, restrict_ice_addresses
    from agent_phone.media.liveness import create_liveness_channel
    from agent_phone.media.peer import new_peer_connection

    await raw.send({**sign_in(), "persistent": persistent})
    await raw.receive("signed_in")
    await raw.send({"type": "set_presence", "on_queue": True})
    await raw.receive("presence")
    caller = start_caller(platform.url, "--wait", "1")
    offer = await raw.receive("connection_offer")
    # The customer gives up while the agent's connection is being set up.
    code, summary = await blocking(caller.result, timeout=20)
    assert code == 1 and summary["answered"] is False
    await blocking(platform.wait_for, "call_ended", call_id=summary["call_id"])

    # Then the phone's answer arrives, from a real WebRTC stack.
    before = ice_addresses()
    restrict_ice_addresses(["127.0.0.1"])
    pc = new_peer_connection()
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        create_liveness_channel(pc)
        await pc.setLocalDescription(await pc.createAnswer())
        await raw.send(
            {
                "type": "connection_answer",
                "connection_id": offer["connection_id"],
                "sdp": pc.localDescription.sdp,
            }
        )
        conn = offer["connection_id"]
        await blocking(platform.wait_for, "connection_established", connection_id=conn)
        if persistent:
            # A whole, kept connection with its timeout: not a zombie.
            kept = await blocking(platform.wait_for, "connection_kept", connection_id=conn)
            assert kept["expires_at"] > kept["t"]
            assert not platform.matching("connection_closed", connection_id=conn)
        else:
            closed = await blocking(platform.wait_for, "connection_closed", connection_id=conn)
            assert closed["reason"] == "persistent_off"
        assert not platform.matching("call_delivered")
    finally:
        await pc.close()
        restrict_ice_addresses(before)


async def test_an_answer_without_a_dtls_fingerprint_is_refused_at_once(platform, raw):
    from aiortc import RTCSessionDescription

    from agent_phone.media.ice import ice_addresses, restrict_ice_addresses
    from agent_phone.media.liveness import create_liveness_channel
    from agent_phone.media.peer import new_peer_connection

    # alice holds acceptOffQueue: her connection is offered at sign-in (R5).
    await raw.send({**sign_in("alice"), "persistent": True})
    await raw.receive("signed_in")
    offer = await raw.receive("connection_offer")
    before = ice_addresses()
    restrict_ice_addresses(["127.0.0.1"])
    pc = new_peer_connection()
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        create_liveness_channel(pc)
        await pc.setLocalDescription(await pc.createAnswer())
        stripped = "".join(
            line
            for line in pc.localDescription.sdp.splitlines(keepends=True)
            if not line.startswith("a=fingerprint:")
        )
        conn = offer["connection_id"]
        error = await raw.error_for(
            {"type": "connection_answer", "connection_id": conn, "sdp": stripped}
        )
        assert error["code"] == "invalid" and "fingerprint" in error["message"]
        closed = await blocking(platform.wait_for, "connection_closed", connection_id=conn)
        offered = platform.matching("connection_offered", connection_id=conn)[0]
        # Closed as a failed set-up, not left waiting for connect_timeout_s (10 s).
        assert closed["reason"] == "setup_failed"
        assert closed["t"] - offered["t"] < 10
        assert not platform.matching("connection_established", connection_id=conn)
    finally:
        await pc.close()
        restrict_ice_addresses(before)
