"""Queues and routing: every customer call waits in a queue until an agent
takes it, and is never dropped because an agent did not (R12).

A call is routed to the on-queue member who has been idle longest. Routing an
agent with no connection first sets one up (R1) through the connection
manager; the call is then offered over it. Declined, unanswered and
undeliverable calls go back to the head of their queue.

An agent's outbound call (``dial``) is the same ``Call`` the other way
round: it rings the trunk that awaits calls to the number, over the agent's
connection (set up first when there is none: R1), and counts as activity
for the persistent connection's timeout (R11). It is never queued: when it
fails it ends, and the agent is told why.

A connected call from a queue with wrap-up codes leaves its agent in
after-call work (the agent's session keeps it: ``begin_after_call_work``),
so they are not ``available`` and nothing is routed to them until it ends.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from agent_phone.cloud.config import PlatformConfig, QueueConfig
from agent_phone.cloud.connections import AgentEndpoint, ConnectionManager
from agent_phone.cloud.customer_audio import DtmfBusy
from agent_phone.cloud.errors import RequestError
from agent_phone.cloud.events import EventLog
from agent_phone.cloud.media_edge import AgentLink, CustomerLeg, Hearing, LinkError
from agent_phone.cloud.media_paths import Bridge, MediaPath
from agent_phone.protocol import (
    CallConnected,
    CallEnded,
    CallHeld,
    CallOffered,
    CallRinging,
    IncomingCall,
    Message,
    QueuePosition,
)
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)


class CallState(enum.Enum):
    QUEUED = "queued"
    ROUTING = "routing"  # an agent is chosen; their connection may be setting up
    ALERTING = "alerting"
    #: An outbound call, ringing at the customer's end.
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass(eq=False)
class Call:
    queue: str
    caller: str
    leg: CustomerLeg
    #: Sends a message to the customer's trunk (no-op once it is gone).
    notify_customer: Callable[[Message], None]
    id: str = field(default_factory=lambda: "call-" + secrets.token_hex(6))
    state: CallState = CallState.QUEUED
    agent: RoutedAgent | None = None
    link: AgentLink | None = None
    attempt: int = 0
    enqueued_at: float = field(default_factory=time.monotonic)
    routed_at: float = 0.0
    answered_at: float = 0.0
    position: int = 0
    #: Agents who declined it, and until when they are skipped for it.
    declined_by: dict[str, float] = field(default_factory=dict)
    alert_timer: asyncio.TimerHandle | None = None
    #: On hold (connected calls only): the customer hears the hold music.
    held: bool = False
    #: ``inbound`` (from a queue) or ``outbound`` (dialed by ``agent``).
    direction: str = "inbound"
    #: The answering customer's trunk, for an outbound call.
    callee: Callee | None = None
    #: Who hears whom while the call is connected (media_paths.py).
    path: MediaPath | None = None

    @property
    def outbound(self) -> bool:
        return self.direction == "outbound"


class Callee(Protocol):
    """A trunk that awaits calls to a number (``agent-phone-caller --answer``)."""

    number: str
    #: The call ringing or connected at it.
    call: Call | None

    def send(self, message: Message) -> None: ...


class RoutedAgent(AgentEndpoint, Protocol):
    """What routing needs of a signed-in agent's session."""

    #: Monotonic time the agent last became free (the longest idle goes first).
    idle_since: float
    #: The call the agent has, routed, alerting or connected.
    call: Call | None

    @property
    def on_queue(self) -> bool: ...

    @property
    def available(self) -> bool: ...

    def set_status(self, status: str, reason: str, cause: str) -> None: ...

    def begin_after_call_work(self, call_id: str, queue: QueueConfig) -> None: ...


def _nobody(_message: Message) -> None:
    """Where a call's messages to the customer go before they are told of it."""


