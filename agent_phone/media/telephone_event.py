"""RFC 4733 telephone-events: DTMF keys as RTP packets, not as tones.

A browser (or any endpoint that negotiates ``telephone-event``) sends a key
pressed as a run of small RTP packets on the audio stream's SSRC, with the
payload type negotiated for ``telephone-event/48000``: each carries the
event (0-9, * = 10, # = 11, A-D = 12-15), an end bit, a volume and the
duration so far, and every packet of one event has the event's start
timestamp (the last one, with the end bit, is sent three times).

``EventReceiver`` turns such a stream into digits, each key once, whatever
is repeated or lost. The platform offers only ``telephone-event/48000``
(the clock of Opus), and accepts it from customers' endpoints; between its
own programs the agent's keys go as messages (docs/protocol.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from aiortc import rtcrtpsender
from aiortc.rtp import RtpPacket

logger = logging.getLogger(__name__)

MIME_TYPE = "audio/telephone-event"
#: The events that are DTMF keys (RFC 4733 section 3.2), by number.
EVENT_DIGITS = "0123456789*#ABCD"
#: Events of one stream closer than this are one key held (or a flood).
MIN_GAP_S = 0.04
#: Refused packets logged at most this many times per stream.
_LOGGED = 5


@dataclass(frozen=True)
class TelephoneEvent:
    digit: str
    end: bool
    volume: int
    duration: int


def parse_event(payload: bytes) -> TelephoneEvent:
    """A telephone-event payload (4 bytes: event, E|R|volume, duration), or
    ValueError for one that is short or no DTMF key (events 16-255)."""
    if len(payload) < 4:
        raise ValueError(f"a telephone-event payload is 4 bytes, not {len(payload)}")
    event = payload[0]
    if event >= len(EVENT_DIGITS):
        raise ValueError(f"telephone-event {event} is no DTMF key (0-15)")
    return TelephoneEvent(
        digit=EVENT_DIGITS[event],
        end=bool(payload[1] & 0x80),
        volume=payload[1] & 0x3F,
        duration=int.from_bytes(payload[2:4], "big"),
    )


def negotiated_payload_type(sdp: str) -> int | None:
    """The payload type ``sdp`` gives ``telephone-event/48000``, if any."""
    found = re.search(r"^a=rtpmap:(\d+) telephone-event/48000\b", sdp, re.MULTILINE)
    return int(found.group(1)) if found else None


class EventReceiver:
    """Digits from one stream's telephone-event packets: ``on_digit`` once
    per key (at its first packet seen), refused packets counted."""

    def __init__(self, on_digit: Callable[[str], None], clock: Callable[[], float]) -> None:
        self.on_digit = on_digit
        self._clock = clock
        self._last_timestamp: int | None = None
        self._last_at = float("-inf")
        self.digits = 0
        self.refused = 0

    def put(self, payload: bytes, timestamp: int, _sequence: int) -> None:
        try:
            event = parse_event(payload)
        except ValueError as exc:
            self.refused += 1
            if self.refused <= _LOGGED:
                logger.warning("telephone-event refused: %s", exc)
            return
        if timestamp == self._last_timestamp:
            return  # the same key: its repeats and end packets
        now = self._clock()
        self._last_timestamp = timestamp
        if now - self._last_at < MIN_GAP_S:
            self.refused += 1
            return
        self._last_at = now
        self.digits += 1
        self.on_digit(event.digit)


# --- sending -------------------------------------------------------------------------

#: A key's event lasts this long (5 packets of 20 ms), its end is sent three
#: times (RFC 4733 2.5.1.4), and 4 frames of the usual audio follow it.
EVENT_PACKETS = 5
END_REPEATS = 3
GAP_FRAMES = 4
#: The events' volume: -10 dBm0, as the in-band tones (agent_phone/media/tones.py).
EVENT_VOLUME = 10
_FRAME = 960  # 20 ms at 48 kHz


class EventPayload(bytes):
    """An RTP payload sent with its own payload type and marker bit (a
    telephone-event among the audio's packets): ``_EventRtpPacket`` sets them."""

    payload_type: int = 0
    marker: int = 0


@dataclass(frozen=True)
class EventPacket:
    """What a track's ``recv()`` returns for one telephone-event packet:
    aiortc packs it like an encoded ``av.Packet`` (``pts``, ``time_base``,
    ``bytes()``), and its bytes are an ``EventPayload``."""

    payload: EventPayload
    pts: int
    time_base: Fraction = Fraction(1, 48000)

    def __bytes__(self) -> bytes:
        return self.payload


def event_schedule(digits: str) -> list[tuple[str, int, bool] | None]:
    """The 20 ms frames that send ``digits`` as events: (digit, duration so
    far, end) for an event packet, None for a frame of audio between keys."""
    frames: list[tuple[str, int, bool] | None] = []
    for digit in digits:
        frames += [(digit, (k + 1) * _FRAME, False) for k in range(EVENT_PACKETS)]
        frames += [(digit, EVENT_PACKETS * _FRAME, True)] * END_REPEATS
        frames += [None] * GAP_FRAMES
    return frames


def event_payload(
    digit: str, duration: int, end: bool, payload_type: int, first: bool
) -> EventPayload:
    payload = EventPayload(
        bytes([EVENT_DIGITS.index(digit), (0x80 if end else 0) | EVENT_VOLUME])
        + min(duration, 0xFFFF).to_bytes(2, "big")
    )
    payload.payload_type = payload_type
    payload.marker = 1 if first else 0
    return payload


class _EventRtpPacket(RtpPacket):
    """aiortc's sender makes every packet with the audio codec's payload type
    (and a marker bit set); one carrying an ``EventPayload`` gets its own."""

    def serialize(self, *args: Any) -> bytes:
        if isinstance(self.payload, EventPayload):
            self.payload_type = self.payload.payload_type
            self.marker = self.payload.marker
        return super().serialize(*args)


# aiortc's sender builds its packets from this module-level name (read at
# each packet): replaced once, when this module is first imported.
vars(rtcrtpsender)["RtpPacket"] = _EventRtpPacket
