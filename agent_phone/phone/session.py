"""The phone's side of its platform session: the session token, refreshed
before it expires, and the retries that resume the session on a new
WebSocket after the old one dropped (docs/protocol.md, "Sessions").

The engine owns the signaling and the call; this module owns the token,
the timing of the retries and the resume itself (``SessionResume``: the
new socket, and the engine's state brought in line with the platform's
snapshot), so the engine reads as the normal course of a session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_phone.phone import events
from agent_phone.protocol import (
    PROTOCOL_VERSION,
    CallOffered,
    ConnectionState,
    Error,
    Hangup,
    ResumeSession,
    SessionResumed,
    decode_to_agent,
)
from agent_phone.signaling import SignalingClient, SignalingError
from agent_phone.tasks import TaskSet

if TYPE_CHECKING:  # the engine imports this module
    from agent_phone.phone.engine import PhoneEngine

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


class SessionResume:
    """The engine's resume of its session after the WebSocket dropped: a new
    socket, ``resume_session`` with the token (retried by
    ``resume_with_retries``), then the engine's state made the platform's
    snapshot. It acts on the engine through the engine's own methods; the
    engine hands it the platform's answer (``answered``/``refused``)."""

    def __init__(self, engine: PhoneEngine) -> None:
        self._engine = engine
        self._answer: asyncio.Future[SessionResumed] | None = None
        #: True while resuming: the old socket's end is expected, not a loss.
        self.running = False

    @property
    def waiting(self) -> bool:
        """A ``resume_session`` is out and not answered yet."""
        return self._answer is not None and not self._answer.done()

    def answered(self, message: SessionResumed) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(message)

    def refused(self, error: Error) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ResumeRefused(error.code, error.message))

    def socket_closed(self) -> None:
        """The current WebSocket ended (an answer awaited on it never comes)."""
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(SignalingError("the platform closed the socket"))

    async def run(self) -> bool:
        """The WebSocket dropped while signed in: reconnect with backoff and
        resume the session (the call and its media go on meanwhile). False
        when it cannot be resumed: the caller then signs in afresh or stops."""
        engine = self._engine
        self.running = True
        try:
            outcome = await resume_with_retries(
                lambda token: self._try_resume(token, timeout=5.0),
                engine._session,
                lambda: engine.connection is not None,
                lambda: engine._closing,
                engine._emit,
            )
            if outcome.stopped:
                return True
            if outcome.snapshot is not None:
                await self._resync(outcome.snapshot, outcome.away_s, outcome.attempts)
                return True
            old, engine._signaling = engine._signaling, None
            if old is not None:
                await old.close()
            logger.warning("session not resumed (%s): %s", outcome.code, outcome.message)
            engine._emit(events.ResumeFailed(code=outcome.code, message=outcome.message))
            return False
        finally:
            self.running = False

    async def _try_resume(self, token: str, timeout: float) -> SessionResumed:
        engine = self._engine
        s = engine.settings
        client = SignalingClient(
            s.platform, decode_to_agent, engine._invalid_message, ca_file=s.ca_file
        )
        await client.connect(timeout)
        old, engine._signaling = engine._signaling, client
        if old is not None:
            await old.close()
        answer: asyncio.Future[SessionResumed] = asyncio.get_running_loop().create_future()
        self._answer = answer
        engine._tasks.spawn(engine._read(client), "signaling")
        try:
            await engine._send(ResumeSession(version=PROTOCOL_VERSION, session_token=token))
            return await asyncio.wait_for(asyncio.shield(answer), timeout)
        finally:
            self._answer = None
            if not answer.done():
                answer.cancel()

    async def _resync(self, snapshot: SessionResumed, away_s: float, attempts: int) -> None:
        """Make the phone's state the platform's: presence, connection, call."""
        engine = self._engine
        engine._session.update(
            engine._session.token, snapshot.token_expires_in_s, snapshot.resume_grace_s
        )
        if snapshot.on_queue != engine.on_queue:
            engine.on_queue = snapshot.on_queue
            engine._emit(events.Presence(on_queue=snapshot.on_queue, reason="resumed"))
        conn = snapshot.connection
        if engine.connection is not None and (
            conn is None or conn.connection_id != engine.connection.id
        ):
            await engine._drop_connection("resumed")
        theirs = snapshot.call
        for ours in list(engine.calls.values()):
            if theirs is None or theirs.call_id != ours.call_id:
                await engine._end_call(ours, "ended_while_disconnected")
            elif theirs.state == "connected":
                engine._connected(theirs.call_id)
        if theirs is None or theirs.call_id in engine.calls:
            pass  # in step, or nothing to take up
        elif theirs.state == "alerting":
            # Offered while the offer was in flight: alert now (or decline, when
            # the phone has no such connection, so it goes to the next agent).
            await engine._offered(
                CallOffered(
                    call_id=theirs.call_id,
                    caller=theirs.caller,
                    queue=theirs.queue,
                    connection_id=theirs.connection_id or "",
                    over_persistent_connection=False,
                    alert_timeout_s=engine._alert_timeout_s,
                )
            )
        elif theirs.state == "connected":
            # Connected on the platform but not here: hand the customer on.
            await engine._send(Hangup(call_id=theirs.call_id, requeue=True))
        if conn is not None:
            engine.connection_state.platform_reported(conn)
        elif (shown := engine.connection_state.status).connection_id is not None:
            engine.connection_state.platform_reported(
                ConnectionState(connection_id=shown.connection_id, state="closed", reason="resumed")
            )
        call = engine.call
        engine._emit(
            events.Resumed(
                agent=snapshot.agent,
                on_queue=snapshot.on_queue,
                connection_id=conn.connection_id if conn else None,
                connection_state=conn.state if conn else None,
                call_id=call.call_id if call else None,
                call_state=call.phase if call else None,
                away_s=round(away_s, 3),
                attempts=attempts,
            )
        )
