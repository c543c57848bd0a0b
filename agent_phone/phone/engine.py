"""The phone engine: the agent's side of Agent Phone, with no Qt in it.

It signs in, keeps the signaling connection, answers the platform's
connection offers, raises an alert for each offered call, answers or
declines on command (or at once with auto answer), carries the call's audio
and hangs up. Front-ends (the window, the headless phone, tests) observe its
events and call its commands.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import secrets
import time
from collections.abc import Callable

import numpy as np

from agent_phone.media import voice_processing
from agent_phone.media.ice import CandidateError
from agent_phone.media.playout import Pull
from agent_phone.media.receiver import AudioReceiver
from agent_phone.media.tones import call_waiting_beep, validate_dtmf
from agent_phone.phone import events
from agent_phone.phone.audio_io import CallAudio
from agent_phone.phone.call import Call, CallState, Direction
from agent_phone.phone.connection import PhoneConnection
from agent_phone.phone.connection_state import ConnectionStateModel, ConnectionStatus
from agent_phone.phone.errors import PhoneError
from agent_phone.phone.quality import QualityReporter
from agent_phone.phone.session import PlatformSession, SessionHooks
from agent_phone.phone.settings import PhoneSettings
from agent_phone.protocol import (
    AGENT_STATUSES,
    PHONE_NUMBER_PATTERN,
    AddToConference,
    AfterCallWork,
    AnswerCall,
    CallConnected,
    CallEnded,
    CallHeld,
    CallOffered,
    CallRinging,
    CancelTransfer,
    CompleteTransfer,
    ConnectionAnswer,
    ConnectionOffer,
    ConnectionState,
    DeclineCall,
    Dial,
    DtmfReceived,
    EndConnection,
    Error,
    Hangup,
    HeardQuality,
    HoldCall,
    IceCandidate,
    LeaveConference,
    Message,
    PartyChanged,
    PresenceChanged,
    QualityReport,
    SendDtmf,
    SessionResumed,
    SetPersistent,
    SetPresence,
    SetStatus,
    SignedIn,
    SignedOut,
    SignOut,
    StatusChanged,
    TransferCall,
    UnholdCall,
    WrapUp,
)
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)

Observer = Callable[[events.PhoneEvent], None]

#: A received frame louder than this (int16 peak, about -50 dBFS) is audible.
AUDIBLE = 100
#: A call waiting is beeped in the headset this often, this many times at most.
WAITING_BEEP_PERIOD_S = 5.0
MAX_WAITING_BEEPS = 24


class PhoneEngine:
    def __init__(self, settings: PhoneSettings, audio: CallAudio) -> None:
        self.settings = settings
        self.audio = audio
        self.connection_state = ConnectionStateModel(settings.persistent)
        self.connection_state.subscribe(self._on_indicator)
        self.agent: str | None = None
        self.on_queue = False
        #: The agent's status as the platform last told it (``available`` is
        #: on queue), and the reasons the platform accepts for each status.
        self.status: events.Status | None = None
        self.status_reasons: dict[str, list[str]] = {}
        #: The after-call work the agent is in (status ``after_call_work``).
        self.after_call_work: events.AfterCallWork | None = None
        #: The agent's calls that have not ended, in the order they began.
        self.calls: dict[str, Call] = {}
        #: The calls the headset is open for: it closes when the last ends.
        self._audio_calls: set[str] = set()
        self.connection: PhoneConnection | None = None
        self._observers: list[Observer] = []
        self._tasks = TaskSet("phone")
        self._closing = False
        #: On queue when the session was lost: restored when signed in again.
        self._restore_on_queue = False
        #: The session with the platform: socket, sign-in, resume, reconnect.
        self.session = PlatformSession(
            SessionHooks(
                settings=lambda: self.settings,
                emit=self._emit,
                handle=self._handle,
                signed_in=self._signed_in,
                resumed=self._resumed,
                lost=self._session_lost,
                media_alive=lambda: self.connection is not None,
            )
        )

    @property
    def closed(self) -> asyncio.Event:
        """Set when the session is over by itself (given up, or ended by the
        platform) or the phone closed."""
        return self.session.closed

    # --- observers ---------------------------------------------------------------

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def _emit(self, event: events.PhoneEvent) -> None:
        for observer in list(self._observers):
            try:
                observer(event)
            except Exception:  # an observer's bug is its own: the phone goes on
                logger.exception("observer %r failed on %s", observer, event.name)

    def _on_indicator(self, status: ConnectionStatus) -> None:
        self._emit(
            events.Connection(
                state=status.state.value,
                reason=status.reason,
                in_call=status.in_call,
                expires_at=status.expires_at,
                connection_id=status.connection_id,
            )
        )

    # --- signing in ------------------------------------------------------------

    async def start(self, timeout: float = 15.0) -> None:
        """Connect and sign in; raises SignInError with a message for the agent."""
        self.audio.outgoing.on_error = self._voice_processing_failed
        if self.audio.outgoing.enabled:
            # The library's first import takes 0.2-0.3 s: not on the loop,
            # and not when the first call is answered.
            await asyncio.to_thread(voice_processing.preload)
            self.audio.outgoing.prepare()
        await self.session.start(timeout)
        if self.settings.on_queue:
            await self.set_on_queue(True)

    def _voice_processing_failed(self, why: str) -> None:
        self._emit(
            events.Error(
                message=f"noise suppression and gain control are off: {why}",
                code="voice_processing",
            )
        )

    async def _send(self, message: Message) -> None:
        await self.session.send(message)

    # --- messages from the platform ----------------------------------------------

    async def _handle(self, message: Message) -> None:
        """A message that is the phone's (the session keeps its own)."""
        match message:
            case Error():
                self._emit(
                    events.Error(
                        message=message.message, code=message.code, call_id=message.call_id
                    )
                )
                call = self.calls.get(message.call_id or "")
                if call is not None and call.state is CallState.DIALING:
                    await self._end_call(call, message.code)  # the platform refused the dial
            case StatusChanged():
                self._status_changed(message)
            case AfterCallWork():
                self._after_call_work(message)
            case PresenceChanged(on_queue=on_queue, reason=reason):
                self.on_queue = on_queue
                self._emit(events.Presence(on_queue=on_queue, reason=reason))
            case ConnectionOffer():
                await self._accept_connection(message)
            case IceCandidate():
                await self._remote_candidate(message)
            case ConnectionState():
                if message.state == "closed" and self.connection is not None:
                    if self.connection.id == message.connection_id:
                        await self._drop_connection(message.reason)
                self.connection_state.platform_reported(message)
            case CallOffered():
                await self._offered(message)
            case CallRinging():
                self._ringing(message)
            case CallConnected(call_id=call_id):
                await self._connected(call_id)
            case CallHeld(call_id=call_id, on=on):
                self._held(call_id, on)
            case PartyChanged():
                self._party(message)
            case DtmfReceived(call_id=call_id, digit=digit) if call_id in self.calls:
                self._emit(events.DtmfReceived(call_id=call_id, digit=digit))
            case CallEnded(call_id=call_id, reason=reason):
                if (call := self.calls.get(call_id)) is not None:
                    await self._end_call(call, reason)
            case SignedOut(reason=reason):
                await self._signed_out(reason)

    def _status_changed(self, message: StatusChanged) -> None:
        if message.status != "after_call_work":
            self.after_call_work = None  # wrapped up, timed out, or signed out
        self.status = events.Status(
            status=message.status, reason=message.reason, since=message.since, cause=message.cause
        )
        self._emit(self.status)

    def _after_call_work(self, message: AfterCallWork) -> None:
        self.after_call_work = events.AfterCallWork(
            call_id=message.call_id,
            codes=list(message.codes),
            deadline=message.deadline,
            queue=message.queue,
            timeout_s=message.timeout_s,
        )
        self._emit(self.after_call_work)

    async def _accept_connection(self, offer: ConnectionOffer) -> None:
        if self.connection is not None:
            await self._drop_connection("replaced")
        connection = PhoneConnection(offer.connection_id, self._connection_dead)
        self.connection = connection
        try:
            sdp = await connection.accept_offer(offer.sdp)
        except Exception as exc:  # a bad offer must not take the phone down
            logger.exception("cannot answer connection offer %s", offer.connection_id)
            await self._drop_connection("bad_offer")
            raise PhoneError(f"cannot answer the platform's connection offer: {exc}") from None
        await self._send(ConnectionAnswer(connection_id=offer.connection_id, sdp=sdp))

    async def _remote_candidate(self, message: IceCandidate) -> None:
        """A candidate the platform trickles after its offer (trickle ICE)."""
        connection = self.connection
        if connection is None or connection.id != message.connection_id:
            logger.info("candidate for connection %s ignored: not ours", message.connection_id)
            return
        try:
            await connection.remote_candidates.add(
                message.candidate, message.sdp_mid, message.sdp_mline_index
            )
        except CandidateError as exc:
            logger.warning("the platform's candidate is refused: %s", exc)

    def _connection_dead(self, connection: PhoneConnection, reason: str) -> None:
        if connection is self.connection:
            self.connection_state.connection_lost(connection.id, reason)
            self._tasks.spawn(self._drop_connection(reason), "dead")

    async def _drop_connection(self, reason: str) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        for call in [c for c in self.calls.values() if c.connection_id == connection.id]:
            await self._end_call(call, "connection_lost")
        await connection.close()
        logger.info("connection %s closed: %s", connection.id, reason)

    # --- calls: the one place their life is decided ------------------------------

    @property
    def call(self) -> Call | None:
        """The call that commands naming none act on: the connected one, else
        a held one, else the first alerting or dialed one."""
        live = list(self.calls.values())
        for state in (CallState.CONNECTED, CallState.HELD):
            for call in live:
                if call.state is state:
                    return call
        return live[0] if live else None

    def _begin_call(self, call: Call, reason: str) -> None:
        self.calls[call.call_id] = call
        logger.info(
            "%s: %s %s, %s", call.call_id, call.direction.value, call.state.value, call.peer
        )
        self._call_changed(call, None, reason)

    def _call_changed(self, call: Call, old: CallState | None, reason: str) -> None:
        """Every change of every call, told as the ``call`` event, then as the
        older per-step events that front-ends and scripts already read."""
        new = call.state
        self._emit(
            events.CallChanged(
                call_id=call.call_id,
                state=new.value,
                direction=call.direction.value,
                peer=call.peer,
                previous=old.value if old is not None else None,
                reason=reason,
                queue=call.queue,
                answered=call.answered,
                auto_answer=call.auto,
                over_persistent_connection=call.over_persistent_connection,
                delivery_ms=call.delivery_ms,
                started_at=call.started_wall,
                duration_s=round(call.talk_s, 3),
                from_agent=call.from_agent,
                purpose=call.purpose,
                waiting=call.waiting,
            )
        )
        if old is None and new is CallState.ALERTING:
            self._emit(
                events.Alerting(
                    call_id=call.call_id,
                    caller=call.peer,
                    queue=call.queue,
                    over_persistent_connection=call.over_persistent_connection,
                    delivery_ms=call.delivery_ms,
                    auto_answer=call.auto,
                )
            )
        elif new is CallState.CONNECTED and old is not CallState.HELD:
            self._emit(
                events.Answered(
                    call_id=call.call_id,
                    over_persistent_connection=call.over_persistent_connection,
                    delivery_ms=round(
                        call.delivery_ms + (call.connected_at - call.offered_at) * 1000, 2
                    ),
                    auto=call.auto,
                )
            )
        elif CallState.HELD in (old, new) and new is not CallState.ENDED:
            self._emit(events.Held(call_id=call.call_id, on=new is CallState.HELD))
        elif new is CallState.ENDED:
            self._emit(
                events.Ended(
                    call_id=call.call_id, reason=call.end_reason, duration_s=round(call.talk_s, 3)
                )
            )

    async def _offered(self, offer: CallOffered) -> None:
        connection = self.connection
        alerting = [c for c in self.calls.values() if c.state is CallState.ALERTING]
        if connection is None or connection.id != offer.connection_id or alerting:
            # Not over the connection we have, or a second offer at once: let
            # the platform take it elsewhere.
            why = "another call is alerting" if alerting else "no such connection"
            logger.warning("declining %s: %s", offer.call_id, why)
            await self._send(DeclineCall(call_id=offer.call_id))
            return
        # A call offered while the agent is on another waits (call waiting):
        # never answered automatically.
        auto = self.settings.auto_answer and not self.calls
        call = Call(
            offer.call_id,
            Direction.INTERNAL if offer.purpose == "internal" else Direction.INBOUND,
            offer.caller,
            queue=offer.queue,
            connection_id=offer.connection_id,
            over_persistent_connection=offer.over_persistent_connection,
            delivery_ms=offer.delivery_ms,
            auto=auto,
            state=CallState.ALERTING,
            listener=self._call_changed,
            from_agent=offer.from_agent,
            purpose=offer.purpose,
        )
        call.waiting = bool(self.calls)
        self._begin_call(call, "offered")
        if auto:
            await self.answer(offer.call_id)
        elif call.waiting:
            self._tasks.spawn(self._beep_while_waiting(call), f"waiting-{call.call_id}")

    async def _beep_while_waiting(self, call: Call) -> None:
        """The call-waiting beep over the live call, every few seconds, while
        ``call`` waits to be answered (bounded, whatever the events do)."""
        for _ in range(MAX_WAITING_BEEPS):
            if call.state is not CallState.ALERTING or call.answering:
                return
            if (live := self._live_call()) is not None:
                live.add_sound(call_waiting_beep())
            await asyncio.sleep(WAITING_BEEP_PERIOD_S)

    def _ringing(self, message: CallRinging) -> None:
        call = self.calls.get(message.call_id)
        if call is None or call.direction is Direction.INBOUND:
            return
        call.connection_id = message.connection_id
        call.over_persistent_connection = message.over_persistent_connection
        call.delivery_ms = message.delivery_ms
        call.set_state(CallState.RINGING, "ringing")

    async def _connected(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None or call.state is CallState.HELD:
            return
        if call.state in (CallState.DIALING, CallState.RINGING):
            # The far end answered the agent's call: its audio starts now.
            call.mark_answered()
            if not call.set_state(CallState.CONNECTED, "answered"):
                return
            connection = self.connection
            if connection is None or connection.id != call.connection_id:
                await self._send(Hangup(call_id=call.call_id))
                await self._end_call(call, "connection_lost")
                return
            quality = QualityReporter(call.call_id, connection.pc, self._emit, connection.receiver)
            call.quality = quality
            await quality.begin()
            await self._start_audio(call, connection)
            self._hold_microphone()
            return
        call.set_state(CallState.CONNECTED, "connected")
        self._hold_microphone()

    def _held(self, call_id: str, on: bool) -> None:
        call = self.calls.get(call_id)
        if call is None or call.state not in (CallState.CONNECTED, CallState.HELD):
            return
        call.set_state(CallState.HELD if on else CallState.CONNECTED, "held" if on else "resumed")
        self._hold_microphone()

    def _hold_microphone(self) -> None:
        """The microphone sends silence while the agent has calls and none
        is live (all held; in a consult the customer is held, not the agent)."""
        if self.connection is not None and self.calls:
            self.connection.held = self._live_call() is None

    def _live_call(self) -> Call | None:
        """The call the agent talks in now (the one their headset carries):
        connected, or held with another agent consulted meanwhile."""
        for call in self.calls.values():
            if call.state is CallState.CONNECTED or (
                call.state is CallState.HELD and "connected" in call.parties.values()
            ):
                return call
        return None

    def _party(self, message: PartyChanged) -> None:
        call = self.calls.get(message.call_id)
        if call is None:
            return
        if message.state == "ended":
            call.parties.pop(message.agent, None)
        else:
            call.parties[message.agent] = message.state
        self._hold_microphone()
        self._emit(
            events.Party(
                call_id=call.call_id,
                agent=message.agent,
                role=message.role,
                state=message.state,
                reason=message.reason,
            )
        )

    async def _end_call(self, call: Call, reason: str) -> None:
        """Release what the call holds, tell the platform what the agent
        heard, and end it (once: a second end of the same call does nothing)."""
        if self.calls.get(call.call_id) is not call:
            return
        del self.calls[call.call_id]
        quality, call.quality = call.quality, None
        if quality is not None:
            await quality.finish()
            await self._report_heard(call, quality)
        if call.call_id in self._audio_calls:
            self._audio_calls.discard(call.call_id)
            if not self._audio_calls:
                if self.connection is not None and self.connection.id == call.connection_id:
                    await self.connection.detach()
                await self.audio.end()
        call.set_state(CallState.ENDED, reason)
        self._hold_microphone()

    async def _end_all_calls(self, reason: str) -> None:
        for call in list(self.calls.values()):
            await self._end_call(call, reason)

    async def _report_heard(self, call: Call, quality: QualityReporter) -> None:
        """Tell the platform what the agent heard (kept with the call's record)."""
        q = quality.latest
        if q is None or not call.answered:
            return
        fields = {f: getattr(q, f) for f in HeardQuality.__struct_fields__}
        try:
            await self._send(QualityReport(call_id=call.call_id, heard=HeardQuality(**fields)))
        except PhoneError as exc:  # the platform is gone: the figures go with it
            logger.info("%s: quality not reported: %s", call.call_id, exc)

    # --- the session's turns (PlatformSession calls these through SessionHooks) -----

    async def _signed_in(self, message: SignedIn, again: bool) -> None:
        self.agent = message.agent
        self.status_reasons = message.status_reasons
        self.connection_state.signed_in()
        self._emit(
            events.SignedIn(
                agent=message.agent,
                permissions=message.permissions,
                queues=message.queues,
                status_reasons=message.status_reasons,
                directory_agents=message.directory_agents,
                directory_queues=message.directory_queues,
            )
        )
        if again and self._restore_on_queue:
            self._restore_on_queue = False
            await self.set_on_queue(True)

    async def _session_lost(self, reason: str) -> None:
        """The session is gone: it may come back by a fresh sign-in, with the
        presence the agent had."""
        self._restore_on_queue = self.on_queue
        await self._signed_out(reason)

    async def _signed_out(self, reason: str) -> None:
        self.agent = None
        self.on_queue = False
        self.status = None
        self.after_call_work = None
        await self._end_all_calls(reason)
        await self._drop_connection(reason)
        self.connection_state.signed_out(reason)
        self._emit(events.SignedOut(reason=reason))

    async def _resumed(self, snapshot: SessionResumed, away_s: float, attempts: int) -> None:
        """Back on a new WebSocket: make the phone's state the platform's
        (presence, connection, call), then say so."""
        if snapshot.on_queue != self.on_queue:
            self.on_queue = snapshot.on_queue
            self._emit(events.Presence(on_queue=snapshot.on_queue, reason="resumed"))
        theirs_status = snapshot.status
        if theirs_status is not None and (
            self.status is None
            or (self.status.status, self.status.reason)
            != (theirs_status.status, theirs_status.reason)
        ):
            self._status_changed(theirs_status)
        acw = snapshot.after_call_work
        if acw is None:
            self.after_call_work = None
        elif self.after_call_work is None or self.after_call_work.call_id != acw.call_id:
            self._after_call_work(acw)
        conn = snapshot.connection
        if self.connection is not None and (
            conn is None or conn.connection_id != self.connection.id
        ):
            await self._drop_connection("resumed")
        # (``calls`` from platforms with call waiting; ``call`` from older ones.)
        theirs_calls = snapshot.calls or ([snapshot.call] if snapshot.call else [])
        theirs_by_id = {c.call_id: c for c in theirs_calls}
        for ours in list(self.calls.values()):
            theirs = theirs_by_id.get(ours.call_id)
            if theirs is None:
                await self._end_call(ours, "ended_while_disconnected")
            elif theirs.state == "connected":
                await self._connected(theirs.call_id)
                self._held(theirs.call_id, theirs.held)
        for theirs in theirs_calls:
            if theirs.call_id in self.calls:
                continue  # in step
            if theirs.state == "alerting":
                # Offered while the offer was in flight: alert now (or decline,
                # when the phone has no such connection, so it goes elsewhere).
                await self._offered(
                    CallOffered(
                        call_id=theirs.call_id,
                        caller=theirs.caller,
                        queue=theirs.queue,
                        connection_id=theirs.connection_id or "",
                        over_persistent_connection=False,
                        alert_timeout_s=self.session.alert_timeout_s,
                    )
                )
            elif theirs.state == "connected":
                # Connected on the platform but not here: hand the customer on.
                await self._send(Hangup(call_id=theirs.call_id, requeue=True))
        if conn is not None:
            self.connection_state.platform_reported(conn)
        elif (shown := self.connection_state.status).connection_id is not None:
            self.connection_state.platform_reported(
                ConnectionState(connection_id=shown.connection_id, state="closed", reason="resumed")
            )
        call = self.call
        self._emit(
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

    # --- commands ----------------------------------------------------------------

    def _require_call(self, call_id: str | None, *phases: str) -> Call:
        """The call named (or, with none named, the current one, or else the
        one call in one of ``phases``: a waiting call to answer, a held one to
        resume), when its phase (``Call.phase``) is one of ``phases`` (any,
        with none given)."""
        current = self.call
        if call_id is None:
            if current is None:
                raise PhoneError("there is no call")
            call = current
            fitting = [c for c in self.calls.values() if c.phase in phases]
            if phases and call.phase not in phases and len(fitting) == 1:
                call = fitting[0]
        elif (found := self.calls.get(call_id)) is not None:
            call = found
        elif current is not None:
            raise PhoneError(
                f"there is no call {call_id!r}; the current call is {current.call_id!r}"
            )
        else:
            raise PhoneError(f"there is no call {call_id!r}")
        if phases and call.phase not in phases:
            raise PhoneError(f"the call is {call.phase}, not {' or '.join(phases)}")
        return call

    async def answer(self, call_id: str | None = None) -> None:
        call = self._require_call(call_id, "alerting")
        connection = self.connection
        if connection is None or connection.id != call.connection_id:
            raise PhoneError("the call's connection is gone")
        call.mark_answered()
        quality = QualityReporter(call.call_id, connection.pc, self._emit, connection.receiver)
        call.quality = quality
        await quality.begin()  # the baseline, before this call's media
        if call.ended:
            return  # ended while the baseline was read
        # The answer goes first, so the customer's audio is on its way while
        # the devices open; the track is resumed once the microphone is open,
        # so the customer's first frame from us is already the agent's voice.
        await self._send(AnswerCall(call_id=call.call_id))
        await self._start_audio(call, connection)

    async def _start_audio(self, call: Call, connection: PhoneConnection) -> None:
        """Open the headset for ``call`` and put it on ``connection`` (or, with
        it open for another call already, just count this one too); a device
        that fails hands the customer on rather than losing them."""
        if call.ended:
            return
        opened = bool(self._audio_calls)
        self._audio_calls.add(call.call_id)
        if opened:
            return  # the headset is open: it carries whichever call is live
        try:
            await self.audio.begin()
            if call.ended or self.connection is not connection:
                # The call ended while the devices opened.
                if not self._audio_calls - {call.call_id}:
                    self._audio_calls.clear()
                    await self.audio.end()
                return
            connection.attach(self.audio.outgoing)
            self.audio.play(self._listen(connection.receiver))
            self._tasks.spawn(self._audio_clock(call, connection), "audio-clock")
        except Exception as exc:
            # The customer must not be lost to a broken headset: the platform
            # gives the call to the next agent.
            self._emit(
                events.Error(message=f"audio device: {exc}", code="audio", call_id=call.call_id)
            )
            logger.error("audio device failed; handing %s back: %s", call.call_id, exc)
            self._audio_calls.discard(call.call_id)
            await self._send(Hangup(call_id=call.call_id, requeue=True))
            await self._end_call(call, "audio_failure")

    def _listen(self, receiver: AudioReceiver) -> Pull:
        """What the speaker plays: the jitter buffer's audio (the connection
        carries the live call) with the agent's key feedback mixed in,
        noting when the far end of each call is first heard."""

        def pull(play_at: float, now: float) -> np.ndarray:
            samples = receiver.pull(play_at, now)
            call = self._live_call()
            if call is None:
                return samples
            if call.key_feedback.size:
                samples = call.mix_key_feedback(samples)
            if not call.heard and samples.size and np.abs(samples).max() > AUDIBLE:
                call.heard = True
                ms = (time.monotonic() - call.answered_at) * 1000
                self._emit(events.Hearing(call_id=call.call_id, since_answer_ms=round(ms, 2)))
            return samples

        return pull

    async def _audio_clock(self, call: Call, connection: PhoneConnection) -> None:
        """The ``audio_clock`` event, once the microphone's first frame is out."""
        mic_at = await connection.track.source_started(timeout=1.0)
        if call.ended:
            return
        speaker = self.audio.speaker
        self._emit(
            events.AudioClock(
                call_id=call.call_id,
                mic_started_at=mic_at,
                speaker_started_at=getattr(speaker, "clock_started_at", None) or time.time(),
                speaker_file_offset_s=getattr(speaker, "clock_offset_s", None),
            )
        )

    async def dial(self, number: str | None = None, *, agent: str | None = None) -> Call:
        """Call ``number``, or another ``agent`` by name (an internal call),
        over the kept connection (or one set up for it: R1). The call is
        ``dialing`` at once, ``ringing`` when the far end rings,
        ``connected`` when it answers; a refusal (an unknown number, an
        agent who is busy) ends it with the platform's error code as its
        reason."""
        if self.agent is None:
            raise PhoneError("sign in first")
        if (number is None) == (agent is None):
            raise PhoneError("dial a number or an agent: one of the two")
        if number is not None and not re.fullmatch(PHONE_NUMBER_PATTERN, number):
            raise PhoneError(
                f"{number!r} is not a phone number: digits, an optional leading +, 2 to 15 digits"
            )
        if agent is not None and (not agent or len(agent) > 64):
            raise PhoneError("an agent's name is 1 to 64 characters")
        if agent == self.agent:
            raise PhoneError("that is you: name another agent")
        for other in self.calls.values():
            if other.state is not CallState.HELD:
                raise PhoneError(f"put call {other.call_id} on hold first, or end it")
        call = Call(
            "call-" + secrets.token_hex(6),
            Direction.OUTBOUND if agent is None else Direction.INTERNAL,
            number or agent or "",
            connection_id=self.connection.id if self.connection is not None else "",
            state=CallState.DIALING,
            listener=self._call_changed,
        )
        self._begin_call(call, "dialed")
        try:
            await self._send(Dial(call_id=call.call_id, number=number, agent=agent))
        except PhoneError:
            await self._end_call(call, "not_sent")
            raise
        return call

    async def decline(self, call_id: str | None = None) -> None:
        call = self._require_call(call_id, "alerting")
        await self._send(DeclineCall(call_id=call.call_id))
        await self._end_call(call, "declined")

    async def hangup(self, call_id: str | None = None) -> None:
        call = self._require_call(call_id, "dialing", "ringing", "answering", "connected", "held")
        await self._send(Hangup(call_id=call.call_id))
        await self._end_call(call, "agent_hangup")

    async def hold(self, call_id: str | None = None) -> None:
        """Ask the platform to hold the call; ``Held`` follows when it has.

        The platform judges the call's state (a call that is not connected,
        or already held, is refused with ``wrong_state``, reported as an
        ``Error`` event); the microphone stays open while held but only
        silence is sent, and the platform drops the agent's audio too.
        """
        call = self._require_call(call_id)
        await self._send(HoldCall(call_id=call.call_id))

    async def unhold(self, call_id: str | None = None) -> None:
        """Take a held call off hold; the platform holds the call the agent
        is on meanwhile, if any (they swap)."""
        call = self._require_call(call_id, "held")
        await self._send(UnholdCall(call_id=call.call_id))

    # --- transfer and conference (the platform decides; ``party`` and the
    # calls' own events follow) --------------------------------------------------

    async def transfer(
        self,
        *,
        agent: str | None = None,
        queue: str | None = None,
        number: str | None = None,
        consult: bool = False,
        call_id: str | None = None,
    ) -> None:
        """Hand the connected call to an agent, a queue or a number: blind
        (it ends here with ``transferred``), or after a consult (the customer
        held while the agent talks with the target; then
        ``complete_transfer`` or ``cancel_transfer``)."""
        if [agent, queue, number].count(None) != 2:
            raise PhoneError("name one target: an agent, a queue or a number")
        if number is not None and not re.fullmatch(PHONE_NUMBER_PATTERN, number):
            raise PhoneError(f"{number!r} is not a phone number")
        call = self._require_call(call_id, "connected", "held")
        await self._send(
            TransferCall(
                call_id=call.call_id, agent=agent, queue=queue, number=number, consult=consult
            )
        )

    async def complete_transfer(self, call_id: str | None = None) -> None:
        call = self._require_call(call_id, "connected", "held")
        await self._send(CompleteTransfer(call_id=call.call_id))

    async def cancel_transfer(self, call_id: str | None = None) -> None:
        call = self._require_call(call_id, "connected", "held")
        await self._send(CancelTransfer(call_id=call.call_id))

    async def conference(
        self, *, agent: str | None = None, number: str | None = None, call_id: str | None = None
    ) -> None:
        """Add a third party to the connected call; once they answer, each of
        the three hears the two others."""
        if [agent, number].count(None) != 1:
            raise PhoneError("name one party to add: an agent or a number")
        call = self._require_call(call_id, "connected")
        await self._send(AddToConference(call_id=call.call_id, agent=agent, number=number))

    async def leave_conference(self, call_id: str | None = None) -> None:
        call = self._require_call(call_id, "connected")
        await self._send(LeaveConference(call_id=call.call_id))

    async def send_dtmf(self, digits: str, call_id: str | None = None) -> None:
        """Play DTMF ``digits`` (0-9 * # A-D, at most 32) to the customer, in band
        on the platform, with quiet key feedback in the agent's speaker."""
        try:
            validate_dtmf(digits)
        except ValueError as exc:
            raise PhoneError(str(exc)) from None
        call = self._require_call(call_id)
        await self._send(SendDtmf(call_id=call.call_id, digits=digits))
        if call.state is CallState.CONNECTED:
            call.add_key_feedback(digits)
        self._emit(events.DtmfSent(call_id=call.call_id, digits=digits))

    def set_voice_processing(self, on: bool) -> None:
        """Noise suppression and automatic gain control on the microphone,
        from the next frame on (a call in progress included)."""
        outgoing = self.audio.outgoing
        outgoing.enabled = on
        if on:
            outgoing.prepare()
        self.settings = dataclasses.replace(self.settings, voice_processing=on)

    def set_mute(self, on: bool) -> None:
        self._require_call(None, "answering", "connected", "held")
        assert self.connection is not None
        self.connection.muted = on
        self._emit(events.Muted(on=on))

    async def set_on_queue(self, on: bool) -> None:
        await self._send(SetPresence(on_queue=on))

    async def set_status(self, status: str, reason: str = "") -> None:
        """Set the agent's status (``available`` is on queue), with one of the
        reasons the platform lists for it, or none; ``status`` follows."""
        if self.agent is None:
            raise PhoneError("sign in first")
        if status not in AGENT_STATUSES:
            raise PhoneError(f"{status!r} is not a status; one of {', '.join(AGENT_STATUSES)}")
        if self.after_call_work is not None:
            raise PhoneError("finish after-call work first: wrap up with a code")
        allowed = self.status_reasons.get(status, [])
        if reason and reason not in allowed:
            listed = ", ".join(allowed) if allowed else "none"
            raise PhoneError(f"{reason!r} is not a reason for {status} (reasons: {listed})")
        await self._send(SetStatus(status=status, reason=reason))  # type: ignore[arg-type]

    async def wrap_up(self, code: str, call_id: str | None = None) -> None:
        """End after-call work with one of its codes (it goes in the call's
        record); the status the agent had before the call follows."""
        acw = self.after_call_work
        if acw is None:
            raise PhoneError("there is no after-call work to wrap up")
        if call_id is not None and call_id != acw.call_id:
            raise PhoneError(f"the after-call work is on call {acw.call_id!r}, not {call_id!r}")
        if code not in acw.codes:
            raise PhoneError(f"{code!r} is not a wrap-up code (codes: {', '.join(acw.codes)})")
        await self._send(WrapUp(call_id=acw.call_id, code=code))

    async def set_persistent(self, on: bool) -> None:
        self.connection_state.setting_changed(on)
        await self._send(SetPersistent(on=on))

    async def end_connection(self) -> None:
        await self._send(EndConnection())

    def switch_devices(self, mic_device: str | None, speaker_device: str | None) -> bool:
        """Use these devices from the next call rather than the next sign-in;
        False during a call (or while a device is still open)."""
        if self.calls or not self.audio.use_devices(mic_device, speaker_device):
            return False
        self.settings = dataclasses.replace(
            self.settings, mic_device=mic_device, speaker_device=speaker_device
        )
        return True

    async def close(self) -> None:
        """Hang up, sign out, close the connection and the devices. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self.session.closing()  # the socket's end is expected from here on
        for call in list(self.calls.values()):
            try:  # one call that cannot be ended here must not keep the others
                if call.phase == "alerting":
                    await self.decline(call.call_id)
                else:
                    await self.hangup(call.call_id)
            except PhoneError as exc:
                logger.info("closing %s: %s", call.call_id, exc)
        try:
            if self.agent is not None:
                await self._send(SignOut())
        except PhoneError as exc:
            logger.info("closing: %s", exc)
        await self._end_all_calls("closed")
        await self._drop_connection("closed")
        if self.agent is not None:
            self.agent = None
            self.connection_state.signed_out("closed")
        await self._tasks.close()
        await self.session.close()
        await self.audio.close()
