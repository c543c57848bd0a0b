"""The media heartbeat (agent_phone/media/liveness.py) on two real aiortc
peer connections over loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from agent_phone.media.ice import ice_addresses, restrict_ice_addresses
from agent_phone.media.liveness import Heartbeat, create_liveness_channel
from agent_phone.media.peer import new_peer_connection


async def _connected_pair() -> tuple[RTCPeerConnection, RTCPeerConnection, Any, Any]:
    a, b = new_peer_connection(), new_peer_connection()
    channels = create_liveness_channel(a), create_liveness_channel(b)
    a.addTransceiver("audio")
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    async with asyncio.timeout(15):
        while not all(c.readyState == "open" for c in channels):
            await asyncio.sleep(0.05)
    return a, b, *channels


@pytest.mark.parametrize("gone", ["dtls_closed", "ice_silent"])
async def test_a_peer_gone_is_declared_dead_once_without_stray_errors(gone: str):
    """The far end goes away under a running heartbeat, either closing its
    DTLS transport (a clean close) or falling silent (its ICE transport
    stopped: a killed process or a cut network). The heartbeat declares the
    connection dead once, and nothing is left in the loop's exception
    handler ("Task exception was never retrieved")."""
    before = ice_addresses()
    restrict_ice_addresses(["127.0.0.1"])
    loop = asyncio.get_running_loop()
    stray: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: stray.append(context))
    a, b, channel_a, _ = await _connected_pair()
    dead = asyncio.Event()
    deaths: list[float] = []
    beat = Heartbeat(channel_a, lambda: (deaths.append(1), dead.set()), 0.1, 1.0)
    beat.start()
    try:
        dtls = b.getTransceivers()[0].sender.transport
        await (dtls.stop() if gone == "dtls_closed" else dtls.transport.stop())
        async with asyncio.timeout(10):
            await dead.wait()
        await asyncio.sleep(0.5)
    finally:
        beat.stop()
        await a.close()
        await b.close()
        loop.set_exception_handler(None)
        restrict_ice_addresses(before)
    assert deaths == [1]
    errors = [c for c in stray if "exception" in c]
    assert not errors, [repr(c["exception"]) for c in errors]


async def test_silence_counts_from_start_even_if_the_channel_never_opens():
    """A platform gone between DTLS and SCTP (killed just as the connection
    came up) never opens the heartbeat channel. The phone starts its
    heartbeat when WebRTC reports "connected" (PhoneConnection._on_state),
    so that silence counts and the connection is declared dead in seconds,
    not after ICE consent's ~30 s. Here: a real channel on a peer connection
    that never connects."""
    pc = new_peer_connection()
    channel = create_liveness_channel(pc)
    dead = asyncio.Event()
    beat = Heartbeat(channel, dead.set, 0.1, 0.2, open_timeout=0.5)
    started = time.monotonic()
    beat.start()
    try:
        async with asyncio.timeout(5):
            await dead.wait()
    finally:
        beat.stop()
        await pc.close()
    assert channel.readyState != "open"
    assert 0.5 <= time.monotonic() - started < 3.0


async def test_beats_are_independent_so_lost_ones_do_not_hold_the_rest_back():
    """The channel is unordered and never retransmits: a beat lost on the
    way does not hold back the ones after it (a reliable channel's first
    retransmission waits 3 s, longer than the limit). Here the far end's
    SCTP drops every other beat it is sent, as a lossy network would; the
    heartbeat keeps hearing the rest and never declares the peer dead."""
    before = ice_addresses()
    restrict_ice_addresses(["127.0.0.1"])
    a, b, channel_a, channel_b = await _connected_pair()
    assert channel_a.ordered is False and channel_a.maxRetransmits == 0
    heard_by_b: list[float] = []
    channel_b.on("message", lambda _m: heard_by_b.append(time.monotonic()))
    sctp = a.sctp  # a's data packets to b go out here
    send = sctp._send_chunk
    sent = 0

    async def lossy_send(chunk: Any) -> None:
        nonlocal sent
        if type(chunk).__name__ == "DataChunk":
            sent += 1
            if sent % 2 == 0:
                return  # lost on the way
        await send(chunk)

    sctp._send_chunk = lossy_send
    deaths: list[int] = []
    beat = Heartbeat(channel_a, lambda: deaths.append(1), 0.1, 0.5)
    beat_b = Heartbeat(channel_b, lambda: deaths.append(2), 0.1, 0.5)
    beat.start()
    beat_b.start()
    try:
        await asyncio.sleep(2.0)
    finally:
        beat.stop()
        beat_b.stop()
        await a.close()
        await b.close()
        restrict_ice_addresses(before)
    # Half the beats arrived, evenly: no gap longer than two intervals.
    assert len(heard_by_b) >= 7
    gaps = [y - x for x, y in zip(heard_by_b, heard_by_b[1:], strict=False)]
    assert max(gaps) < 0.35, gaps
    assert deaths == []
