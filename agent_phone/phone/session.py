"""The phone's session with the platform, in one object: the signaling
socket, sign-in, the read loop, the session token (refreshed before it
expires), the resume of the same session on a new WebSocket after the old
one dropped, and, when that fails, signing in afresh (docs/protocol.md,
"Sessions").

``PlatformSession`` has its own state (``SessionState``), changed in one
place and told as the ``session`` event; it alone decides whether to
resume, reconnect or give up. The engine gives it a narrow set of hooks
(``SessionHooks``): the messages that are the phone's (calls, connections,
presence) go to the engine, which never touches the socket.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent_phone.phone import events
from agent_phone.phone.errors import PhoneError, SignInError
from agent_phone.phone.settings import PhoneSettings
from agent_phone.protocol import (
    PROTOCOL_VERSION,
    Error,
    Message,
    ProtocolError,
    RefreshSession,
    ResumeSession,
    SessionRefreshed,
    SessionResumed,
    SignedIn,
    SignedOut,
    SignIn,
    decode_to_agent,
)
from agent_phone.signaling import SignalingClient, SignalingError
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


#: Sign in afresh after losing the session: waits of 1, 2, 4 ... at most 15 s.
RECONNECT_MAX_DELAY_S = 15.0


class SessionState(enum.Enum):
    SIGNED_OUT = "signed_out"
    SIGNING_IN = "signing_in"
    SIGNED_IN = "signed_in"
    #: The WebSocket dropped; resuming the same session on a new one (a call
    #: and its audio go on meanwhile).
    RESUMING = "resuming"
    #: The session was lost; signing in afresh, with backoff.
    RECONNECTING = "reconnecting"
    #: Over: closed by the phone, or given up.
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionHooks:
    """What the session needs of the phone, and all it may touch."""

    #: The phone's settings as they are now (the agent may have changed them).
    settings: Callable[[], PhoneSettings]
    emit: Callable[[events.PhoneEvent], None]
    #: A message that is the phone's: calls, connections, presence, errors.
    handle: Callable[[Message], Awaitable[None]]
    #: Signed in; ``again`` after the session had been lost.
    signed_in: Callable[[SignedIn, bool], Awaitable[None]]
    #: Resumed: the platform's snapshot, the time away, the attempts it took.
    resumed: Callable[[SessionResumed, float, int], Awaitable[None]]
    #: The session is lost (``connection_lost``): end the calls, drop the connection.
    lost: Callable[[str], Awaitable[None]]
    #: The media connection is alive (a resume is worth waiting for).
    media_alive: Callable[[], bool]


class PlatformSession:
    def __init__(self, hooks: SessionHooks) -> None:
        self._hooks = hooks
        self._tasks = TaskSet("session")
        self._client: SignalingClient | None = None
        self._state = SessionState.SIGNED_OUT
        #: Signed in at least once: from then on each change is told.
        self._established = False
        self._closing = False
        self._signed_in: asyncio.Future[SignedIn] | None = None
        self._resume_answer: asyncio.Future[SessionResumed] | None = None
        self.token = SessionToken(self._tasks, self._refresh)
        #: How long the platform lets a call ring (from ``signed_in``).
        self.alert_timeout_s = 12.0
        #: Set when the session is over: given up, ended by the platform, or closed.
        self.closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<PlatformSession {self._state.value}>"

    @property
    def state(self) -> SessionState:
        return self._state

    def _set_state(self, new: SessionState, reason: str) -> None:
        """The one place the session's state changes; told once per change."""
        old = self._state
        if new is old:
            return
        self._state = new
        logger.info("session %s -> %s (%s)", old.value, new.value, reason)
        if new is SessionState.SIGNED_IN:
            self._established = True
        if self._established:  # a sign-in that fails is its error alone
            self._hooks.emit(events.Session(state=new.value, reason=reason))

    # --- signing in --------------------------------------------------------------------

    async def start(self, timeout: float = 15.0) -> None:
        """Connect and sign in; raises SignInError with a message for the agent."""
        self._set_state(SessionState.SIGNING_IN, "start")
        try:
            await self._sign_in(timeout)
        except SignInError as exc:
            self._set_state(SessionState.SIGNED_OUT, "sign_in_failed")
            await self._replace_client(None)
            logger.info("sign-in failed: %s", exc)
            raise

    async def _sign_in(self, timeout: float) -> None:
        s = self._hooks.settings()
        await self._replace_client(None)
        client = SignalingClient(s.platform, decode_to_agent, self._invalid, ca_file=s.ca_file)
        try:
            await client.connect()
        except SignalingError as exc:
            raise SignInError(str(exc)) from None
        await self._replace_client(client)
        signed_in = asyncio.get_running_loop().create_future()
        self._signed_in = signed_in
        self._tasks.spawn(self._read(client), "signaling")
        await self.send(
            SignIn(
                version=PROTOCOL_VERSION,
                user=s.user,
                password=s.password,
                persistent=s.persistent,
                client=s.client,
            )
        )
        try:
            await asyncio.wait_for(asyncio.shield(signed_in), timeout)
        except TimeoutError:
            raise SignInError(
                f"the platform did not answer the sign-in within {timeout:g} s"
            ) from None

    async def send(self, message: Message) -> None:
        if self._client is None:
            raise PhoneError("not connected to the platform")
        try:
            await self._client.send(message)
        except SignalingError as exc:
            raise PhoneError(str(exc)) from None

    async def _replace_client(self, client: SignalingClient | None) -> None:
        old, self._client = self._client, client
        if old is not None:
            await old.close()  # its read loop ends, and is not taken for a loss

    # --- the read loop -----------------------------------------------------------------

    async def _read(self, client: SignalingClient) -> None:
        try:
            async for message in client.messages():
                await self._dispatch(message)
        finally:
            # Only the current socket's end matters (a replaced one is closed on purpose).
            if client is self._client:
                self._socket_closed()

    async def _dispatch(self, message: Message) -> None:
        try:
            match message:
                case SignedIn():
                    await self._on_signed_in(message)
                case SessionRefreshed():
                    self.token.update(message.session_token, message.token_expires_in_s)
                    self._hooks.emit(
                        events.SessionRefreshed(expires_in_s=message.token_expires_in_s)
                    )
                case SessionResumed():
                    if self._resume_answer is not None and not self._resume_answer.done():
                        self._resume_answer.set_result(message)
                case Error() if self._resume_answer is not None and not self._resume_answer.done():
                    self._resume_answer.set_exception(ResumeRefused(message.code, message.message))
                case Error() if self._signed_in is not None and not self._signed_in.done():
                    self._signed_in.set_exception(SignInError(message.message))
                case SignedOut(reason=reason):
                    self.token.forget()
                    await self._hooks.handle(message)
                    self._set_state(SessionState.SIGNED_OUT, reason)
                case _:
                    await self._hooks.handle(message)
        except PhoneError as exc:
            self._hooks.emit(events.Error(message=str(exc), code="phone"))
        except Exception:  # a bug in handling one message must not end the session
            logger.exception("handling the platform's %s failed", type(message).__name__)
            self._hooks.emit(
                events.Error(
                    message=f"could not handle the platform's {type(message).__name__} message",
                    code="phone",
                )
            )

    def _invalid(self, exc: ProtocolError) -> None:
        """A message from the platform that the codec refused: skipped, and said."""
        self._hooks.emit(
            events.Error(
                message=f"ignored a message from the platform ({exc.code}): {exc.message}"[:500],
                code="protocol",
            )
        )

    async def _on_signed_in(self, message: SignedIn) -> None:
        again = self._state is SessionState.RECONNECTING
        self.alert_timeout_s = message.alert_timeout_s
        self.token.update(message.session_token, message.token_expires_in_s, message.resume_grace_s)
        await self._hooks.signed_in(message, again)
        self._set_state(SessionState.SIGNED_IN, "reconnected" if again else "signed_in")
        if self._signed_in is not None and not self._signed_in.done():
            self._signed_in.set_result(message)

    def _socket_closed(self) -> None:
        """The current WebSocket ended."""
        # An answer awaited on it never comes.
        if self._resume_answer is not None and not self._resume_answer.done():
            self._resume_answer.set_exception(SignalingError("the platform closed the socket"))
        if self._signed_in is not None and not self._signed_in.done():
            self._signed_in.set_exception(SignInError("the platform closed the connection"))
        if self._closing or self._state in (
            SessionState.SIGNING_IN,
            SessionState.RESUMING,
            SessionState.RECONNECTING,
        ):
            return  # expected, or the sign-in or retries in progress see it
        if self._state is SessionState.SIGNED_IN:
            self._tasks.spawn(self._lost(), "lost")
        else:  # the platform signed the phone out, then closed the socket
            self._finish("signed_out")

    # --- losing the platform: resume, else sign in afresh, else give up ----------------

    async def _lost(self) -> None:
        """The WebSocket dropped while signed in (the one place that decides
        what happens next)."""
        if self.token.token is not None:
            self._set_state(SessionState.RESUMING, "socket_closed")
            if await self._resume() or self._closing:
                return
        self._hooks.emit(events.Error(message="lost the connection to the platform", code="lost"))
        self.token.forget()
        await self._hooks.lost("connection_lost")
        if self._hooks.settings().reconnect_attempts > 0 and not self._closing:
            await self._reconnect()
        else:
            self._finish("connection_lost")

    async def _resume(self) -> bool:
        """Resume with retries (the call and its media go on meanwhile). False
        when it cannot be: the caller then signs in afresh or gives up."""
        outcome = await resume_with_retries(
            lambda token: self._try_resume(token, timeout=5.0),
            self.token,
            self._hooks.media_alive,
            lambda: self._closing,
            self._hooks.emit,
        )
        if outcome.stopped:
            return True
        snapshot = outcome.snapshot
        if snapshot is not None:
            self.token.update(
                self.token.token, snapshot.token_expires_in_s, snapshot.resume_grace_s
            )
            self._set_state(SessionState.SIGNED_IN, "resumed")
            await self._hooks.resumed(snapshot, outcome.away_s, outcome.attempts)
            return True
        await self._replace_client(None)
        logger.warning("session not resumed (%s): %s", outcome.code, outcome.message)
        self._hooks.emit(events.ResumeFailed(code=outcome.code, message=outcome.message))
        return False

    async def _try_resume(self, token: str, timeout: float) -> SessionResumed:
        s = self._hooks.settings()
        client = SignalingClient(s.platform, decode_to_agent, self._invalid, ca_file=s.ca_file)
        await client.connect(timeout)
        await self._replace_client(client)
        answer: asyncio.Future[SessionResumed] = asyncio.get_running_loop().create_future()
        self._resume_answer = answer
        self._tasks.spawn(self._read(client), "signaling")
        try:
            await self.send(ResumeSession(version=PROTOCOL_VERSION, session_token=token))
            return await asyncio.wait_for(asyncio.shield(answer), timeout)
        finally:
            self._resume_answer = None
            if not answer.done():
                answer.cancel()

    async def _reconnect(self) -> None:
        """Sign in afresh with backoff, bounded in attempts."""
        self._set_state(SessionState.RECONNECTING, "connection_lost")
        attempts = self._hooks.settings().reconnect_attempts
        for attempt in range(1, attempts + 1):
            delay = min(RECONNECT_MAX_DELAY_S, 2.0 ** (attempt - 1))
            self._hooks.emit(events.Reconnecting(attempt=attempt, delay_s=delay))
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._sign_in(timeout=10.0)
            except SignInError as exc:
                logger.info("reconnect attempt %d failed: %s", attempt, exc)
                if "password" in str(exc):
                    break  # the platform answered, and said no: retrying won't help
                continue
            return
        self._hooks.emit(events.Error(message="could not reach the platform again", code="lost"))
        self._finish("connection_lost")

    def _finish(self, reason: str) -> None:
        self._set_state(SessionState.CLOSED, reason)
        self.closed.set()

    async def _refresh(self) -> None:
        try:
            await self.send(RefreshSession())
        except PhoneError as exc:  # the socket is down: the resume reschedules it
            logger.info("session refresh not sent: %s", exc)

    # --- the end -----------------------------------------------------------------------

    def closing(self) -> None:
        """The phone is closing: the socket's end from now on is expected."""
        self._closing = True

    async def close(self) -> None:
        """Stop every retry and timer and close the socket. Idempotent."""
        self._closing = True
        self.token.forget()
        await self._tasks.close()
        await self._replace_client(None)
        self._set_state(SessionState.CLOSED, "closed")
        self.closed.set()
