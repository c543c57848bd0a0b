"""One object per WebSocket peer: an agent's phone or a customer's trunk.

A session validates each message (the codec), checks it is allowed in the
session's state, and hands it to the router or the connection manager. Any
refusal is answered with an ``error`` message naming the problem; the
session, its calls and its connection stay as they were.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agent_phone.cloud.config import dummy_hash, verify_password
from agent_phone.cloud.connections import RequestError
from agent_phone.cloud.media_edge import CustomerLeg, LinkError
from agent_phone.cloud.routing import Call, CallState
from agent_phone.protocol import (
    PROTOCOL_VERSION,
    AnswerCall,
    CallAccepted,
    CallerHangup,
    ConnectionAnswer,
    DeclineCall,
    EndConnection,
    Error,
    Hangup,
    Message,
    PlaceCall,
    PresenceChanged,
    SetPersistent,
    SetPresence,
    SignedIn,
    SignedOut,
    SignIn,
    SignOut,
)

if TYPE_CHECKING:
    from agent_phone.cloud.server import Platform

logger = logging.getLogger(__name__)

Send = Callable[[Message], None]


def _check_version(version: int) -> None:
    if version != PROTOCOL_VERSION:
        raise RequestError(
            "unsupported_version",
            f"protocol version {version} is not supported; this platform speaks {PROTOCOL_VERSION}",
        )


class AgentSession:
    """An agent's phone, from sign-in to sign-out."""

    def __init__(self, platform: Platform, send: Send, close: Callable[[], Awaitable[None]]):
        self._platform = platform
        self._send = send
        self._close_transport = close
        self.name = ""
        self.signed_in = False
        self.permissions: frozenset[str] = frozenset()
        self.persistent = True
        self.on_queue = False
        self.idle_since = time.monotonic()
        self.call: Call | None = None

    def __repr__(self) -> str:
        return f"<AgentSession {self.name or '?'}>"

    @property
    def available(self) -> bool:
        return self.signed_in and self.on_queue and self.call is None

    def send(self, message: Message) -> None:
        self._send(message)

    async def handle(self, message: Message) -> None:
        p = self._platform
        match message:
            case SignIn():
                await self._sign_in(message)
            case _ if not self.signed_in:
                raise RequestError("not_signed_in", "sign in first")
            case SetPresence(on_queue=on_queue):
                self.set_presence(on_queue, "requested")
            case ConnectionAnswer():
                p.connections.accept_answer(self, message)
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
            case SignOut():
                await self.sign_out("requested")
                await self._close_transport()
            case _:
                raise RequestError("invalid", f"{type(message).__name__} is not for the platform")

    async def _sign_in(self, message: SignIn) -> None:
        if self.signed_in:
            raise RequestError("already_signed_in", f"already signed in as {self.name}")
        _check_version(message.version)
        config = self._platform.config
        agent = config.agents.get(message.user)
        # Verify even for an unknown user so both take the same time.
        known_hash = agent.password_hash if agent else dummy_hash()
        ok = await asyncio.to_thread(verify_password, known_hash, message.password)
        if agent is None or not ok:
            self._platform.events.emit("sign_in_failed", user=message.user)
            raise RequestError("auth_failed", "wrong user name or password")
        previous = self._platform.agents.get(agent.name)
        if previous is not None:
            await previous.sign_out("signed_in_elsewhere")
            await previous._close_transport()
        self.name = agent.name
        self.permissions = agent.permissions
        self.persistent = message.persistent
        self.signed_in = True
        self.idle_since = time.monotonic()
        self._platform.agents[self.name] = self
        self.send(
            SignedIn(
                version=PROTOCOL_VERSION,
                agent=self.name,
                permissions=sorted(self.permissions),
                queues=config.queues_of(self.name),
                alert_timeout_s=config.alert_timeout_s,
                persistent_timeout_s=self._platform.connections.timeout_for(self.name),
            )
        )
        self._platform.events.emit(
            "agent_signed_in", agent=self.name, persistent=self.persistent, client=message.client
        )
        await self._platform.connections.signed_in(self)

    def set_presence(self, on_queue: bool, reason: str) -> None:
        changed = on_queue != self.on_queue
        self.on_queue = on_queue
        if on_queue and changed:
            self.idle_since = time.monotonic()
        self.send(PresenceChanged(on_queue=on_queue, reason=reason))
        if changed:
            self._platform.events.emit(
                "presence", agent=self.name, on_queue=on_queue, reason=reason
            )
        if on_queue:
            self._platform.router.dispatch()

    async def sign_out(self, reason: str) -> None:
        """Idempotent; the agent's call is saved and the connection closed (R11)."""
        if not self.signed_in:
            return
        self.signed_in = False
        self.on_queue = False
        p = self._platform
        if p.agents.get(self.name) is self:
            del p.agents[self.name]
        await p.router.agent_gone(self, reason)
        await p.connections.signed_out(self, reason)
        self.send(SignedOut(reason=reason))
        p.events.emit("agent_signed_out", agent=self.name, reason=reason)


class CallerSession:
    """A customer's trunk: places one call and may hang it up."""

    def __init__(self, platform: Platform, send: Send) -> None:
        self._platform = platform
        self._send = send
        self.call: Call | None = None
        self._open = True

    def send(self, message: Message) -> None:
        if self._open:
            self._send(message)

    async def handle(self, message: Message) -> None:
        router = self._platform.router
        match message:
            case PlaceCall():
                if self.call is not None:
                    raise RequestError("wrong_state", "this connection already placed a call")
                _check_version(message.version)
                if not router.has_queue(message.queue):
                    raise RequestError("unknown_queue", f"there is no queue {message.queue!r}")
                leg = CustomerLeg("pending")
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
                # Only a call whose customer can be heard is queued: an agent
                # is never handed a call with no customer on it.
                try:
                    await leg.wait_connected(self._platform.config.connect_timeout_s)
                except LinkError as exc:
                    self.call = None
                    await leg.close()
                    raise RequestError("media_failed", str(exc), call.id) from None
                if self._open:
                    router.enqueue(call)
            case CallerHangup(call_id=call_id):
                if self.call is None or self.call.id != call_id:
                    raise RequestError("unknown_call", f"you have no call {call_id!r}", call_id)
                await router.customer_hangup(self.call)
            case _:
                raise RequestError("invalid", f"{type(message).__name__} is not for the platform")

    async def gone(self) -> None:
        self._open = False
        if self.call is not None and self.call.state is not CallState.ENDED:
            await self._platform.router.customer_hangup(self.call)


def error_for(exc: RequestError, in_reply_to: str | None) -> Error:
    return Error(code=exc.code, message=exc.message, in_reply_to=in_reply_to, call_id=exc.call_id)
