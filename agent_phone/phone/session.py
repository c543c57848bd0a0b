"""The phone's side of its platform session: the session token, refreshed
before it expires, and the retries that resume the session on a new
WebSocket after the old one dropped (docs/protocol.md, "Sessions").

The engine owns the signaling and the call; this module owns the token and
the timing of the retries, so neither clutters the other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent_phone.phone import events
from agent_phone.protocol import SessionResumed
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)

#: The session token is refreshed when this fraction of its lifetime is gone.
REFRESH_AT = 0.6
#: Resume attempts after the WebSocket drops: at most this many, within the
#: platform's grace period; beyond the first few only while the media
#: connection is alive (with none, a platform that is gone is not waited for).
RESUME_MAX_ATTEMPTS = 30
RESUME_QUICK_ATTEMPTS = 4
#: Retries after 0.25, 0.5, then every second.
RESUME_MAX_DELAY_S = 1.0


class ResumeRefused(Exception):
    """The platform answered ``resume_session`` with an error (``code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SessionToken:
    """The current session token (never logged) and its refresh timer."""

    def __init__(self, tasks: TaskSet, refresh: Callable[[], Awaitable[None]]) -> None:
        self._tasks = tasks
        self._refresh = refresh
        self._timer: asyncio.Task[None] | None = None
        self.token: str | None = None
        #: How long the platform keeps the session after its WebSocket drops.
        self.grace_s = 0.0

    def __repr__(self) -> str:
        return f"<SessionToken {'set' if self.token else 'none'}>"

    def update(self, token: str | None, expires_in_s: float, grace_s: float | None = None) -> None:
        """A token from ``signed_in``/``session_refreshed`` (or the resume's
        remaining lifetime with the same token); refresh it at ``REFRESH_AT``."""
        self.token = token or None
        if grace_s is not None:
            self.grace_s = grace_s
        self._cancel()
        if self.token is not None and expires_in_s > 0:
            delay = max(0.2, expires_in_s * REFRESH_AT)
            self._timer = self._tasks.spawn(self._refresh_after(delay), "refresh")

    async def _refresh_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._refresh()

    def forget(self) -> None:
        self.token = None
        self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass(frozen=True)
class ResumeOutcome:
    snapshot: SessionResumed | None
    attempts: int
    away_s: float
    #: Why it failed: the platform's code, ``unreachable`` or ``no_connection``.
    code: str = ""
    message: str = ""
    #: Stopped from outside (the phone is closing, the session was forgotten).
    stopped: bool = False


async def resume_with_retries(
    try_resume: Callable[[str], Awaitable[SessionResumed]],
    session: SessionToken,
    media_alive: Callable[[], bool],
    closing: Callable[[], bool],
    emit: Callable[[events.PhoneEvent], None],
) -> ResumeOutcome:
    """Try ``try_resume(token)`` with growing delays until it answers, the
    platform refuses, the grace period is nearly over, or (after the quick
    tries) the media connection is gone. ``try_resume`` raises
    ``ResumeRefused`` for a refusal and anything else for "try again"."""
    lost_at = time.monotonic()
    deadline = lost_at + max(1.0, session.grace_s - 1.0)
    code, why = "unreachable", "could not reach the platform"
    attempt = 0
    for attempt in range(1, RESUME_MAX_ATTEMPTS + 1):
        delay = min(RESUME_MAX_DELAY_S, 0.25 * 2 ** (attempt - 1))
        need_media = attempt > RESUME_QUICK_ATTEMPTS
        if need_media and not media_alive():
            code, why = "no_connection", f"{why}, and no media connection is alive"
            break
        if time.monotonic() + delay > deadline:
            why = f"{why} within the grace period"
            break
        emit(events.Resuming(attempt=attempt, delay_s=delay))
        if not await _wait(delay, media_alive if need_media else None):
            code, why = "no_connection", f"{why}, and no media connection is alive"
            break
        token = session.token
        if closing() or token is None:
            return ResumeOutcome(None, attempt, time.monotonic() - lost_at, stopped=True)
        try:
            snapshot = await try_resume(token)
        except ResumeRefused as exc:
            code, why = exc.code, str(exc)
            break
        except Exception as exc:  # unreachable, socket closed, no answer: try again
            logger.info("resume attempt %d failed: %s", attempt, exc or type(exc).__name__)
            continue
        return ResumeOutcome(snapshot, attempt, time.monotonic() - lost_at)
    return ResumeOutcome(None, attempt, time.monotonic() - lost_at, code, why)


async def _wait(delay: float, alive: Callable[[], bool] | None) -> bool:
    """Sleep ``delay``; False at once if ``alive`` says the media connection died."""
    end = time.monotonic() + delay
    for _ in range(int(delay / 0.1) + 2):
        if alive is not None and not alive():
            return False
        left = end - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(0.1, left))
    return True
