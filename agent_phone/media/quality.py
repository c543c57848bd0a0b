"""Call quality from aiortc's ``getStats()``: loss, jitter and round trip.

Both ends use it: the phone reports it during a call and at its end (the
``quality`` event), the platform stores it in the call record. A kept
connection carries many calls over one RTP stream, so the counters are
cumulative over the connection; a call's figures are the difference between
a sample at its start and the latest one (``CallQuality.since``).

- ``packets_received``/``packets_lost``: RTP audio received here, and lost on
  the way here (sequence gaps), during the call;
- ``fraction_lost``: ``lost / (received + lost)`` over the call;
- ``jitter_ms``: interarrival jitter of what is received here (RFC 3550),
  converted from RTP clock units (Opus: 48 kHz);
- ``rtt_ms``: the round trip from RTCP (our sender reports, the far end's
  receiver reports with LSR/DLSR), smoothed by aiortc; None until known;
- ``remote_fraction_lost``: the share of *our* packets the far end says it
  lost in its last report (0..1), None until it reported.

Where the audio is decoded here (the phone, the caller), what the listener
got comes from the jitter buffer (agent_phone/media/jitterbuffer.py), named
as WebRTC names it: ``packets_discarded`` (arrived too late to play),
``concealed_samples`` (played from libopus's concealment, of which
``silent_concealed_samples`` were near silence) in ``concealment_events``
runs, ``fec_recovered_samples`` (rebuilt from the next packet's FEC),
``inserted_samples_for_deceleration``/``removed_samples_for_acceleration``
(the delay steered by time-stretching), ``jitter_buffer_delay_ms`` (how
long the call's audio waited in the buffer, on average) and
``jitter_buffer_target_delay_ms`` (the delay it aims for now).
``concealed_ratio`` is the share of played audio that was concealed, and
``grade`` sums it all up for an agent: ``good``, ``fair`` or ``poor``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from aiortc import RTCPeerConnection
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
)

from agent_phone.media.jitterbuffer import ReceiveStats
from agent_phone.media.receiver import AudioReceiver

#: Opus's RTP clock; the only audio codec our peers offer each other.
AUDIO_CLOCK_HZ = 48000


@dataclass(frozen=True)
class StatsSample:
    """Cumulative counters of a connection's audio at one moment."""

    packets_received: int = 0
    packets_lost: int = 0
    packets_sent: int = 0
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    remote_fraction_lost: float | None = None
    remote_packets_lost: int = 0
    #: The jitter buffer's counters, where this end decodes.
    receive: ReceiveStats | None = None


#: The jitter buffer's counters that a call's figures are differences of.
_COUNTERS = (
    "packets_discarded",
    "total_samples_received",
    "concealed_samples",
    "silent_concealed_samples",
    "concealment_events",
    "fec_recovered_samples",
    "inserted_samples_for_deceleration",
    "removed_samples_for_acceleration",
)

Grade = Literal["good", "fair", "poor"]
#: Thresholds of ``grade``: concealed share of the audio, and round trip.
FAIR_CONCEALED, POOR_CONCEALED = 0.01, 0.05
FAIR_RTT_MS, POOR_RTT_MS = 300.0, 600.0
FAIR_DELAY_MS, POOR_DELAY_MS = 120.0, 250.0


def grade(concealed_ratio: float, rtt_ms: float | None, buffer_delay_ms: float | None) -> Grade:
    """How the call sounds, as an agent would put it. Concealment is what a
    listener hears as gaps or burbles; a long round trip or buffer delay is
    what makes people talk over each other."""
    rtt = rtt_ms or 0.0
    delay = buffer_delay_ms or 0.0
    if concealed_ratio >= POOR_CONCEALED or rtt >= POOR_RTT_MS or delay >= POOR_DELAY_MS:
        return "poor"
    if concealed_ratio >= FAIR_CONCEALED or rtt >= FAIR_RTT_MS or delay >= FAIR_DELAY_MS:
        return "fair"
    return "good"


