"""Trickle ICE (RFC 8838) through the platform: an offer or answer may go
without its candidates, which follow as ``ice_candidate`` messages, then an
empty one (end-of-candidates). A customer placing a call, a number answering
one and an agent's phone answering a connection offer may each trickle, and
bad candidates are refused one by one, with the call or connection going on.

A real platform process; customers and numbers are the caller's
``place_call`` in this loop (``CallPlan.trickle``) or raw WebSockets with
an aiortc peer connection; bob is a phone engine in this loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription
from inprocess import signed_in_agent
from parties import CUSTOMER_HZ, NUMBER_HZ, Customer, Number, hears, phase

from agent_phone.media.ice import MAX_REMOTE_CANDIDATES, split_candidates
from agent_phone.media.peer import new_peer_connection
from agent_phone.media.tracks import OutboundAudioTrack
from agent_phone.media.wav import ToneSource
from agent_phone.phone import events

BOB_HZ = 880.0


async def test_a_customer_and_a_number_that_trickle_are_heard_both_ways(start_platform, tmp_path):
    platform = start_platform()
    async with signed_in_agent(platform, "bob", tmp_path, auto_answer=True, hz=BOB_HZ) as bob:
        customer = Customer(platform, tmp_path, trickle=True)
        call = await bob.wait_for(events.CallChanged, lambda e: e.state == "connected")
        t = await phase()
        assert hears(bob.ear, t, CUSTOMER_HZ) and hears(customer.ear, t, BOB_HZ)
        result = await customer.end()
        assert result.answered and result.call_id == call.call_id  # type: ignore[attr-defined]

        # bob calls a number whose trunk answers with a trickled offer.
        number = Number(platform, tmp_path, "+15550100", NUMBER_HZ, trickle=True)
        await asyncio.to_thread(platform.wait_for, "number_awaiting", number="+15550100")
        mark = bob.mark()
        out = await bob.engine.dial(number="+15550100")
        await bob.wait_for(
            events.CallChanged, lambda e: e.call_id == out.call_id and e.state == "connected", mark
        )
        t = await phase()
        assert hears(bob.ear, t, NUMBER_HZ) and hears(number.ear, t, BOB_HZ)
        far = await number.end()
        assert far.answered
    assert not platform.matching("refused")


class Raw:
    """A raw WebSocket to the platform, JSON in and out."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def next(self, *types: str) -> dict[str, Any]:
        """The next message of one of ``types`` (others are skipped)."""
        for _ in range(100):
            message = json.loads((await self.ws.receive(10)).data)
            if message["type"] in types:
                return message
        raise AssertionError(f"no {types} in 100 messages")

    async def refused(self, code: str, **candidate: Any) -> str:
        await self.send(type="ice_candidate", **candidate)
        error = await self.next("error")
        assert error["code"] == code and error["in_reply_to"] in ("ice_candidate", None), error
        return str(error["message"])


async def test_bad_candidates_are_refused_one_by_one_and_the_call_goes_on(platform):
    pc = new_peer_connection()
    pc.addTrack(OutboundAudioTrack(ToneSource(CUSTOMER_HZ)))
    await pc.setLocalDescription(await pc.createOffer())
    offer, candidates = split_candidates(pc.localDescription.sdp)
    assert candidates and "a=candidate" not in offer
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(platform.url) as ws:
            raw = Raw(ws)
            # Before any call: nothing to add it to.
            good = {"candidate": candidates[0][0], "sdp_mid": candidates[0][1]}
            await raw.refused("not_signed_in", **good)
            await raw.send(
                type="place_call",
                version=1,
                queue="support",
                caller="Trickler",
                sdp=offer,
                trunk_token=platform.trunk_token,
            )
            accepted = await raw.next("call_accepted")
            call_id = accepted["call_id"]
            # Each refused with the reason; none changes the call.
            malformed = await raw.refused("invalid", candidate="candidate:1 2", sdp_mid="0")
            assert "malformed" in malformed
            assert "not a candidate" in await raw.refused("invalid", candidate="x", sdp_mid="0")
            assert "media section" in await raw.refused("invalid", candidate=good["candidate"])
            assert "names are not resolved" in await raw.refused(
                "invalid", candidate="candidate:1 1 udp 1 abc.local 9 typ host", sdp_mid="0"
            )
            await raw.refused("invalid", candidate="candidate:" + "1" * 600, sdp_mid="0")
            await raw.refused("invalid", sdp_mid="0")  # no candidate field at all
            await raw.refused("unknown_call", call_id="call-000000000000", **good)

            # The real ones, and the call's media connects: it is queued.
            for candidate, mid, index in candidates:
                await raw.send(
                    type="ice_candidate", candidate=candidate, sdp_mid=mid, sdp_mline_index=index
                )
            await pc.setRemoteDescription(RTCSessionDescription(accepted["sdp"], "answer"))
            queued = await asyncio.to_thread(platform.wait_for, "call_queued", 15, call_id=call_id)
            assert queued["caller"] == "Trickler"

            # A flood: past the limit each one is refused.
            for port in range(1, MAX_REMOTE_CANDIDATES - len(candidates) + 1):
                await raw.send(
                    type="ice_candidate",
                    candidate=f"candidate:9 1 udp 1 127.0.0.1 {port} typ host",
                    sdp_mid="0",
                )
            assert "too many" in await raw.refused(
                "invalid", candidate="candidate:9 1 udp 1 127.0.0.1 60000 typ host", sdp_mid="0"
            )
            await raw.send(type="ice_candidate", candidate="", sdp_mid="0")
            assert "already ended" in await raw.refused("invalid", **good)
            await raw.send(type="caller_hangup", call_id=call_id)
            ended = await raw.next("call_ended")
            assert ended["reason"] == "customer_hangup"
    finally:
        await pc.close()


async def test_a_phone_that_trickles_its_answer_gets_its_connection(platform):
    """An agent's phone (here a raw one: any WebRTC stack, as a browser
    would be) answers the platform's offer without candidates and trickles
    them, naming the connection."""
    pc = new_peer_connection()
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(platform.url) as ws:
            raw = Raw(ws)
            # (alice may take calls off queue: her connection is set up at sign-in)
            await raw.send(type="sign_in", version=1, user="alice", password="demo", client="raw")
            await raw.next("signed_in")
            offer = await raw.next("connection_offer")
            connection_id = offer["connection_id"]
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            answer, candidates = split_candidates(pc.localDescription.sdp)
            await raw.send(type="connection_answer", connection_id=connection_id, sdp=answer)
            await raw.refused(
                "unknown_connection",
                connection_id="conn-000000000000",
                candidate=candidates[0][0],
                sdp_mid=candidates[0][1],
            )
            for candidate, mid, index in candidates:
                await raw.send(
                    type="ice_candidate",
                    connection_id=connection_id,
                    candidate=candidate,
                    sdp_mid=mid,
                    sdp_mline_index=index,
                )
            await raw.send(type="ice_candidate", connection_id=connection_id, candidate="")
            state = await raw.next("connection_state")
            while state["state"] != "active":
                state = await raw.next("connection_state")
            assert state["connection_id"] == connection_id
            await raw.send(type="sign_out")
    finally:
        await pc.close()
