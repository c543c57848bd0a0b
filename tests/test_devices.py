"""Tests for agent_phone.phone.devices against a real (virtual) sound card.

The ``virtual_audio`` fixture (tests/conftest.py) runs a private PulseAudio
daemon: what ``SpeakerSink`` plays on the default output is recorded from the
speaker's monitor, and what the fixture plays into the virtual microphone is
what ``MicrophoneSource`` captures from the default input. The tests that do
not request it (import without PortAudio, device matching, the ring buffer)
need no sound device at all.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent_phone.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.media.wav import ToneSource
from agent_phone.phone.devices import (
    AudioDeviceError,
    DeviceInfo,
    MicrophoneSource,
    SpeakerSink,
    _SampleRing,
    list_devices,
    match_device,
    resolve_device,
)

REPO = Path(__file__).resolve().parents[1]
# Every wait on the sound card is bounded by this, so a stalled device fails
# the test instead of hanging it.
WAIT = 10.0
# Anything quieter (int16 RMS) is the silence before the audio arrives.
SILENCE_RMS = 100.0


def _peak_hz(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Frequency of the strongest FFT bin (Hann window, DC removed)."""
    x = samples.astype(np.float64)
    x -= x.mean()
    power = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(power) * rate / x.size)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def _tone(freq: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def _feed(sink: SpeakerSink, tone: ToneSource, seconds: float) -> None:
    """Write 20 ms blocks at real-time pace, keeping ~60 ms queued, like a track would."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    written = 0
    while written < seconds / 0.020:
        due = int((loop.time() - began) / 0.020) + 3
        while written < due:
            block = tone.read()
            assert block is not None
            sink.write(block)
            written += 1
        await asyncio.sleep(0.005)


# -- without a sound card ------------------------------------------------------------


def _run_python(code: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    paths = [str(REPO)] + ([str(extra_path)] if extra_path else [])
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_does_not_load_sounddevice() -> None:
    result = _run_python(
        """
        import sys
        import agent_phone.phone.devices
        assert "sounddevice" not in sys.modules, "devices imported sounddevice eagerly"
        """
    )
    assert result.returncode == 0, result.stderr


def test_missing_portaudio_is_a_clear_error(tmp_path: Path) -> None:
    # A stand-in for sounddevice on a machine without libportaudio2.
    (tmp_path / "sounddevice.py").write_text('raise OSError("PortAudio library not found")\n')
    result = _run_python(
        """
        import asyncio
        from agent_phone.phone.devices import AudioDeviceError, MicrophoneSource, list_devices
        for attempt in (list_devices, lambda: asyncio.run(MicrophoneSource("Headset").start())):
            try:
                attempt()
            except AudioDeviceError as exc:
                print(exc)
            else:
                raise SystemExit("no AudioDeviceError")
        """,
        extra_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    listing, opening = result.stdout.splitlines()
    assert "PortAudio library not found" in listing
    assert "'Headset'" in opening and "PortAudio library not found" in opening


def _device(
    index: int, name: str, api: str = "ALSA", inputs: int = 2, outputs: int = 2
) -> DeviceInfo:
    return DeviceInfo(index, name, api, inputs, outputs, 48000.0, index == 0, index == 0)


DEVICES = [
    _device(0, "default"),
    _device(1, "USB Headset Microphone", outputs=0),
    _device(2, "USB Headset", inputs=0),
    _device(3, "USB Headset Microphone", api="JACK"),
    _device(4, "HDMI 1", inputs=0),
    _device(5, "HDMI 2", inputs=0),
]


@pytest.mark.parametrize(
    ("spec", "kind", "expected"),
    [
        (None, "input", None),
        ("", "output", None),
        (4, "output", 4),
        ("4", "output", 4),
        ("usb headset microphone", "input", 1),  # exact name; default host API first
        ("usb headset", "output", 2),  # exact name beats longer names
        ("microphone", "input", 1),  # substring; the JACK twin loses to ALSA
    ],
)
def test_match_device(spec: str | int | None, kind: Any, expected: int | None) -> None:
    assert match_device(DEVICES, spec, kind) == expected


@pytest.mark.parametrize(
    ("spec", "kind", "message"),
    [
        ("Bluetooth", "input", "no input device matches 'Bluetooth'"),
        (99, "output", "no audio device with index 99"),
        ("HDMI", "output", "matches several output devices"),
        ("USB Headset", "input", "has no input channels"),
        ("HDMI 1", "input", "has no input channels"),
        ("4", "input", "has no input channels"),
    ],
)
def test_match_device_errors_name_the_device(spec: str | int, kind: Any, message: str) -> None:
    with pytest.raises(AudioDeviceError, match=message):
        match_device(DEVICES, spec, kind)


def test_ring_wraps_and_drops_the_oldest() -> None:
    ring = _SampleRing(8)
    out = np.zeros(8, dtype=np.int16)
    assert ring.write(np.arange(6, dtype=np.int16)) == 0
    assert ring.read_into(out[:4]) == 4  # start moves to 4
    assert ring.write(np.arange(6, 10, dtype=np.int16)) == 0  # wraps around the end
    assert ring.write(np.arange(10, 12, dtype=np.int16)) == 0  # exactly full: 4..11
    assert ring.write(np.arange(12, 15, dtype=np.int16)) == 3  # 4, 5, 6 dropped
    assert ring.read_into(out) == 8
    np.testing.assert_array_equal(out, np.arange(7, 15))
    assert ring.write(np.arange(20, dtype=np.int16)) == 12  # larger than the ring
    assert ring.read_into(out) == 8
    np.testing.assert_array_equal(out, np.arange(12, 20))
    assert ring.read_into(out) == 0


# -- on the virtual sound card ---------------------------------------------------------


def test_list_devices_marks_the_defaults(virtual_audio: Any) -> None:
    devices = list_devices()

    names = {d.name for d in devices}
    assert {"speaker_monitor", "mic_feed"} <= names
    assert sum(d.is_default_input for d in devices) == 1
    assert sum(d.is_default_output for d in devices) == 1


def test_resolve_device_by_name_and_index(virtual_audio: Any) -> None:
    index = resolve_device("Speaker_Monitor", "input")
    assert index is not None
    assert next(d.name for d in list_devices() if d.index == index) == "speaker_monitor"
    assert resolve_device(str(index), "input") == index
    assert resolve_device(None, "output") is None


def test_resolve_device_errors_for_a_missing_device(virtual_audio: Any) -> None:
    with pytest.raises(AudioDeviceError, match="no output device matches 'No Such Headset'"):
        resolve_device("No Such Headset", "output")
    with pytest.raises(AudioDeviceError, match="no audio device with index 4242"):
        resolve_device(4242, "input")


async def test_opening_a_missing_device_fails_clearly(virtual_audio: Any) -> None:
    mic = MicrophoneSource("No Such Headset")
    with pytest.raises(AudioDeviceError, match="No Such Headset"):
        async with asyncio.timeout(WAIT):
            await mic.start()
    assert not mic.active
    await mic.stop()  # nothing to stop: still fine


async def test_speaker_tone_is_heard_on_the_speaker_monitor(virtual_audio: Any) -> None:
    sink = SpeakerSink()
    tone = ToneSource(440, amplitude=0.3)
    await tone.start()
    try:
        async with asyncio.timeout(WAIT):
            await sink.start()
        async with asyncio.timeout(WAIT), asyncio.TaskGroup() as tasks:
            tasks.create_task(_feed(sink, tone, seconds=2.5))
            await asyncio.sleep(0.3)  # let the tone reach the speaker first
            heard = await asyncio.to_thread(virtual_audio.record_speaker, 1.5)
    finally:
        async with asyncio.timeout(WAIT):
            await sink.stop()

    assert heard.dtype == np.int16
    assert _rms(heard) > 1000, f"speaker monitor too quiet: RMS {_rms(heard):.0f}"
    assert abs(_peak_hz(heard) - 440) <= 3
    stats = sink.stats
    assert stats.samples_played >= SAMPLE_RATE  # at least a second reached PortAudio
    assert stats.dropped == 0


async def test_microphone_captures_a_tone_played_into_it(virtual_audio: Any) -> None:
    mic = MicrophoneSource()
    frames: list[np.ndarray] = []
    try:
        async with asyncio.timeout(WAIT):
            await mic.start()
        feed = await asyncio.to_thread(virtual_audio.play_into_mic, _tone(880, 3.0))
        try:
            async with asyncio.timeout(WAIT):
                # One second of sound; the silence before the feed arrives is skipped.
                while len(frames) < 50:
                    frame = mic.read()
                    if frame is None:
                        await asyncio.sleep(0.005)
                    elif frames or _rms(frame) > SILENCE_RMS:
                        frames.append(frame)
        finally:
            await asyncio.to_thread(feed.stop)
    finally:
        async with asyncio.timeout(WAIT):
            await mic.stop()

    assert all(f.dtype == np.int16 and f.shape == (FRAME_SAMPLES,) for f in frames)
    captured = np.concatenate(frames)
    assert _rms(captured) > 1000, f"microphone too quiet: RMS {_rms(captured):.0f}"
    assert abs(_peak_hz(captured) - 880) <= 3
    assert mic.stats.frames_read >= 50


async def test_start_and_stop_are_idempotent(virtual_audio: Any) -> None:
    mic = MicrophoneSource()
    sink = SpeakerSink()
    async with asyncio.timeout(WAIT):
        await mic.stop()  # before any start
        await sink.stop()
        await asyncio.gather(mic.start(), mic.start())  # concurrent: one stream
        await sink.start()
        await sink.start()
        assert mic.active and sink.active
        await asyncio.gather(mic.stop(), mic.stop())
        await sink.stop()
        await sink.stop()
        assert not mic.active and not sink.active
        assert mic.read() is None
        sink.write(np.zeros(FRAME_SAMPLES, dtype=np.int16))  # stopped: ignored
        # A stopped device can be started again.
        await mic.start()
        await mic.stop()
