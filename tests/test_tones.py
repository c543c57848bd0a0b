"""The tones and DTMF of agent_phone.media.tones, and the customer's feed, as
plain objects: generated signals measured with an FFT, recognised back, and
refused when they should be."""

from __future__ import annotations

import numpy as np
import pytest
from audio_analysis import dominant_frequency, has_tone, make_tone, rms

from agent_phone.cloud.customer_audio import MAX_PENDING_DTMF_S, CustomerFeed, DtmfBusy, Feed
from agent_phone.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.media.opus import OpusDecoder, OpusEncoder
from agent_phone.media.tones import (
    DTMF_FREQUENCIES,
    HOLD_NOTES_HZ,
    MAX_DTMF_DIGITS,
    WAITING_HZ,
    DtmfDetector,
    HeardAnalysis,
    dtmf_samples,
    hold_music,
    validate_dtmf,
    waiting_tone,
)
from agent_phone.protocol import ProtocolError, decode_from_agent, encode
from agent_phone.protocol.messages import CallHeld, HoldCall, SendDtmf, UnholdCall

ALL_KEYS = "123A456B789C*0#D"


def detect(samples: np.ndarray, block: int = FRAME_SAMPLES) -> str:
    detector = DtmfDetector()
    for i in range(0, len(samples), block):
        detector.feed(samples[i : i + block])
    return detector.digits


def test_each_key_is_its_two_itu_frequencies_at_minus_10_dbm0_for_100_ms():
    for key, (low, high) in DTMF_FREQUENCIES.items():
        x = dtmf_samples(key)
        assert len(x) == int(0.170 * SAMPLE_RATE)  # 100 ms on, 70 ms off
        on, off = x[: int(0.1 * SAMPLE_RATE)], x[int(0.1 * SAMPLE_RATE) :]
        assert rms(off) == 0
        assert has_tone(on, low, tolerance_hz=10) and has_tone(on, high, tolerance_hz=10)
        # Two sines of equal amplitude a: rms = a. -10 dBm0 is a = 0.22 of full scale
        # (G.711: a full-scale sine is +3.14 dBm0); the 3 ms fades take a little off.
        assert rms(on) == pytest.approx(32767 * 10 ** (-13.14 / 20), rel=0.04)


def test_digits_are_recognised_in_order_with_repeats_and_noise():
    x = dtmf_samples(ALL_KEYS + "1122")
    assert detect(x) == ALL_KEYS + "1122"
    rng = np.random.default_rng(7)
    noisy = np.clip(x + rng.normal(0, 500, len(x)), -32768, 32767).astype(np.int16)
    assert detect(noisy, block=333) == ALL_KEYS + "1122"  # any block size


def test_no_digits_are_heard_in_tones_music_or_noise():
    rng = np.random.default_rng(3)
    for x in (
        make_tone(880, 2.0),
        make_tone(440, 2.0),
        np.tile(hold_music(), 3),
        np.tile(waiting_tone(), 3),
        (make_tone(697, 1.0).astype(np.int32) + make_tone(770, 1.0)).astype(np.int16),
        rng.normal(0, 3000, SAMPLE_RATE * 2).astype(np.int16),
    ):
        assert detect(x) == ""


def test_digits_are_validated_with_a_clear_error():
    assert validate_dtmf("0123456789*#ABCD") == "0123456789*#ABCD"
    for bad in ("", "12x", "a", "1 2", "1" * (MAX_DTMF_DIGITS + 1)):
        with pytest.raises(ValueError, match=r"0-9, \*, #, A-D"):
            validate_dtmf(bad)
    with pytest.raises(ValueError):
        dtmf_samples("E")


def test_the_protocol_carries_hold_and_dtmf_and_refuses_bad_digits():
    for message in (
        HoldCall(call_id="c"),
        UnholdCall(call_id="c"),
        SendDtmf(call_id="c", digits="159#"),
    ):
        assert decode_from_agent(encode(message)) == message
    assert encode(CallHeld(call_id="c", on=True)) == '{"type":"call_held","call_id":"c","on":true}'
    for digits in ('""', '"12x"', '"' + "1" * 33 + '"', "5"):
        with pytest.raises(ProtocolError) as refused:
            decode_from_agent('{"type":"send_dtmf","call_id":"c","digits":' + digits + "}")
        assert refused.value.code == "invalid" and "digits" in refused.value.message


