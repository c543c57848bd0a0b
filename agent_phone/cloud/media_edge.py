"""The platform's media edge: WebRTC legs to agents and to customers.

An ``AgentLink`` is the connection to one agent's phone (the thing the
persistent connection keeps); a ``CustomerLeg`` is one customer's call. A call
is carried by bridging a customer leg onto an agent link: each side's Opus
packets are *forwarded* to the other as they arrive, neither decoded nor
re-encoded (agent_phone/media/receiver.py taps them, the far track re-times
and sends them: agent_phone/media/tracks.py), so the FEC each phone puts in
reaches the other end, and a call costs the platform no codec work.
Between calls a link's track is parked, so it sends no audio at all.

What the customer hears is chosen by the leg's ``CustomerFeed`` (the waiting
tone, the agent, the hold music, DTMF). While a call is held the bridge is
cut both ways here, on the platform: the agent's packets are dropped and the
link sends the agent nothing, whatever the phone does.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import Callable

from aiortc import RTCRtpSender, RTCSessionDescription

from agent_phone.cloud.customer_audio import CustomerFeed, Feed
from agent_phone.media.liveness import Heartbeat, create_liveness_channel
from agent_phone.media.peer import new_peer_connection
from agent_phone.media.receiver import PacketTap, tap_audio
from agent_phone.media.tracks import FORWARDED, OutboundAudioTrack
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)


class LinkState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    ACTIVE = "active"
    CLOSED = "closed"


class LinkError(Exception):
    pass


def _audio_sender(pc_senders: list[RTCRtpSender]) -> RTCRtpSender:
    for sender in pc_senders:
        if sender.kind == "audio":
            return sender
    raise LinkError("no audio sender")


class CustomerLeg:
    """The WebRTC leg to one customer; answers the caller's offer."""

    def __init__(self, call_id: str) -> None:
        self.pc = new_peer_connection()
        #: What the customer hears: the waiting tone until an agent is bridged.
        self.feed = CustomerFeed(call_id)
        self.call_id = call_id
        #: The customer's packets; an agent link points it at itself.
        self.tap: PacketTap | None = None
        self.track = OutboundAudioTrack(self.feed)
        self._tasks = TaskSet(f"leg-{call_id}")
        self._closed = False
        self._connected = asyncio.Event()
        self.pc.on("connectionstatechange", self._on_state)

    @property
    def call_id(self) -> str:
        return self.feed.call_id

    @call_id.setter
    def call_id(self, call_id: str) -> None:
        self.feed.call_id = call_id

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected":
            self._connected.set()

    async def wait_connected(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise LinkError(f"the customer's media did not connect within {timeout:g} s") from None

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        try:
            self.tap = tap_audio(self.pc)  # dropped until bridged
        except ValueError:
            raise LinkError("the customer's offer has no audio") from None
        self.pc.addTrack(self.track)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._tasks.close()
        await self.pc.close()
        self.track.stop()


class AgentLink:
    """The platform's side of one media connection to an agent's phone.

    The platform offers and the phone answers (R1). A heartbeat over a data
    channel notices a dead phone within seconds (``on_dead``).
    """

    def __init__(self, agent: str, on_dead: Callable[[AgentLink, str], None]) -> None:
        self.id = "conn-" + secrets.token_hex(6)
        self.agent = agent
        self.state = LinkState.NEW
        self.created_at = time.monotonic()
        self.calls_carried = 0
        self.pc = new_peer_connection()
        self._on_dead = on_dead
        self._transceiver = self.pc.addTransceiver("audio", direction="sendrecv")
        self._tap = tap_audio(self.pc, self._from_agent)
        self._track = OutboundAudioTrack(parked=True)
        self._transceiver.sender.replaceTrack(self._track)
        self._leg: CustomerLeg | None = None
        self._held = False
        self._tasks = TaskSet(self.id)
        self._connected = asyncio.Event()
        channel = create_liveness_channel(self.pc)
        self._heartbeat = Heartbeat(channel, lambda: self._dead("heartbeat_lost"))
        self.pc.on("connectionstatechange", self._on_connection_state)

    def __repr__(self) -> str:
        return f"<AgentLink {self.id} {self.agent} {self.state.value}>"

    @property
    def in_call(self) -> bool:
        return self._leg is not None

    @property
    def track(self) -> OutboundAudioTrack:
        return self._track

    def _set_state(self, state: LinkState) -> None:
        if state != self.state:
            logger.info("%s %s: %s -> %s", self.id, self.agent, self.state.value, state.value)
            self.state = state

    def _from_agent(self, payload: bytes, timestamp: int, sequence: int) -> None:
        """The agent's packets, on to the customer while bridged (the
        customer's track drops them while it plays anything else)."""
        leg = self._leg
        if leg is not None and not self._held:
            leg.track.forward(payload, timestamp)

    def _from_customer(self, payload: bytes, timestamp: int, sequence: int) -> None:
        if not self._held:
            self._track.forward(payload, timestamp)

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed") and self.state is not LinkState.CLOSED:
            self._dead(f"ice_{state}")

    def _dead(self, reason: str) -> None:
        if self.state is not LinkState.CLOSED:
            self._on_dead(self, reason)

    async def create_offer(self) -> str:
        self._set_state(LinkState.CONNECTING)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str, timeout: float) -> None:
        """Apply the phone's answer and wait until media can flow."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise LinkError(f"connection not established within {timeout:g} s") from None
        self._set_state(LinkState.ACTIVE)
        self._heartbeat.start()

    @property
    def dtls_transport(self) -> str:
        """The DTLS transport's identity and state: the same for every call on
        this connection, since no call renegotiates it (R3)."""
        transport = self._transceiver.sender.transport
        return f"{id(transport):x}/{transport.state}"

    def attach(self, leg: CustomerLeg) -> None:
        """Bridge a customer leg onto this connection: packets flow both ways."""
        self._leg = leg
        self._held = False
        leg.feed.set_mode(Feed.AGENT)
        if leg.tap is not None:
            leg.tap.sink = self._from_customer
        self._track.play(FORWARDED)
        self.calls_carried += 1

    @property
    def held(self) -> bool:
        return self._held

    def set_held(self, on: bool) -> None:
        """Hold: the customer hears the hold music, neither side hears the other."""
        if self._leg is None or on == self._held:
            return
        logger.info("%s %s: %s", self.id, self._leg.call_id, "held" if on else "resumed")
        self._held = on
        # Nothing to the agent (the customer's packets are dropped), the
        # hold music to the customer.
        if on:
            self._track.park()
        else:
            self._track.play(FORWARDED)
        self._leg.feed.set_mode(Feed.HOLD if on else Feed.AGENT)

    async def detach(self) -> None:
        """End the bridge; the link sends nothing again until the next call."""
        leg, self._leg = self._leg, None
        if leg is not None and leg.tap is not None:
            leg.tap.sink = None
        self._held = False
        self._track.park()

    async def close(self) -> None:
        if self.state is LinkState.CLOSED:
            return
        self._set_state(LinkState.CLOSED)
        self._leg = None
        self._heartbeat.stop()
        await self._tasks.close()
        await self.pc.close()
        self._track.stop()
