"""The window's one way to act on the phone: commands in, owned tasks out.

``PhoneController`` owns the engine's lifetime (one ``PhoneEngine`` per
sign-in, closed at sign-out) and turns each command from a widget into an
owned task on the qasync loop. Widgets call its synchronous methods and
listen to its signals and to the bridges; they never hold the engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal

from agent_phone.media.ice import restrict_ice_addresses
from agent_phone.phone import events
from agent_phone.phone.audio_io import call_audio
from agent_phone.phone.engine import Observer, PhoneEngine
from agent_phone.phone.errors import PhoneError
from agent_phone.phone.settings import PhoneSettings
from agent_phone.ui.bridges import ConnectionStateBridge, PhoneBridge
from agent_phone.ui.tasks import OwnedTasks

logger = logging.getLogger(__name__)

EngineFactory = Callable[[PhoneSettings], PhoneEngine]
Command = Callable[[PhoneEngine], Coroutine[Any, Any, None]]


class SessionState(enum.Enum):
    SIGNED_OUT = "signed_out"
    SIGNING_IN = "signing_in"
    SIGNED_IN = "signed_in"
    #: The platform went away; the engine is signing in again by itself.
    RECONNECTING = "reconnecting"
    SIGNING_OUT = "signing_out"


def default_engine(settings: PhoneSettings) -> PhoneEngine:
    """An engine on the devices (or files) the settings name."""
    audio = call_audio(
        mic_device=settings.mic_device,
        mic_file=settings.mic_file,
        speaker_device=settings.speaker_device,
        speaker_file=settings.speaker_file,
        voice_processing=settings.voice_processing,
    )
    return PhoneEngine(settings, audio)


class PhoneController(QObject):
    state_changed = Signal(object)  # SessionState
    #: Sign-in failed; the engine's message for the agent.
    sign_in_failed = Signal(str)
    #: The session ended; the reason (``requested``, ``signed_in_elsewhere``, ...).
    signed_out = Signal(str)
    #: A command failed; a sentence for the agent.
    failed = Signal(str)
    #: Something the agent should know that is not a failure.
    note = Signal(str)
    #: Answering failed (the call may still be ringing); ``failed`` says why.
    answer_failed = Signal()

    def __init__(
        self,
        phone: PhoneBridge,
        connection: ConnectionStateBridge,
        engine_factory: EngineFactory = default_engine,
        parent: QObject | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        super().__init__(parent)
        #: Engine observers with no Qt in them (the ringer, the call history),
        #: subscribed to each engine this controller makes.
        self._observers = tuple(observers)
        self._unsubscribe: list[Callable[[], None]] = []
        self._phone = phone
        self._connection = connection
        self._factory = engine_factory
        self._engine: PhoneEngine | None = None
        self._state = SessionState.SIGNED_OUT
        self._sign_in_task: asyncio.Task[Any] | None = None
        self._closed = False
        self.tasks = OwnedTasks("phone", self)
        self.tasks.failed.connect(self.failed)
        phone.session.connect(self._on_session)

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def in_call(self) -> bool:
        return self._engine is not None and self._engine.call is not None

    def _set_state(self, state: SessionState, why: str) -> None:
        if state is self._state:
            return
        logger.info("session %s -> %s (%s)", self._state.value, state.value, why)
        self._state = state
        self.state_changed.emit(state)

    # --- session -------------------------------------------------------------------

    def sign_in(self, settings: PhoneSettings) -> None:
        if self._closed or self._state is not SessionState.SIGNED_OUT:
            logger.warning("sign-in ignored: session is %s", self._state.value)
            return
        self._set_state(SessionState.SIGNING_IN, f"{settings.user} at {settings.platform}")
        self._sign_in_task = self.tasks.spawn("sign in", self._sign_in(settings))

    async def _sign_in(self, settings: PhoneSettings) -> None:
        # Process-wide in aioice; set before each engine so a changed setting applies.
        restrict_ice_addresses(settings.ice_addresses)
        engine = self._factory(settings)
        self._engine = engine
        self._phone.attach(engine)
        self._connection.attach(engine.connection_state)
        self._unsubscribe = [engine.subscribe(observer) for observer in self._observers]
        try:
            await engine.start()
        except PhoneError as exc:  # SignInError, or going on queue failed
            await self._discard_engine()
            self._set_state(SessionState.SIGNED_OUT, "sign-in failed")
            self.sign_in_failed.emit(str(exc))
            return
        except BaseException:
            await self._discard_engine()
            self._set_state(SessionState.SIGNED_OUT, "sign-in aborted")
            raise
        self._set_state(SessionState.SIGNED_IN, "platform accepted")

    def sign_out(self) -> None:
        if self._state in (SessionState.SIGNED_IN, SessionState.RECONNECTING):
            self._set_state(SessionState.SIGNING_OUT, "requested")
            self.tasks.spawn("sign out", self._finish_session("requested"))

    def _on_session(self, event: events.Session) -> None:
        """The engine's platform session decides whether to resume, sign in
        again or give up; the window's session state follows it."""
        if self._engine is None or self._state not in (
            SessionState.SIGNED_IN,
            SessionState.RECONNECTING,
        ):
            return  # signing in or out: this controller's own doing
        match event.state:
            case "reconnecting":
                self._set_state(SessionState.RECONNECTING, event.reason)
            case "signed_in":
                self._set_state(SessionState.SIGNED_IN, event.reason)
            case "signed_out" | "closed":
                self._set_state(SessionState.SIGNING_OUT, event.reason)
                self.tasks.spawn("finish the session", self._finish_session(event.reason))

    async def _finish_session(self, reason: str) -> None:
        try:
            await self._discard_engine()
        finally:
            self._set_state(SessionState.SIGNED_OUT, reason)
            self.signed_out.emit(reason)

    async def _discard_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        try:
            await engine.close()
        finally:
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            self._unsubscribe = []
            self._phone.detach()
            self._connection.detach()

    async def close(self) -> None:
        """Hang up, sign out and close the engine (quitting awaits this). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._sign_in_task is not None and not self._sign_in_task.done():
            self._sign_in_task.cancel()
        # In-flight commands (a hang-up just clicked) finish first, briefly.
        await self.tasks.close(timeout=3.0)
        await self._discard_engine()
        self._set_state(SessionState.SIGNED_OUT, "closed")

    # --- commands --------------------------------------------------------------------

    def _command(self, what: str, command: Command) -> None:
        engine = self._engine
        if engine is None or self._state is not SessionState.SIGNED_IN:
            self.failed.emit(f"Cannot {what}: not signed in.")
            return
        self.tasks.spawn(what, command(engine))

    def answer(self) -> None:
        self._command("answer the call", self._answer)

    async def _answer(self, engine: PhoneEngine) -> None:
        try:
            await engine.answer()
        except PhoneError:
            self.answer_failed.emit()
            raise

    def dial(self, number: str) -> None:
        self._command(f"call {number}", lambda e: self._dial(e, number))

    async def _dial(self, engine: PhoneEngine, number: str) -> None:
        await engine.dial(number)

    def decline(self) -> None:
        self._command("decline the call", lambda e: e.decline())

    def hangup(self) -> None:
        self._command("hang up", lambda e: e.hangup())

    # (Named calls, for call waiting: the call beside the one shown. Not
    # keyword arguments of the methods above, which QAction.triggered calls
    # with its ``checked``.)

    def answer_call(self, call_id: str) -> None:
        """Answer a waiting call: the platform holds the call the agent is on."""
        self._command("answer the waiting call", lambda e: e.answer(call_id))

    def decline_call(self, call_id: str) -> None:
        self._command("decline the waiting call", lambda e: e.decline(call_id))

    def resume_call(self, call_id: str) -> None:
        """Take a held call off hold: the platform holds the one the agent is on (a swap)."""
        self._command("swap calls", lambda e: e.unhold(call_id))

    def hangup_call(self, call_id: str) -> None:
        self._command("hang up the held call", lambda e: e.hangup(call_id))

    def set_on_queue(self, on: bool) -> None:
        self._command("go on queue" if on else "go off queue", lambda e: e.set_on_queue(on))

    def set_status(self, status: str, reason: str = "") -> None:
        self._command(f"set the status to {status}", lambda e: e.set_status(status, reason))

    def transfer(self, kind: str, target: str, consult: bool) -> None:
        """``kind``: ``agent``, ``queue`` or ``number``."""
        what = f"{'consult' if consult else 'transfer to'} {target}"
        self._command(what, lambda e: e.transfer(**{kind: target}, consult=consult))

    def complete_transfer(self) -> None:
        self._command("complete the transfer", lambda e: e.complete_transfer())

    def cancel_transfer(self) -> None:
        self._command("cancel the transfer", lambda e: e.cancel_transfer())

    def conference(self, kind: str, target: str) -> None:
        self._command(f"add {target}", lambda e: e.conference(**{kind: target}))

    def leave_conference(self) -> None:
        self._command("leave the conference", lambda e: e.leave_conference())

    def wrap_up(self, code: str) -> None:
        self._command(f"wrap up with {code!r}", lambda e: e.wrap_up(code))

    def set_mute(self, on: bool) -> None:
        engine = self._engine
        try:
            if engine is None:
                raise PhoneError("not signed in")
            engine.set_mute(on)
        except PhoneError as exc:
            self.failed.emit(f"Cannot {'mute' if on else 'unmute'}: {exc}")

    def set_hold(self, on: bool) -> None:
        """Ask for hold (or resume); the panel follows the platform's ``held``."""
        what = "put the call on hold" if on else "take the call off hold"
        self._command(what, lambda e: e.hold() if on else e.unhold())

    def send_dtmf(self, digits: str) -> None:
        self._command(f"send {digits}", lambda e: e.send_dtmf(digits))

    def set_persistent(self, on: bool) -> None:
        """The setting; applied at once when signed in, else at the next sign-in."""
        if self._engine is None or self._state is not SessionState.SIGNED_IN:
            return
        if not on and self.in_call:
            self.note.emit("The persistent connection will close when this call ends.")
        self._command("change the persistent-connection setting", lambda e: e.set_persistent(on))

    def end_connection(self) -> None:
        if self.in_call:
            self.note.emit("The persistent connection will end when the current call ends.")
        self._command("end the persistent connection", lambda e: e.end_connection())

    def set_auto_answer(self, on: bool) -> None:
        # The engine has no command for this; it reads settings.auto_answer at
        # each offer, so replacing its frozen settings takes effect from the
        # next call. (An engine.set_auto_answer() is requested.)
        engine = self._engine
        if engine is not None:
            engine.settings = dataclasses.replace(engine.settings, auto_answer=on)
            logger.info("auto answer %s", "on" if on else "off")

    def set_voice_processing(self, on: bool) -> None:
        """Noise suppression and AGC on the microphone: at once, a call included."""
        engine = self._engine
        if engine is not None:
            engine.set_voice_processing(on)
            logger.info("voice processing %s", "on" if on else "off")

    def switch_devices(self, mic: str | None, speaker: str | None) -> bool:
        """Use these devices from the next call; False when only the next sign-in can."""
        engine = self._engine
        if engine is None:
            return True  # the next sign-in reads the settings anyway
        return engine.switch_devices(mic, speaker)
