"""One object per WebSocket peer: an agent's phone or a customer's trunk.

A session validates each message (the codec), checks it is allowed in the
session's state, and hands it to the router or the connection manager. Any
refusal is answered with an ``error`` message naming the problem; the
session, its calls and its connection stay as they were.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from agent_phone.cloud.auth import SessionTokens, token_hint
from agent_phone.cloud.config import (
    AgentConfig,
    PlatformConfig,
    QueueConfig,
    dummy_hash,
    verify_password,
)
from agent_phone.cloud.connections import ConnectionManager
from agent_phone.cloud.errors import RequestError
from agent_phone.cloud.events import EventLog
from agent_phone.cloud.lockout import LockedOut, SignInGuard, client_address
from agent_phone.cloud.media_edge import CustomerLeg, LinkError
from agent_phone.cloud.records import CallRecorder
from agent_phone.cloud.routing import Call, CallState, Router
from agent_phone.cloud.web import WEB_TOKEN_PREFIX, CallTokens
from agent_phone.media.ice import CandidateError
from agent_phone.protocol import (
    PROTOCOL_VERSION,
    AcceptIncoming,
    AddToConference,
    AfterCallWork,
    AnswerCall,
    AwaitCalls,
    AwaitingCalls,
    CallAccepted,
    CallerHangup,
    CallSnapshot,
    CancelTransfer,
    CompleteTransfer,
    ConnectionAnswer,
    DeclineCall,
    Dial,
    EndConnection,
    Error,
    Hangup,
    HoldCall,
    IceCandidate,
    LeaveConference,
    Message,
    PlaceCall,
    PresenceChanged,
    QualityReport,
    RefreshSession,
    ResumeSession,
    SendDtmf,
    SessionRefreshed,
    SessionResumed,
    SetPersistent,
    SetPresence,
    SetStatus,
    SignedIn,
    SignedOut,
    SignIn,
    SignOut,
    StatusChanged,
    TransferCall,
    UnholdCall,
    WrapUp,
)
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)

Send = Callable[[Message], None]


def _check_version(version: int) -> None:
    if version != PROTOCOL_VERSION:
        raise RequestError(
            "unsupported_version",
            f"protocol version {version} is not supported; this platform speaks {PROTOCOL_VERSION}",
        )


@dataclass(frozen=True)
class SessionServices:
    """What a session may use of the platform, and all it may: the platform
    builds it once (server.py) and hands it to each session."""

    config: PlatformConfig
    events: EventLog
    #: The signed-in agents by name (a session adds and removes itself).
    agents: dict[str, AgentSession]
    tokens: SessionTokens
    guard: SignInGuard
    connections: ConnectionManager
    router: Router
    records: CallRecorder
    tasks: TaskSet
    trunk_token: str
    #: Trunks awaiting calls, by number (``await_calls``; one trunk a number).
    numbers: dict[str, CallerSession]
    #: The click-to-call page's single-use tokens (web.py).
    call_tokens: CallTokens


class AgentSession:
    """An agent's phone, from sign-in to sign-out."""

    def __init__(
        self,
        services: SessionServices,
        send: Send,
        close: Callable[[], Coroutine[Any, Any, None]],
        peer: str | None = None,
    ):
        self._services = services
        #: The socket's peer address (an IPv6 one as its /64), which the
        #: sign-in lockout counts by.
        self.address = client_address(peer)
        self._send = send
        self._close_transport = close
        self.name = ""
        self.signed_in = False
        self.permissions: frozenset[str] = frozenset()
        self.persistent = True
        #: The agent's status (``set_status``), its reason, and since when
        #: (Unix time); ``available`` is on queue.
        self.status = "offline"
        self.status_reason = ""
        self.status_since = time.time()
        self.idle_since = time.monotonic()
        #: The calls the agent is in, the router's to change (routing.py).
        self.calls: list[Call] = []
        #: The after-call work the agent is in, the status to go back to
        #: after it, and the timer that ends it without a code.
        self.acw: AfterCallWork | None = None
        self._acw_return = ("available", "")
        self._acw_timer: asyncio.TimerHandle | None = None
        # --- session token and resume (docs/protocol.md "Sessions") ---
        #: Identifies the WebSocket this session talks over now.
        self.binding = object()
        self.token: str | None = None
        #: Monotonic time the WebSocket dropped; None while one is bound.
        self.detached_at: float | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<AgentSession {self.name or '?'}>"

    @property
    def on_queue(self) -> bool:
        return self.status == "available"

    @property
    def available(self) -> bool:
        return self.signed_in and self.on_queue and not self.calls and self.detached_at is None

    @property
    def reachable(self) -> bool:
        """May be offered a call by another agent (an internal call, a
        transfer, a consult, a conference), whatever their status, waiting if
        they are on a call: signed in, their socket up, no after-call work."""
        return self.signed_in and self.detached_at is None and self.acw is None

    def send(self, message: Message) -> None:
        # While detached nothing is sent: the resume's snapshot carries the state.
        if self.detached_at is None:
            self._send(message)

    async def handle(self, message: Message) -> None:
        p = self._services
        match message:
            case SignIn():
                await self._sign_in(message)
            case _ if not self.signed_in:
                raise RequestError("not_signed_in", "sign in first")
            case SetPresence(on_queue=on_queue):
                self._not_in_after_call_work()
                self.set_presence(on_queue, "requested")
            case SetStatus(status=status, reason=reason):
                self._not_in_after_call_work()
                allowed = p.config.status_reasons.get(status, ())
                if reason and reason not in allowed:
                    listed = ", ".join(allowed) if allowed else "none"
                    raise RequestError(
                        "invalid", f"{reason!r} is not a reason for {status} (reasons: {listed})"
                    )
                self.set_status(status, reason, "requested")
            case ConnectionAnswer():
                p.connections.accept_answer(self, message)
            case IceCandidate():
                await p.connections.add_candidate(self, message)
            case AnswerCall(call_id=call_id):
                p.router.answer(self, call_id)
            case DeclineCall(call_id=call_id):
                await p.router.decline(self, call_id)
            case Hangup(call_id=call_id, requeue=requeue):
                await p.router.agent_hangup(self, call_id, requeue)
            case SetPersistent(on=on):
                await p.connections.set_persistent(self, on)
            case EndConnection():
                await p.connections.end_connection(self)
            case HoldCall(call_id=call_id):
                p.router.hold(self, call_id, True)
            case UnholdCall(call_id=call_id):
                p.router.hold(self, call_id, False)
            case SendDtmf(call_id=call_id, digits=digits):
                p.router.send_dtmf(self, call_id, digits)
            case QualityReport():
                p.records.heard_by_agent(self.name, message)
            case Dial(call_id=call_id, number=number, agent=None) if number is not None:
                p.router.dial(self, call_id, number, p.numbers.get(number))
            case Dial(call_id=call_id, number=None, agent=agent) if agent is not None:
                p.router.dial_agent(self, call_id, agent)
            case Dial(call_id=call_id):
                raise RequestError("invalid", "dial a number or an agent: one of the two", call_id)
            case WrapUp(call_id=call_id, code=code):
                self.wrap_up(call_id, code)
            case TransferCall():
                m = message
                callee = p.numbers.get(m.number) if m.number else None
                await p.router.transfer(
                    self, m.call_id, m.agent, m.queue, m.number, m.consult, callee
                )
            case CompleteTransfer(call_id=call_id):
                await p.router.complete_transfer(self, call_id)
            case CancelTransfer(call_id=call_id):
                await p.router.cancel_transfer(self, call_id)
            case AddToConference(call_id=call_id, agent=agent, number=number):
                callee = p.numbers.get(number) if number else None
                p.router.add_to_conference(self, call_id, agent, number, callee)
            case LeaveConference(call_id=call_id):
                await p.router.leave_conference(self, call_id)
            case SignOut():
                await self.sign_out("requested")
                await self._close_transport()
            case RefreshSession():
                self._refresh()
            case ResumeSession():
                raise RequestError("already_signed_in", f"already signed in as {self.name}")
            case _:
                raise RequestError("invalid", f"{type(message).__name__} is not for the platform")

    async def _sign_in(self, message: SignIn) -> None:
        if self.signed_in:
            raise RequestError("already_signed_in", f"already signed in as {self.name}")
        _check_version(message.version)
        config = self._services.config
        guard = self._services.guard
        try:
            guard.check(message.user, self.address)
            guard.begin(message.user, self.address)
        except LockedOut as exc:
            self._services.events.emit(
                "sign_in_failed",
                user=message.user,
                address=self.address,
                code="locked_out",
                scope=exc.scope,
            )
            raise
        try:
            agent = await self._authenticate(message)
        finally:
            guard.end(message.user, self.address)
        previous = self._services.agents.get(agent.name)
        if previous is not None:
            await previous.sign_out("signed_in_elsewhere")
            await previous._close_transport()
        self.name = agent.name
        self.permissions = agent.permissions
        self.persistent = message.persistent
        self.signed_in = True
        self.idle_since = time.monotonic()
        self._services.agents[self.name] = self
        issued = self._services.tokens.issue(self.name)
        self.token = issued.token
        self._arm_expiry(issued.expires_in_s)
        self.send(
            SignedIn(
                version=PROTOCOL_VERSION,
                agent=self.name,
                permissions=sorted(self.permissions),
                queues=config.queues_of(self.name),
                alert_timeout_s=config.alert_timeout_s,
                persistent_timeout_s=self._services.connections.timeout_for(self.name),
                session_token=issued.token,
                token_expires_in_s=issued.expires_in_s,
                token_expires_at=issued.expires_at,
                resume_grace_s=config.resume_grace_s,
                status_reasons={k: list(v) for k, v in config.status_reasons.items()},
                directory_agents=sorted(a for a in config.agents if a != self.name),
                directory_queues=sorted(config.queues),
            )
        )
        self._services.events.emit(
            "agent_signed_in", agent=self.name, persistent=self.persistent, client=message.client
        )
        self.set_status("away", "", "sign_in")
        await self._services.connections.signed_in(self)

    async def _authenticate(self, message: SignIn) -> AgentConfig:
        """The agent whose password this is; a failure is slowed, then locks."""
        guard = self._services.guard
        agent = self._services.config.agents.get(message.user)
        # Verify even for an unknown user so both take the same time.
        known_hash = agent.password_hash if agent else dummy_hash()
        ok = await asyncio.to_thread(verify_password, known_hash, message.password)
        if agent is None or not ok:
            verdict = guard.failed(message.user, self.address)
            events = self._services.events
            events.emit(
                "sign_in_failed",
                user=message.user,
                address=self.address,
                code="auth_failed",
                failures=verdict.failures,
                delay_s=verdict.delay_s,
                address_failures=verdict.address_failures,
            )
            if verdict.locked_for_s:
                events.emit(
                    "user_locked",
                    user=message.user,
                    address=self.address,
                    failures=verdict.failures,
                    locked_s=verdict.locked_for_s,
                )
            if verdict.address_locked_for_s:
                events.emit(
                    "address_locked",
                    address=self.address,
                    failures=verdict.address_failures,
                    locked_s=verdict.address_locked_for_s,
                )
            # On disk before it is answered: a lock announced survives a crash.
            await guard.synced()
            # Only this socket's coroutine waits; the loop serves everyone else.
            await asyncio.sleep(verdict.delay_s)
            guard.check(message.user, self.address)  # locked now: say so, with the time left
            raise RequestError("auth_failed", "wrong user name or password")
        guard.succeeded(message.user, self.address)
        return agent

    def set_presence(self, on_queue: bool, reason: str) -> None:
        """On or off queue: ``available``, or ``away`` (a status other than
        available is kept when going off queue)."""
        if on_queue != self.on_queue:
            self.set_status("available" if on_queue else "away", "", reason)
            return
        self.send(PresenceChanged(on_queue=on_queue, reason=reason))
        if on_queue:
            self._services.router.dispatch()

    def set_status(self, status: str, reason: str, cause: str) -> None:
        """The one place the agent's status changes: the phone is told, the
        change is recorded (``status_changed``), and presence follows
        (``presence``: on queue exactly while ``available``)."""
        if (status, reason) == (self.status, self.status_reason):
            self.send(self._status_message(cause))  # the phone asked: it hears it again
            return
        was_on_queue = self.on_queue
        self.status, self.status_reason, self.status_since = status, reason, time.time()
        events = self._services.events
        self.send(self._status_message(cause))
        events.emit("status_changed", agent=self.name, status=status, reason=reason, cause=cause)
        if self.on_queue != was_on_queue:
            if self.on_queue:
                self.idle_since = time.monotonic()
            self.send(PresenceChanged(on_queue=self.on_queue, reason=cause))
            events.emit("presence", agent=self.name, on_queue=self.on_queue, reason=cause)
        if self.on_queue:
            self._services.router.dispatch()

    # --- after-call work ---------------------------------------------------------

    def begin_after_call_work(self, call_id: str, queue: QueueConfig) -> None:
        """``call_id`` from ``queue`` ended: no call is routed to the agent
        until they wrap it up with a code or the queue's timeout passes."""
        if not self.signed_in or not queue.after_call_work:
            return
        if self.acw is not None:  # (one call at a time: cannot happen; never stack)
            self._end_after_call_work(None, "superseded")
        timeout = queue.acw_timeout_s
        self.acw = AfterCallWork(
            call_id=call_id,
            queue=queue.name,
            codes=list(queue.wrap_up_codes),
            deadline=time.time() + timeout,
            timeout_s=timeout,
        )
        if self.status != "after_call_work":
            self._acw_return = (self.status, self.status_reason)
        self._acw_timer = asyncio.get_running_loop().call_later(timeout, self._acw_timed_out)
        self.send(self.acw)
        self.set_status("after_call_work", "", "call_ended")

    def _not_in_after_call_work(self) -> None:
        if self.acw is not None:
            raise RequestError(
                "wrong_state",
                f"you are in after-call work on call {self.acw.call_id!r};"
                " wrap it up first (wrap_up, with one of its codes)",
            )

    def wrap_up(self, call_id: str, code: str) -> None:
        acw = self.acw
        if acw is None:
            raise RequestError("wrong_state", "you are not in after-call work", call_id)
        if call_id != acw.call_id:
            raise RequestError(
                "unknown_call",
                f"your after-call work is on call {acw.call_id!r}, not {call_id!r}",
                call_id,
            )
        if code not in acw.codes:
            raise RequestError(
                "invalid",
                f"{code!r} is not a wrap-up code of queue {acw.queue}"
                f" (codes: {', '.join(acw.codes)})",
                call_id,
            )
        self._end_after_call_work(code, "wrapped_up")

    def _acw_timed_out(self) -> None:
        self._acw_timer = None
        if self.acw is not None:
            self._end_after_call_work(None, "acw_timeout")

    def _end_after_call_work(self, code: str | None, cause: str) -> None:
        """After-call work is over (``code``: the agent's, or None); back to
        the status the agent had, unless signing out ends it."""
        acw, self.acw = self.acw, None
        if self._acw_timer is not None:
            self._acw_timer.cancel()
            self._acw_timer = None
        if acw is None:
            return
        acw_s = acw.timeout_s - max(0.0, acw.deadline - time.time())
        self._services.events.emit(
            "after_call_work",
            agent=self.name,
            call_id=acw.call_id,
            code=code,
            cause=cause,
            acw_s=round(acw_s, 3),
        )
        if self.signed_in:
            status, reason = self._acw_return
            self.set_status(status, reason, cause)

    def _status_message(self, cause: str) -> StatusChanged:
        return StatusChanged(
            status=self.status, reason=self.status_reason, since=self.status_since, cause=cause
        )

    async def sign_out(self, reason: str) -> None:
        """Idempotent; the agent's call is saved and the connection closed (R11)."""
        if not self.signed_in:
            return
        self.signed_in = False
        p = self._services
        self._end_after_call_work(None, reason)  # its record keeps no code
        if self.status != "offline":  # recorded; the phone is told it is signed out
            self.status, self.status_reason, self.status_since = "offline", "", time.time()
            p.events.emit(
                "status_changed", agent=self.name, status="offline", reason="", cause=reason
            )
        # A token that ran out stays "expired" (``token_expired``); any other
        # end revokes it (``invalid_token``).
        self._end_token(revoke=reason != "token_expired")
        if p.agents.get(self.name) is self:
            del p.agents[self.name]
        await p.router.agent_gone(self, reason)
        await p.connections.signed_out(self, reason)
        self.send(SignedOut(reason=reason))
        p.events.emit("agent_signed_out", agent=self.name, reason=reason)

    # --- session token, WebSocket drop and resume ----------------------------------

    def _arm_expiry(self, seconds: float) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(seconds, self._token_ran_out)

    def _token_ran_out(self) -> None:
        """An unrefreshed token ends the session, but never in the middle of a call."""
        self._expiry = None
        if not self.signed_in:
            return
        if self.calls:
            self._expiry = asyncio.get_running_loop().call_later(5.0, self._token_ran_out)
            return
        self._services.events.emit("token_expired", agent=self.name)
        self._services.tasks.spawn(self._end("token_expired"), "token-expired")

    async def _end(self, reason: str) -> None:
        close = self._close_transport
        await self.sign_out(reason)
        await close()

    def _end_token(self, revoke: bool) -> None:
        for timer in (self._expiry, self._grace):
            if timer is not None:
                timer.cancel()
        self._expiry = self._grace = None
        self.detached_at = None
        if self.token is not None and revoke:
            self._services.tokens.revoke(self.token)

    def _refresh(self) -> None:
        assert self.token is not None
        issued = self._services.tokens.refresh(self.token)
        self.token = issued.token
        self._arm_expiry(issued.expires_in_s)
        self.send(
            SessionRefreshed(
                session_token=issued.token,
                token_expires_in_s=issued.expires_in_s,
                token_expires_at=issued.expires_at,
            )
        )
        self._services.events.emit(
            "session_refreshed", agent=self.name, token_expires_in_s=issued.expires_in_s
        )

    async def transport_lost(self, binding: object) -> None:
        """The WebSocket ``binding`` closed. A signed-in session is kept for the
        grace period (its call and connection go on; the media link's own
        liveness still decides whether they are dead), unless another
        WebSocket has taken it over already."""
        if binding is not self.binding or not self.signed_in:
            return
        grace = self._services.config.resume_grace_s
        self.detached_at = time.monotonic()
        self._send = _drop
        self._close_transport = _nothing
        self._grace = asyncio.get_running_loop().call_later(grace, self._grace_ran_out)
        self._services.events.emit(
            "agent_detached",
            agent=self.name,
            grace_s=grace,
            call_id=self.calls[0].id if self.calls else None,
        )

    def _grace_ran_out(self) -> None:
        self._grace = None
        if not self.signed_in or self.detached_at is None:
            return
        self._services.events.emit(
            "resume_grace_expired",
            agent=self.name,
            call_id=self.calls[0].id if self.calls else None,
        )
        self._services.tasks.spawn(self.sign_out("connection_lost"), "grace-expired")

    def resumed_on(self, new: AgentSession) -> None:
        """Bind this session to ``new``'s WebSocket and send it the snapshot."""
        away_s = time.monotonic() - self.detached_at if self.detached_at is not None else 0.0
        # A phone that noticed the drop before the platform did: its old
        # socket is closed, and its close no longer detaches this session.
        old_close = self._close_transport if self.detached_at is None else None
        self._send = new._send
        self._close_transport = new._close_transport
        self.binding = new.binding
        self.detached_at = None
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self.send(self.snapshot())
        self._services.events.emit(
            "session_resumed",
            agent=self.name,
            away_s=round(away_s, 3),
            call_id=self.calls[0].id if self.calls else None,
            took_over_open_socket=old_close is not None,
        )
        if old_close is not None:
            self._services.tasks.spawn(old_close(), "close-replaced-socket")
        if self.on_queue:
            self._services.router.dispatch()

    def _snapshot_of(self, call: Call) -> CallSnapshot:
        """The call as this agent has it: its agent's, or (another agent on
        it: consulted, in a conference) their own part of it."""
        party = call.party(self)
        link = party.link if party is not None else call.link
        return CallSnapshot(
            call_id=call.id,
            state=party.state.value if party is not None else call.state.value,
            caller=call.caller,
            queue=call.queue,
            connection_id=link.id if link is not None else None,
            held=party is None and call.held,
        )

    def snapshot(self) -> SessionResumed:
        calls = [self._snapshot_of(c) for c in self.calls if c.state is not CallState.ENDED]
        # ``call``, for phones that know of one call only: the one not held.
        call = next((c for c in calls if not c.held), calls[0] if calls else None)
        assert self.token is not None
        tokens = self._services.tokens
        remaining = tokens.remaining_s(self.token)
        return SessionResumed(
            agent=self.name,
            on_queue=self.on_queue,
            status=self._status_message("resumed"),
            after_call_work=self.acw,
            persistent=self.persistent,
            connection=self._services.connections.describe(self),
            call=call,
            calls=calls,
            token_expires_in_s=round(remaining, 3),
            token_expires_at=time.time() + remaining,
            resume_grace_s=self._services.config.resume_grace_s,
        )


