"""The audio track every side sends: Opus packets, encoded here or forwarded.

aiortc encodes only what a track's ``recv()`` returns as an ``av.Frame``; an
``av.Packet`` goes out as it is (aiortc/rtcrtpsender.py). So this track
hands aiortc finished Opus packets, made one of two ways:

- **encoded here**, from a PCM ``AudioSource`` read every 20 ms on the wall
  clock (the microphone, a WAV file, a tone, the platform's waiting tone and
  hold music), by our own ``OpusEncoder``: mono, in-band FEC, the expected
  loss taken from the far end's RTCP receiver reports (``LossFollower``);
- **forwarded**: packets another leg received, sent on as they come, when
  the source says so (``source.forwarding``). The platform carries a
  two-party call this way, with no decoding and no re-encoding, so the FEC
  the speaker's phone put in reaches the listener's.

One track lives as long as its sender and stays attached to it. Between
calls it is *parked*: its ``recv()`` waits, so the sender sends nothing and
does not even wake up (a sender with no track polls every 20 ms, and a new
track would need ``replaceTrack``). Stopping a track kills its sender for
good (shared/notes/webrtc-and-qt.md), so it is stopped only with its
connection.

Timestamps rise with the wall clock across calls and across both ways of
sending: a forwarded stream is re-timed so that its first packet follows the
last one sent at the distance the wall clock says, and keeps its own spacing
(and so its gaps, where its leg lost packets) from there. The receiver sees
one continuous stream on a kept connection, call after call; the sender
numbers the packets itself (continuous sequence numbers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.stats import RTCRemoteInboundRtpStreamStats
from av import Packet

from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, PTIME, SAMPLE_RATE, AudioSource
from agent_phone.media.opus import OpusEncoder
from agent_phone.media.telephone_event import EventPacket, event_payload, event_schedule

logger = logging.getLogger(__name__)

TIME_BASE = Fraction(1, SAMPLE_RATE)
#: When the track was not read for longer than this (detached, or the sender
#: starved), its clock jumps forward instead of bursting to catch up.
_RESYNC_S = 0.1
#: Forwarded packets waiting for the sender at most (a stalled sender).
_MAX_FORWARD_QUEUE = 25
#: A forwarded stream whose timestamps jump this far is re-timed afresh.
_MAX_FORWARD_JUMP = SAMPLE_RATE * 2


@dataclass(frozen=True)
class VoiceEncoding:
    """How speech is encoded. Wideband (to 8 kHz, the band speech lives in
    and the band PESQ P.862.2 judges) at 48 kb/s: measured here, the
    bitrate at which Opus with in-band FEC still scores PESQ >= 4.3 on a
    clean network (docs/voice.md)."""

    bitrate: int = 48_000
    max_bandwidth: str = "wideband"
    fec: bool = True
    #: FEC is sent even when the far end reports no loss: on the platform's
    #: forwarded calls the loss that matters may be on the other leg, which
    #: this end's receiver reports never see.
    min_expected_loss: float = 0.02


class ForwardedAudio:
    """The source that says: send on the packets given to ``forward()``."""

    forwarding = True

    async def start(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        return None

    async def stop(self) -> None:
        pass


FORWARDED = ForwardedAudio()


def encode_loop(pattern: np.ndarray, encoding: VoiceEncoding | None = None) -> tuple[bytes, ...]:
    """A looped sound's Opus packets, so that any number of tracks can play
    it with no encoding. The pattern is repeated to whole 20 ms frames and
    encoded twice; the second pass is kept, whose first packet was encoded
    after the loop's end, so the stream runs on across the seam."""
    repeats = 1
    while (pattern.size * repeats) % FRAME_SAMPLES:
        repeats += 1
    frames = np.tile(pattern.astype(DTYPE), repeats).reshape(-1, FRAME_SAMPLES)
    e = encoding or VoiceEncoding()
    encoder = OpusEncoder(e.bitrate, False, 0.0, e.max_bandwidth)
    try:
        for frame in frames:
            encoder.encode(frame)
        return tuple(encoder.encode(frame) for frame in frames)
    finally:
        encoder.close()


class PacketLoop:
    """Plays a loop of encoded packets (``encode_loop``), from its start."""

    def __init__(self, packets: tuple[bytes, ...]) -> None:
        if not packets:
            raise ValueError("an empty loop")
        self._packets = packets
        self._position = 0

    def restart(self) -> None:
        self._position = 0

    def read_packet(self) -> bytes:
        packet = self._packets[self._position]
        self._position = (self._position + 1) % len(self._packets)
        return packet


def _packet(payload: bytes, pts: int) -> Packet[Any]:
    packet = Packet(payload)
    packet.pts = pts
    packet.time_base = TIME_BASE
    return packet


