"""The platform's media edge: WebRTC legs to agents and to customers.

An ``AgentLink`` is the connection to one agent's phone (the thing the
persistent connection keeps); a ``CustomerLeg`` is one customer's call (or
the far end of an agent's outbound call). Both are a ``MediaParty``: what
the party says goes where ``speak_to`` points it, and what they hear is set
by ``hear``. Which parties hear which is decided elsewhere
(agent_phone/cloud/media_paths.py): two parties are bridged by forwarding
each one's Opus packets to the other, three or more are mixed.

What a customer hears besides is chosen by the leg's ``CustomerFeed`` (the
waiting tone, the hold music, DTMF). An agent's link that carries no call,
or a call held, is parked: it sends the phone nothing at all.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from aiortc import RTCRtpSender, RTCSessionDescription

from agent_phone.cloud.config import DEFAULT_CUSTOMER_MEDIA_TIMEOUT_S
from agent_phone.cloud.customer_audio import MAX_PENDING_DTMF_S, CustomerFeed, DtmfBusy, Feed
from agent_phone.media.audio import AudioSource
from agent_phone.media.ice import RemoteCandidates
from agent_phone.media.liveness import Heartbeat, create_liveness_channel
from agent_phone.media.peer import new_peer_connection, opus_only
from agent_phone.media.receiver import PacketSink, PacketTap, tap_audio
from agent_phone.media.telephone_event import EventReceiver, negotiated_payload_type
from agent_phone.media.tones import validate_dtmf
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


class Hearing(enum.Enum):
    """What a party hears (``MediaParty.hear``)."""

    #: What another party says, forwarded packet by packet (``forward``).
    FORWARDED = "forwarded"
    #: A conference's mix for this party (an ``AudioSource``, encoded here).
    MIX = "mix"
    #: A customer hears the waiting tone; an agent nothing.
    WAITING = "waiting"
    #: A customer hears the hold music; an agent nothing.
    HOLD = "hold"
    NOTHING = "nothing"


class MediaParty(Protocol):
    """One party's media at the platform, whoever they are."""

    @property
    def name(self) -> str: ...

    def speak_to(self, sink: PacketSink | None) -> None:
        """Where what this party says goes from now on (None: nowhere)."""

    def forward(self, payload: bytes, timestamp: int) -> None:
        """A packet another party said, for this one to hear (when it hears
        ``FORWARDED``; dropped otherwise)."""

    def hear(self, what: Hearing, mix: AudioSource | None = None) -> None: ...


def _audio_sender(pc_senders: list[RTCRtpSender]) -> RTCRtpSender:
    for sender in pc_senders:
        if sender.kind == "audio":
            return sender
    raise LinkError("no audio sender")


#: How often a leg's media is looked at (``customer_media_timeout_s``: no
#: RTP packet for that long, while endpoints send silence or DTX frames at
#: least every 400 ms when muted, is a customer who is gone).
_WATCH_S = 0.5


