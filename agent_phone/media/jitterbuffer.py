"""The adaptive jitter buffer: Opus packets in as they arrive, audio out on the
listener's clock, with concealment, FEC and a delay that follows the network.

It works the way libwebrtc's NetEq does, in outline:

- **Packets are kept by RTP timestamp**, so reordered ones fall into place;
  one older than what is already played is *late* and discarded, one seen
  twice is a duplicate.
- **The target delay follows the measured jitter** (``DelayEstimator``):
  each packet's arrival relative to the earliest-arriving packet of the last
  two seconds is its *relative delay*; the largest of every half second
  goes into a histogram that forgets old values, and the target is its 95th
  percentile rounded up to whole 20 ms frames: one frame on a clean network,
  more under jitter, shrinking again some 30 s after the network calms.
- **The delay is steered, not forced**: ``pull()`` measures how long after
  its earliest possible arrival the frame it plays now is played (the
  *playout offset*). Above the target by a frame, a frame is played shorter
  by one pitch period (a pause: by more); below the target, one longer
  (``timestretch``). Speech is never thrown away to catch up.
- **A missing frame is concealed**: recovered from the next packet's
  in-band FEC when that packet is already here, otherwise libopus's own
  concealment (PLC). When nothing at all has arrived (an underrun: the
  network held packets back), the buffer conceals *without* moving on, so
  the packet that was late is still played when it comes, as NetEq's
  expand/merge does: a late packet costs a little delay, not lost speech.
- **A pause of the sender** (between calls on a kept connection, or a
  stream that stops) ends in silence, and the stream starts afresh, with
  the jitter learned so far, when packets come again.

Counters are named after WebRTC's ``RTCInboundRtpStreamStats`` (in
snake_case; ``fec_recovered_samples`` has no WebRTC name: libwebrtc counts
Opus's in-band FEC nowhere).

The buffer is plain, single-threaded code with the time passed in, so the
tests drive it packet by packet; ``agent_phone.media.receiver`` feeds it
from aiortc and ``agent_phone.media.playout`` pulls it on the listener's
clock.
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from dataclasses import dataclass, fields

import numpy as np

from agent_phone.media import timestretch
from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.media.opus import OpusDecoder, OpusError, has_fec, packet_samples

logger = logging.getLogger(__name__)

_MS = SAMPLE_RATE // 1000
FRAME_MS = FRAME_SAMPLES // _MS

#: NetEq's delay manager: quantile, forget factor (per half-second update;
#: NetEq's 0.983 took ~90 s to let the target down after jitter ended, this
#: ~50 s), the window over which the earliest arrival is taken, and buckets
#: of one frame.
QUANTILE = 0.95
FORGET = 0.97
HISTORY_S = 2.0
UPDATE_S = 0.5
BUCKET_MS = FRAME_MS
BUCKETS = 50  # up to one second of jitter
#: Until the first half second of arrivals is measured, the target is this
#: (as NetEq starts at 80 ms): a stream begins playing at once and grows
#: its delay to this, safe, then settles down.
START_TARGET_MS = 3 * FRAME_MS
#: Target delay bounds. While packets are being lost the target is at least
#: two frames, so that the packet after a lost one is usually here in time
#: for its FEC to rebuild the lost one (``LOSS_MEMORY`` frames: ~10 s).
MIN_TARGET_MS = FRAME_MS
MIN_TARGET_LOSSY_MS = 2 * FRAME_MS
LOSS_MEMORY = 500
LOSSY = 0.002
#: A gap longer than this (frames) is the sender pausing, not loss.
MAX_LOSS_RUN = 5
MAX_TARGET_MS = 500
#: The playout offset may run this far above the target before it is shrunk;
#: below the target it is grown at once (the target is a floor: the jitter
#: it was measured from leaves no room under it).
ABOVE_MS = 15
BELOW_MS = 0
#: The offset steered by is averaged over ~10 frames: a sound card's buffer
#: drains in blocks, so each pull's offset wobbles by ~10 ms on its own.
STEER_SMOOTHING = 0.1
#: After an underrun has concealed this long, silence follows (PLC would only
#: fade into a buzz); after this long with nothing at all, the stream is idle.
MAX_EXPAND_MS = 100
IDLE_AFTER_MS = 600
#: A packet this far ahead of the playout point while others are buffered
#: means the sender's clock jumped: start afresh from it.
MAX_JUMP_MS = 1000
#: At most this much audio waits; beyond it the oldest goes (a sender that
#: bursts after a stall), counted as discarded.
MAX_BUFFER_MS = 1000


@dataclass
class ReceiveStats:
    """Cumulative counters of one receiver (all since it was made)."""

    packets_received: int = 0
    packets_lost: int = 0
    packets_discarded: int = 0
    packets_duplicated: int = 0
    total_samples_received: int = 0
    concealed_samples: int = 0
    silent_concealed_samples: int = 0
    concealment_events: int = 0
    fec_recovered_samples: int = 0
    inserted_samples_for_deceleration: int = 0
    removed_samples_for_acceleration: int = 0
    #: Sum over played frames of the time each waited here (s), and their count.
    jitter_buffer_delay_s: float = 0.0
    jitter_buffer_emitted_count: int = 0
    #: Now, not cumulative.
    jitter_buffer_target_delay_ms: float = 0.0

    def copy(self) -> ReceiveStats:
        return ReceiveStats(**{f.name: getattr(self, f.name) for f in fields(self)})


class _Unwrapper:
    """RTP's wrapping counters (16-bit sequence numbers, 32-bit timestamps)
    made into ever-growing integers."""

    def __init__(self, bits: int) -> None:
        self._mod = 1 << bits
        self._half = self._mod >> 1
        self._last: int | None = None

    def __call__(self, value: int) -> int:
        if self._last is None:
            self._last = value
            return value
        delta = (value - self._last) % self._mod
        if delta >= self._half:
            delta -= self._mod
        unwrapped = self._last + delta
        # Keep the newest, so a late packet does not pull the base back.
        if delta > 0:
            self._last = unwrapped
        return unwrapped

    def reset(self) -> None:
        self._last = None


class DelayEstimator:
    """The target delay, from how late packets arrive relative to each other."""

    def __init__(self) -> None:
        self._histogram = np.zeros(BUCKETS)
        self._histogram[0] = 1.0
        self._arrivals: deque[tuple[float, float]] = deque()  # (arrival, offset), min-queue
        self._interval_max_ms = 0.0
        self._interval_start: float | None = None
        self._updates = 0
        self.target_ms = float(START_TARGET_MS)

    @property
    def earliest_offset(self) -> float | None:
        """The smallest ``arrival - media time`` of the last ``HISTORY_S``."""
        return self._arrivals[0][1] if self._arrivals else None

    def restart(self) -> None:
        """A new stream (or a clock jump): forget the arrivals, keep what the
        network has been seen to do."""
        self._arrivals.clear()
        self._interval_start = None
        self._interval_max_ms = 0.0

    def packet(self, arrival: float, media_s: float) -> None:
        offset = arrival - media_s
        arrivals = self._arrivals
        while arrivals and arrivals[-1][1] >= offset:
            arrivals.pop()
        arrivals.append((arrival, offset))
        while arrivals[0][0] < arrival - HISTORY_S:
            arrivals.popleft()
        relative_ms = (offset - arrivals[0][1]) * 1000
        if self._interval_start is None:
            self._interval_start = arrival
        self._interval_max_ms = max(self._interval_max_ms, relative_ms)
        if arrival - self._interval_start >= UPDATE_S:
            self._update(self._interval_max_ms)
            self._interval_start = arrival
            self._interval_max_ms = 0.0

    def _update(self, delay_ms: float) -> None:
        # NetEq's start-up: forget faster at first, so the first seconds count.
        self._updates += 1
        forget = min(FORGET, 1.0 - 2.0 / (self._updates + 2))
        self._histogram *= forget
        bucket = min(BUCKETS - 1, int(delay_ms // BUCKET_MS))
        self._histogram[bucket] += 1.0 - forget
        cumulative = np.cumsum(self._histogram) / self._histogram.sum()
        index = int(np.searchsorted(cumulative, QUANTILE))
        self.target_ms = float(min(MAX_TARGET_MS, max(MIN_TARGET_MS, (index + 1) * BUCKET_MS)))


@dataclass
class _Packet:
    timestamp: int  # unwrapped, in samples
    samples: int
    payload: bytes
    arrival: float


class JitterBuffer:
    """Opus packets in (``put``), 48 kHz mono audio out (``pull``)."""

    def __init__(self) -> None:
        self.stats = ReceiveStats(jitter_buffer_target_delay_ms=float(START_TARGET_MS))
        self.delay = DelayEstimator()
        self._decoder = OpusDecoder()
        self._timestamps = _Unwrapper(32)
        self._sequence = _Unwrapper(16)
        self._first_seq: int | None = None
        self._max_seq: int | None = None
        self._seen: deque[int] = deque(maxlen=64)
        self._keys: list[int] = []  # buffered timestamps, sorted
        self._packets: dict[int, _Packet] = {}
        self._next: int | None = None  # timestamp of the next sample to play
        self._expanded = 0  # samples concealed in the current underrun
        self._concealing = False
        self._last_arrival: float | None = None
        #: The share of frames missing on arrival, averaged over ~LOSS_MEMORY frames.
        self._loss = 0.0
        self._newest: int | None = None  # end of the newest packet's audio
        #: How far ahead of the pull the audio is heard (the sink's lead), smoothed.
        self._lead: float | None = None
        #: The playout offset, smoothed (what the delay is steered by).
        self._offset_avg: float | None = None

    # --- packets in -------------------------------------------------------------

    @property
    def playing(self) -> bool:
        return self._next is not None

    @property
    def target_ms(self) -> float:
        """The delay aimed for: the jitter's, or two frames while lossy."""
        target = self.delay.target_ms
        if self._loss > LOSSY:
            target = max(target, MIN_TARGET_LOSSY_MS)
        return target

    def _gap(self, ts: int, samples: int) -> None:
        """Note the frames missing before this packet (a gap in timestamps,
        so also loss on a leg before the platform, which renumbers): the
        loss that decides whether to wait for FEC. A longer gap is a pause."""
        newest = self._newest
        if newest is None or ts >= newest:
            missing = 0 if newest is None else (ts - newest) // max(1, samples)
            if missing > MAX_LOSS_RUN:
                missing = 0
            for _ in range(missing):
                self._loss -= self._loss / LOSS_MEMORY
                self._loss += 1.0 / LOSS_MEMORY
            self._loss -= self._loss / LOSS_MEMORY
            self._newest = ts + samples

    @property
    def buffered_ms(self) -> float:
        if not self._keys:
            return 0.0
        last = self._packets[self._keys[-1]]
        start = self._next if self._next is not None else self._keys[0]
        return max(0, last.timestamp + last.samples - start) / _MS

    def count_only(self, sequence: int) -> bool:
        """Count a packet that arrived (for loss and duplicates) without
        keeping it; False if it was a duplicate."""
        stats = self.stats
        stats.packets_received += 1
        seq = self._sequence(sequence)
        if seq in self._seen:
            stats.packets_duplicated += 1
            return False
        self._seen.append(seq)
        if self._first_seq is None or seq < self._first_seq:
            self._first_seq = seq
        if self._max_seq is None or seq > self._max_seq:
            self._max_seq = seq
        expected = self._max_seq - self._first_seq + 1
        unique = stats.packets_received - stats.packets_duplicated
        stats.packets_lost = max(0, expected - unique)
        return True

    def put(self, payload: bytes, timestamp: int, sequence: int, arrival: float) -> None:
        stats = self.stats
        if not self.count_only(sequence) or not payload:
            return  # a duplicate, or an empty packet: nothing to play
        try:
            samples = packet_samples(payload)
        except OpusError:
            stats.packets_discarded += 1
            return
        ts = self._timestamps(timestamp)
        if self._next is not None and ts + samples <= self._next:
            stats.packets_discarded += 1  # too late: its time has been played
            return
        if ts in self._packets:
            stats.packets_duplicated += 1
            return
        self._gap(ts, samples)
        self.delay.packet(arrival, ts / SAMPLE_RATE)
        stats.jitter_buffer_target_delay_ms = self.target_ms
        self._last_arrival = arrival
        bisect.insort(self._keys, ts)
        self._packets[ts] = _Packet(ts, samples, payload, arrival)
        while self.buffered_ms > MAX_BUFFER_MS and len(self._keys) > 1:
            self._drop(self._keys[0])
            stats.packets_discarded += 1
            if self._next is not None:
                self._next = max(self._next, self._keys[0])

    def _drop(self, ts: int) -> _Packet:
        self._keys.remove(ts)
        return self._packets.pop(ts)

    # --- audio out --------------------------------------------------------------

    def pull(self, play_at: float, now: float | None = None) -> np.ndarray:
        """The next stretch of audio to play (about 20 ms; shorter or longer
        while the delay is steered), which will be heard from ``play_at`` on
        (the listener's clock: agent_phone/media/playout.py), asked for at
        ``now`` (the same by default). Silence when nothing is playing.

        Lateness is judged on the listener's clock less its usual lead (how
        far ahead of playing it asks): a packet must be here when it is
        asked for, and a stall of this process's loop, after which the
        listener asks for several frames at once, must not look like
        network delay."""
        if now is not None:
            lead = max(0.0, play_at - now)
            self._lead = lead if self._lead is None else self._lead + (lead - self._lead) * 0.05
        now = play_at - (self._lead or 0.0)
        if self._next is None and not self._start(now):
            return np.zeros(FRAME_SAMPLES, dtype=DTYPE)
        assert self._next is not None
        while self._keys and self._keys[0] + self._packets[self._keys[0]].samples <= self._next:
            self._drop(self._keys[0])
            self.stats.packets_discarded += 1
        if not self._keys:
            return self._underrun(now)
        first = self._keys[0]
        if first > self._next + MAX_JUMP_MS * _MS:
            jump_ms = (first - self._next) // _MS
            logger.info("jitter buffer: the sender's clock jumped %d ms", jump_ms)
            self.delay.restart()
            for ts in self._keys:
                packet = self._packets[ts]
                self.delay.packet(packet.arrival, ts / SAMPLE_RATE)
            self._next = first
        offset_ms = self._offset_ms(now)
        if first > self._next and offset_ms + FRAME_MS <= self.target_ms:
            # The frame due is missing but there is time to wait for it
            # (reordered, not lost): conceal without moving on.
            return self._expand()
        if first <= self._next:
            packet = self._drop(first)
            audio = self._decode(packet)
            # A packet that began before the playout point (a different
            # packetisation) plays from the point on.
            audio = audio[self._next - first :]
            self._next = packet.timestamp + packet.samples
            self._played(now, packet.arrival, audio.size)
        else:
            audio = self._missing(first)
        self._expanded = 0
        return self._steer(audio, offset_ms)

    def _start(self, now: float) -> bool:
        """Begin playing with the first packet, at once, as NetEq does: the
        first words of a call are not held back to fill the buffer. The
        delay then grows to the target by lengthened frames (``_steer``),
        and a packet that comes late meanwhile is waited for by concealment
        (``_expand``), which grows it too."""
        if not self._keys:
            return False
        first = self._packets[self._keys[0]]
        self._next = first.timestamp
        self._offset_avg = None
        self._decoder.reset()
        return True

    def _offset_ms(self, now: float) -> float:
        """How long after the earliest possible arrival of the audio at the
        playout point it is being played."""
        earliest = self.delay.earliest_offset
        if earliest is None or self._next is None:
            return 0.0
        return (now - (self._next / SAMPLE_RATE + earliest)) * 1000

    def _decode(self, packet: _Packet) -> np.ndarray:
        try:
            audio = self._decoder.decode(packet.payload)
        except OpusError:
            self.stats.packets_discarded += 1
            return self._conceal(packet.samples)
        self.stats.total_samples_received += audio.size
        self._concealing = False
        return audio

    def _missing(self, first: int) -> np.ndarray:
        """The frame at the playout point is lost (or later than the ones
        after it): recover it from the next packet's FEC, or conceal it."""
        assert self._next is not None
        gap = min(first - self._next, FRAME_SAMPLES)
        following = self._packets[first]
        if first - self._next <= FRAME_SAMPLES and has_fec(following.payload):
            try:
                audio = self._decoder.recover(following.payload, gap)
            except OpusError:
                audio = self._conceal(gap)
            else:
                self.stats.fec_recovered_samples += audio.size
                self.stats.total_samples_received += audio.size
                self._concealing = False
        else:
            audio = self._conceal(gap)
        self._next += gap
        return audio

    def _conceal(self, samples: int) -> np.ndarray:
        stats = self.stats
        try:
            audio = self._decoder.conceal(samples)
        except OpusError:
            audio = np.zeros(samples, dtype=DTYPE)
        if not self._concealing:
            stats.concealment_events += 1
            self._concealing = True
        stats.concealed_samples += audio.size
        stats.total_samples_received += audio.size
        if timestretch.rms(audio) < timestretch.QUIET_RMS / 4:
            stats.silent_concealed_samples += audio.size
        return audio

    def _underrun(self, now: float) -> np.ndarray:
        """Nothing to play. While the frame due may still come (it is not
        later than the target), conceal without moving on, so it is played
        when it comes; once it is overdue, it counts as lost and the
        playout moves on. Silence after a while; idle after a pause."""
        last = self._last_arrival
        if last is not None and (now - last) * 1000 > IDLE_AFTER_MS:
            self._idle()
            return np.zeros(FRAME_SAMPLES, dtype=DTYPE)
        audio = self._expand()
        if self._offset_ms(now) >= self.target_ms + FRAME_MS / 2:
            assert self._next is not None
            self._next += FRAME_SAMPLES
        return audio

    def _expand(self) -> np.ndarray:
        """Conceal a frame without moving the playout point; silence once
        that has gone on for ``MAX_EXPAND_MS``."""
        if self._expanded >= MAX_EXPAND_MS * _MS:
            self._concealing = False
            return np.zeros(FRAME_SAMPLES, dtype=DTYPE)
        self._expanded += FRAME_SAMPLES
        return self._conceal(FRAME_SAMPLES)

    def flush(self) -> None:
        """Drop everything buffered and stop playing (a call ended); the
        next packets start a new stream."""
        self._keys.clear()
        self._packets.clear()
        self._idle()

    def _idle(self) -> None:
        logger.debug("jitter buffer: the sender paused; idle")
        self._next = None
        self._expanded = 0
        self._concealing = False
        self.delay.restart()
        self._timestamps.reset()
        self._newest = None

    def _played(self, now: float, arrival: float, samples: int) -> None:
        self.stats.jitter_buffer_delay_s += max(0.0, now - arrival)
        self.stats.jitter_buffer_emitted_count += 1

    def _steer(self, audio: np.ndarray, offset_ms: float) -> np.ndarray:
        """Shorten or lengthen this frame when the delay (smoothed) is off
        target; what is taken or added moves the smoothed delay at once."""
        avg = self._offset_avg
        avg = offset_ms if avg is None else avg + (offset_ms - avg) * STEER_SMOOTHING
        self._offset_avg = avg
        target = self.target_ms
        if avg > target + ABOVE_MS:
            shorter = timestretch.shorten(audio)
            if shorter is not None:
                removed = audio.size - shorter.size
                self.stats.removed_samples_for_acceleration += removed
                self._offset_avg = avg - removed / _MS
                return shorter
        elif avg < target - BELOW_MS:
            longer = timestretch.lengthen(audio)
            if longer is not None:
                inserted = longer.size - audio.size
                self.stats.inserted_samples_for_deceleration += inserted
                self._offset_avg = avg + inserted / _MS
                return longer
        return audio

    def close(self) -> None:
        self._decoder.close()