class Router:
    def __init__(
        self,
        config: PlatformConfig,
        events: EventLog,
        connections: ConnectionManager,
        agents: Callable[[], Iterable[RoutedAgent]],
    ) -> None:
        self._config = config
        self._events = events
        self._connections = connections
        self._agents = agents
        self._queues: dict[str, deque[Call]] = {name: deque() for name in config.queues}
        self.calls: dict[str, Call] = {}
        self._tasks = TaskSet("router")
        self._dispatch_pending = False
        connections.on_link_lost = self._link_lost

    # --- queues ----------------------------------------------------------------

    def has_queue(self, name: str) -> bool:
        return name in self._queues

    def enqueue(self, call: Call) -> None:
        self.calls[call.id] = call
        self._queues[call.queue].append(call)
        self._update_positions(call.queue)
        self._events.emit(
            "call_queued",
            call_id=call.id,
            queue=call.queue,
            caller=call.caller,
            position=call.position,
        )
        self.dispatch()

    def _requeue(self, call: Call, reason: str) -> None:
        """Back to the head of its queue: it has waited longest."""
        agent = call.agent.name if call.agent else None
        call.state = CallState.QUEUED
        call.agent = None
        call.link = None
        call.held = False
        self._cut(call)
        # The customer hears the waiting tone again until the next agent answers.
        call.leg.hear(Hearing.WAITING)
        call.attempt += 1
        self._cancel_alert(call)
        self._queues[call.queue].appendleft(call)
        call.position = 0  # the customer is told the position again, even if it is 1
        self._update_positions(call.queue)
        self._events.emit(
            "call_requeued", call_id=call.id, agent=agent, reason=reason, position=call.position
        )

    def _update_positions(self, queue: str) -> None:
        for index, call in enumerate(self._queues[queue], start=1):
            if call.position != index:
                call.position = index
                call.notify_customer(QueuePosition(call_id=call.id, position=index))

    # --- routing ---------------------------------------------------------------

    def dispatch(self) -> None:
        """Route what can be routed, soon (coalesced, never re-entrant)."""
        if not self._dispatch_pending:
            self._dispatch_pending = True
            asyncio.get_running_loop().call_soon(self._dispatch_now)

    def _dispatch_now(self) -> None:
        self._dispatch_pending = False
        # Oldest waiting call first, across queues.
        heads = sorted((q for q in self._queues.values() if q), key=lambda q: q[0].enqueued_at)
        for queue in heads:
            while queue:
                call = queue[0]
                agent = self._pick_agent(call)
                if agent is None:
                    break
                queue.popleft()
                self._update_positions(call.queue)
                self._start_delivery(call, agent)

    def _pick_agent(self, call: Call) -> RoutedAgent | None:
        now = time.monotonic()
        members = self._config.queues[call.queue].members
        candidates = [
            a
            for a in self._agents()
            if a.available and a.name in members and call.declined_by.get(a.name, 0.0) <= now
        ]
        return min(candidates, key=lambda a: a.idle_since, default=None)

    def _start_delivery(self, call: Call, agent: RoutedAgent) -> None:
        call.state = CallState.ROUTING
        call.agent = agent
        call.routed_at = time.monotonic()
        agent.call = call
        self._connections.begin_call(agent)
        self._events.emit(
            "call_routed",
            call_id=call.id,
            agent=agent.name,
            queue=call.queue,
            wait_s=round(call.routed_at - call.enqueued_at, 3),
        )
        self._tasks.spawn(self._deliver(call, agent, call.attempt), f"deliver-{call.id}")

    async def _deliver(self, call: Call, agent: RoutedAgent, attempt: int) -> None:
        existing = self._connections.active_link(agent.name)
        try:
            link = await self._connections.establish(agent, "call")
        except LinkError as exc:
            await self._release(agent, call)
            if call.attempt == attempt and call.state is CallState.ROUTING:
                self._requeue(call, "connection_failed")
                self._set_not_responding(agent, "connection_failed")
                logger.warning("%s: could not reach %s: %s", call.id, agent.name, exc)
            self.dispatch()
            return
        if call.attempt != attempt or call.state is not CallState.ROUTING or agent.call is not call:
            # Cancelled by the customer, or the agent left, while connecting:
            # the connection is kept or closed like after any call.
            await self._release(agent, call)
            self.dispatch()
            return
        over, delivery_ms = self._carried(call, agent, existing, link, CallState.ALERTING)
        agent.send(
            CallOffered(
                call_id=call.id,
                caller=call.caller,
                queue=call.queue,
                connection_id=link.id,
                over_persistent_connection=over,
                alert_timeout_s=self._config.alert_timeout_s,
                delivery_ms=delivery_ms,
            )
        )
        self._events.emit(
            "call_delivered",
            call_id=call.id,
            agent=agent.name,
            connection_id=link.id,
            over_persistent_connection=over,
            delivery_ms=delivery_ms,
            dtls_transport=link.dtls_transport,
        )
        call.alert_timer = asyncio.get_running_loop().call_later(
            self._config.alert_timeout_s, self._alert_timed_out, call, attempt
        )

    def _carried(
        self,
        call: Call,
        agent: RoutedAgent,
        existing: AgentLink | None,
        link: AgentLink,
        state: CallState,
    ) -> tuple[bool, float]:
        """The call is on the agent's connection now, ``state`` (alerting or
        ringing): whether that connection was the kept one, and how long it
        took from routing (or dialing) in ms."""
        over = existing is not None and existing is link
        delivery_ms = round((time.monotonic() - call.routed_at) * 1000, 2)
        call.link = link
        call.state = state
        self._connections.call_delivered(agent, link)
        return over, delivery_ms

    # --- outbound calls ----------------------------------------------------------

    def dial(self, agent: RoutedAgent, call_id: str, number: str, callee: Callee | None) -> Call:
        """The agent calls ``number``: rings ``callee`` (the trunk awaiting
        calls to it) once the agent's connection is up."""
        if call_id in self.calls:
            raise RequestError("invalid", f"the call id {call_id!r} is taken", call_id)
        if agent.call is not None:
            raise RequestError(
                "wrong_state", f"you are on call {agent.call.id!r}; end it first", call_id
            )
        if callee is None:
            raise RequestError("unknown_number", f"{number} cannot be reached", call_id)
        if callee.call is not None:
            raise RequestError("busy", f"{number} is on another call", call_id)
        call = Call(
            queue="",
            caller=number,
            leg=CustomerLeg(call_id),
            notify_customer=_nobody,
            id=call_id,
            state=CallState.ROUTING,
            agent=agent,
            direction="outbound",
            callee=callee,
        )
        call.routed_at = time.monotonic()
        self.calls[call.id] = call
        agent.call = call
        callee.call = call
        # Activity for the persistent connection (R11): its timeout stops
        # now, and starts again from the end of this call.
        self._connections.begin_call(agent)
        self._events.emit("call_dialed", call_id=call.id, agent=agent.name, number=number)
        self._tasks.spawn(self._ring(call, agent, callee), f"dial-{call.id}")
        return call

    async def _ring(self, call: Call, agent: RoutedAgent, callee: Callee) -> None:
        existing = self._connections.active_link(agent.name)
        try:
            link = await self._connections.establish(agent, "call")
        except LinkError as exc:
            logger.warning("%s: could not reach %s: %s", call.id, agent.name, exc)
            await self.end_call(call, "connection_failed")
            await self._release(agent, call)
            return
        if call.state is not CallState.ROUTING or agent.call is not call:
            await self._release(agent, call)  # hung up while the connection was set up
            return
        over, delivery_ms = self._carried(call, agent, existing, link, CallState.RINGING)
        call.notify_customer = callee.send
        callee.send(IncomingCall(call_id=call.id, number=call.caller, agent=agent.name))
        agent.send(
            CallRinging(
                call_id=call.id,
                number=call.caller,
                connection_id=link.id,
                over_persistent_connection=over,
                delivery_ms=delivery_ms,
            )
        )
        self._events.emit(
            "call_ringing",
            call_id=call.id,
            agent=agent.name,
            number=call.caller,
            connection_id=link.id,
            over_persistent_connection=over,
            delivery_ms=delivery_ms,
            dtls_transport=link.dtls_transport,
        )
        call.alert_timer = asyncio.get_running_loop().call_later(
            self._config.ring_timeout_s, self._ring_timed_out, call
        )

    def _ring_timed_out(self, call: Call) -> None:
        call.alert_timer = None
        if call.state is CallState.RINGING:
            self._tasks.spawn(self.end_call(call, "no_answer"), f"no-answer-{call.id}")

    def _callees_call(self, callee: Callee, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None or call.callee is not callee or call.state is CallState.ENDED:
            raise RequestError("unknown_call", f"no call {call_id!r} rings here", call_id)
        if call.state is not CallState.RINGING:
            raise RequestError(
                "wrong_state", f"call {call_id!r} is {call.state.value}, not ringing", call_id
            )
        return call

    async def accept_incoming(self, callee: Callee, call_id: str, sdp: str) -> tuple[Call, str]:
        """The customer answers: their leg answers their offer (the call
        connects once its media does: ``connect_outbound``)."""
        call = self._callees_call(callee, call_id)
        self._cancel_alert(call)
        try:
            answer = await call.leg.answer(sdp)
        except Exception as exc:  # garbage SDP: the call cannot go on
            await self.end_call(call, "media_failed")
            raise RequestError("invalid", f"unusable SDP offer: {exc!r}"[:300], call_id) from None
        return call, answer

    def connect_outbound(self, call: Call) -> None:
        """The customer's media is up: bridge it to the agent's connection."""
        agent = call.agent
        if call.state is not CallState.RINGING or agent is None or call.link is None:
            return
        call.state = CallState.CONNECTED
        call.answered_at = time.monotonic()
        self._bridge(call)
        agent.send(CallConnected(call_id=call.id, agent=call.caller))
        call.notify_customer(CallConnected(call_id=call.id, agent=agent.name))
        self._events.emit(
            "call_answered",
            call_id=call.id,
            agent=agent.name,
            answer_ms=round((call.answered_at - call.routed_at) * 1000, 2),
            direction=call.direction,
        )

    # --- media: who hears whom -----------------------------------------------------

    def _bridge(self, call: Call) -> None:
        """The customer and the agent hear each other."""
        assert call.link is not None
        self._cut(call)
        call.path = Bridge(call.leg, call.link)

    def _cut(self, call: Call) -> None:
        if call.path is not None:
            call.path.close()
            call.path = None

    def _release_link(self, call: Call) -> None:
        """The call leaves the agent's connection, which sends nothing again
        until their next call."""
        self._cut(call)
        if call.link is not None:
            call.link.hear(Hearing.NOTHING)

    # --- the agent's answers ---------------------------------------------------

    def _own_call(self, agent: RoutedAgent, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None or call.state is CallState.ENDED:
            raise RequestError("unknown_call", f"there is no call {call_id!r}", call_id)
        if call.agent is not agent:
            raise RequestError("not_your_call", f"call {call_id!r} is not offered to you", call_id)
        return call

    def answer(self, agent: RoutedAgent, call_id: str) -> None:
        call = self._own_call(agent, call_id)
        if call.state is not CallState.ALERTING:
            raise RequestError(
                "wrong_state", f"call {call_id!r} is {call.state.value}, not alerting", call_id
            )
        assert call.link is not None
        self._cancel_alert(call)
        call.state = CallState.CONNECTED
        call.answered_at = time.monotonic()
        self._bridge(call)
        agent.send(CallConnected(call_id=call.id, agent=agent.name))
        call.notify_customer(CallConnected(call_id=call.id, agent=agent.name))
        self._events.emit(
            "call_answered",
            call_id=call.id,
            agent=agent.name,
            answer_ms=round((call.answered_at - call.routed_at) * 1000, 2),
        )

    async def decline(self, agent: RoutedAgent, call_id: str) -> None:
        call = self._own_call(agent, call_id)
        if call.state is not CallState.ALERTING:
            raise RequestError(
                "wrong_state", f"call {call_id!r} is {call.state.value}, not alerting", call_id
            )
        # Skipped for this call while other agents may take it; offered to
        # them again only after an alert timeout.
        call.declined_by[agent.name] = time.monotonic() + self._config.alert_timeout_s
        await self._take_back(call, agent, "declined")
        self.dispatch()
        # When nobody else can take it, try again once the decline expires.
        asyncio.get_running_loop().call_later(self._config.alert_timeout_s, self.dispatch)

    def _alert_timed_out(self, call: Call, attempt: int) -> None:
        call.alert_timer = None
        if call.attempt != attempt or call.state is not CallState.ALERTING or call.agent is None:
            return
        agent = call.agent
        self._set_not_responding(agent, "not_responding")
        self._tasks.spawn(self._take_back(call, agent, "alert_timeout"), "alert-timeout")
        self.dispatch()

    async def _take_back(self, call: Call, agent: RoutedAgent, reason: str) -> None:
        """An offered call goes back to its queue; the agent's leg of it ends."""
        self._requeue(call, reason)
        agent.send(CallEnded(call_id=call.id, reason=reason))
        await self._release(agent, call)
        self.dispatch()

    async def _release(self, agent: RoutedAgent, call: Call) -> None:
        """The agent's part in ``call`` is over. They stay busy until their
        connection is kept or closed, so no new call is routed onto a
        connection that is being torn down."""
        try:
            await self._connections.call_finished(agent)
        finally:
            if agent.call is call:
                agent.call = None
                agent.idle_since = time.monotonic()

    def _set_not_responding(self, agent: RoutedAgent, reason: str) -> None:
        if agent.on_queue:
            agent.set_status("not_responding", "", reason)

    # --- hold and DTMF -----------------------------------------------------------

    def _connected_call(self, agent: RoutedAgent, call_id: str, what: str) -> Call:
        call = self._own_call(agent, call_id)
        if call.state is not CallState.CONNECTED or call.link is None:
            raise RequestError(
                "wrong_state", f"call {call_id!r} is {call.state.value}; {what}", call_id
            )
        return call

    def hold(self, agent: RoutedAgent, call_id: str, on: bool) -> None:
        """Hold or take off hold; the media edge cuts or restores the bridge."""
        verb = "hold" if on else "unhold"
        call = self._connected_call(agent, call_id, f"only a connected call can {verb}")
        if call.held == on:
            state = "already on hold" if on else "not on hold"
            raise RequestError("wrong_state", f"call {call_id!r} is {state}", call_id)
        assert call.link is not None
        call.held = on
        if on:
            # Cut both ways here, on the platform, whatever the phone does:
            # the customer hears the hold music, the agent nothing.
            self._cut(call)
            call.leg.hear(Hearing.HOLD)
            call.link.hear(Hearing.NOTHING)
        else:
            self._bridge(call)
        logger.info("%s: %s", call.id, "held" if on else "resumed")
        agent.send(CallHeld(call_id=call.id, on=on))
        self._events.emit("call_held", call_id=call.id, agent=agent.name, on=on)

    def send_dtmf(self, agent: RoutedAgent, call_id: str, digits: str) -> None:
        """Play the digits to the customer in band; refused while the call is held."""
        call = self._connected_call(agent, call_id, "DTMF needs a connected call")
        if call.held:
            raise RequestError(
                "wrong_state", f"call {call_id!r} is on hold; take it off hold first", call_id
            )
        try:
            seconds = call.leg.feed.play_dtmf(digits)
        except ValueError as exc:  # the codec checks too; this is the same rule
            raise RequestError("invalid", str(exc), call_id) from None
        except DtmfBusy as exc:
            raise RequestError("wrong_state", str(exc), call_id) from None
        self._events.emit(
            "dtmf", call_id=call.id, agent=agent.name, digits=digits, duration_s=seconds
        )

    # --- ending calls ----------------------------------------------------------

    async def agent_hangup(self, agent: RoutedAgent, call_id: str, requeue: bool = False) -> None:
        call = self._own_call(agent, call_id)
        if call.outbound:
            # Hung up in any state (dialing, ringing, connected); with no
            # queue to go back to, a phone that cannot carry it ends it.
            await self.end_call(call, "phone_failure" if requeue else "agent_hangup")
            return
        if call.state is not CallState.CONNECTED:
            raise RequestError(
                "wrong_state",
                f"call {call_id!r} is {call.state.value}; decline a call that is alerting",
                call_id,
            )
        if requeue:
            # The agent's phone cannot carry it: the customer waits for the
            # next agent, and this one takes no calls until back on queue.
            self._set_not_responding(agent, "phone_failure")
            if call.link is not None:
                self._release_link(call)
            await self._take_back(call, agent, "phone_failure")
            return
        await self.end_call(call, "agent_hangup")

    async def customer_hangup(self, call: Call) -> None:
        ringing = call.outbound and call.state is CallState.RINGING
        await self.end_call(call, "declined" if ringing else "customer_hangup")

    async def end_call(self, call: Call, reason: str) -> None:
        if call.state is CallState.ENDED:
            return
        previous = call.state
        call.state = CallState.ENDED
        self._cancel_alert(call)
        queue = self._queues.get(call.queue)
        if queue is not None and call in queue:
            queue.remove(call)
            self._update_positions(call.queue)
        agent = call.agent
        # A call still routing is released by its delivery task.
        if agent is not None and agent.call is call:
            if previous in (CallState.ALERTING, CallState.RINGING, CallState.CONNECTED) or (
                call.outbound  # the agent's phone is dialing it
            ):
                agent.send(CallEnded(call_id=call.id, reason=reason))
            if previous is CallState.CONNECTED and not call.outbound:
                # After-call work, where the queue has it: nothing is routed
                # to the agent until they wrap up (sessions.py).
                agent.begin_after_call_work(call.id, self._config.queues[call.queue])
            if previous is CallState.CONNECTED and call.link is not None:
                self._release_link(call)
            if previous is not CallState.ROUTING:
                await self._release(agent, call)
        if call.callee is not None and call.callee.call is call:
            call.callee.call = None
        call.notify_customer(CallEnded(call_id=call.id, reason=reason))
        await call.leg.close()
        self.calls.pop(call.id, None)
        talk_s = time.monotonic() - call.answered_at if call.answered_at else 0.0
        self._events.emit(
            "call_ended",
            call_id=call.id,
            reason=reason,
            agent=agent.name if agent else None,
            talk_s=round(talk_s, 3),
            direction=call.direction,
        )
        self.dispatch()

    async def agent_gone(self, agent: RoutedAgent, reason: str) -> None:
        """The agent signed out or their phone vanished: save their call."""
        call = agent.call
        if call is None:
            return
        agent.call = None
        if call.state is CallState.CONNECTED and call.link is not None:
            self._release_link(call)
        if call.outbound:  # nobody else can carry the agent's own call
            await self.end_call(call, reason)
            return
        if call.state in (CallState.ROUTING, CallState.ALERTING, CallState.CONNECTED):
            self._requeue(call, reason)
            self.dispatch()

    def _link_lost(self, name: str, link: AgentLink, reason: str) -> None:
        agent = next((a for a in self._agents() if a.name == name), None)
        if agent is None:
            return
        call = agent.call
        if call is not None and call.link is link and call.outbound:
            agent.call = None
            agent.send(CallEnded(call_id=call.id, reason="connection_lost"))
            self._tasks.spawn(self.end_call(call, "connection_lost"), f"lost-{call.id}")
            return
        if call is not None and call.link is link and call.state is not CallState.ENDED:
            agent.call = None
            agent.send(CallEnded(call_id=call.id, reason="connection_lost"))
            # The phone stopped answering mid-delivery: don't route the
            # customer straight back to it.
            self._set_not_responding(agent, "connection_lost")
            self._requeue(call, "connection_lost")
            self.dispatch()

    def _cancel_alert(self, call: Call) -> None:
        if call.alert_timer is not None:
            call.alert_timer.cancel()
            call.alert_timer = None

    def queued(self, queue: str) -> list[Call]:
        return list(self._queues[queue])

    async def close(self) -> None:
        for call in list(self.calls.values()):
            await self.end_call(call, "shutdown")
        await self._tasks.close()
