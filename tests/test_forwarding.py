"""The platform forwards a two-party call's Opus packets: not decoded, not
re-encoded, and one continuous stream on a kept connection, call after call.

Real aiortc peers in one process (tests/media_peers.py): two customers call
one after the other into the platform's legs, each bridged onto the same
``AgentLink`` to the phone by a ``Bridge``; packets are recorded where each receiver gets
them.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from audio_analysis import has_tone, tone_snr_db
from media_peers import AgentSide, Customer, Recorder, talk

from agent_phone.cloud.customer_audio import tones_encoded
from agent_phone.cloud.media_edge import CustomerLeg, Hearing
from agent_phone.cloud.media_paths import Bridge, Conference, join
from agent_phone.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.media.ice import ice_addresses, restrict_ice_addresses
from agent_phone.media.tracks import FORWARDED, OutboundAudioTrack
from agent_phone.media.wav import ToneSource

AGENT_HZ, FIRST_HZ, SECOND_HZ = 880.0, 440.0, 660.0


@pytest.fixture(autouse=True)
def loopback_only():
    before = ice_addresses()
    restrict_ice_addresses(["127.0.0.1"])
    yield
    restrict_ice_addresses(before)


def is_run_of(received: list[bytes], sent: list[bytes]) -> bool:
    """``received`` is a stretch of ``sent``, byte for byte, in order."""
    if not received:
        return False
    try:
        start = sent.index(received[0])
    except ValueError:
        return False
    return sent[start : start + len(received)] == received


def log_sent(track: OutboundAudioTrack) -> list[bytes]:
    """Every payload ``track`` hands its sender from now on."""
    sent: list[bytes] = []
    recv = track.recv

    async def logged():  # type: ignore[no-untyped-def]
        packet = await recv()
        sent.append(bytes(packet))
        return packet

    track.recv = logged  # type: ignore[method-assign]
    return sent


async def one_call(agent: AgentSide, hz: float, seconds: float) -> tuple[Customer, CustomerLeg]:
    leg = CustomerLeg(f"call-{hz:g}")
    customer = Customer(ToneSource(hz))
    await customer.track.source.start()  # type: ignore[union-attr]
    await customer.call(leg)
    bridge = Bridge(leg, agent.link)
    await talk(seconds)
    bridge.close()
    agent.link.hear(Hearing.NOTHING)  # between calls: parked
    return customer, leg


async def test_two_calls_are_forwarded_byte_for_byte_over_one_kept_connection():
    agent = AgentSide()
    legs: list[CustomerLeg] = []
    customers: list[Customer] = []
    try:
        await agent.connect()
        assert agent.heard is not None
        tone = ToneSource(AGENT_HZ)
        await tone.start()
        agent.phone.attach(tone)
        phone_sent = log_sent(agent.phone.track)
        first, leg = await one_call(agent, FIRST_HZ, 1.5)
        customers.append(first)
        legs.append(leg)
        at_end = len(agent.heard.packets)
        gap_started = time.monotonic()
        await asyncio.sleep(1.0)  # between calls: the link sends nothing
        # (but the first call's last packet may still have been on its way)
        assert len(agent.heard.packets) - at_end <= 1
        heard_first = list(agent.heard.packets)
        second, leg = await one_call(agent, SECOND_HZ, 1.5)
        gap = time.monotonic() - gap_started - 1.5
        customers.append(second)
        legs.append(leg)
    finally:
        for leg in legs:
            await leg.close()
        for customer in customers:
            await customer.close()
        await agent.close()

    heard_second = agent.heard.packets[len(heard_first) :]
    # Each customer's packets reached the phone exactly as the customer's
    # encoder made them: the platform neither decoded nor re-encoded.
    assert is_run_of([p.payload for p in heard_first], first.track.sent)
    assert is_run_of([p.payload for p in heard_second], second.track.sent)
    assert has_tone(Recorder(packets=heard_first).decoded(), FIRST_HZ)
    assert has_tone(Recorder(packets=heard_second).decoded(), SECOND_HZ)
    # ...and the phone's reached each customer the same way.
    for customer in (first, second):
        from_agent = [p.payload for p in customer.heard.packets if p.payload in phone_sent]
        assert len(from_agent) > 40 and is_run_of(from_agent, phone_sent)
    # The platform encoded nothing: the waiting tone is encoded once for
    # all, the call's audio forwarded.
    assert [leg.track.frames_encoded for leg in legs] == [0, 0]
    assert agent.link.track.frames_encoded == 0

    # One continuous stream on the kept connection: sequence numbers with
    # no gap across both calls, timestamps rising, and the pause between
    # the calls as long in RTP time as it was on the clock.
    packets = agent.heard.packets
    steps = [(b.sequence - a.sequence) % 2**16 for a, b in zip(packets, packets[1:], strict=False)]
    assert set(steps) == {1}, steps
    ts_steps = [
        (b.timestamp - a.timestamp) % 2**32 for a, b in zip(packets, packets[1:], strict=False)
    ]
    within_call = ts_steps[: len(heard_first) - 1] + ts_steps[len(heard_first) :]
    assert set(within_call) == {FRAME_SAMPLES}, set(within_call)
    pause_s = ts_steps[len(heard_first) - 1] / SAMPLE_RATE
    assert gap - 0.1 <= pause_s <= gap + 0.3, (pause_s, gap)


async def test_hold_cuts_the_forwarding_and_plays_the_music_encoded_once():
    agent = AgentSide()
    leg = CustomerLeg("call-hold")
    customer = Customer(ToneSource(FIRST_HZ))
    try:
        await agent.connect()
        assert agent.heard is not None
        await customer.track.source.start()  # type: ignore[union-attr]
        await customer.call(leg)
        tone = ToneSource(AGENT_HZ)
        await tone.start()
        agent.phone.attach(tone)
        bridge = Bridge(leg, agent.link)
        await talk(0.6)
        bridge.close()  # held, as the router holds a call
        leg.hear(Hearing.HOLD)
        agent.link.hear(Hearing.NOTHING)
        before = len(agent.heard.packets)
        heard_before = len(customer.heard.packets)
        await talk(1.0)
        during = agent.heard.packets[before:]
        music = [p.payload for p in customer.heard.packets[heard_before:]]
        bridge = Bridge(leg, agent.link)
        await talk(0.6)
    finally:
        await leg.close()
        await customer.close()
        await agent.close()
    # Held: nothing from the customer reaches the agent (a packet already on
    # its way may), and the customer hears the hold music's own packets.
    assert len(during) <= 2
    hold_loop = set(tones_encoded()[1])
    assert sum(p in hold_loop for p in music) >= 40
    # Off hold: the customer reaches the agent again.
    assert len(agent.heard.packets) - before - len(during) >= 20


async def test_a_forwarded_stream_keeps_its_gaps_and_survives_wrap_around():
    track = OutboundAudioTrack(parked=True)
    track.play(FORWARDED)
    start = 2**32 - 2 * FRAME_SAMPLES
    # The third packet was lost on the way in: a gap of one frame.
    for i in (0, 1, 3, 4):
        track.forward(bytes([0xF8, i]), (start + i * FRAME_SAMPLES) % 2**32)
    packets = [await asyncio.wait_for(track.recv(), 1.0) for _ in range(4)]
    track.stop()
    assert [bytes(p)[1] for p in packets] == [0, 1, 3, 4]  # the same bytes
    steps = np.diff([p.pts for p in packets])
    assert steps.tolist() == [FRAME_SAMPLES, 2 * FRAME_SAMPLES, FRAME_SAMPLES]
    assert track.frames_encoded == 0


async def test_three_parties_in_a_conference_each_hear_the_two_others():
    """The platform mixes only for a conference: each party is decoded, and
    each hears the sum of the others, never themselves."""
    agent = AgentSide()
    customers = [Customer(ToneSource(FIRST_HZ)), Customer(ToneSource(SECOND_HZ))]
    legs = [CustomerLeg("call-a"), CustomerLeg("call-b")]
    try:
        await agent.connect()
        assert agent.heard is not None
        tone = ToneSource(AGENT_HZ)
        await tone.start()
        agent.phone.attach(tone)
        for customer, leg in zip(customers, legs, strict=True):
            await customer.track.source.start()  # type: ignore[union-attr]
            await customer.call(leg)
        conference = join([legs[0], legs[1], agent.link])
        assert isinstance(conference, Conference)
        await talk(0.4)  # (the jitter buffers fill)
        marks = [len(agent.heard.packets)] + [len(c.heard.packets) for c in customers]
        await talk(1.5)
        conference.close()
        heard = [Recorder(packets=agent.heard.packets[marks[0] :]).decoded()]
        heard += [
            Recorder(packets=c.heard.packets[mark:]).decoded()
            for c, mark in zip(customers, marks[1:], strict=True)
        ]
    finally:
        for leg in legs:
            await leg.close()
        for customer in customers:
            await customer.close()
        await agent.close()

    def level_db(samples: np.ndarray, hz: float) -> float:
        return tone_snr_db(samples, hz, tolerance_hz=10)[0]

    voices = [AGENT_HZ, FIRST_HZ, SECOND_HZ]
    for listener, samples in zip(voices, heard, strict=True):
        others = [hz for hz in voices if hz != listener]
        # Two tones of one level: each about half of what is heard (0 dB
        # against the rest); the listener's own voice far below both.
        for hz in others:
            assert level_db(samples, hz) > -6, (listener, hz, level_db(samples, hz))
        assert level_db(samples, listener) < -20, (listener, level_db(samples, listener))
    assert conference.frames_mixed >= 80  # 1.9 s at 50 frames a second, give or take


async def test_encoding_after_a_forwarded_stretch_goes_on_at_once():
    """A forwarded stretch whose timestamps ran ahead of the track's clock
    (its first packet came late, the rest on time: here, a burst) is
    followed by encoded audio at once, the timestamps going on from it: no
    pause with no gap in the timestamps, which the listener's jitter buffer
    would take as lateness (the customer heard silence after a hold)."""
    track = OutboundAudioTrack(parked=True)
    track.play(FORWARDED)
    for i in range(10):  # 200 ms of packets at once
        track.forward(bytes([0xF8, i]), 1000 + i * FRAME_SAMPLES)
    forwarded = [await asyncio.wait_for(track.recv(), 1.0) for _ in range(10)]
    tone = ToneSource(AGENT_HZ)
    await tone.start()
    track.play(tone)  # the hold music, say
    started = time.monotonic()
    encoded = await asyncio.wait_for(track.recv(), 1.0)
    waited = time.monotonic() - started
    track.stop()
    assert encoded.pts == forwarded[-1].pts + FRAME_SAMPLES
    assert waited < 0.05, waited  # not the ~180 ms the clock was behind