def test_waiting_tone_and_hold_music_are_what_they_say():
    wait = np.tile(waiting_tone(), 2)
    assert dominant_frequency(wait) == pytest.approx(WAITING_HZ, abs=2)
    on = waiting_tone()[: int(0.4 * SAMPLE_RATE)]
    assert rms(waiting_tone()[int(0.41 * SAMPLE_RATE) :]) == 0  # 0.4 s on, 0.6 s off
    assert has_tone(on, WAITING_HZ)
    music = hold_music()
    for note in set(HOLD_NOTES_HZ):
        assert has_tone(music, note)
    assert not has_tone(music, WAITING_HZ) and not has_tone(wait, 392)


def test_the_analysis_reports_what_was_heard():
    heard = HeardAnalysis()
    agent = make_tone(880, 2.0)
    x = np.concatenate(
        [np.tile(waiting_tone(), 3), agent, np.tile(hold_music(), 2), dtmf_samples("159#"), agent]
    )
    for i in range(0, len(x), FRAME_SAMPLES):
        heard.write(x[i : i + FRAME_SAMPLES])
    assert heard.digits == "159#"
    assert heard.waiting_s == pytest.approx(1.2, abs=0.25)  # 3 x 0.4 s
    assert heard.hold_s == pytest.approx(2.0, abs=0.25)
    assert heard.timeline[:3] == [520, 520, 520] and heard.timeline[3:5] == [880, 880]
    assert heard.timeline[5] in HOLD_NOTES_HZ


def _read(feed: CustomerFeed, seconds: float) -> np.ndarray:
    """What the customer's track makes of the feed for ``seconds``: the
    tones' packets encoded once, DTMF encoded as it plays; decoded here."""
    decoder, encoder = OpusDecoder(), OpusEncoder()
    out = []
    for _ in range(int(seconds * 50)):
        assert not feed.forwarding
        packet = feed.read_packet()
        if packet is None:
            samples = feed.read()
            assert samples is not None and samples.size == FRAME_SAMPLES
            packet = encoder.encode(samples)
        out.append(decoder.decode(packet))
    return np.concatenate(out)


def test_the_customer_feed_follows_the_call():
    feed = CustomerFeed("call-1")
    assert feed.mode is Feed.WAITING
    assert has_tone(_read(feed, 1.0), WAITING_HZ)
    # The tones are encoded once for every customer, not per call.
    assert CustomerFeed("call-2").read_packet() is CustomerFeed("call-3").read_packet()

    feed.set_mode(Feed.AGENT)
    assert feed.forwarding  # the agent's packets go through, as they are
    assert feed.read_packet() is None and feed.read() is None

    feed.set_mode(Feed.HOLD)
    assert not feed.forwarding
    held = _read(feed, 1.0)
    assert has_tone(held, 392) and not has_tone(held, 880)

    feed.set_mode(Feed.AGENT)
    assert feed.play_dtmf("15") == pytest.approx(0.34)
    assert not feed.forwarding  # the agent is not heard while keys play
    keys = _read(feed, 0.34)
    assert detect(keys) == "15"
    assert feed.forwarding  # and is again once they have
    feed.play_dtmf("2")
    with pytest.raises(DtmfBusy):
        for _ in range(int(MAX_PENDING_DTMF_S / (MAX_DTMF_DIGITS * 0.17)) + 2):
            feed.play_dtmf("1" * MAX_DTMF_DIGITS)

    feed.set_mode(Feed.WAITING)  # re-queued: the pending keys are dropped
    assert has_tone(_read(feed, 1.0), WAITING_HZ)


def test_rfc4733_telephone_events_become_each_key_once_and_bad_ones_are_refused():
    from agent_phone.media.telephone_event import EventReceiver, negotiated_payload_type

    now = [0.0]
    keys: list[str] = []
    receiver = EventReceiver(keys.append, lambda: now[0])

    def event(number: int, end: bool = False, duration: int = 960) -> bytes:
        return bytes([number, (0x80 if end else 0) | 10]) + duration.to_bytes(2, "big")

    # A key: its packets, its end sent three times, all at one timestamp.
    for payload in (event(1), event(1, duration=1920), *[event(1, end=True)] * 3):
        receiver.put(payload, 1000, 0)
    now[0] = 0.2
    receiver.put(event(11, end=True), 9000, 0)  # only the end of "#" came through
    now[0] = 0.21
    receiver.put(event(5), 9960, 0)  # 10 ms later: a flood, not a key
    receiver.put(b"\x01\x0a", 20000, 0)  # short
    receiver.put(event(200), 30000, 0)  # no DTMF key
    assert keys == ["1", "#"] and receiver.refused == 3
    sdp = "a=rtpmap:111 opus/48000/2\r\na=rtpmap:110 telephone-event/48000\r\n"
    assert negotiated_payload_type(sdp) == 110
    assert negotiated_payload_type("a=rtpmap:126 telephone-event/8000\r\n") is None
