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

Call waiting: an agent may be in ``MAX_CALLS`` calls at once, one of them
live on their connection and the others held (the customer hears the hold
music). A queue's call never waits: it goes to a free agent. A call another
agent offers (an internal call, a transfer, a consult, a conference) may
wait for an agent whose calls are all connected; answering it puts their
live call on hold first, as taking a held call off hold does: one call is
live at a time, and the connection carries that one.
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
from typing import Literal, Protocol

from agent_phone.cloud.config import PlatformConfig, QueueConfig
from agent_phone.cloud.connections import AgentEndpoint, ConnectionManager
from agent_phone.cloud.customer_audio import DtmfBusy
from agent_phone.cloud.errors import RequestError
from agent_phone.cloud.events import EventLog
from agent_phone.cloud.media_edge import AgentLink, CustomerLeg, Hearing, LinkError, MediaParty
from agent_phone.cloud.media_paths import MediaPath, join
from agent_phone.protocol import (
    CallConnected,
    CallEnded,
    CallHeld,
    CallOffered,
    CallRinging,
    DtmfReceived,
    IncomingCall,
    Message,
    PartyChanged,
    QueuePosition,
)
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)

#: Calls one agent can be in at once: one live, the other held or waiting.
MAX_CALLS = 2


class CallState(enum.Enum):
    QUEUED = "queued"
    ROUTING = "routing"  # an agent is chosen; their connection may be setting up
    ALERTING = "alerting"
    #: An outbound call, ringing at the customer's end.
    RINGING = "ringing"
    CONNECTED = "connected"
    ENDED = "ended"


class PartyState(enum.Enum):
    ROUTING = "routing"  # their connection may be setting up
    ALERTING = "alerting"
    CONNECTED = "connected"


@dataclass(eq=False)
class Party:
    """Someone in a call besides its customer and its agent (``Call.agent``):
    an agent (``agent``, over their ``link``) or an outside number (the
    trunk ``callee`` that awaits calls to it, over ``leg``), consulted
    before a transfer, in a conference, or taking a blind transfer."""

    #: ``consult``, ``conference``, ``transfer`` (blind, to a number) or
    #: ``internal`` (the agent an internal call is to).
    role: str
    agent: RoutedAgent | None = None
    callee: Callee | None = None
    number: str = ""
    state: PartyState = PartyState.ROUTING
    link: AgentLink | None = None
    leg: CustomerLeg | None = None
    invited_at: float = field(default_factory=time.monotonic)
    alert_timer: asyncio.TimerHandle | None = None
    #: Its offer task is setting up the agent's connection: that task, not
    #: whoever takes the party off the call meanwhile, releases the agent.
    offering: bool = False

    @property
    def name(self) -> str:
        return self.agent.name if self.agent is not None else self.number

    @property
    def media(self) -> MediaParty | None:
        return self.link if self.agent is not None else self.leg


@dataclass(eq=False)
class Call:
    queue: str
    caller: str
    #: The customer's leg (None for an internal call: two agents).
    leg: CustomerLeg | None
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
    #: ``inbound`` (from a queue), ``outbound`` (dialed by ``agent`` to a number)
    #: or ``internal`` (to another agent).
    direction: str = "inbound"
    #: The answering customer's trunk, for an outbound call.
    callee: Callee | None = None
    #: Who hears whom while the call is connected (media_paths.py).
    path: MediaPath | None = None
    #: Other agents in the call: consulted, or in a conference.
    parties: list[Party] = field(default_factory=list)
    #: The agent who transferred it blind, while it is offered to the next.
    offered_by: str = ""

    def party(self, agent: RoutedAgent) -> Party | None:
        return next((p for p in self.parties if p.agent is agent), None)

    @property
    def placed_by_agent(self) -> bool:
        """Placed by its agent (to a number, or to another agent): never
        queued, and ended rather than handed to someone else when it fails."""
        return self.direction in ("outbound", "internal")

    @property
    def internal(self) -> bool:
        return self.direction == "internal"

    @property
    def agent_talks(self) -> bool:
        """Its agent talks in it: it is not held, or it is held only for the
        customer while the agent talks with another (a consult)."""
        return not self.held or any(p.state is PartyState.CONNECTED for p in self.parties)

    @property
    def customer(self) -> CustomerLeg:
        """The customer's leg, for what only calls with a customer do."""
        if self.leg is None:
            raise RequestError("wrong_state", f"call {self.id!r} has no customer on it", self.id)
        return self.leg


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
    #: The calls the agent is in (their own, or as another agent on one),
    #: from routing to their end: at most ``MAX_CALLS``.
    calls: list[Call]

    @property
    def on_queue(self) -> bool: ...

    @property
    def available(self) -> bool: ...

    @property
    def reachable(self) -> bool:
        """Signed in, their socket up, and not in after-call work: may be
        offered a call by another agent (waiting, if they are on one),
        whatever their status."""

    def set_status(self, status: str, reason: str, cause: str) -> None: ...

    def begin_after_call_work(self, call_id: str, queue: QueueConfig) -> None: ...


def _take(agent: RoutedAgent, call: Call) -> None:
    """``agent`` is in ``call`` from now: routed it, offered it, placing it."""
    if call not in agent.calls:
        agent.calls.append(call)


def _leave(agent: RoutedAgent, call: Call) -> None:
    if call in agent.calls:
        agent.calls.remove(call)


def _party_on(call: Call, leg: CustomerLeg) -> Party | None:
    """The number whose leg ``leg`` is (None: the customer's own leg)."""
    return next((p for p in call.parties if p.leg is leg), None)