class CustomerLeg:
    """The WebRTC leg to one customer; answers the caller's offer.

    Its liveness is its own: once connected, a leg whose ICE or DTLS
    fails or closes, or whose RTP stops for ``media_timeout_s`` while the
    customer's WebSocket may well live on (a browser's peer connection
    closed, a network change), tells ``on_dead`` once, with why
    (``ice_failed``, ``ice_closed``, ``media_stopped``)."""

    def __init__(
        self,
        call_id: str,
        name: str = "",
        media_timeout_s: float = DEFAULT_CUSTOMER_MEDIA_TIMEOUT_S,
    ) -> None:
        self.pc = new_peer_connection()
        #: What the customer hears: the waiting tone until an agent is bridged.
        self.feed = CustomerFeed(call_id)
        self.call_id = call_id
        self.name = name or call_id
        #: The customer's packets (dropped until ``speak_to`` points them on).
        self.tap: PacketTap | None = None
        self.track = OutboundAudioTrack(self.feed)
        self._tasks = TaskSet(f"leg-{call_id}")
        #: What the customer trickles after their offer (trickle ICE).
        self.remote_candidates = RemoteCandidates(self.pc)
        self._closed = False
        self._connected = asyncio.Event()
        self._on_dead: Callable[[CustomerLeg, str], None] | None = None
        #: Told each DTMF key the customer presses (RFC 4733 events).
        self.on_dtmf: Callable[[CustomerLeg, str], None] | None = None
        self._media_timeout_s = media_timeout_s
        #: Why the customer's media is gone ("" while it is not).
        self.dead_reason = ""
        self.pc.on("connectionstatechange", self._on_state)

    @property
    def on_dead(self) -> Callable[[CustomerLeg, str], None] | None:
        """Told once when the customer's media is gone (the class docstring);
        at once, if it is gone already when this is set."""
        return self._on_dead

    @on_dead.setter
    def on_dead(self, callback: Callable[[CustomerLeg, str], None] | None) -> None:
        self._on_dead = callback
        if callback is not None and self.dead_reason and not self._closed:
            callback(self, self.dead_reason)

    @property
    def call_id(self) -> str:
        return self.feed.call_id

    @call_id.setter
    def call_id(self, call_id: str) -> None:
        self.feed.call_id = call_id

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self._connected.is_set():
            self._connected.set()
            self._tasks.spawn(self._watch_media(), "media-watch")
        elif state in ("failed", "closed") and self._connected.is_set():
            self._dead(f"ice_{state}")

    async def _watch_media(self) -> None:
        """``media_stopped`` once no packet came for the timeout (bounded:
        ends with the leg, or once told)."""
        seen, since = -1, time.monotonic()
        while not self._closed and not self.dead_reason:
            packets = self.tap.packets if self.tap is not None else 0
            now = time.monotonic()
            if packets != seen:
                seen, since = packets, now
            elif now - since >= self._media_timeout_s:
                self._dead("media_stopped")
                return
            await asyncio.sleep(_WATCH_S)

    def _dead(self, reason: str) -> None:
        if self._closed or self.dead_reason:
            return
        self.dead_reason = reason
        logger.info("%s: the customer's media is gone (%s)", self.name, reason)
        if self._on_dead is not None:
            self._on_dead(self, reason)

    # --- as a MediaParty ---------------------------------------------------------------

    def speak_to(self, sink: PacketSink | None) -> None:
        if self.tap is not None:
            self.tap.sink = sink

    def forward(self, payload: bytes, timestamp: int) -> None:
        self.track.forward(payload, timestamp)

    def hear(self, what: Hearing, mix: AudioSource | None = None) -> None:
        self.feed.set_mode(_FEEDS[what], mix)

    async def wait_connected(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise LinkError(f"the customer's media did not connect within {timeout:g} s") from None

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await self.remote_candidates.flush()
        try:
            self.tap = tap_audio(self.pc)  # dropped until bridged
        except ValueError:
            raise LinkError("the customer's offer has no audio") from None
        self.pc.addTrack(self.track)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = self.pc.localDescription.sdp
        if (event_type := negotiated_payload_type(answer)) is not None:
            # The customer's endpoint sends keys as RFC 4733 events.
            self.tap.event_type = event_type
            self.tap.events = EventReceiver(self._digit, time.monotonic).put
        return answer

    def send_dtmf(self, digits: str) -> tuple[float, str]:
        """The agent's keys to the customer: as RFC 4733 events when their
        endpoint negotiated them (``rfc4733``), else as tones in the audio
        (``in_band``); their length in seconds, and how. ValueError for
        digits that are no keys, DtmfBusy when too many still wait."""
        validate_dtmf(digits)
        if self.tap is None or self.tap.event_type is None:
            return self.feed.play_dtmf(digits), "in_band"
        try:
            seconds = self.track.send_events(digits, self.tap.event_type, MAX_PENDING_DTMF_S)
        except ValueError as exc:
            raise DtmfBusy(str(exc)) from None
        return seconds, "rfc4733"

    def _digit(self, digit: str) -> None:
        if self.on_dtmf is not None and not self._closed:
            self.on_dtmf(self, digit)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._tasks.close()
        await self.pc.close()
        self.track.stop()


_FEEDS = {
    Hearing.FORWARDED: Feed.AGENT,
    Hearing.MIX: Feed.MIX,
    Hearing.WAITING: Feed.WAITING,
    Hearing.HOLD: Feed.HOLD,
    Hearing.NOTHING: Feed.HOLD,  # a customer is never left in silence
}


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
        self.pc = new_peer_connection()
        self._on_dead = on_dead
        self._transceiver = self.pc.addTransceiver("audio", direction="sendrecv")
        opus_only(self.pc)  # (the agent's keys go as messages, not RTP events)
        #: What the agent says: dropped until ``speak_to`` points it on.
        self._tap = tap_audio(self.pc)
        self._track = OutboundAudioTrack(parked=True)
        self._transceiver.sender.replaceTrack(self._track)
        self._tasks = TaskSet(self.id)
        #: What the phone trickles after its answer (trickle ICE).
        self.remote_candidates = RemoteCandidates(self.pc)
        self._connected = asyncio.Event()
        channel = create_liveness_channel(self.pc)
        self._heartbeat = Heartbeat(channel, lambda: self._dead("heartbeat_lost"))
        self.pc.on("connectionstatechange", self._on_connection_state)

    def __repr__(self) -> str:
        return f"<AgentLink {self.id} {self.agent} {self.state.value}>"

    @property
    def name(self) -> str:
        return self.agent

    @property
    def track(self) -> OutboundAudioTrack:
        return self._track

    def _set_state(self, state: LinkState) -> None:
        if state != self.state:
            logger.info("%s %s: %s -> %s", self.id, self.agent, self.state.value, state.value)
            self.state = state

    # --- as a MediaParty ---------------------------------------------------------------

    def speak_to(self, sink: PacketSink | None) -> None:
        self._tap.sink = sink

    def forward(self, payload: bytes, timestamp: int) -> None:
        self._track.forward(payload, timestamp)

    def hear(self, what: Hearing, mix: AudioSource | None = None) -> None:
        """Forwarded packets, a mix, or nothing at all (parked: the phone
        gets no packets, and plays its own silence)."""
        if what is Hearing.FORWARDED:
            self._track.play(FORWARDED)
        elif what is Hearing.MIX and mix is not None:
            self._track.play(mix)
        else:
            self._track.park()

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
        await self.remote_candidates.flush()
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

    async def close(self) -> None:
        if self.state is LinkState.CLOSED:
            return
        self._set_state(LinkState.CLOSED)
        self._tap.sink = None
        self._heartbeat.stop()
        await self._tasks.close()
        await self.pc.close()
        self._track.stop()
