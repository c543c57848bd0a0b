"""The one receive path for audio: RTP packets from aiortc, as they arrive,
into our jitter buffer (or, on the platform, straight on to another leg).

aiortc's audio receiver reorders packets in a small buffer and decodes them
through FFmpeg, which can neither conceal a lost packet nor use Opus's
in-band FEC (shared/notes/voice-and-interop.md). So the receiver's jitter
buffer is replaced by a ``PacketTap``: every packet, depayloaded, goes to a
callback the moment aiortc has it (after SRTP, and after aiortc has counted
it for RTCP receiver reports), and aiortc's decoder never gets anything.
The callback is either an ``AudioReceiver`` (the phone and the caller: the
jitter buffer of ``agent_phone.media.jitterbuffer``) or the platform's
forwarder (agent_phone/cloud/media_edge.py), which decodes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer as _AiortcJitterBuffer
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from agent_phone.media.jitterbuffer import JitterBuffer, ReceiveStats

#: A packet as the tap hands it on: (Opus payload, RTP timestamp, sequence number).
PacketSink = Callable[[bytes, int, int], None]


class PacketTap(_AiortcJitterBuffer):
    """Takes the place of aiortc's audio jitter buffer: hands each packet to
    ``sink`` (which may be replaced at any time; None drops packets) and
    gives aiortc's decoder nothing."""

    def __init__(self, sink: PacketSink | None = None) -> None:
        super().__init__(capacity=16)
        self.sink = sink
        self.packets = 0
        #: RFC 4733 telephone-event packets (their payload type, and where
        #: they go): never into the audio's sink.
        self.event_type: int | None = None
        self.events: PacketSink | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.packets += 1
        if packet.payload_type == self.event_type:
            if self.events is not None:
                self.events(packet.payload, packet.timestamp, packet.sequence_number)
            return False, None
        if self.sink is not None:
            payload = getattr(packet, "_data", packet.payload)
            self.sink(payload, packet.timestamp, packet.sequence_number)
        return False, None


def tap_audio(pc: RTCPeerConnection, sink: PacketSink | None = None) -> PacketTap:
    """Put a ``PacketTap`` in the connection's (one) audio receiver; call it
    once the transceivers exist and before media flows."""
    tap = PacketTap(sink)
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            # Private attribute: the only way in (module docstring).
            transceiver.receiver._RTCRtpReceiver__jitter_buffer = tap  # type: ignore[attr-defined]
            return tap
    raise ValueError("the connection has no audio transceiver")


class AudioReceiver:
    """A jitter buffer fed from a ``PacketTap`` and pulled by a ``Playout``.

    It lives as long as its connection, so its counters are cumulative over
    every call the connection carries, like aiortc's own; a call's figures
    are differences (``agent_phone.media.quality``). ``listening`` is off
    between calls: packets that arrive then (a call's last ones) are counted
    but not kept, so the next call starts from an empty buffer.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buffer = JitterBuffer()
        self.listening = False

    @property
    def stats(self) -> ReceiveStats:
        return self._buffer.stats

    @property
    def target_delay_ms(self) -> float:
        return self._buffer.delay.target_ms

    def put(self, payload: bytes, timestamp: int, sequence: int) -> None:
        """From the tap, on the loop, as each packet arrives."""
        if self.listening:
            self._buffer.put(payload, timestamp, sequence, self._clock())
        else:
            self._buffer.count_only(sequence)

    def start(self) -> None:
        """Keep packets from now on (a call's audio begins)."""
        self.listening = True

    def stop(self) -> None:
        """Drop what is buffered and keep nothing until ``start`` (a call ended)."""
        self.listening = False
        self._buffer.flush()

    def pull(self, play_at: float, now: float) -> np.ndarray:
        """The next stretch of audio to play (agent_phone.media.jitterbuffer)."""
        return self._buffer.pull(play_at, now)

    def close(self) -> None:
        self._buffer.close()
