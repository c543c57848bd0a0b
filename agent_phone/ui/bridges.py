"""Qt bridges: one QObject per engine object, re-emitting its events as signals.

Widgets connect to these and never see the engine (STYLE.md habit 5). A
bridge outlives the engines it mirrors: each sign-in makes a new
``PhoneEngine`` (and with it a new ``ConnectionStateModel``), and the
controller attaches the bridges to it, so widgets connect once.

The engine calls its observers on the asyncio loop, which under qasync is
the Qt GUI thread, so emitting from the observer is a direct, same-thread
emission: no queued connection, no cross-thread Qt call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, SignalInstance

from agent_phone.phone import events
from agent_phone.phone.connection_state import (
    ConnectionStateModel,
    ConnectionStatus,
    Indicator,
)
from agent_phone.phone.engine import PhoneEngine

logger = logging.getLogger(__name__)

SIGNED_OUT = ConnectionStatus(Indicator.OFF, "signed_out")


class PhoneBridge(QObject):
    """The engine's events as Qt signals; each carries the event dataclass."""

    signed_in = Signal(object)  # events.SignedIn
    signed_out = Signal(object)  # events.SignedOut
    session = Signal(object)  # events.Session
    reconnecting = Signal(object)  # events.Reconnecting
    presence = Signal(object)  # events.Presence
    status = Signal(object)  # events.Status
    after_call_work = Signal(object)  # events.AfterCallWork
    connection = Signal(object)  # events.Connection
    #: Every change of every call (what front-ends show calls from).
    call = Signal(object)  # events.CallChanged
    alerting = Signal(object)  # events.Alerting
    answered = Signal(object)  # events.Answered
    hearing = Signal(object)  # events.Hearing
    ended = Signal(object)  # events.Ended
    muted = Signal(object)  # events.Muted
    held = Signal(object)  # events.Held
    party = Signal(object)  # events.Party
    dtmf = Signal(object)  # events.DtmfSent
    dtmf_received = Signal(object)  # events.DtmfReceived
    error = Signal(object)  # events.Error
    quality = Signal(object)  # events.Quality
    audio_clock = Signal(object)  # events.AudioClock
    resuming = Signal(object)  # events.Resuming
    resumed = Signal(object)  # events.Resumed
    resume_failed = Signal(object)  # events.ResumeFailed
    session_refreshed = Signal(object)  # events.SessionRefreshed
    #: Every event, after its own signal (for logs and tests). Not named
    #: ``event``: that would shadow QObject.event(), Qt's event dispatch.
    any_event = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._unsubscribe: Callable[[], None] | None = None
        self._signals: dict[type[events.PhoneEvent], SignalInstance] = {
            events.SignedIn: self.signed_in,
            events.SignedOut: self.signed_out,
            events.Session: self.session,
            events.Reconnecting: self.reconnecting,
            events.Presence: self.presence,
            events.Status: self.status,
            events.AfterCallWork: self.after_call_work,
            events.Connection: self.connection,
            events.CallChanged: self.call,
            events.Alerting: self.alerting,
            events.Answered: self.answered,
            events.Hearing: self.hearing,
            events.Ended: self.ended,
            events.Muted: self.muted,
            events.Held: self.held,
            events.Party: self.party,
            events.DtmfSent: self.dtmf,
            events.DtmfReceived: self.dtmf_received,
            events.Error: self.error,
            events.Quality: self.quality,
            events.AudioClock: self.audio_clock,
            events.Resuming: self.resuming,
            events.Resumed: self.resumed,
            events.ResumeFailed: self.resume_failed,
            events.SessionRefreshed: self.session_refreshed,
        }

    def attach(self, engine: PhoneEngine) -> None:
        self.detach()
        self._unsubscribe = engine.subscribe(self._on_event)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: events.PhoneEvent) -> None:
        signal = self._signals.get(type(event))
        if signal is None:
            logger.warning("no signal for engine event %s", event.name)
        else:
            signal.emit(event)
        self.any_event.emit(event)


class ConnectionStateBridge(QObject):
    """The connection-state model (what the indicator shows) as a Qt signal.

    ``status`` is the model's current status, ``SIGNED_OUT`` with no engine;
    ``changed`` fires only when it changes, as the model itself does.
    """

    changed = Signal(object)  # ConnectionStatus

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._model: ConnectionStateModel | None = None
        self._status = SIGNED_OUT

    @property
    def status(self) -> ConnectionStatus:
        return self._status

    def attach(self, model: ConnectionStateModel) -> None:
        self._model = model
        # The model offers no unsubscribe, so a detached model's listener stays
        # registered; it checks it is still the attached one before emitting.
        model.subscribe(lambda status: self._on_status(model, status))
        self._update(model.status)

    def detach(self) -> None:
        self._model = None
        if self._status.state is not Indicator.OFF:
            self._update(SIGNED_OUT)

    def _on_status(self, model: ConnectionStateModel, status: ConnectionStatus) -> None:
        if model is self._model:
            self._update(status)

    def _update(self, status: ConnectionStatus) -> None:
        if status == self._status:
            return
        self._status = status
        self.changed.emit(status)