def _drop(_message: Message) -> None:
    pass


async def _nothing() -> None:
    pass


def resume_session(
    services: SessionServices, new: AgentSession, message: ResumeSession
) -> AgentSession:
    """The live session ``message``'s token names, now bound to ``new``'s WebSocket."""
    if new.signed_in:
        raise RequestError("already_signed_in", f"already signed in as {new.name}")
    _check_version(message.version)
    try:
        agent = services.tokens.check(message.session_token)
    except RequestError as exc:
        logger.info("resume refused (%s) for token %s", exc.code, token_hint(message.session_token))
        raise
    live = services.agents.get(agent)
    if live is None or live.token is None or live.token != message.session_token:
        raise RequestError("invalid_token", "unknown or ended session; sign in again")
    live.resumed_on(new)
    return live


class CallerSession:
    """A customer's trunk: places one call and may hang it up, or awaits
    calls to a number (an agent's outbound calls) and answers them."""

    def __init__(self, services: SessionServices, send: Send, peer: str | None = None) -> None:
        self._services = services
        self._send = send
        self._peer = peer
        self.call: Call | None = None
        #: The number this trunk takes calls to (``await_calls``), if any.
        self.number = ""
        self._open = True

    def _check_trunk_token(self, message: PlaceCall | AwaitCalls) -> None:
        """Only the platform's trunks place or take calls, and a web page a
        call to the queue its call token is for; every refusal is logged
        (never the token given)."""
        given = message.trunk_token
        if isinstance(message, PlaceCall) and given.startswith(WEB_TOKEN_PREFIX):
            if self._services.call_tokens.take(given, message.queue):
                return
            self._services.events.emit(
                "trunk_refused", reason="bad_call_token", peer=self._peer, queue=message.queue
            )
            raise RequestError(
                "auth_failed", "the call token is used, expired or for another queue"
            )
        expected = self._services.trunk_token.encode()
        if not hmac.compare_digest(given.encode(), expected):
            where = (
                {"queue": message.queue, "caller": message.caller}
                if isinstance(message, PlaceCall)
                else {"number": message.number}
            )
            self._services.events.emit(
                "trunk_refused",
                reason="missing_token" if not message.trunk_token else "wrong_token",
                peer=self._peer,
                **where,
            )
            raise RequestError("auth_failed", "a valid trunk token is needed to place calls")

    def send(self, message: Message) -> None:
        if self._open:
            self._send(message)

    async def handle(self, message: Message) -> None:
        router = self._services.router
        match message:
            case PlaceCall():
                if self.call is not None:
                    raise RequestError("wrong_state", "this connection already placed a call")
                self._check_trunk_token(message)
                _check_version(message.version)
                if not router.has_queue(message.queue):
                    raise RequestError("unknown_queue", f"there is no queue {message.queue!r}")
                leg = CustomerLeg(
                    "pending", media_timeout_s=self._services.config.customer_media_timeout_s
                )
                try:
                    sdp = await leg.answer(message.sdp)
                except Exception as exc:
                    # aiortc's SDP parser raises more than ValueError on garbage
                    # (an AssertionError for "a=\x00\r\nm=", found by fuzzing).
                    await leg.close()
                    raise RequestError("invalid", f"unusable SDP offer: {exc!r}"[:300]) from None
                call = Call(
                    queue=message.queue, caller=message.caller, leg=leg, notify_customer=self.send
                )
                leg.call_id = call.id
                self.call = call
                self.send(CallAccepted(call_id=call.id, sdp=sdp, position=0))
                # Its media connects in a task of its own: meanwhile this
                # trunk's messages (trickled candidates, a hang-up) are read.
                self._services.tasks.spawn(self._queue_once_heard(call), f"connect-{call.id}")
            case CallerHangup(call_id=call_id):
                if self.call is None or self.call.id != call_id:
                    raise RequestError("unknown_call", f"you have no call {call_id!r}", call_id)
                await self._hang_up(self.call)
            case AwaitCalls():
                self._check_trunk_token(message)
                _check_version(message.version)
                if self.number or self.call is not None:
                    raise RequestError(
                        "wrong_state", "this connection already has a call or number"
                    )
                numbers = self._services.numbers
                if message.number in numbers:
                    raise RequestError("number_taken", f"{message.number} is already taken")
                numbers[message.number] = self
                self.number = message.number
                self._services.events.emit("number_awaiting", number=message.number)
                self.send(AwaitingCalls(number=message.number))
            case AcceptIncoming(call_id=call_id, sdp=offer):
                sdp = await router.accept_incoming(self, call_id, offer)
                self.send(CallAccepted(call_id=call_id, sdp=sdp, position=0))
                self._services.tasks.spawn(self._join_once_heard(call_id), f"connect-{call_id}")
            case IceCandidate():
                await self._candidate(message)
            case _:
                raise RequestError("invalid", f"{type(message).__name__} is not for the platform")

    async def _queue_once_heard(self, call: Call) -> None:
        """Only a call whose customer can be heard is queued: an agent is
        never handed a call with no customer on it."""
        leg = call.leg
        assert leg is not None
        try:
            await leg.wait_connected(self._services.config.connect_timeout_s)
        except LinkError as exc:
            if self.call is call:
                self.call = None
            await leg.close()
            refusal = RequestError("media_failed", str(exc), call.id)
            log_refusal(self._services.events, self, "place_call", refusal)
            self.send(error_for(refusal, "place_call"))
            return
        if self._open and self.call is call:
            self._services.router.enqueue(call)

    async def _join_once_heard(self, call_id: str) -> None:
        try:
            await self._services.router.incoming_media(self, call_id)
        except RequestError as exc:
            log_refusal(self._services.events, self, "accept_incoming", exc)
            self.send(error_for(exc, "accept_incoming"))

    async def _hang_up(self, call: Call) -> None:
        """The customer hangs up: a call not queued yet (its media still
        connecting) just ends here; any other as the router says."""
        if call.state is CallState.QUEUED and call.id not in self._services.router.calls:
            self.call = None
            if call.leg is not None:
                await call.leg.close()
            return
        await self._services.router.trunk_hangup(self, call)

    async def _candidate(self, message: IceCandidate) -> None:
        """A candidate trickled after this trunk's offer (``place_call``'s,
        named by no call id; ``accept_incoming``'s, by its call id)."""
        call = self.call
        if call is None or call.state is CallState.ENDED or message.call_id not in (None, call.id):
            raise RequestError(
                "unknown_call", f"you have no call {message.call_id!r}", message.call_id
            )
        party = next((p for p in call.parties if p.callee is self), None)
        leg = party.leg if party is not None else call.leg
        if leg is None:
            raise RequestError("wrong_state", "the call has no media of yours yet", call.id)
        try:
            await leg.remote_candidates.add(
                message.candidate, message.sdp_mid, message.sdp_mline_index
            )
        except CandidateError as exc:
            raise RequestError("invalid", f"ice_candidate: {exc}", call.id) from None

    async def gone(self) -> None:
        self._open = False
        if self.number and self._services.numbers.get(self.number) is self:
            del self._services.numbers[self.number]
        if self.call is not None and self.call.state is not CallState.ENDED:
            await self._hang_up(self.call)


def error_for(exc: RequestError, in_reply_to: str | None) -> Error:
    return Error(
        code=exc.code,
        message=exc.message,
        in_reply_to=in_reply_to,
        call_id=exc.call_id,
        retry_after_s=getattr(exc, "retry_after_s", None),
    )


#: Refusals with their own event (``sign_in_failed``), not repeated as ``refused``.
_LOGGED_ELSEWHERE = frozenset({"auth_failed", "locked_out"})


def log_refusal(
    events: EventLog,
    session: AgentSession | CallerSession | None,
    kind: str | None,
    exc: RequestError,
) -> None:
    """Every refused request is a platform event: who, what and why, never a
    password or token (only the message type, the code and ids)."""
    if exc.code in _LOGGED_ELSEWHERE:
        return
    if isinstance(session, AgentSession):
        peer, agent = "agent", session.name or None
    else:
        peer, agent = ("caller" if isinstance(session, CallerSession) else "unknown"), None
    events.emit("refused", peer=peer, agent=agent, type=kind, code=exc.code, call_id=exc.call_id)
