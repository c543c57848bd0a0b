"""Owned asyncio tasks for the window: every task's failure is logged and shown.

Slots are synchronous (STYLE.md habit 11); when one needs async work it hands
a coroutine to ``OwnedTasks.spawn``. The set keeps a strong reference to each
task (asyncio holds only weak ones, so an unreferenced task can vanish
mid-flight) and its done-callback logs the exception and emits ``failed``
with a sentence for the agent, so nothing ends as "Task exception was never
retrieved".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import QObject, Signal

from agent_phone.phone.devices import AudioDeviceError
from agent_phone.phone.errors import PhoneError

logger = logging.getLogger(__name__)

#: Failures whose message is meant for the agent: logged without a traceback.
EXPECTED = (PhoneError, AudioDeviceError)


class OwnedTasks(QObject):
    #: What failed, as a sentence for the agent.
    failed = Signal(str)

    def __init__(self, owner: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, what: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` on the running loop; ``what`` names it in messages ("answer the call")."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self._owner}:{what}")
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._done, what))
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def _done(self, what: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, EXPECTED):
            logger.warning("cannot %s: %s", what, exc)
            self.failed.emit(f"Cannot {what}: {exc}")
        else:
            logger.error("%s failed", what, exc_info=exc)
            self.failed.emit(f"Could not {what} (unexpected error: {exc}); see the log file.")

    async def close(self, timeout: float = 5.0) -> None:
        """Let running tasks finish for up to ``timeout`` s, then cancel the rest."""
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current]
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            logger.warning("cancelling %s at close", task.get_name())
            task.cancel()
        if late:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*late, return_exceptions=True)
