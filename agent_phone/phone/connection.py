"""The phone's side of one media connection to the platform.

The platform offers and the phone answers (R1). The connection's audio
track is parked between calls, so it sends nothing then but the heartbeat
and WebRTC's own keep-alives (RTCP, ICE consent). Received audio goes into
the connection's ``AudioReceiver`` (the jitter buffer), which the call's
playout reads on the speaker's clock (agent_phone/phone/audio_io.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiortc import RTCRtpTransceiver, RTCSessionDescription

from agent_phone.media.audio import AudioSource
from agent_phone.media.dtls import FingerprintError, check_fingerprints
from agent_phone.media.ice import RemoteCandidates
from agent_phone.media.liveness import Heartbeat, create_liveness_channel
from agent_phone.media.peer import new_peer_connection
from agent_phone.media.receiver import AudioReceiver, PacketTap, tap_audio
from agent_phone.media.tracks import LossFollower, OutboundAudioTrack
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)


class ConnectionError_(Exception):
    pass


class PhoneConnection:
    def __init__(self, connection_id: str, on_dead: Callable[[PhoneConnection, str], None]):
        self.id = connection_id
        self.pc = new_peer_connection()
        self.closed = False
        self._on_dead = on_dead
        self._track = OutboundAudioTrack(parked=True)
        #: The platform's audio, as it arrives: the jitter buffer.
        self.receiver = AudioReceiver()
        #: Where the platform's packets come in (an observer may wrap its sink).
        self.tap: PacketTap | None = None
        self._mute = False
        self._held = False
        self._transceiver: RTCRtpTransceiver | None = None
        self._tasks = TaskSet(connection_id)
        self._heartbeat: Heartbeat | None = None
        #: Candidates the platform trickles after its offer (it sends none
        #: today: its offers carry every candidate; docs/protocol.md).
        self.remote_candidates = RemoteCandidates(self.pc)
        self.pc.on("connectionstatechange", self._on_state)

    def __repr__(self) -> str:
        return f"<PhoneConnection {self.id}>"

    @property
    def muted(self) -> bool:
        return self._mute

    @muted.setter
    def muted(self, on: bool) -> None:
        self._mute = on
        self._track.muted = self._mute or self._held

    @property
    def held(self) -> bool:
        return self._held

    @held.setter
    def held(self, on: bool) -> None:
        """On hold the microphone stays open but only silence is sent (the
        platform drops the agent's audio too); unholding restores the mute
        the agent had chosen."""
        self._held = on
        self._track.muted = self._mute or self._held

    @property
    def track(self) -> OutboundAudioTrack:
        return self._track

    @property
    def packets_received(self) -> int:
        """RTP packets received from the platform, in a call or not."""
        return self.tap.packets if self.tap is not None else 0

    @property
    def transport_id(self) -> int:
        assert self._transceiver is not None
        return id(self._transceiver.sender.transport)

    async def accept_offer(self, sdp: str) -> str:
        """Answer the platform's offer; returns the SDP answer.

        An offer without a sha-256 DTLS fingerprint is refused here; aiortc
        checks the platform's certificate against it during the handshake
        (agent_phone/media/dtls.py).
        """
        try:
            check_fingerprints(sdp)
        except FingerprintError as exc:
            raise ConnectionError_(str(exc)) from None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await self.remote_candidates.flush()
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if len(audio) != 1:
            raise ConnectionError_(f"expected one audio stream in the offer, got {len(audio)}")
        self._transceiver = audio[0]
        self.tap = tap_audio(self.pc, self.receiver.put)
        self._transceiver.direction = "sendrecv"
        self._transceiver.sender.replaceTrack(self._track)
        follower = LossFollower(self._transceiver.sender, self._track)
        self._tasks.spawn(follower.run(), "loss")
        channel = create_liveness_channel(self.pc)
        self._heartbeat = Heartbeat(channel, lambda: self._dead("heartbeat_lost"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    def _on_state(self) -> None:
        state = self.pc.connectionState
        logger.info("%s: WebRTC %s", self.id, state)
        if state == "connected" and self._heartbeat is not None:
            # Count silence from now, not from the channel's opening: a
            # platform gone between DTLS and SCTP never opens the channel,
            # and ICE alone would notice only after ~30 s.
            self._heartbeat.start()
        elif state in ("failed", "closed"):
            self._dead("dtls_failed" if self._dtls_failed() else f"ice_{state}")

    def _dtls_failed(self) -> bool:
        """The DTLS handshake failed, or the platform's certificate did not
        match the fingerprint in its offer (aiortc logs which at debug level)."""
        transport = self._transceiver.sender.transport if self._transceiver else None
        return transport is not None and transport.state == "failed"

    def _dead(self, reason: str) -> None:
        if not self.closed:
            self._on_dead(self, reason)

    def attach(self, source: AudioSource) -> None:
        """Start a call's audio: ``source`` is sent, and ``receiver`` keeps
        what arrives for the call's playout."""
        self.receiver.start()
        self._track.play(source)

    async def detach(self) -> None:
        self.receiver.stop()
        self._mute = self._held = False
        self._track.park()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.receiver.stop()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        await self._tasks.close()
        await self.pc.close()
        self._track.stop()
        self.receiver.close()
