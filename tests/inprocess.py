"""The phone engine in the test's own process, against a real platform
process: ``Agent`` keeps every event the engine emits, so a test waits on
events, never on sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np

from agent_phone.media.wav import ToneSource, WavFileSink
from agent_phone.phone import events
from agent_phone.phone.audio_io import CallAudio
from agent_phone.phone.engine import PhoneEngine
from agent_phone.phone.settings import PhoneSettings


class Agent:
    """A phone engine and every event it emitted, to wait on."""

    def __init__(self, engine: PhoneEngine) -> None:
        self.engine = engine
        self.events: list[events.PhoneEvent] = []
        #: What the agent's speaker played (set by ``signed_in_agent``).
        self.ear: Ear | None = None
        self._changed = asyncio.Condition()
        engine.subscribe(self._on_event)

    def _on_event(self, event: events.PhoneEvent) -> None:
        self.events.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(
        self,
        kind: type[events.PhoneEvent],
        test: Callable[[events.PhoneEvent], bool] = bool,
        since: int = 0,
    ) -> events.PhoneEvent:
        """The first event of ``kind`` that passes ``test``, from the
        ``since``-th on (``mark()`` before acting: only what follows)."""

        def found() -> events.PhoneEvent | None:
            return next((e for e in self.events[since:] if isinstance(e, kind) and test(e)), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(found), 20)
        event = found()
        assert event is not None
        return event

    def mark(self) -> int:
        return len(self.events)

    def calls(self, call_id: str) -> list[events.CallChanged]:
        return [
            e for e in self.events if isinstance(e, events.CallChanged) and e.call_id == call_id
        ]


class Ear(WavFileSink):
    """A speaker that is a WAV file and also keeps, in memory, when each
    stretch was played: ``since(t)`` is what was heard from ``t`` on."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.played: list[tuple[float, np.ndarray]] = []

    def write(self, samples: np.ndarray) -> None:
        super().write(samples)
        self.played.append((time.monotonic(), np.asarray(samples, dtype=np.int16).ravel()))

    def since(self, start: float, end: float = float("inf")) -> np.ndarray:
        chunks = [s for t, s in self.played if start <= t < end]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


@asynccontextmanager
async def signed_in_agent(
    platform, user: str, tmp_path: Path, auto_answer: bool = False, hz: float = 880.0
) -> AsyncIterator[Agent]:
    """``user`` signed in and on queue; their microphone is a tone of ``hz``
    and their speaker an ``Ear`` (``heard-USER.wav``)."""
    settings = PhoneSettings(
        platform=platform.url, user=user, password="demo", on_queue=True, auto_answer=auto_answer
    )
    ear = Ear(tmp_path / f"heard-{user}.wav")
    audio = CallAudio(ToneSource(hz), ear, voice_processing=False)
    engine = PhoneEngine(settings, audio)
    watched = Agent(engine)
    watched.ear = ear
    await engine.start()
    await watched.wait_for(events.Presence, lambda e: e.on_queue)
    try:
        yield watched
    finally:
        await engine.close()
