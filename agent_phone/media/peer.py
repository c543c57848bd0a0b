"""Creating peer connections that never reach beyond the configured addresses,
and giving their audio receivers no added delay."""

from __future__ import annotations

import math

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, rtp
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add
from av import AudioFrame


def _audio_level_dbov(frame: AudioFrame) -> int:
    """aiortc's ``rtp.compute_audio_level_dbov`` (RFC 6465 level for each sent
    audio frame) with numpy: the same result, ~20x cheaper. aiortc's loops over
    the samples in Python (~100 us a frame); on the platform, which sends two
    streams per call, that was the main thread's largest own cost
    (docs/performance.md, "Load")."""
    samples = np.frombuffer(bytes(frame.planes[0]), dtype=np.int16).astype(np.float64)
    energy = float(np.dot(samples, samples))
    level = math.sqrt(energy / (frame.samples * 32767 * 32767))
    if level <= 0:
        return -127
    return round(min(max(20 * math.log10(level), -127), 0))


# aiortc's sender looks it up on the module for every frame.
rtp.compute_audio_level_dbov = _audio_level_dbov


def new_peer_connection() -> RTCPeerConnection:
    # iceServers=[]: aiortc falls back to a public STUN server when given none.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


class InOrderAudioBuffer(JitterBuffer):
    """Hands each audio packet to the decoder the moment it arrives.

    aiortc's audio receiver holds every frame until 4 newer ones have
    arrived (``JitterBuffer(capacity=16, prefetch=4)`` in
    aiortc/rtcrtpreceiver.py, with no setting): 80 ms on every hop of a call,
    phone -> media edge -> customer. That buffer only puts reordered packets
    right, it does not smooth jitter (frames leave as packets arrive); the
    bounded FIFOs after the decoder (bridge, speaker) absorb jitter. An Opus
    packet is a whole frame, so this passes packets on in order and drops a
    packet older than one already passed (late or duplicated), as a lost one.
    """

    def __init__(self) -> None:
        super().__init__(capacity=16)
        self._last: int | None = None
        self.late = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._last is not None and not 0 < uint16_add(seq, -self._last) < 0x8000:
            self.late += 1
            return False, None
        self._last = seq
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]


def tune_audio_receivers(pc: RTCPeerConnection) -> None:
    """Give each audio receiver an ``InOrderAudioBuffer``; call it once the
    transceivers exist and before media flows."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            # Private attribute: the only way in (see InOrderAudioBuffer).
            transceiver.receiver._RTCRtpReceiver__jitter_buffer = InOrderAudioBuffer()  # type: ignore[attr-defined]