class OutboundAudioTrack(MediaStreamTrack):
    """Opus packets in real time from whatever ``source`` is attached.

    Sends encoded silence when there is no source, when the source has
    nothing yet, and while ``muted`` (a forwarding source then forwards
    nothing).
    """

    kind = "audio"

    def __init__(
        self,
        source: AudioSource | None = None,
        parked: bool = False,
        encoding: VoiceEncoding | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.encoding = encoding or VoiceEncoding()
        self._playing = asyncio.Event()
        if not parked:
            self._playing.set()
        self.muted = False
        self.frames_sent = 0
        self.frames_forwarded = 0
        self.frames_encoded = 0
        self._encoder: OpusEncoder | None = None
        self._expected_loss = self.encoding.min_expected_loss
        self._epoch: float | None = None
        self._index = -1
        self._last_pts: int | None = None
        self._silence = np.zeros(FRAME_SAMPLES, dtype=DTYPE)
        #: Unix time of the first frame read from the current source.
        self.source_started_at: float | None = None
        self._source_read = asyncio.Event()
        # Forwarding.
        self._queue: deque[tuple[bytes, int]] = deque(maxlen=_MAX_FORWARD_QUEUE)
        self._waiter: asyncio.Future[None] | None = None
        self._offset: int | None = None  # pts - unwrapped source timestamp, this spell
        #: The last packet sent was a forwarded one (the next encoded one
        #: follows it at once: ``_encode_next``).
        self._forwarded_last = False
        self._source_ts: int | None = None  # the last source timestamp, unwrapped
        # RFC 4733 events to send (agent_phone/media/telephone_event.py): the
        # frames still to go, their payload type, and the current key's start.
        self._dtmf_frames: deque[tuple[str, int, bool] | None] = deque()
        self._event_type = 0
        self._event_start: tuple[str, int] | None = None

    # --- what to send ----------------------------------------------------------

    def send_events(self, digits: str, payload_type: int, max_s: float) -> float:
        """Send ``digits`` as RFC 4733 events with ``payload_type``, in place
        of the audio (forwarded or encoded) while each key lasts; returns
        their length in seconds. ValueError when more than ``max_s`` would
        then be waiting."""
        frames = event_schedule(digits)
        waiting_s = (len(self._dtmf_frames) + len(frames)) * PTIME
        if waiting_s > max_s:
            raise ValueError(
                f"{len(self._dtmf_frames) * PTIME:.1f} s of DTMF keys are still being sent;"
                f" at most {max_s:g} s may wait"
            )
        self._event_type = payload_type
        self._dtmf_frames.extend(frames)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return round(len(frames) * PTIME, 3)

    @property
    def sending_events(self) -> bool:
        return bool(self._dtmf_frames)

    @property
    def forwarding(self) -> bool:
        """Packets given to ``forward()`` are sent on (rather than encoded audio)."""
        return (
            self._playing.is_set()
            and not self.muted
            and bool(getattr(self.source, "forwarding", False))
        )

    def forward(self, payload: bytes, timestamp: int) -> None:
        """A packet another leg received (its RTP timestamp): sent on if this
        track is forwarding, dropped otherwise."""
        if not self.forwarding:
            return
        self._queue.append((payload, timestamp))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def expected_loss(self) -> float:
        return self._expected_loss

    @expected_loss.setter
    def expected_loss(self, fraction: float) -> None:
        """The share of packets the far end loses (0..1), floored at the
        encoding's ``min_expected_loss``."""
        self._expected_loss = max(self.encoding.min_expected_loss, min(1.0, fraction))
        if self._encoder is not None:
            self._encoder.set_expected_loss(self._expected_loss)

    @property
    def playing(self) -> bool:
        return self._playing.is_set()

    def play(self, source: AudioSource) -> None:
        """Send ``source`` from now on (a call starts)."""
        self.source = source
        self.source_started_at = None
        self._source_read.clear()
        self._new_spell()
        self._playing.set()

    async def source_started(self, timeout: float) -> float | None:
        """When (Unix time) the current source's first frame was read; None
        if that has not happened within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._source_read.wait(), timeout)
        except TimeoutError:
            return None
        return self.source_started_at

    def park(self) -> None:
        """Send nothing from now on (a call ended, or the platform holds it)."""
        self.source = None
        self.muted = False
        self._new_spell()
        self._playing.clear()

    def stop(self) -> None:
        super().stop()
        self._playing.set()  # a parked recv() wakes up and ends
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None

    def _new_spell(self) -> None:
        self._queue.clear()
        self._offset = None
        self._source_ts = None

    # --- aiortc's side ---------------------------------------------------------

    async def recv(self) -> Packet[Any]:
        while True:
            if not self._playing.is_set():
                await self._playing.wait()
            if self.readyState != "live":
                raise MediaStreamError
            if not self.forwarding or self._dtmf_frames:
                self._new_spell()
                packet = await self._encode_next()
                if packet is not None:
                    return packet
                continue  # told to forward while waiting for the frame's time
            if self._queue:
                payload, timestamp = self._queue.popleft()
                return self._send(payload, self._retime(timestamp))
            await self._wait_for_packet()

    async def _wait_for_packet(self) -> None:
        """Until a packet is forwarded, or one frame's time (the mode may change)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(PTIME, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wall_pts(self, now: float) -> int:
        if self._epoch is None:
            self._epoch = now
        return int((now - self._epoch) / PTIME) * FRAME_SAMPLES

    def _retime(self, timestamp: int) -> int:
        """A forwarded packet's place on this track's clock."""
        ts = self._unwrap(timestamp)
        if self._offset is not None:
            pts = ts + self._offset
            if self._last_pts is None or abs(pts - self._last_pts) <= _MAX_FORWARD_JUMP:
                return pts
        # A new spell (or a source whose clock jumped): follow on from the
        # last packet sent, at the wall clock's distance.
        start = self._wall_pts(time.monotonic())
        if self._last_pts is not None:
            start = max(start, self._last_pts + FRAME_SAMPLES)
        self._offset = start - ts
        return start

    def _unwrap(self, timestamp: int) -> int:
        """The source's 32-bit RTP timestamp as an ever-growing integer."""
        if self._source_ts is None:
            ts = timestamp
        else:
            delta = (timestamp - self._source_ts) % (1 << 32)
            if delta >= 1 << 31:
                delta -= 1 << 32
            ts = self._source_ts + delta
        if self._source_ts is None or ts > self._source_ts:
            self._source_ts = ts
        return ts

    def _send(self, payload: bytes, pts: int) -> Packet[Any]:
        if self._last_pts is None or pts > self._last_pts:
            self._last_pts = pts
        self.frames_sent += 1
        self.frames_forwarded += 1
        self._forwarded_last = True
        return _packet(payload, pts)

    async def _encode_next(self) -> Packet[Any] | None:
        """The next 20 ms of the source, paced on the wall clock, encoded
        (None if, by then, the track forwards instead)."""
        now = time.monotonic()
        if self._epoch is None:
            self._epoch = now
        index = self._index + 1
        if self._last_pts is not None:
            index = max(index, self._last_pts // FRAME_SAMPLES + 1)
        due = self._epoch + index * PTIME
        if self._forwarded_last and due > now:
            # Encoding again after a forwarded stretch whose timestamps ran
            # ahead of this clock (its first packet came late, the rest on
            # time): go on from its last packet at once, the clock moved
            # with it. Waiting for the clock would stop the stream with no
            # gap in its timestamps, and the listener's jitter buffer would
            # take everything after as late.
            self._epoch -= due - now
            due = now
        self._forwarded_last = False
        if due > now:
            await asyncio.sleep(due - now)
            if (self.forwarding and not self._dtmf_frames) or not self._playing.is_set():
                return None
        elif now - due > _RESYNC_S:
            index = max(index, int((now - self._epoch) / PTIME))
        self._index = index
        if self._dtmf_frames:
            if (event := self._event_packet(index * FRAME_SAMPLES)) is not None:
                return event  # type: ignore[return-value]  # (packed as a Packet is)
        payload: bytes | None = None
        samples: np.ndarray | None = None
        if self.source is not None and not self.muted:
            # A source may hand over packets encoded once (the platform's tones).
            read_packet = getattr(self.source, "read_packet", None)
            if read_packet is not None:
                payload = read_packet()
            if payload is None:
                samples = self.source.read()
            if self.source_started_at is None:
                self.source_started_at = time.time()
                self._source_read.set()
        if payload is None:
            if self._encoder is None:
                e = self.encoding
                self._encoder = OpusEncoder(e.bitrate, e.fec, self._expected_loss, e.max_bandwidth)
            payload = self._encoder.encode(self._silence if samples is None else samples)
            self.frames_encoded += 1
        pts = index * FRAME_SAMPLES
        self._last_pts = pts
        self.frames_sent += 1
        return _packet(payload, pts)

    def _event_packet(self, pts: int) -> EventPacket | None:
        """This frame's telephone-event packet; None for a frame of audio
        between keys. Every packet of a key has its start's timestamp."""
        frame = self._dtmf_frames.popleft()
        if frame is None:
            self._event_start = None
            return None
        digit, duration, end = frame
        first = self._event_start is None
        if first:
            self._event_start = (digit, pts)
        assert self._event_start is not None
        self._last_pts = pts
        self.frames_sent += 1
        payload = event_payload(digit, duration, end, self._event_type, first)
        return EventPacket(payload, self._event_start[1], TIME_BASE)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LossFollower:
    """Tells a track's encoder how much of its stream the far end loses,
    from the receiver reports aiortc keeps in the sender's stats (every
    ``interval`` seconds; quick to rise, slow to fall)."""

    def __init__(self, sender: RTCRtpSender, track: OutboundAudioTrack, interval: float = 2.0):
        self._sender = sender
        self._track = track
        self._interval = interval
        self.loss = 0.0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            report = await self._sender.getStats()
            for stats in report.values():
                if isinstance(stats, RTCRemoteInboundRtpStreamStats):
                    # RTCP's fraction lost is 8-bit fixed point (RFC 3550 6.4.1).
                    reported = stats.fractionLost / 256
                    falling = 0.8 * self.loss + 0.2 * reported
                    self.loss = reported if reported > self.loss else falling
                    self._track.expected_loss = self.loss
