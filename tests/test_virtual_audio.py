"""The virtual sound card works: what an app plays on its default output device
reaches the speaker monitor, and what a test feeds into the microphone reaches
an app's default input device (tests/virtual_audio.py, shared/notes/audio-in-ci.md).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from audio_analysis import dominant_frequency, has_tone, make_tone, rms, tone_snr_db

RATE = 48000


def describe(samples: np.ndarray, *freqs: float) -> str:
    """What a recording holds, for assertion messages."""
    zeros = np.flatnonzero(np.diff(np.concatenate([[0], (samples == 0).astype(np.int8), [0]])))
    runs = (zeros[1::2] - zeros[0::2]) if len(zeros) else np.zeros(0)
    parts = [
        f"{len(samples) / RATE:.2f} s",
        f"rms {rms(samples):.0f}",
        f"dominant {dominant_frequency(samples):.1f} Hz",
        f"zero runs >= 1 ms: {int((runs >= RATE // 1000).sum())}",
    ]
    for f in freqs:
        snr, peak = tone_snr_db(samples, f)
        parts.append(f"{f} Hz: SNR {snr:.1f} dB (peak {peak:.1f} Hz)")
    return "; ".join(parts)


def test_environment_is_private(virtual_audio):
    for name, value in virtual_audio.env.items():
        assert os.environ[name] == value
    assert virtual_audio.env["PULSE_SERVER"].startswith("unix:")
    assert os.stat(virtual_audio.env["XDG_RUNTIME_DIR"]).st_mode & 0o777 == 0o700
    info = virtual_audio.pactl("info")
    assert "Default Sink: speaker" in info
    assert "Default Source: micsink.monitor" in info


def test_app_output_reaches_speaker_monitor(virtual_audio):
    sd = virtual_audio.sd
    tone = make_tone(440, 0.5)
    pos = 0
    playing = threading.Event()
    statuses = []

    def callback(outdata, frames, _time, status):
        nonlocal pos
        if status:
            statuses.append(str(status))
        idx = (pos + np.arange(frames)) % len(tone)  # loops until the stream is closed
        outdata[:, 0] = tone[idx]
        pos += frames
        playing.set()

    # What the app does: a plain stream on the default output device.
    with sd.OutputStream(samplerate=RATE, channels=1, dtype="int16", callback=callback):
        assert playing.wait(10), "the app's output stream never asked for data"
        heard = virtual_audio.record_speaker(1.5)

    assert len(heard) == int(1.5 * RATE)
    # The streams may take a few hundred ms to reach the sink: look at the second half.
    tail = heard[len(heard) // 2 :]
    what = describe(tail, 440, 880) + f"; app stream status: {statuses}"
    assert rms(tail) > 1000, what
    assert has_tone(tail, 440), what
    assert not has_tone(tail, 880), what


def test_mic_feed_reaches_app_input(virtual_audio):
    sd = virtual_audio.sd
    feed = virtual_audio.play_into_mic(make_tone(880, 0.5), loop=True)
    try:
        # What the app does: a plain stream on the default input device.
        blocks = []
        want = int(1.5 * RATE)
        got = 0
        statuses = []
        full = threading.Event()

        def callback(indata, frames, _time, status):
            nonlocal got
            if status:
                statuses.append(str(status))
            blocks.append(indata[:, 0].copy())
            got += frames
            if got >= want:
                full.set()
                raise sd.CallbackStop

        with sd.InputStream(samplerate=RATE, channels=1, dtype="int16", callback=callback):
            assert full.wait(10), f"the app's input stream got only {got} frames"
    finally:
        feed.stop()

    heard = np.concatenate(blocks)[:want]
    tail = heard[len(heard) // 2 :]
    what = describe(tail, 880, 440) + f"; app stream status: {statuses}; feed: {feed.status_flags}"
    assert rms(tail) > 1000, what
    assert has_tone(tail, 880), what
    assert not has_tone(tail, 440), what


def test_play_into_mic_finishes(virtual_audio):
    feed = virtual_audio.play_into_mic(make_tone(660, 0.3))
    feed.wait(5)
    assert feed.done
    looping = virtual_audio.play_into_mic(make_tone(660, 0.1), loop=True)
    with pytest.raises(TimeoutError):
        looping.wait(0.3)  # a loop never ends by itself; wait() stops it
    assert looping.done


def test_start_recording_is_bounded(virtual_audio):
    rec = virtual_audio.start_recording(max_seconds=0.5)
    assert rec.full.wait(10)
    samples = rec.stop()
    assert samples.dtype == np.int16
    assert len(samples) == RATE // 2
    # Nothing plays: the speaker is silent.
    assert not has_tone(samples, 440)


@pytest.mark.parametrize("freq", [300, 440, 1000, 2500])
def test_has_tone_finds_the_right_frequency(freq):
    tone = make_tone(freq, 0.5)
    assert abs(dominant_frequency(tone) - freq) < 1
    assert has_tone(tone, freq)
    assert not has_tone(tone, freq * 1.5)
    assert not has_tone(tone, freq + 20)


def test_has_tone_rejects_silence_and_noise():
    assert not has_tone(np.zeros(RATE, np.int16), 440)
    rng = np.random.default_rng(1)
    assert not has_tone((rng.standard_normal(RATE) * 3).astype(np.int16), 440)  # near-silence
    noise = (rng.standard_normal(RATE) * 3000).astype(np.int16)
    assert not has_tone(noise, 440)
    assert has_tone(noise // 4 + make_tone(440, 1.0), 440)  # a tone in noise
    assert dominant_frequency(np.zeros(100, np.int16)) == 0.0


def test_has_tone_sees_each_of_two_tones():
    both = make_tone(440, 1.0, amplitude=0.2) + make_tone(880, 1.0, amplitude=0.2)
    assert has_tone(both, 440) and has_tone(both, 880)
    assert not has_tone(both, 660)
    assert has_tone(both.astype(np.float32) / 32767, 440)  # float samples in [-1, 1]