def _need_customer(call: Call, why: str) -> None:
    if call.leg is None:
        raise RequestError("wrong_state", why, call.id)


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
        if call.leg is not None:
            self._watch(call, call.leg)
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
        call.offered_by = ""
        self._cut(call)
        self._drop_parties(call, reason)
        # The customer hears the waiting tone again until the next agent answers.
        call.customer.hear(Hearing.WAITING)
        call.attempt += 1
        self._cancel_alert(call)
        self._queues[call.queue].appendleft(call)
        call.position = 0  # the customer is told the position again, even if it is 1
        self._update_positions(call.queue)
        self._events.emit(
            "call_requeued", call_id=call.id, agent=agent, reason=reason, position=call.position
        )

    def _watch(self, call: Call, leg: CustomerLeg) -> None:
        """What a customer's (or a number's) leg of ``call`` says for itself:
        its media died (a customer's call ends ``customer_media_lost``, a
        number added to it is gone: ``media_lost``), a key was pressed."""
        leg.on_dead = lambda _leg, why: self._leg_dead(call, leg, why)
        leg.on_dtmf = lambda _leg, digit: self._leg_dtmf(call, leg, digit)

    def _leg_dtmf(self, call: Call, leg: CustomerLeg, digit: str) -> None:
        """A key pressed by the customer (or a number on the call): the
        agents talking with them are told (``dtmf_received``)."""
        if call.state is CallState.ENDED:
            return
        party = _party_on(call, leg)
        self._events.emit(
            "dtmf_received",
            call_id=call.id,
            digit=digit,
            party=party.name if party is not None else None,
        )
        agents = [call.agent] if call.agent is not None else []
        agents += [p.agent for p in call.parties if p.agent and p.state is PartyState.CONNECTED]
        if call.state is CallState.CONNECTED:
            for agent in agents:
                agent.send(DtmfReceived(call_id=call.id, digit=digit))

    def _leg_dead(self, call: Call, leg: CustomerLeg, why: str) -> None:
        if call.state is CallState.ENDED:
            return
        party = _party_on(call, leg)
        self._events.emit(
            "customer_media_lost",
            call_id=call.id,
            why=why,
            party=party.name if party is not None else None,
        )
        if party is not None:
            self._tasks.spawn(self._party_gone(call, party, "media_lost"), f"lost-{call.id}")
        elif leg is call.leg:
            self._tasks.spawn(self.end_call(call, "customer_media_lost"), f"lost-{call.id}")

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
        _take(agent, call)
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
        if (
            call.attempt != attempt
            or call.state is not CallState.ROUTING
            or (call not in agent.calls)
        ):
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
                from_agent=call.offered_by,
                purpose="transfer" if call.offered_by else "",
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

    def _can_place(self, agent: RoutedAgent, call_id: str) -> None:
        """The agent may place a call: their other calls (if any) are on hold."""
        if call_id in self.calls:
            raise RequestError("invalid", f"the call id {call_id!r} is taken", call_id)
        if len(agent.calls) >= MAX_CALLS:
            raise RequestError(
                "wrong_state", f"you are on {len(agent.calls)} calls; end one first", call_id
            )
        for other in agent.calls:
            if not (other.agent is agent and other.state is CallState.CONNECTED and other.held):
                raise RequestError(
                    "wrong_state", f"you are on call {other.id!r}; hold it first", call_id
                )

    def _place(self, call: Call, agent: RoutedAgent, ring: Callable[[], None]) -> Call:
        """The agent's own call (to a number, to another agent) is theirs
        from now on; once their connection is up (set up first when there is
        none: R1), ``ring`` rings the far end and the phone is told."""
        call.routed_at = time.monotonic()
        self.calls[call.id] = call
        _take(agent, call)
        # Activity for the persistent connection (R11): its timeout stops
        # now, and starts again from the end of this call.
        self._connections.begin_call(agent)
        self._tasks.spawn(self._ring(call, agent, ring), f"dial-{call.id}")
        return call

    def dial(self, agent: RoutedAgent, call_id: str, number: str, callee: Callee | None) -> Call:
        """The agent calls ``number``: rings ``callee`` (the trunk awaiting
        calls to it) once the agent's connection is up."""
        self._can_place(agent, call_id)
        if callee is None:
            raise RequestError("unknown_number", f"{number} cannot be reached", call_id)
        if callee.call is not None:
            raise RequestError("busy", f"{number} is on another call", call_id)
        call = Call(
            queue="",
            caller=number,
            leg=CustomerLeg(call_id, media_timeout_s=self._config.customer_media_timeout_s),
            notify_customer=_nobody,
            id=call_id,
            state=CallState.ROUTING,
            agent=agent,
            direction="outbound",
            callee=callee,
        )
        callee.call = call
        assert call.leg is not None
        self._watch(call, call.leg)

        def ring() -> None:
            call.notify_customer = callee.send
            callee.send(IncomingCall(call_id=call.id, number=number, agent=agent.name))
            call.alert_timer = asyncio.get_running_loop().call_later(
                self._config.ring_timeout_s, self._ring_timed_out, call
            )

        self._events.emit("call_dialed", call_id=call.id, agent=agent.name, number=number)
        return self._place(call, agent, ring)

    def dial_agent(self, agent: RoutedAgent, call_id: str, name: str) -> Call:
        """The agent calls another agent by name (an internal call): their
        phone is offered it over their connection, as a call from a queue."""
        self._can_place(agent, call_id)
        target = self._target(agent, name, call_id)
        call = Call(
            queue="",
            caller=name,
            leg=None,
            notify_customer=_nobody,
            id=call_id,
            state=CallState.ROUTING,
            agent=agent,
            direction="internal",
        )
        party = Party("internal", agent=target)
        call.parties.append(party)
        # The agent called is taken for this call from now: no queue's call
        # reaches them while the caller's connection sets up.
        _take(target, call)
        self._connections.begin_call(target)
        self._events.emit(
            "call_dialed",
            call_id=call.id,
            agent=agent.name,
            number="",
            to=name,
            direction="internal",
        )
        return self._place(call, agent, lambda: self._invite(call, party))

    async def _ring(self, call: Call, agent: RoutedAgent, ring: Callable[[], None]) -> None:
        existing = self._connections.active_link(agent.name)
        try:
            link = await self._connections.establish(agent, "call")
        except LinkError as exc:
            logger.warning("%s: could not reach %s: %s", call.id, agent.name, exc)
            await self.end_call(call, "connection_failed")
            await self._release(agent, call)
            return
        if call.state is not CallState.ROUTING or call not in agent.calls:
            await self._release(agent, call)  # hung up while the connection was set up
            return
        over, delivery_ms = self._carried(call, agent, existing, link, CallState.RINGING)
        ring()
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
            direction=call.direction,
        )

    def _ring_timed_out(self, call: Call) -> None:
        call.alert_timer = None
        if call.state is CallState.RINGING:
            self._tasks.spawn(self.end_call(call, "no_answer"), f"no-answer-{call.id}")

    def _ringing_here(self, callee: Callee, call_id: str) -> tuple[Call, Party | None]:
        """The call ringing at ``callee``: as the far end of an agent's
        outbound call (None), or as a party added to a call (a transfer, a
        consult, a conference)."""
        call = self.calls.get(call_id)
        if call is None or call.state is CallState.ENDED or callee.call is not call:
            raise RequestError("unknown_call", f"no call {call_id!r} rings here", call_id)
        party = next((p for p in call.parties if p.callee is callee), None)
        state = party.state.value if party is not None else call.state.value
        if state != ("alerting" if party is not None else "ringing"):
            raise RequestError("wrong_state", f"call {call_id!r} is {state}, not ringing", call_id)
        return call, party

    async def accept_incoming(self, callee: Callee, call_id: str, sdp: str) -> str:
        """The trunk answers the call ringing at it, with its leg's offer:
        the platform's answer. Its media connects next (``incoming_media``)."""
        call, party = self._ringing_here(callee, call_id)
        leg = party.leg if party is not None else call.leg
        assert leg is not None
        if party is not None and party.alert_timer is not None:
            party.alert_timer.cancel()
            party.alert_timer = None
        elif party is None:
            self._cancel_alert(call)
        try:
            return await leg.answer(sdp)
        except Exception as exc:  # garbage SDP: the call cannot go on
            if party is not None:
                await self._party_gone(call, party, "media_failed")
            else:
                await self.end_call(call, "media_failed")
            raise RequestError("invalid", f"unusable SDP offer: {exc!r}"[:300], call_id) from None

    async def incoming_media(self, callee: Callee, call_id: str) -> None:
        """Once the answering trunk's media is up, it joins the call."""
        call, party = self._ringing_here(callee, call_id)
        leg = party.leg if party is not None else call.leg
        assert leg is not None
        try:
            await leg.wait_connected(self._config.connect_timeout_s)
        except LinkError as exc:
            if party is not None:
                await self._party_gone(call, party, "media_failed")
            else:
                await self.end_call(call, "media_failed")
            raise RequestError("media_failed", str(exc), call_id) from None
        if party is not None:
            if party in call.parties and party.state is PartyState.ALERTING:
                self._party_answered(call, party)
        else:
            self.connect_outbound(call)

    async def trunk_hangup(self, trunk: Callee | None, call: Call) -> None:
        """A customer's trunk hangs up: the customer's, or a number added to
        the call, which then leaves it."""
        party = next((p for p in call.parties if p.callee is trunk), None) if trunk else None
        if party is not None:
            ringing = party.state is PartyState.ALERTING
            await self._party_gone(call, party, "declined" if ringing else "hangup")
        else:
            await self.customer_hangup(call)

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
        """Join the call's parties as it stands now: the customer (unless
        held: then the hold music), its agent, and any other agent on it. Two
        are bridged, three mixed; an agent left alone hears nothing."""
        self._cut(call)
        speakers: list[MediaParty] = []
        if call.leg is None:
            pass  # agents only
        elif call.held:
            call.leg.hear(Hearing.HOLD)
        else:
            speakers.append(call.leg)
        others = [
            p.media for p in call.parties if p.state is PartyState.CONNECTED and p.media is not None
        ]
        if call.link is not None and call.agent_talks:
            speakers.append(call.link)
        speakers += others
        if len(speakers) >= 2:
            call.path = join(speakers)
            logger.info("%s: %r", call.id, call.path)
        elif speakers and speakers[0] is call.leg:
            call.leg.hear(Hearing.HOLD)
        if call.link is not None and call.link not in speakers:
            self._quiet(call.agent, call.link, call)

    def _quiet(self, agent: RoutedAgent | None, link: AgentLink, call: Call) -> None:
        """``link`` hears nothing of ``call`` any more: silence, unless
        another of its agent's calls is live on it (call waiting)."""
        others = agent.calls if agent is not None else []
        if not any(c is not call and c.path is not None and link in c.path.parties for c in others):
            link.hear(Hearing.NOTHING)

    def _cut(self, call: Call) -> None:
        if call.path is not None:
            call.path.close()
            call.path = None

    def _release_link(self, call: Call) -> None:
        """The call leaves the agent's connection, which sends nothing again
        until their next call."""
        self._cut(call)
        if call.link is not None:
            self._quiet(call.agent, call.link, call)

    # --- the agent's answers ---------------------------------------------------

    def _own_call(self, agent: RoutedAgent, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None or call.state is CallState.ENDED:
            raise RequestError("unknown_call", f"there is no call {call_id!r}", call_id)
        if call.agent is not agent:
            raise RequestError("not_your_call", f"call {call_id!r} is not offered to you", call_id)
        return call

    def answer(self, agent: RoutedAgent, call_id: str) -> None:
        """The agent takes a call offered to them; a call they are on is put
        on hold first (call waiting)."""
        if (found := self._party_call(agent, call_id)) is not None:
            if found[1].state is PartyState.ALERTING:
                self._set_aside(agent, found[0])
            self._party_answered(*found)
            return
        call = self._own_call(agent, call_id)
        if call.state is not CallState.ALERTING:
            raise RequestError(
                "wrong_state", f"call {call_id!r} is {call.state.value}, not alerting", call_id
            )
        assert call.link is not None
        self._set_aside(agent, call)
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
        if (found := self._party_call(agent, call_id)) is not None:
            call, party = found
            if party.state is not PartyState.ALERTING:
                raise RequestError(
                    "wrong_state", f"call {call_id!r} is {party.state.value}, not alerting", call_id
                )
            await self._party_gone(call, party, "declined")
            return
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
        if not any(other is not call for other in agent.calls):
            # (A call that waited while they talked on another is no sign
            # that they are gone.)
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
        """The agent's part in ``call`` is over. With no other call they stay
        busy until their connection is kept or closed, so no new call is
        routed onto a connection that is being torn down; with another call
        (call waiting, or one they took meanwhile) it goes on over the
        connection as it is."""
        if any(other is not call for other in agent.calls):
            _leave(agent, call)
            return
        try:
            await self._connections.call_finished(agent)
        finally:
            _leave(agent, call)
            if not agent.calls:
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
        """Hold or take off hold; the media edge cuts or restores the bridge.
        Taking a call off hold puts the agent's live one on hold first: they
        swap."""
        verb = "hold" if on else "unhold"
        call = self._connected_call(agent, call_id, f"only a connected call can {verb}")
        if call.held == on:
            state = "already on hold" if on else "not on hold"
            raise RequestError("wrong_state", f"call {call_id!r} is {state}", call_id)
        self._can_hold(call)
        if not on:
            self._set_aside(agent, call)
        self._hold(agent, call, on)

    def _can_hold(self, call: Call) -> None:
        _need_customer(call, f"call {call.id!r} is an internal call: it has no customer to hold")
        if call.parties:
            raise RequestError("wrong_state", f"call {call.id!r} has another agent on it", call.id)

    def _set_aside(self, agent: RoutedAgent, keep: Call) -> None:
        """``keep`` goes live for ``agent``: their live call, if any, is put
        on hold first (refused, changing nothing, when it cannot be)."""
        live = [c for c in agent.calls if c is not keep and self._live(agent, c)]
        for call in live:
            if call.agent is not agent:
                raise RequestError(
                    "wrong_state",
                    f"you are on another agent's call {call.id!r}: leave it first",
                    keep.id,
                )
            self._can_hold(call)
        for call in live:
            self._hold(agent, call, True)

    def _live(self, agent: RoutedAgent, call: Call) -> bool:
        """``call`` is the one on ``agent``'s connection: connected, and not
        held by them (in a consult they hold the customer, not the agent)."""
        if (party := call.party(agent)) is not None:
            return party.state is PartyState.CONNECTED
        return call.agent is agent and call.state is CallState.CONNECTED and call.agent_talks

    def _hold(self, agent: RoutedAgent, call: Call, on: bool) -> None:
        assert call.link is not None
        call.held = on
        # Cut both ways here, on the platform, whatever the phone does: the
        # customer hears the hold music, the agent nothing.
        self._bridge(call)
        logger.info("%s: %s", call.id, "held" if on else "resumed")
        agent.send(CallHeld(call_id=call.id, on=on))
        self._events.emit("call_held", call_id=call.id, agent=agent.name, on=on)

    def send_dtmf(self, agent: RoutedAgent, call_id: str, digits: str) -> None:
        """Send the digits to the customer: as RFC 4733 events where their
        endpoint negotiated them, else in band; refused while the call is held."""
        call = self._connected_call(agent, call_id, "DTMF needs a connected call")
        if call.held:
            raise RequestError(
                "wrong_state", f"call {call_id!r} is on hold; take it off hold first", call_id
            )
        _need_customer(call, "an internal call has no customer to send keys to")
        try:
            seconds, how = call.customer.send_dtmf(digits)
        except ValueError as exc:  # the codec checks too; this is the same rule
            raise RequestError("invalid", str(exc), call_id) from None
        except DtmfBusy as exc:
            raise RequestError("wrong_state", str(exc), call_id) from None
        self._events.emit(
            "dtmf", call_id=call.id, agent=agent.name, digits=digits, duration_s=seconds, how=how
        )

    # --- transfer, consult and conference -------------------------------------------

    def _party_call(self, agent: RoutedAgent, call_id: str) -> tuple[Call, Party] | None:
        """The call ``call_id`` with ``agent`` as one of its other agents, if so."""
        call = self.calls.get(call_id)
        if call is None or call.state is CallState.ENDED:
            return None
        party = call.party(agent)
        return None if party is None else (call, party)

    def _target(self, agent: RoutedAgent, name: str, call_id: str) -> RoutedAgent:
        """The agent ``name``, when they can be offered a call now."""
        if name == agent.name:
            raise RequestError("invalid", "that is you: name another agent", call_id)
        if name not in self._config.agents:
            raise RequestError("unknown_target", f"there is no agent {name!r}", call_id)
        target = next((a for a in self._agents() if a.name == name), None)
        if target is None:
            raise RequestError("unavailable", f"{name} is not signed in", call_id)
        if not target.reachable:
            raise RequestError("busy", f"{name} is in after-call work", call_id)
        if len(target.calls) >= MAX_CALLS:
            raise RequestError("busy", f"{name} is on {len(target.calls)} calls", call_id)
        if any(not self._settled(target, c) for c in target.calls):
            raise RequestError("busy", f"{name} is taking another call", call_id)
        return target

    def _settled(self, agent: RoutedAgent, call: Call) -> bool:
        """``agent`` is connected in ``call`` (so another call may wait for them)."""
        if (party := call.party(agent)) is not None:
            return party.state is PartyState.CONNECTED
        return call.agent is agent and call.state is CallState.CONNECTED

    def _no_parties(self, call: Call) -> None:
        if call.parties:
            other = call.parties[0]
            raise RequestError(
                "wrong_state",
                f"{other.name} is already on call {call.id!r} ({other.role}); finish that first",
                call.id,
            )

    def _number_party(self, role: str, number: str, callee: Callee | None, call_id: str) -> Party:
        if callee is None:
            raise RequestError("unknown_number", f"{number} cannot be reached", call_id)
        if callee.call is not None:
            raise RequestError("busy", f"{number} is on another call", call_id)
        return Party(role, callee=callee, number=number)

    async def transfer(
        self,
        agent: RoutedAgent,
        call_id: str,
        to_agent: str | None,
        to_queue: str | None,
        number: str | None,
        consult: bool,
        callee: Callee | None = None,
    ) -> None:
        """Hand the connected call to another agent, a queue or a number
        (``callee``: the trunk awaiting calls to it): blind (it leaves this
        agent now) or after a consult (``complete_transfer``)."""
        call = self._connected_call(agent, call_id, "only a connected call can be transferred")
        _need_customer(call, "an internal call has no customer to transfer")
        self._no_parties(call)
        if [to_agent, to_queue, number].count(None) != 2:
            raise RequestError("invalid", "name one target: an agent, a queue or a number", call_id)
        if number is not None:
            role = "consult" if consult else "transfer"
            party = self._number_party(role, number, callee, call_id)
            if consult:
                self._consult(call, agent, party)
                return
            if not call.queue:
                raise RequestError(
                    "invalid",
                    "a call you placed has no queue to go back to if the transfer fails:"
                    " consult first",
                    call_id,
                )
            # Blind: this agent's part ends; the customer hears the waiting
            # tone while the number rings, and talks with it once it answers.
            self._owner_out(call, "transferred")
            self._transferred(call, agent.name, number, consult=False)
            call.held = False
            call.customer.hear(Hearing.WAITING)
            call.parties.append(party)
            self._invite(call, party)
            await self._release(agent, call)
            return
        if to_queue is not None:
            if consult:
                raise RequestError("invalid", "a consult is with an agent, not a queue", call_id)
            if to_queue not in self._queues:
                raise RequestError("unknown_target", f"there is no queue {to_queue!r}", call_id)
            await self._transfer_to_queue(call, agent, to_queue)
            return
        assert to_agent is not None
        target = self._target(agent, to_agent, call_id)
        if consult:
            self._consult(call, agent, Party("consult", agent=target))
            return
        if not call.queue:
            raise RequestError(
                "invalid",
                "a call you placed has no queue to go back to if the transfer fails:"
                " consult first, or transfer it to a queue",
                call_id,
            )
        self._owner_out(call, "transferred")
        self._transferred(call, agent.name, target.name, consult=False)
        call.held = False
        call.attempt += 1
        call.customer.hear(Hearing.WAITING)
        call.offered_by = agent.name
        # Offered like a routed call: declined or not answered, it goes back
        # to the head of its queue (_take_back), and is never lost. (No wait
        # since the target was checked: nobody else can have taken them.)
        self._start_delivery(call, target)
        await self._release(agent, call)

    async def _transfer_to_queue(self, call: Call, agent: RoutedAgent, queue: str) -> None:
        self._owner_out(call, "transferred")
        self._transferred(call, agent.name, queue, consult=False)
        call.held = False
        # In a queue, a call an agent placed is a customer's call like any
        # other: requeued, not ended, if its next agent's phone fails.
        call.direction = "inbound"
        call.queue = queue
        call.state = CallState.QUEUED
        call.attempt += 1
        call.declined_by.clear()
        call.customer.hear(Hearing.WAITING)
        self._queues[queue].append(call)
        call.position = 0  # told again
        self._update_positions(queue)
        self._events.emit(
            "call_requeued",
            call_id=call.id,
            agent=agent.name,
            reason="transferred",
            position=call.position,
            queue=queue,
        )
        self.dispatch()
        await self._release(agent, call)

    def _transferred(self, call: Call, source: str, target: str, consult: bool) -> None:
        self._events.emit(
            "call_transferred", call_id=call.id, consult=consult, **{"from": source, "to": target}
        )

    def _consult(self, call: Call, agent: RoutedAgent, party: Party) -> None:
        """The customer is held (the hold music) while ``party`` is offered
        the call, to talk with ``agent`` first."""
        call.held = True
        call.parties.append(party)
        self._bridge(call)
        agent.send(CallHeld(call_id=call.id, on=True))
        self._events.emit("call_held", call_id=call.id, agent=agent.name, on=True)
        self._invite(call, party)

    def add_to_conference(
        self,
        agent: RoutedAgent,
        call_id: str,
        to_agent: str | None,
        number: str | None,
        callee: Callee | None = None,
    ) -> None:
        """Offer the call to a third party; once they answer, each of the
        three hears the two others (the platform mixes: media_paths.py)."""
        call = self._connected_call(agent, call_id, "only a connected call takes a conference")
        _need_customer(call, "a conference of agents only is not built yet")
        if call.held:
            raise RequestError("wrong_state", f"call {call_id!r} is on hold", call_id)
        self._no_parties(call)
        if (to_agent is None) == (number is None):
            raise RequestError("invalid", "name the agent or the number to add", call_id)
        if number is not None:
            party = self._number_party("conference", number, callee, call_id)
        else:
            assert to_agent is not None
            party = Party("conference", agent=self._target(agent, to_agent, call_id))
        call.parties.append(party)
        self._invite(call, party)

    def _invite(self, call: Call, party: Party) -> None:
        if party.callee is not None:
            self._ring_number(call, party, party.callee)
            return
        assert party.agent is not None
        _take(party.agent, call)
        self._connections.begin_call(party.agent)
        party.offering = True
        self._tasks.spawn(self._offer_to_party(call, party), f"invite-{call.id}")

    def _ring_number(self, call: Call, party: Party, callee: Callee) -> None:
        """Ring the trunk that awaits calls to ``party.number``; it answers
        with ``accept_incoming`` (then ``incoming_media``), as for an
        agent's outbound call."""
        callee.call = call
        party.leg = CustomerLeg(
            call.id, name=party.number, media_timeout_s=self._config.customer_media_timeout_s
        )
        self._watch(call, party.leg)
        party.state = PartyState.ALERTING
        by = call.agent.name if call.agent is not None else party.number
        callee.send(IncomingCall(call_id=call.id, number=party.number, agent=by))
        self._tell_owner(call, party, "alerting")
        self._events.emit(
            "party_offered", call_id=call.id, agent=party.number, by=by, role=party.role
        )
        party.alert_timer = asyncio.get_running_loop().call_later(
            self._config.ring_timeout_s, self._party_timed_out, call, party
        )

    def _tell_owner(
        self,
        call: Call,
        party: Party,
        state: Literal["alerting", "connected", "ended"],
        reason: str = "",
    ) -> None:
        if call.agent is not None:
            call.agent.send(
                PartyChanged(
                    call_id=call.id, agent=party.name, role=party.role, state=state, reason=reason
                )
            )

    async def _offer_to_party(self, call: Call, party: Party) -> None:
        target = party.agent
        assert target is not None
        existing = self._connections.active_link(target.name)
        try:
            link = await self._connections.establish(target, "call")
        except LinkError as exc:
            logger.warning("%s: could not reach %s: %s", call.id, target.name, exc)
            party.offering = False
            if party in call.parties:
                await self._party_gone(call, party, "connection_failed")
            else:
                await self._release(target, call)
            return
        party.offering = False
        owner = call.agent
        ringing = call.internal and call.state is CallState.RINGING
        live = call.state is CallState.CONNECTED or ringing
        if party not in call.parties or not live or owner is None:
            await self._release(target, call)  # ended, or cancelled, meanwhile
            return
        party.link = link
        party.state = PartyState.ALERTING
        self._connections.call_delivered(target, link)
        delivery_ms = round((time.monotonic() - party.invited_at) * 1000, 2)
        target.send(
            CallOffered(
                call_id=call.id,
                # (an internal call's ``caller`` is the agent called, as its record has it)
                caller=owner.name if call.internal else call.caller,
                queue=call.queue,
                connection_id=link.id,
                over_persistent_connection=existing is not None and existing is link,
                alert_timeout_s=self._config.alert_timeout_s,
                delivery_ms=delivery_ms,
                from_agent=owner.name,
                purpose=party.role,
            )
        )
        self._tell_owner(call, party, "alerting")
        self._events.emit(
            "party_offered",
            call_id=call.id,
            agent=target.name,
            by=owner.name,
            role=party.role,
            delivery_ms=delivery_ms,
        )
        party.alert_timer = asyncio.get_running_loop().call_later(
            self._config.alert_timeout_s, self._party_timed_out, call, party
        )

    def _party_timed_out(self, call: Call, party: Party) -> None:
        party.alert_timer = None
        if party in call.parties and party.state is PartyState.ALERTING:
            reason = "alert_timeout" if party.agent is not None else "no_answer"
            self._tasks.spawn(self._party_gone(call, party, reason), "party-timeout")

    def _party_answered(self, call: Call, party: Party) -> None:
        if party.state is not PartyState.ALERTING:
            raise RequestError(
                "wrong_state", f"call {call.id!r} is {party.state.value}, not alerting", call.id
            )
        owner = call.agent
        if party.alert_timer is not None:
            party.alert_timer.cancel()
            party.alert_timer = None
        party.state = PartyState.CONNECTED
        target = party.agent
        if target is not None:
            target.send(CallConnected(call_id=call.id, agent=target.name))
        elif party.callee is not None:
            party.callee.send(
                CallConnected(call_id=call.id, agent=owner.name if owner else call.caller)
            )
        if call.internal and owner is not None:
            # The agent called answered: the call between the two connects.
            call.state = CallState.CONNECTED
            call.answered_at = time.monotonic()
            owner.send(CallConnected(call_id=call.id, agent=party.name))
            self._bridge(call)
            self._events.emit(
                "call_answered",
                call_id=call.id,
                agent=party.name,
                answer_ms=round((call.answered_at - call.routed_at) * 1000, 2),
                direction=call.direction,
            )
            return
        if target is not None and owner is not None:
            target.send(
                PartyChanged(call_id=call.id, agent=owner.name, role=party.role, state="connected")
            )
        self._tell_owner(call, party, "connected")
        if owner is None:
            # A blind transfer to a number: the customer and the number talk.
            call.held = False
            call.notify_customer(CallConnected(call_id=call.id, agent=party.name))
        self._bridge(call)
        name = "consult_connected" if party.role == "consult" else "conference_joined"
        if party.role == "transfer":
            name = "transfer_answered"
        self._events.emit(name, call_id=call.id, party=party.name, by=owner.name if owner else "")

    async def _party_gone(
        self, call: Call, party: Party, reason: str, release: bool = True
    ) -> None:
        """``party`` leaves the call (declined, hung up, not answering, its
        phone gone, cancelled). A consult that ends this way gives the
        customer back to their agent, off hold: never lost."""
        if party not in call.parties:
            return
        if call.internal:
            # The agent called declined, did not answer or hung up: the call
            # between the two is over.
            await self._remove_party(call, party, reason, release)
            ended = {"alert_timeout": "no_answer", "connection_failed": "unavailable"}
            await self.end_call(call, ended.get(reason, reason))
            return
        await self._remove_party(call, party, reason, release)
        owner = call.agent
        self._tell_owner(call, party, "ended", reason)
        if call.state is not CallState.CONNECTED:
            return
        if owner is None:
            # Nobody else is with the customer: a blind transfer to a number
            # that failed goes back to the head of its queue; a number that
            # hung up after taking the call ends it.
            if party.state is PartyState.CONNECTED or not call.queue:
                await self.end_call(call, "far_end_hangup")
            else:
                self._requeue(call, f"transfer_{reason}")
                self.dispatch()
            return
        if party.role == "consult" and call.held:
            call.held = False
            owner.send(CallHeld(call_id=call.id, on=False))
            self._events.emit("call_held", call_id=call.id, agent=owner.name, on=False)
        self._bridge(call)
        name = "conference_left" if party.role == "conference" else "consult_ended"
        self._events.emit(name, call_id=call.id, party=party.name, reason=reason)

    async def _remove_party(
        self, call: Call, party: Party, reason: str, release: bool = True
    ) -> None:
        """Take ``party`` off the call and tell their phone (the caller says
        what the others hear next)."""
        call.parties.remove(party)
        if party.alert_timer is not None:
            party.alert_timer.cancel()
            party.alert_timer = None
        if party.agent is not None and party.state is not PartyState.ROUTING:
            party.agent.send(CallEnded(call_id=call.id, reason=reason))
        if party.link is not None:
            self._cut(call)  # (the path included their link)
            self._quiet(party.agent, party.link, call)
        if party.callee is not None:
            if party.callee.call is call:
                party.callee.call = None
            party.callee.send(CallEnded(call_id=call.id, reason=reason))
        if party.leg is not None:
            self._cut(call)
            await party.leg.close()
        if release and party.agent is not None and not party.offering:
            await self._release(party.agent, call)

    def _drop_parties(self, call: Call, reason: str) -> None:
        """From code that cannot wait: the other agents leave the call."""
        for party in list(call.parties):
            self._tasks.spawn(self._remove_party(call, party, reason), f"drop-{call.id}")

    def _consult_party(self, agent: RoutedAgent, call_id: str) -> tuple[Call, Party]:
        call = self._connected_call(agent, call_id, "there is no consult on it")
        party = next((p for p in call.parties if p.role == "consult"), None)
        if party is None:
            raise RequestError("wrong_state", f"call {call_id!r} has no consult", call_id)
        return call, party

    async def complete_transfer(self, agent: RoutedAgent, call_id: str) -> None:
        """The consulted agent takes the customer; ``agent`` leaves."""
        call, party = self._consult_party(agent, call_id)
        if party.state is not PartyState.CONNECTED:
            raise RequestError("wrong_state", f"{party.name} has not answered yet", call_id)
        await self._hand_over(call, party, "transferred")
        self._transferred(call, agent.name, party.name, consult=True)

    async def cancel_transfer(self, agent: RoutedAgent, call_id: str) -> None:
        """The consulted agent leaves; the customer is back with ``agent``."""
        call, party = self._consult_party(agent, call_id)
        await self._party_gone(call, party, "cancelled")

    async def leave_conference(self, agent: RoutedAgent, call_id: str) -> None:
        """Leave a conference: the other two stay connected."""
        if (found := self._party_call(agent, call_id)) is not None:
            call, party = found
            if party.role != "conference":
                raise RequestError("wrong_state", f"call {call_id!r} is no conference", call_id)
            await self._party_gone(call, party, "left")
            return
        call = self._connected_call(agent, call_id, "there is no conference on it")
        added = next((p for p in call.parties if p.role == "conference"), None)
        if added is None or added.state is not PartyState.CONNECTED:
            raise RequestError("wrong_state", f"call {call_id!r} is no conference", call_id)
        await self._hand_over(call, added, "left")
        self._events.emit("conference_left", call_id=call.id, party=agent.name, reason="left")

    async def _hand_over(self, call: Call, party: Party, reason: str) -> None:
        """The call's agent leaves it; ``party`` (connected) goes on talking
        with the customer: as the call's agent, or (a number) as the only
        other party, the call then having no agent. The call takes its new
        shape in one step; the agent who left is released last."""
        previous = self._owner_out(call, reason)
        call.held = False
        if party.agent is not None:
            call.parties.remove(party)
            call.agent = party.agent
            call.link = party.link
            call.answered_at = time.monotonic()
            party.agent.send(
                PartyChanged(
                    call_id=call.id,
                    agent=previous.name,
                    role=party.role,
                    state="ended",
                    reason=reason,
                )
            )
        self._bridge(call)
        call.notify_customer(CallConnected(call_id=call.id, agent=party.name))
        if party.agent is not None:
            self._events.emit(
                "call_answered",
                call_id=call.id,
                agent=party.name,
                answer_ms=round((time.monotonic() - party.invited_at) * 1000, 2),
                direction=call.direction,
                handed_over_by=previous.name,
            )
        await self._release(previous, call)

    def _owner_out(self, call: Call, reason: str) -> RoutedAgent:
        """The call's agent leaves it (a transfer, leaving a conference): their
        phone is told, their connection carries nothing more, and after-call
        work follows where the queue has it. All in one step, with no wait:
        the caller finishes the call's new shape, then ``_release``s them."""
        agent = call.agent
        assert agent is not None
        self._release_link(call)
        agent.send(CallEnded(call_id=call.id, reason=reason))
        if call.queue and not call.placed_by_agent:
            agent.begin_after_call_work(call.id, self._config.queues[call.queue])
        call.agent = None
        call.link = None
        return agent

    # --- ending calls ----------------------------------------------------------

    async def agent_hangup(self, agent: RoutedAgent, call_id: str, requeue: bool = False) -> None:
        if (found := self._party_call(agent, call_id)) is not None:
            # Another agent on the call hangs up: they leave it; it goes on.
            why = "phone_failure" if requeue else "agent_hangup"
            await self._party_gone(found[0], found[1], why)
            return
        call = self._own_call(agent, call_id)
        if call.placed_by_agent:
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
        ringing = call.placed_by_agent and call.state is CallState.RINGING
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
        if agent is not None and call in agent.calls:
            if previous in (CallState.ALERTING, CallState.RINGING, CallState.CONNECTED) or (
                call.placed_by_agent  # the agent's phone is dialing it
            ):
                agent.send(CallEnded(call_id=call.id, reason=reason))
            if previous is CallState.CONNECTED and not call.placed_by_agent:
                # After-call work, where the queue has it: nothing is routed
                # to the agent until they wrap up (sessions.py).
                agent.begin_after_call_work(call.id, self._config.queues[call.queue])
            if previous is CallState.CONNECTED and call.link is not None:
                self._release_link(call)
            if previous is not CallState.ROUTING:
                await self._release(agent, call)
        for party in list(call.parties):
            await self._remove_party(call, party, reason)
        if call.callee is not None and call.callee.call is call:
            call.callee.call = None
        call.notify_customer(CallEnded(call_id=call.id, reason=reason))
        if call.leg is not None:
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
        """The agent signed out or their phone vanished: save their calls."""
        for call in list(agent.calls):
            await self._gone_from(agent, call, reason)

    async def _gone_from(self, agent: RoutedAgent, call: Call, reason: str) -> None:
        if (party := call.party(agent)) is not None:
            await self._party_gone(call, party, reason, release=False)
            _leave(agent, call)
            return
        if (heir := self._heir(call, agent)) is not None:
            # Another agent was talking with them (a consult, a conference):
            # the customer stays with that agent.
            await self._hand_over(call, heir, reason)
            _leave(agent, call)
            return
        _leave(agent, call)
        if call.state is CallState.CONNECTED and call.link is not None:
            self._release_link(call)
        if call.placed_by_agent:  # nobody else can carry the agent's own call
            await self.end_call(call, reason)
            return
        if call.state in (CallState.ROUTING, CallState.ALERTING, CallState.CONNECTED):
            self._requeue(call, reason)
            self.dispatch()

    def _link_lost(self, name: str, link: AgentLink, reason: str) -> None:
        agent = next((a for a in self._agents() if a.name == name), None)
        if agent is None:
            return
        for call in list(agent.calls):
            self._lost_on(agent, call, link)

    def _lost_on(self, agent: RoutedAgent, call: Call, link: AgentLink) -> None:
        """``agent``'s connection ``link`` died under ``call``."""
        party = call.party(agent)
        if party is not None and party.link is link:
            self._tasks.spawn(self._party_gone(call, party, "connection_lost"), f"lost-{call.id}")
            return
        heir = self._heir(call, agent) if call.link is link else None
        if heir is not None:
            self._set_not_responding(agent, "connection_lost")
            self._tasks.spawn(self._hand_over(call, heir, "connection_lost"), f"lost-{call.id}")
            return
        if call.link is link and call.placed_by_agent:
            self._release_link(call)
            _leave(agent, call)
            agent.send(CallEnded(call_id=call.id, reason="connection_lost"))
            self._tasks.spawn(self.end_call(call, "connection_lost"), f"lost-{call.id}")
            return
        if call.link is link and call.state is not CallState.ENDED:
            _leave(agent, call)
            agent.send(CallEnded(call_id=call.id, reason="connection_lost"))
            # The phone stopped answering mid-delivery: don't route the
            # customer straight back to it.
            self._set_not_responding(agent, "connection_lost")
            self._requeue(call, "connection_lost")
            self.dispatch()

    def _heir(self, call: Call, agent: RoutedAgent) -> Party | None:
        """Who takes a connected call whose agent is gone: an agent on it
        who was talking with them (consulted, or in a conference), if any."""
        if call.agent is not agent or call.state is not CallState.CONNECTED or call.internal:
            return None
        return next(
            (p for p in call.parties if p.agent is not None and p.state is PartyState.CONNECTED),
            None,
        )

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
