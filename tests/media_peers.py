"""Real media peers in one process, for tests of the media path.

The platform's ``AgentLink`` and ``CustomerLeg`` (agent_phone/cloud/media_edge.py),
the phone's ``PhoneConnection`` and a customer's own peer connection, all
real aiortc with DTLS-SRTP on 127.0.0.1, wired together the way the
programs wire them, but without processes and signaling: fast enough to
test what crosses the platform packet by packet.

``Recorder`` sits at a receiver's tap (agent_phone/media/receiver.py) and
keeps every packet as it arrived, then hands it on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
from aiortc import RTCSessionDescription

from agent_phone.cloud.media_edge import AgentLink, CustomerLeg
from agent_phone.media.audio import AudioSource
from agent_phone.media.opus import OpusDecoder
from agent_phone.media.peer import new_peer_connection
from agent_phone.media.receiver import PacketSink, PacketTap, tap_audio
from agent_phone.media.tracks import OutboundAudioTrack
from agent_phone.phone.connection import PhoneConnection


@dataclass
class Arrived:
    payload: bytes
    timestamp: int
    sequence: int


@dataclass
class Recorder:
    """Keeps each packet a tap hands on, then passes it to ``then``."""

    then: PacketSink | None = None
    packets: list[Arrived] = field(default_factory=list)

    def __call__(self, payload: bytes, timestamp: int, sequence: int) -> None:
        self.packets.append(Arrived(payload, timestamp, sequence))
        if self.then is not None:
            self.then(payload, timestamp, sequence)

    def decoded(self) -> np.ndarray:
        """Every packet decoded in arrival order (enough for a tone check)."""
        decoder = OpusDecoder()
        if not self.packets:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([decoder.decode(p.payload) for p in self.packets])


def record(tap: PacketTap) -> Recorder:
    recorder = Recorder(tap.sink)
    tap.sink = recorder
    return recorder


class SentLog(OutboundAudioTrack):
    """An outbound track that remembers every payload it handed aiortc."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent: list[bytes] = []

    async def recv(self):  # type: ignore[no-untyped-def]
        packet = await super().recv()
        self.sent.append(bytes(packet))
        return packet


class Customer:
    """A customer's own peer connection, calling into a ``CustomerLeg``."""

    def __init__(self, source: AudioSource) -> None:
        self.pc = new_peer_connection()
        self.track = SentLog(source)
        self.heard = Recorder()

    async def call(self, leg: CustomerLeg, timeout: float = 10.0) -> None:
        self.pc.addTrack(self.track)
        tap_audio(self.pc, self.heard)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await leg.answer(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await leg.wait_connected(timeout)

    async def close(self) -> None:
        await self.pc.close()
        self.track.stop()


class AgentSide:
    """The platform's link to an agent's phone and the phone's connection."""

    def __init__(self) -> None:
        self.dead: list[str] = []
        self.link = AgentLink("bob", lambda _link, reason: None)
        self.phone = PhoneConnection("conn-test", lambda _c, reason: self.dead.append(reason))
        self.heard: Recorder | None = None

    async def connect(self, offer_filter=lambda sdp: sdp) -> None:  # type: ignore[no-untyped-def]
        offer = offer_filter(await self.link.create_offer())
        answer = await self.phone.accept_offer(offer)
        assert self.phone.tap is not None
        self.heard = record(self.phone.tap)
        await self.link.accept_answer(answer, timeout=10)

    async def close(self) -> None:
        await self.phone.close()
        await self.link.close()


async def talk(seconds: float) -> None:
    await asyncio.sleep(seconds)
