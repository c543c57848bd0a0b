"""The persistent-connection manager: the one place that decides whether an
agent's media connection is set up, kept or closed.

Rules (docs/persistent-connection.md, shared/DESIGN.md R1-R11):

- a call for an agent with no connection sets one up first (R1, R8);
- after a call the connection is kept when the agent's "Maintain a persistent
  connection" is on (R2, R6), and closed otherwise;
- with ``routing:conversation:acceptOffQueue`` it is set up at sign-in (R5);
- a kept connection with no call is closed after the timeout (R7);
- the agent may end it (R9) or turn the setting off (R10): during a call that
  takes effect when the call ends, never in the middle of it;
- sign-out and a second phone signing in close it (R11, R13);
- a connection whose far end stopped answering is closed within seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent_phone.cloud.admin import Timeouts
from agent_phone.cloud.config import ACCEPT_OFF_QUEUE, PlatformConfig
from agent_phone.cloud.errors import RequestError
from agent_phone.cloud.events import EventLog
from agent_phone.cloud.media_edge import AgentLink, LinkError, LinkState
from agent_phone.media.dtls import FingerprintError, check_fingerprints
from agent_phone.media.ice import CandidateError
from agent_phone.protocol import (
    ConnectionAnswer,
    ConnectionOffer,
    ConnectionState,
    IceCandidate,
    Message,
)
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)

#: Told when a connection carrying a call died: the agent's name, the link, why.
LinkLost = Callable[[str, AgentLink, str], None]


class AgentEndpoint(Protocol):
    """What the connection manager needs of a signed-in agent's session."""

    name: str
    signed_in: bool
    permissions: frozenset[str]
    #: "Maintain a persistent connection", as the agent last set it.
    persistent: bool

    def send(self, message: Message) -> None: ...


@dataclass(eq=False)
class _AgentMedia:
    """Everything the manager keeps for one agent, in one place."""

    #: The agent's signed-in session (None once signed out).
    session: AgentEndpoint | None = None
    #: Their connection, set up or setting up.
    link: AgentLink | None = None
    #: The set-up under way, which concurrent callers share.
    setup: asyncio.Task[AgentLink] | None = None
    #: A call is routed, ringing or connected on the connection.
    in_call: bool = False
    #: The agent asked to end the connection during a call (R9, R10).
    close_after_call: bool = False
    #: The idle timeout of a kept connection (R7), and when it will fire.
    timer: asyncio.TimerHandle | None = None
    expires_at: float | None = None

    @property
    def idle(self) -> bool:
        """Nothing left to keep: the entry can go."""
        return self.session is None and self.link is None and self.setup is None