@dataclass(frozen=True)
class CallQuality:
    packets_received: int
    packets_lost: int
    fraction_lost: float
    jitter_ms: float | None
    rtt_ms: float | None
    packets_sent: int
    remote_packets_lost: int
    remote_fraction_lost: float | None
    packets_discarded: int = 0
    total_samples_received: int = 0
    concealed_samples: int = 0
    silent_concealed_samples: int = 0
    concealment_events: int = 0
    fec_recovered_samples: int = 0
    inserted_samples_for_deceleration: int = 0
    removed_samples_for_acceleration: int = 0
    jitter_buffer_delay_ms: float | None = None
    jitter_buffer_target_delay_ms: float | None = None
    concealed_ratio: float = 0.0
    grade: Grade = "good"

    @staticmethod
    def since(start: StatsSample, now: StatsSample) -> CallQuality:
        received = max(0, now.packets_received - start.packets_received)
        lost = max(0, now.packets_lost - start.packets_lost)
        total = received + lost
        extra: dict[str, Any] = {}
        if now.receive is not None:
            a, b = start.receive or ReceiveStats(), now.receive
            for name in _COUNTERS:
                extra[name] = max(0, getattr(b, name) - getattr(a, name))
            emitted = b.jitter_buffer_emitted_count - a.jitter_buffer_emitted_count
            if emitted > 0:
                waited = b.jitter_buffer_delay_s - a.jitter_buffer_delay_s
                extra["jitter_buffer_delay_ms"] = round(waited / emitted * 1000, 1)
            extra["jitter_buffer_target_delay_ms"] = b.jitter_buffer_target_delay_ms
            played = extra["total_samples_received"]
            # Concealment that was only silence (a pause in the stream) is not heard as a fault.
            heard = extra["concealed_samples"] - extra["silent_concealed_samples"]
            extra["concealed_ratio"] = round(heard / played, 4) if played else 0.0
        extra["grade"] = grade(
            extra.get("concealed_ratio", 0.0), now.rtt_ms, extra.get("jitter_buffer_delay_ms")
        )
        return CallQuality(
            packets_received=received,
            packets_lost=lost,
            fraction_lost=round(lost / total, 4) if total else 0.0,
            jitter_ms=now.jitter_ms,
            rtt_ms=now.rtt_ms,
            packets_sent=max(0, now.packets_sent - start.packets_sent),
            remote_packets_lost=max(0, now.remote_packets_lost - start.remote_packets_lost),
            remote_fraction_lost=now.remote_fraction_lost,
            **extra,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def sample(pc: RTCPeerConnection, receiver: AudioReceiver | None = None) -> StatsSample:
    """The connection's audio counters now (all zero before any media), with
    the jitter buffer's where ``receiver`` is given."""
    report = await pc.getStats()
    received = lost = sent = remote_lost = 0
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    remote_fraction: float | None = None
    for stats in report.values():
        if getattr(stats, "kind", "audio") != "audio":
            continue
        if isinstance(stats, RTCInboundRtpStreamStats):
            received += stats.packetsReceived
            lost += max(0, stats.packetsLost)
            jitter_ms = round(stats.jitter * 1000 / AUDIO_CLOCK_HZ, 2)
        elif isinstance(stats, RTCRemoteInboundRtpStreamStats):
            remote_lost += max(0, stats.packetsLost)
            if stats.roundTripTime is not None:
                rtt_ms = round(stats.roundTripTime * 1000, 1)
            # RTCP's fraction lost is 8-bit fixed point (RFC 3550 6.4.1).
            remote_fraction = round(stats.fractionLost / 256, 4)
        elif isinstance(stats, RTCOutboundRtpStreamStats):
            sent += stats.packetsSent
    return StatsSample(
        packets_received=received,
        packets_lost=lost,
        packets_sent=sent,
        jitter_ms=jitter_ms,
        rtt_ms=rtt_ms,
        remote_fraction_lost=remote_fraction,
        remote_packets_lost=remote_lost,
        receive=receiver.stats.copy() if receiver is not None else None,
    )
