"""The one audio format every part of Agent Phone exchanges internally.

Everything that produces or consumes audio (microphone, speaker, WAV files,
tones, the platform's bridge) speaks 48 kHz mono signed 16-bit PCM in 20 ms
blocks of 960 samples. One format keeps aiortc's senders happy: every track
on one sender must keep the same rate, layout and format, or the sender dies
("Frame does not match AudioResampler setup", shared/notes/webrtc-and-qt.md).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

SAMPLE_RATE = 48_000
PTIME = 0.020
FRAME_SAMPLES = 960  # SAMPLE_RATE * PTIME
DTYPE = np.int16


def silence() -> np.ndarray:
    """One 20 ms block of silence."""
    return np.zeros(FRAME_SAMPLES, dtype=DTYPE)


class AudioSource(Protocol):
    """Where outgoing audio comes from (a microphone, a WAV file, a tone).

    ``read()`` is called on the asyncio loop once per 20 ms by the track that
    sends the audio; it never blocks and returns one block of
    ``FRAME_SAMPLES`` int16 samples, or ``None`` when it has nothing yet (the
    track then sends silence).
    """

    async def start(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    async def stop(self) -> None: ...


class AudioSink(Protocol):
    """Where incoming audio goes (a speaker, a WAV file).

    A sink keeps its own clock (agent_phone/media/playout.py): ``begin(now)``
    says playout starts, ``wanted(now)`` how many samples it can take now
    (a sound card: as its buffer drains; a file: as the wall clock runs),
    ``play_time(now)`` when the next sample written will be heard, and
    ``write()`` is then called on the asyncio loop with int16 mono
    48 kHz samples of any length; it never blocks.
    """

    async def start(self) -> None: ...

    def begin(self, now: float) -> None: ...

    def wanted(self, now: float) -> int: ...

    def play_time(self, now: float) -> float: ...

    def write(self, samples: np.ndarray) -> None: ...

    async def stop(self) -> None: ...