class ConnectionManager:
    def __init__(self, config: PlatformConfig, events: EventLog, timeouts: Timeouts) -> None:
        self.config = config
        self.timeouts = timeouts
        self._events = events
        #: Per agent, by name.
        self._agents: dict[str, _AgentMedia] = {}
        #: Connection offers waiting for the phone's answer, by connection id.
        self._answers: dict[str, asyncio.Future[str]] = {}
        self._tasks = TaskSet("connections")
        #: Told when a link dies under a call, so the router can save the call.
        self.on_link_lost: LinkLost = lambda agent, link, reason: None

    def _media(self, agent: str) -> _AgentMedia:
        media = self._agents.get(agent)
        if media is None:
            media = self._agents[agent] = _AgentMedia()
        return media

    def _forget_if_idle(self, agent: str) -> None:
        media = self._agents.get(agent)
        if media is not None and media.idle:
            del self._agents[agent]

    # --- queries -------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many of each thing it holds (the ``memory`` event: these must
        not grow call after call)."""
        media = self._agents.values()
        return {
            "links": sum(m.link is not None for m in media),
            "setups": sum(m.setup is not None for m in media),
            "timers": sum(m.timer is not None for m in media),
        }

    def active_link(self, agent: str) -> AgentLink | None:
        link = self.link(agent)
        return link if link is not None and link.state is LinkState.ACTIVE else None

    def link(self, agent: str) -> AgentLink | None:
        media = self._agents.get(agent)
        return media.link if media is not None else None

    def timeout_for(self, agent: str) -> float:
        return self.timeouts.for_agent(agent)

    def describe(self, session: AgentEndpoint) -> ConnectionState | None:
        """The agent's connection as a ``connection_state`` would report it now
        (for a resumed session's snapshot); None when there is none."""
        media = self._agents.get(session.name)
        link = media.link if media is not None else None
        if media is None or link is None or link.state is LinkState.CLOSED:
            return None
        return ConnectionState(
            connection_id=link.id,
            state="active" if link.state is LinkState.ACTIVE else "connecting",
            reason="resumed",
            kept=session.persistent and not media.close_after_call,
            in_call=media.in_call,
            expires_at=media.expires_at,
        )

    # --- setting up (R1, R5, R8) ----------------------------------------------

    async def establish(self, session: AgentEndpoint, reason: str) -> AgentLink:
        """The agent's active connection, set up first when there is none."""
        if (link := self.active_link(session.name)) is not None:
            return link
        media = self._media(session.name)
        setup = media.setup
        if setup is None:
            setup = asyncio.get_running_loop().create_task(self._set_up(session, reason))
            media.setup = setup

            def done(task: asyncio.Task[AgentLink]) -> None:
                if media.setup is task:
                    media.setup = None
                self._forget_if_idle(session.name)

            setup.add_done_callback(done)
        return await asyncio.shield(setup)

    async def _set_up(self, session: AgentEndpoint, reason: str) -> AgentLink:
        media = self._media(session.name)
        if media.link is not None:
            await self._close(session.name, "replaced")
        link = AgentLink(session.name, self._on_dead)
        media.link = link
        started = time.monotonic()
        self._events.emit(
            "connection_offered", agent=session.name, connection_id=link.id, reason=reason
        )
        self._send_state(session, link, "connecting", reason)
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._answers[link.id] = answer
        try:
            sdp = await link.create_offer()
            session.send(ConnectionOffer(connection_id=link.id, sdp=sdp, reason=reason))
            timeout = self.config.connect_timeout_s
            answer_sdp = await asyncio.wait_for(answer, timeout)
            await link.accept_answer(answer_sdp, timeout - (time.monotonic() - started))
        except Exception as exc:
            # Any failure, not only LinkError: aiortc's SDP parser raises e.g.
            # AssertionError on garbage, which left the call stuck in routing.
            quiet = "no answer from the phone" if isinstance(exc, TimeoutError) else repr(exc)
            why = str(exc) or quiet
            logger.warning("%s: set-up failed: %s", link.id, why)
            await self._close(session.name, "setup_failed", link)
            raise LinkError(why) from None
        except BaseException:
            await self._close(session.name, "setup_cancelled", link)
            raise
        finally:
            self._answers.pop(link.id, None)
        if link.state is not LinkState.ACTIVE:
            raise LinkError(f"connection closed during set-up ({link.id})")
        self._events.emit(
            "connection_established",
            agent=session.name,
            connection_id=link.id,
            setup_ms=round((time.monotonic() - started) * 1000, 1),
        )
        self._send_state(session, link, "active", reason)
        if not media.in_call:
            # Set up ahead of any call (R5) or for a call already gone.
            await self._after_call(session, link, reason)
        return link

    async def add_candidate(self, session: AgentEndpoint, message: IceCandidate) -> None:
        """A candidate the phone trickles after its answer (trickle ICE)."""
        link = self.link(session.name)
        if link is None or link.id != message.connection_id:
            raise RequestError(
                "unknown_connection", f"you have no connection {message.connection_id!r}"
            )
        try:
            await link.remote_candidates.add(
                message.candidate, message.sdp_mid, message.sdp_mline_index
            )
        except CandidateError as exc:
            raise RequestError("invalid", f"ice_candidate: {exc}") from None

    def accept_answer(self, session: AgentEndpoint, message: ConnectionAnswer) -> None:
        link = self.link(session.name)
        future = self._answers.get(message.connection_id)
        if link is None or link.id != message.connection_id or future is None:
            raise RequestError(
                "unknown_connection", f"no connection {message.connection_id!r} awaits an answer"
            )
        try:
            check_fingerprints(message.sdp)
        except FingerprintError as exc:
            # Media keys would come from an unverifiable DTLS handshake: the
            # set-up fails now rather than at connect_timeout_s.
            if not future.done():
                future.set_exception(LinkError(f"answer refused: {exc}"))
            raise RequestError("invalid", f"connection_answer: {exc}") from None
        if not future.done():
            future.set_result(message.sdp)

    # --- calls on a connection -------------------------------------------------

    def begin_call(self, session: AgentEndpoint) -> None:
        """A call is being routed to the agent: its connection is busy from now."""
        self._media(session.name).in_call = True
        self._cancel_timer(session.name)

    def call_delivered(self, session: AgentEndpoint, link: AgentLink) -> None:
        self._send_state(session, link, "active", "call")

    async def call_finished(self, session: AgentEndpoint) -> None:
        """A call on the agent's connection ended: keep it or close it (R2)."""
        media = self._agents.get(session.name)
        if media is None:
            return
        media.in_call = False
        link = media.link
        if link is not None and link.state is LinkState.ACTIVE:
            await self._after_call(session, link, "call_ended")
        self._forget_if_idle(session.name)

    async def _after_call(self, session: AgentEndpoint, link: AgentLink, reason: str) -> None:
        media = self._media(session.name)
        if not session.signed_in:
            await self._close(session.name, "signed_out", link)
        elif media.close_after_call:
            media.close_after_call = False
            await self._close(session.name, "stopped_by_agent", link)
        elif not session.persistent:
            await self._close(session.name, "persistent_off", link)
        else:
            self._keep(session, link, reason)

    def _keep(self, session: AgentEndpoint, link: AgentLink, reason: str) -> None:
        timeout = self.timeout_for(session.name)
        self._cancel_timer(session.name)
        media = self._media(session.name)
        loop = asyncio.get_running_loop()
        media.timer = loop.call_later(timeout, self._timed_out, session, link)
        media.expires_at = time.time() + timeout
        self._events.emit(
            "connection_kept",
            agent=session.name,
            connection_id=link.id,
            expires_at=media.expires_at,
        )
        self._send_state(session, link, "active", reason)

    def _timed_out(self, session: AgentEndpoint, link: AgentLink) -> None:
        media = self._agents.get(session.name)
        if media is None:
            return
        media.timer = None
        if media.link is link and not media.in_call:
            self._tasks.spawn(self._close(session.name, "timeout", link), "timeout")

    def _cancel_timer(self, agent: str) -> None:
        media = self._agents.get(agent)
        if media is None:
            return
        media.expires_at = None
        if (timer := media.timer) is not None:
            media.timer = None
            timer.cancel()

    # --- the agent's requests (R9, R10) and other ends (R5, R11, R13) -------------

    async def signed_in(self, session: AgentEndpoint) -> None:
        self._media(session.name).session = session
        if session.persistent and ACCEPT_OFF_QUEUE in session.permissions:
            self._tasks.spawn(self._establish_quietly(session, "sign_in"), "sign-in")

    async def _establish_quietly(self, session: AgentEndpoint, reason: str) -> None:
        try:
            await self.establish(session, reason)
        except LinkError as exc:
            logger.warning("%s: connection at %s failed: %s", session.name, reason, exc)

    async def set_persistent(self, session: AgentEndpoint, on: bool) -> None:
        session.persistent = on
        media = self._media(session.name)
        link = media.link
        if on:
            media.close_after_call = False
            if link is None and ACCEPT_OFF_QUEUE in session.permissions:
                self._tasks.spawn(self._establish_quietly(session, "sign_in"), "setting")
            elif link is not None and link.state is LinkState.ACTIVE:
                if media.in_call:
                    self._send_state(session, link, "active", "setting_on")
                else:
                    self._keep(session, link, "setting_on")
        elif link is not None:
            if media.in_call:
                self._send_state(session, link, "active", "closing_after_call")
            else:
                await self._close(session.name, "persistent_off", link)

    async def end_connection(self, session: AgentEndpoint) -> None:
        """R9: end the connection now, or when the current call ends."""
        media = self._media(session.name)
        link = media.link
        if link is None:
            self._send_closed(session, "none", "no_connection")
        elif media.in_call:
            media.close_after_call = True
            self._send_state(session, link, "active", "closing_after_call")
        else:
            await self._close(session.name, "stopped_by_agent", link)

    async def signed_out(self, session: AgentEndpoint, reason: str) -> None:
        media = self._agents.get(session.name)
        if media is None:
            return
        if media.session is session:
            media.session = None
        media.in_call = False
        media.close_after_call = False
        if media.setup is not None:
            media.setup.cancel()
        await self._close(session.name, reason)
        self._forget_if_idle(session.name)

    # --- closing ---------------------------------------------------------------

    def _on_dead(self, link: AgentLink, reason: str) -> None:
        media = self._agents.get(link.agent)
        if media is None or media.link is not link:
            return
        if media.session is not None and media.in_call:
            self.on_link_lost(link.agent, link, reason)
        media.in_call = False
        self._tasks.spawn(self._close(link.agent, reason, link), "dead")

    async def _close(self, agent: str, reason: str, link: AgentLink | None = None) -> None:
        media = self._agents.get(agent)
        current = media.link if media is not None else None
        if link is None:
            link = current
        if link is None:
            return
        if media is not None and current is link:
            media.link = None
            self._cancel_timer(agent)
        if link.state is LinkState.CLOSED:
            self._forget_if_idle(agent)
            return
        # Tell the phone first, so it hears why before its WebRTC stack
        # sees the connection go.
        if media is not None and media.session is not None:
            self._send_closed(media.session, link.id, reason)
        await link.close()
        self._events.emit("connection_closed", agent=agent, connection_id=link.id, reason=reason)
        self._forget_if_idle(agent)

    def _send_state(self, session: AgentEndpoint, link: AgentLink, state: str, reason: str) -> None:
        media = self._agents.get(session.name) or _AgentMedia()
        session.send(
            ConnectionState(
                connection_id=link.id,
                state=state,
                reason=reason,
                kept=session.persistent and not media.close_after_call,
                in_call=media.in_call,
                expires_at=media.expires_at,
            )
        )

    def _send_closed(self, session: AgentEndpoint, connection_id: str, reason: str) -> None:
        session.send(ConnectionState(connection_id=connection_id, state="closed", reason=reason))

    async def close(self) -> None:
        for media in list(self._agents.values()):
            if media.setup is not None:
                media.setup.cancel()
        for agent in list(self._agents):
            await self._close(agent, "shutdown")
        await self._tasks.close()
