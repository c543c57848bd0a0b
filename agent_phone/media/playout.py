"""Playing received audio on the listener's clock.

A jitter buffer only works if it is read at the pace the audio is played,
not as packets come: that is what lets it conceal a missing frame in time,
wait for a late one, and measure its own delay. ``Playout`` is that reader:
a task that, every ``TICK_S``, asks its sink how much audio it can take now
and pulls that much from the receiver.

The sink sets the pace (``PlayoutSink.wanted``) and says when the audio
pulled now will be heard (``PlayoutSink.play_time``), which is the time the
jitter buffer judges lateness by: a stall of this process's loop then shows
as what it is (the device ran dry), not as network delay.

- a sound card (``SpeakerSink``) by how far its buffer has drained: the
  device's own clock;
- a WAV file (``WavFileSink``) by the wall clock from the moment playout
  began, as a sound card would play: where this process was too late to
  give it audio, the file gets the silence a speaker would have played.
  So it holds exactly what a listener would have heard, concealment and
  silences included, never a file that just leaves lost frames out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from agent_phone.media.audio import DTYPE, SAMPLE_RATE

logger = logging.getLogger(__name__)

#: How often the sink is topped up.
TICK_S = 0.010
#: Pulls in one tick at most (a stalled loop catches up over a few ticks).
_MAX_PULLS = 12


class PlayoutSink(Protocol):
    def begin(self, now: float) -> None:
        """Playout starts now (``time.monotonic()``): the clock's origin."""

    def wanted(self, now: float) -> int:
        """How many samples the sink can take now."""

    def play_time(self, now: float) -> float:
        """When (``time.monotonic()``) the next sample written will be heard."""

    def write(self, samples: np.ndarray) -> None: ...


#: ``pull(play_at, now)``: the next audio, asked for at ``now``, which will be
#: heard from ``play_at`` on (both ``time.monotonic()``).
Pull = Callable[[float, float], np.ndarray]


class Playout:
    """Pulls ``pull(now)`` into ``sink`` on the sink's clock, from ``start()``
    to ``stop()`` (both idempotent)."""

    def __init__(
        self, pull: Pull, sink: PlayoutSink, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._pull = pull
        self._sink = sink
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.samples_played = 0

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._sink.begin(self._clock())
            self._task = asyncio.get_running_loop().create_task(self._run(), name="playout")
            self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("playout failed", exc_info=exc)

    async def _run(self) -> None:
        while True:
            self.top_up()
            await asyncio.sleep(TICK_S)

    def top_up(self) -> None:
        """Give the sink what it wants now (also called by tests)."""
        now = self._clock()
        wanted = self._sink.wanted(now)
        for _ in range(_MAX_PULLS):
            if wanted <= 0:
                break
            audio = self._pull(self._sink.play_time(now), now)
            self._sink.write(audio)
            self.samples_played += audio.size
            wanted -= audio.size

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class SpeakerClock:
    """The clock of a speaker that is not a sound card (a file, a listener):
    it plays continuously from ``begin``, holding ``lead_s`` of audio ahead;
    if nothing was given in time it played silence, which ``wanted`` hands
    back (``fill``) so that the record of what was played keeps its place."""

    #: Audio held ahead of playing: two playout ticks, as a sound card with a
    #: low-latency stream holds (``SpeakerSink`` keeps 30 ms, against the
    #: loop's hiccups). Where this process is later than this, the record of
    #: what was played gets the silence a speaker would have played.
    LEAD_S = 2 * TICK_S

    def __init__(self, lead_s: float = LEAD_S) -> None:
        self._lead = int(lead_s * SAMPLE_RATE)
        self._origin: float | None = None
        self._position = 0  # samples given since begin
        #: Silence the speaker played because audio came too late.
        self.underrun_samples = 0

    @property
    def started(self) -> bool:
        return self._origin is not None

    def begin(self, now: float) -> None:
        self._origin = now
        self._position = 0

    def stop(self) -> None:
        self._origin = None

    def due(self, now: float) -> int:
        """Samples the speaker has played by ``now``."""
        return 0 if self._origin is None else int((now - self._origin) * SAMPLE_RATE)

    def fill(self, now: float) -> int:
        """Samples of silence the speaker had to play (audio came too late)."""
        missing = self.due(now) - self._position
        if missing <= 0:
            return 0
        self.underrun_samples += missing
        self._position += missing
        return missing

    def wanted(self, now: float) -> int:
        if self._origin is None:
            return 0
        return self.due(now) + self._lead - self._position

    def play_time(self, now: float) -> float:
        if self._origin is None:
            return now
        return self._origin + self._position / SAMPLE_RATE

    def advance(self, samples: int) -> None:
        self._position += samples


class WallClockSink:
    """A sink with no device behind it: it takes audio at the wall clock's
    pace and hands it to ``listen`` (a listener that only analyses what it
    hears, like the caller's tone detector)."""

    def __init__(self, listen: Callable[[np.ndarray], None] | None = None) -> None:
        self._listen = listen
        self.clock = SpeakerClock()

    def begin(self, now: float) -> None:
        self.clock.begin(now)

    def wanted(self, now: float) -> int:
        if gap := self.clock.fill(now):
            self.write(np.zeros(gap, dtype=DTYPE), played=True)
        return self.clock.wanted(now)

    def play_time(self, now: float) -> float:
        return self.clock.play_time(now)

    def write(self, samples: np.ndarray, played: bool = False) -> None:
        if not played:
            self.clock.advance(samples.size)
        if self._listen is not None:
            self._listen(samples)
