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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
)

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

    @staticmethod
    def since(start: StatsSample, now: StatsSample) -> CallQuality:
        received = max(0, now.packets_received - start.packets_received)
        lost = max(0, now.packets_lost - start.packets_lost)
        total = received + lost
        return CallQuality(
            packets_received=received,
            packets_lost=lost,
            fraction_lost=round(lost / total, 4) if total else 0.0,
            jitter_ms=now.jitter_ms,
            rtt_ms=now.rtt_ms,
            packets_sent=max(0, now.packets_sent - start.packets_sent),
            remote_packets_lost=max(0, now.remote_packets_lost - start.remote_packets_lost),
            remote_fraction_lost=now.remote_fraction_lost,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def sample(pc: RTCPeerConnection) -> StatsSample:
    """The connection's audio counters now (all zero before any media)."""
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
    )
