"""Media stays on the configured addresses: 127.0.0.1 by default, no STUN."""

from __future__ import annotations

import re

import pytest
from aiortc import RTCSessionDescription

from agent_phone.media.ice import ice_addresses, restrict_ice_addresses
from agent_phone.media.peer import new_peer_connection


def candidate_addresses(sdp: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"a=candidate:\S+ \d+ \w+ \d+ (\S+) \d+ typ", sdp)}


@pytest.fixture(autouse=True)
def _restore():
    before = ice_addresses()
    yield
    restrict_ice_addresses(before)


async def test_offer_and_answer_carry_only_loopback_candidates():
    restrict_ice_addresses(["127.0.0.1"])
    offerer, answerer = new_peer_connection(), new_peer_connection()
    try:
        offerer.addTransceiver("audio")
        await offerer.setLocalDescription(await offerer.createOffer())
        offer = offerer.localDescription.sdp
        await answerer.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await answerer.setLocalDescription(await answerer.createAnswer())
        answer = answerer.localDescription.sdp
    finally:
        await offerer.close()
        await answerer.close()
    for sdp in (offer, answer):
        assert candidate_addresses(sdp) == {"127.0.0.1"}
        assert "typ srflx" not in sdp and "typ relay" not in sdp  # no STUN, no TURN


async def test_no_stun_server_is_asked():
    # aiortc falls back to a public STUN server when given no ICE servers.
    pc = new_peer_connection()
    try:
        transceiver = pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        ice = transceiver.sender.transport.transport.iceGatherer._connection
        assert ice.stun_server is None and ice.turn_server is None
    finally:
        await pc.close()


def test_bad_addresses_are_refused():
    with pytest.raises(ValueError):
        restrict_ice_addresses(["not-an-address"])
    with pytest.raises(ValueError):
        restrict_ice_addresses([])
