"""The phone's call-quality reports: a ``quality`` event every
``INTERVAL_S`` during a call and a final one at its end, from aiortc's
``getStats()`` on the call's connection (agent_phone/media/quality.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCPeerConnection

from agent_phone.media.quality import CallQuality, StatsSample, sample
from agent_phone.media.receiver import AudioReceiver
from agent_phone.phone import events
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)

INTERVAL_S = 2.0


class QualityReporter:
    """Reports one call's quality; ``begin`` before media flows, ``finish`` at the end."""

    def __init__(
        self,
        call_id: str,
        pc: RTCPeerConnection,
        emit: Callable[[events.PhoneEvent], None],
        receiver: AudioReceiver | None = None,
        interval: float = INTERVAL_S,
    ) -> None:
        self.call_id = call_id
        self._pc = pc
        self._receiver = receiver
        self._emit = emit
        self._interval = interval
        self._start: StatsSample | None = None
        self._tasks = TaskSet(f"quality-{call_id}")
        self._finished = False
        #: The last report made.
        self.latest: CallQuality | None = None

    async def begin(self) -> None:
        """The baseline: the connection's counters before this call's media."""
        self._start = await sample(self._pc, self._receiver)
        if not self._finished:  # the call may have ended meanwhile
            self._tasks.spawn(self._run(), "report")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._report(final=False)

    async def _report(self, final: bool) -> None:
        if self._start is None:
            return
        q = CallQuality.since(self._start, await sample(self._pc, self._receiver))
        self.latest = q
        self._emit(events.Quality(call_id=self.call_id, final=final, **q.as_dict()))

    async def finish(self) -> None:
        """The final report (once); safe to call twice."""
        if self._finished:
            return
        self._finished = True
        await self._tasks.close()
        try:
            await self._report(final=True)
        except Exception as exc:  # a report must never stand in the way of ending a call
            logger.warning("%s: no final quality report: %s", self.call_id, exc)
