"""Creating peer connections: no STUN server, Opus (with in-band FEC) and,
from customers, RFC 4733 DTMF events, and an SCTP handshake that retries
after 1 s, not 3.

Every side sends Opus packets it encoded itself or forwards
(agent_phone/media/tracks.py), so Opus is the one audio codec offered and
accepted: aiortc would otherwise also offer G.722, PCMU and PCMA, and a
sender that negotiated one of them would put Opus bytes in it. The fmtp line
says what our receivers do with it (RFC 7587): ``useinbandfec=1``, they use
the FEC the sender puts in each packet; ``minptime=10``, as browsers say.

SCTP (the data channel that carries the heartbeat, agent_phone/media/liveness.py)
resends a lost handshake packet after its initial retransmission timeout:
RFC 4960's 3 s in aiortc, 0.5 s in Chromium's dcsctp. At 1 s, two lost
handshake packets in a row still open the channel within 3 s, well inside the
time the heartbeat allows a channel to open.
"""

from __future__ import annotations

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, rtcsctptransport
from aiortc.codecs import CODECS
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from agent_phone.media.telephone_event import MIME_TYPE

#: The Opus that every connection offers and accepts (RTP always says 2
#: channels for Opus; ``stereo`` is absent, so mono is preferred).
OPUS = RTCRtpCodecParameters(
    mimeType="audio/opus",
    clockRate=48000,
    channels=2,
    payloadType=111,
    parameters={"minptime": 10, "useinbandfec": 1},
)

#: RFC 4733 DTMF events, at Opus's clock (agent_phone/media/telephone_event.py):
#: accepted from customers' endpoints (a browser's keys); every other
#: connection is Opus only (``opus_only``).
TELEPHONE_EVENT = RTCRtpCodecParameters(
    mimeType=MIME_TYPE, clockRate=48000, channels=1, payloadType=110, parameters={"0-15": None}
)

# aiortc reads this module-level table each time it makes an offer or an
# answer; replaced in place, once, when this module is first imported.
CODECS["audio"][:] = [OPUS, TELEPHONE_EVENT]
# Read by each RTCSctpTransport when it is made.
rtcsctptransport.SCTP_RTO_INITIAL = 1.0


def opus_only(pc: RTCPeerConnection) -> None:
    """Offer (or answer) Opus alone on ``pc``'s audio: no telephone-event."""
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == OPUS.mimeType]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            transceiver.setCodecPreferences(opus)


def new_peer_connection() -> RTCPeerConnection:
    # iceServers=[]: aiortc falls back to a public STUN server when given none.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))
