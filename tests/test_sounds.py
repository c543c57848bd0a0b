"""The phone's own sounds, as samples (no sound card): what rings and beeps."""

from __future__ import annotations

import numpy as np
from audio_analysis import has_tone, rms

from agent_phone.phone.sounds import (
    CONNECT_HZ,
    RING_HZ,
    TEST_HZ,
    connect_tone,
    level_db,
    ring_cadence,
    scaled,
    test_tone,
)


def test_ring_is_two_seconds_of_440_and_480_hz_then_four_of_silence():
    ring = ring_cadence()
    assert ring.dtype == np.int16 and ring.size == 6 * 48000
    on, off = ring[: 2 * 48000], ring[2 * 48000 :]
    assert all(has_tone(on, f) for f in RING_HZ)
    assert not has_tone(on, 1000) and np.abs(off).max() == 0


def test_connect_and_test_tones():
    beep = connect_tone()
    assert 0.25 < beep.size / 48000 < 0.4 and has_tone(beep, CONNECT_HZ)
    assert has_tone(test_tone(), TEST_HZ) and not has_tone(test_tone(), CONNECT_HZ)


def test_volume_is_a_squared_curve_and_zero_is_silent():
    tone = test_tone()
    half = scaled(tone, 50)
    assert abs(rms(half) / rms(tone) - 0.25) < 0.01
    assert np.abs(scaled(tone, 0)).max() == 0
    assert np.array_equal(scaled(tone, 100), tone)
    assert level_db(1.0) == 0.0 and level_db(0.0) == -60.0
