"""The jitter buffer as a unit: real Opus packets (our encoder), arrival times
chosen by the test, and a listener pulling on a 10 ms tick as the playout
does (agent_phone/media/playout.py). Reordered, late, duplicated and lost
packets, bursts, wrap-around of sequence numbers and timestamps, the target
delay following the jitter, and a sender's pause."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pytest
from audio_analysis import speech_heard

from agent_phone.media import timestretch
from agent_phone.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.media.jitterbuffer import FRAME_MS, MIN_TARGET_LOSSY_MS, JitterBuffer
from agent_phone.media.opus import OpusEncoder, has_fec
from agent_phone.media.wav import read_wav
from agent_phone.resources import resources_dir

TICK = 0.010
LEAD = 0.020


@dataclass
class Sent:
    index: int  # its place in time, in frames (the RTP timestamp)
    payload: bytes
    seq: int | None = None  # its sequence number, if not ``index``


def speech(seconds: float) -> np.ndarray:
    x = read_wav(resources_dir() / "sounds" / "customer.wav")
    n = int(seconds * SAMPLE_RATE)
    return np.resize(x, n - n % FRAME_SAMPLES)


def encode(signal: np.ndarray, fec: bool = True) -> list[Sent]:
    encoder = OpusEncoder(48_000, fec, 0.05 if fec else 0.0, "wideband")
    frames = signal.reshape(-1, FRAME_SAMPLES)
    return [Sent(i, encoder.encode(f)) for i, f in enumerate(frames)]


def play(
    packets: Iterable[tuple[float, Sent]],
    seconds: float,
    buffer: JitterBuffer | None = None,
    seq0: int = 1000,
    ts0: int = 123_456,
    start: float = 0.0,
) -> tuple[JitterBuffer, np.ndarray]:
    """Deliver (arrival time, packet) pairs and pull as a speaker would, from
    ``start`` for ``seconds``; returns the buffer and what was played."""
    jb = buffer or JitterBuffer()
    queue = sorted(packets, key=lambda p: p[0])
    out: list[np.ndarray] = []
    written = 0
    k = 0
    t = start
    while t < start + seconds:
        while k < len(queue) and queue[k][0] <= t:
            arrival, sent = queue[k]
            jb.put(
                sent.payload,
                (ts0 + sent.index * FRAME_SAMPLES) % 2**32,
                (seq0 + (sent.index if sent.seq is None else sent.seq)) % 2**16,
                arrival,
            )
            k += 1
        while written < (t - start + LEAD) * SAMPLE_RATE:
            audio = jb.pull(start + written / SAMPLE_RATE, t)
            out.append(audio)
            written += audio.size
        t += TICK
    return jb, np.concatenate(out)


def on_time(sent: list[Sent], jitter_s: float = 0.0, seed: int = 1) -> list[tuple[float, Sent]]:
    rng = random.Random(seed)
    return [(s.index * 0.02 + rng.uniform(0, jitter_s), s) for s in sent]


def envelope(x: np.ndarray, block: int = FRAME_SAMPLES) -> np.ndarray:
    n = x.size // block
    blocks = x[: n * block].astype(np.float64).reshape(n, block)
    return np.sqrt((blocks**2).mean(axis=1))


def speech_kept(sent_signal: np.ndarray, played: np.ndarray) -> float:
    return speech_heard(sent_signal, played)


def test_a_clean_stream_plays_every_packet_at_one_frame_of_delay() -> None:
    signal = speech(4.0)
    sent = encode(signal)
    jb, played = play(on_time(sent, 0.002), 4.5)
    s = jb.stats
    assert s.packets_received == len(sent) and s.packets_lost == 0
    assert s.packets_discarded == 0 and s.packets_duplicated == 0
    assert jb.target_ms == FRAME_MS
    # Concealment only after the stream ends (the sender stopped).
    assert s.concealed_samples <= 5 * FRAME_SAMPLES
    assert s.jitter_buffer_delay_s / s.jitter_buffer_emitted_count < 0.045
    assert speech_kept(signal, played) > 0.97
    # Level: what comes out is as loud as what went in (within 1 dB).
    energy = np.square(played.astype(float)).sum() / np.square(signal.astype(float)).sum()
    assert abs(10 * np.log10(energy)) < 1.0


def test_a_stream_starts_playing_with_its_first_packet_then_grows_its_delay() -> None:
    # A tone (audible from its first sample), its first packet 0.3 s in.
    tone = (8000 * np.sin(2 * np.pi * 300 * np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE)).astype(
        np.int16
    )
    arrivals = [(0.3 + t, s) for t, s in on_time(encode(tone))]
    jb, played = play(arrivals, 1.5)
    first_heard = int(np.argmax(np.abs(played) > 1000)) / SAMPLE_RATE
    # Heard with the pull that follows its arrival (pulls come every 10 ms
    # for 20 ms ahead), not after the start target's 60 ms of waiting.
    assert 0.3 <= first_heard <= 0.3 + TICK + LEAD + 0.005, first_heard
    # Meanwhile the delay grew by lengthened frames, not by gaps.
    assert jb.stats.inserted_samples_for_deceleration > 0
    assert jb.stats.concealed_samples == 0


def test_reordered_packets_are_put_back_in_order() -> None:
    sent = encode(speech(3.0))
    arrivals = on_time(sent)
    # Every fourth packet arrives 25 ms late, after the next one.
    arrivals = [(t + (0.025 if s.index % 4 == 2 else 0.0), s) for t, s in arrivals]
    jb, _ = play(arrivals[:50], 1.0)
    learning = jb.stats.packets_discarded
    assert learning <= 4  # only until it has seen half a second of them
    jb, _ = play(arrivals[50:], 3.0, jb, start=1.0)
    s = jb.stats
    assert s.packets_discarded == learning, s
    assert s.total_samples_received - s.concealed_samples >= len(sent) * FRAME_SAMPLES - 960
    assert jb.target_ms >= 40  # it learned that packets come up to 25 ms late


def test_a_late_packet_is_discarded_and_concealed() -> None:
    sent = encode(speech(2.0))
    arrivals = on_time(sent)
    arrivals = [(t + (0.5 if s.index == 50 else 0.0), s) for t, s in arrivals]
    jb, _ = play(arrivals, 2.5)
    s = jb.stats
    assert s.packets_discarded == 1
    # Its place was filled from the next packet's FEC, or concealed.
    assert s.fec_recovered_samples + s.concealed_samples >= FRAME_SAMPLES


def test_duplicates_are_counted_and_played_once() -> None:
    signal = speech(2.0)
    sent = encode(signal)
    arrivals = on_time(sent) + [(s.index * 0.02 + 0.005, s) for s in sent[10:20]]
    jb, played = play(arrivals, 2.5)
    s = jb.stats
    assert s.packets_duplicated == 10 and s.packets_lost == 0
    # Each packet decoded once: what was not concealed is exactly what was sent.
    assert s.total_samples_received - s.concealed_samples == len(sent) * FRAME_SAMPLES
    # (The stream starts at once and grows its delay by lengthened frames,
    # which the quarter-second alignment reads as a little missing.)
    assert speech_kept(signal, played) > 0.96


def test_a_lost_packet_is_rebuilt_from_the_next_one_s_fec() -> None:
    signal = speech(3.0)
    sent = encode(signal)
    # Three frames whose next packet carries FEC (quiet ones may not).
    lost = {i for i in range(30, 140) if has_fec(sent[i + 1].payload)}
    lost = set(sorted(lost)[::25][:3])
    assert len(lost) == 3
    jb, played = play([a for a in on_time(sent) if a[1].index not in lost], 3.5)
    s = jb.stats
    assert s.packets_lost == 3
    assert s.fec_recovered_samples == 3 * FRAME_SAMPLES
    # Nothing concealed but the stream's end; the target rose to two frames.
    assert s.concealed_samples <= 5 * FRAME_SAMPLES
    assert jb.target_ms == MIN_TARGET_LOSSY_MS
    assert speech_kept(signal, played) > 0.95


def test_without_fec_a_lost_packet_is_concealed_by_libopus() -> None:
    signal = speech(2.0)
    sent = encode(signal, fec=False)
    jb, played = play([a for a in on_time(sent) if a[1].index != 40], 2.5)
    s = jb.stats
    assert s.fec_recovered_samples == 0 and s.concealment_events >= 1
    assert s.concealed_samples >= FRAME_SAMPLES
    # Concealment is not silence: the frame's place has sound in it.
    at = (40 * FRAME_SAMPLES) // FRAME_SAMPLES
    assert speech_kept(signal, played) > 0.9, at


def test_a_burst_of_loss_conceals_then_recovers_the_last_frame() -> None:
    sent = encode(speech(2.0))
    burst = {40, 41, 42}
    jb, _ = play([a for a in on_time(sent) if a[1].index not in burst], 2.5)
    s = jb.stats
    assert s.packets_lost == 3
    assert s.fec_recovered_samples == FRAME_SAMPLES  # 42, from 43's FEC
    assert s.concealed_samples >= 2 * FRAME_SAMPLES  # 40 and 41


@pytest.mark.parametrize(
    ("seq0", "ts0"), [(65_530, 123_456), (1000, 2**32 - 5 * FRAME_SAMPLES), (65_533, 2**32 - 960)]
)
def test_sequence_numbers_and_timestamps_wrap_around(seq0: int, ts0: int) -> None:
    signal = speech(1.5)
    sent = encode(signal)
    jb, played = play(on_time(sent, 0.002), 2.0, seq0=seq0, ts0=ts0)
    s = jb.stats
    assert s.packets_lost == 0 and s.packets_discarded == 0 and s.packets_duplicated == 0
    assert speech_kept(signal, played) > 0.97


def test_the_target_follows_the_jitter_up_and_back_down() -> None:
    sent = encode(np.zeros(FRAME_SAMPLES * 4000, dtype=np.int16))  # 80 s
    rng = random.Random(5)
    arrivals = []
    for s in sent:
        jitter = rng.uniform(0, 0.060) if s.index < 1000 else rng.uniform(0, 0.002)
        arrivals.append((s.index * 0.02 + jitter, s))
    jb = JitterBuffer()
    jb, _ = play(arrivals[:1000], 20.0, jb)
    high = jb.target_ms
    assert 60 <= high <= 100, high
    played_ok = jb.stats.packets_discarded / 1000
    assert played_ok < 0.02  # at most 2 % arrive after the target they set
    play(arrivals[1000:], 60.0, jb, start=20.0)
    assert jb.target_ms <= 40, jb.target_ms  # calmer network, smaller target


def test_a_pause_of_the_sender_ends_in_silence_and_the_next_stream_plays() -> None:
    signal = speech(1.0)
    first = encode(signal)
    # The same sender 3 s after it stopped: its timestamps moved on with the
    # clock, its sequence numbers did not (it sent nothing meanwhile).
    later = [Sent(s.index + 200, s.payload, seq=s.index + 50) for s in encode(signal)]
    jb, played = play(on_time(first) + on_time(later), 6.0)
    quiet = envelope(played)[int(1.5 / 0.02) : int(3.5 / 0.02)]
    assert quiet.max() < 30  # silence, not a buzz of concealment
    assert jb.stats.concealed_samples <= 10 * FRAME_SAMPLES
    assert jb.stats.packets_lost == 0
    assert (
        speech_kept(np.concatenate([signal, np.zeros(3 * SAMPLE_RATE, np.int16), signal]), played)
        > 0.95
    )


def test_steering_shortens_and_lengthens_frames_without_a_gap() -> None:
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    voiced = (6000 * np.sin(2 * np.pi * 150 * t) + 2000 * np.sin(2 * np.pi * 450 * t)).astype(
        np.int16
    )
    shorter, longer = timestretch.shorten(voiced), timestretch.lengthen(voiced)
    assert shorter is not None and longer is not None
    period = SAMPLE_RATE // 150
    assert shorter.size == FRAME_SAMPLES - period and longer.size == FRAME_SAMPLES + period
    # No click: no step between neighbours bigger than the signal's own.
    step = np.abs(np.diff(voiced.astype(int))).max()
    for x in (shorter, longer):
        assert np.abs(np.diff(x.astype(int))).max() <= step * 1.05
    # Noise that does not repeat is left alone; a pause may lose 10 ms.
    noise = np.random.default_rng(1).normal(0, 4000, FRAME_SAMPLES).astype(np.int16)
    assert timestretch.shorten(noise) is None
    quiet = (noise // 100).astype(np.int16)
    shortened = timestretch.shorten(quiet)
    assert shortened is not None and shortened.size == FRAME_SAMPLES - FRAME_SAMPLES // 2


def test_a_buffer_that_runs_late_catches_up_by_stretching_not_dropping() -> None:
    signal = speech(4.0)
    sent = encode(signal)
    # The first half second arrives in one burst, 300 ms late (a stalled
    # path), then packets come on time: the buffer starts far behind.
    arrivals = [(max(0.3, t), s) if s.index < 25 else (t, s) for t, s in on_time(sent)]
    jb, played = play(arrivals, 4.5)
    s = jb.stats
    assert s.removed_samples_for_acceleration > 0
    assert s.packets_discarded == 0
    assert speech_kept(signal, played) > 0.95
