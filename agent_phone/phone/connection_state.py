"""The connection-state model: the one object that decides what the
persistent-connection indicator shows (R4).

It changes only on facts: the agent's setting, sign-in and sign-out, and the
platform's reports of the media connection (``connection_state`` messages)
or the phone's own WebRTC stack noticing the connection died. Each change is
logged ``old -> new`` with its reason and emitted once.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent_phone.protocol import ConnectionState

logger = logging.getLogger(__name__)


class Indicator(enum.Enum):
    #: The setting is off, or the agent is signed out.
    OFF = "off"
    #: The setting is on but no connection is kept (before activation, after
    #: a timeout, a stop or a failure).
    INACTIVE = "inactive"
    CONNECTING = "connecting"
    #: A kept connection is up: the green signal icon.
    ACTIVE = "active"


@dataclass(frozen=True)
class ConnectionStatus:
    state: Indicator
    reason: str
    in_call: bool = False
    #: Unix time at which the platform will close the idle connection.
    expires_at: float | None = None
    connection_id: str | None = None


Listener = Callable[[ConnectionStatus], None]


class ConnectionStateModel:
    def __init__(self, persistent: bool) -> None:
        self._persistent = persistent
        self._signed_in = False
        self._status = ConnectionStatus(Indicator.OFF, "signed_out")
        self._listeners: list[Listener] = []

    @property
    def status(self) -> ConnectionStatus:
        return self._status

    @property
    def persistent(self) -> bool:
        return self._persistent

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # --- facts -----------------------------------------------------------------

    def signed_in(self) -> None:
        self._signed_in = True
        self._set(Indicator.INACTIVE if self._persistent else Indicator.OFF, "signed_in")

    def signed_out(self, reason: str) -> None:
        self._signed_in = False
        self._set(Indicator.OFF, reason)

    def setting_changed(self, persistent: bool) -> None:
        self._persistent = persistent
        if not self._signed_in:
            return
        current = self._status
        if persistent:
            if current.state is Indicator.OFF:
                self._set(Indicator.INACTIVE, "setting_on")
        elif current.state is Indicator.ACTIVE and current.in_call:
            # Ends with the call, never during it (R10): say so.
            self._set(Indicator.ACTIVE, "closing_after_call", True, None, current.connection_id)
        else:
            self._set(Indicator.OFF, "setting_off")

    def platform_reported(self, report: ConnectionState) -> None:
        """The platform's ``connection_state`` message."""
        if not self._signed_in:
            return
        was = self._status
        if not self._persistent:
            # With the setting off only the end of a connection that was kept
            # shows (R10); a connection for one call is not a persistent one.
            if was.state is not Indicator.ACTIVE:
                return
            if report.state == "active" and report.in_call:
                self._set(Indicator.ACTIVE, report.reason, True, None, report.connection_id)
            else:
                self._set(
                    Indicator.OFF, report.reason if report.state == "closed" else "setting_off"
                )
        elif report.state == "closed":
            self._set(Indicator.INACTIVE, report.reason)
        elif report.state == "connecting":
            self._set(Indicator.CONNECTING, report.reason, False, None, report.connection_id)
        elif report.state == "active":
            self._set(
                Indicator.ACTIVE,
                report.reason,
                report.in_call,
                None if report.in_call else report.expires_at,
                report.connection_id,
            )

    def connection_lost(self, connection_id: str, reason: str) -> None:
        """The phone's own WebRTC stack saw the connection die."""
        if self._status.connection_id == connection_id and self._status.state in (
            Indicator.ACTIVE,
            Indicator.CONNECTING,
        ):
            self._set(Indicator.INACTIVE if self._persistent else Indicator.OFF, reason)

    # --- the one place the status changes --------------------------------------

    def _set(
        self,
        state: Indicator,
        reason: str,
        in_call: bool = False,
        expires_at: float | None = None,
        connection_id: str | None = None,
    ) -> None:
        new = ConnectionStatus(state, reason, in_call, expires_at, connection_id)
        if new == self._status:
            return
        old = self._status
        self._status = new
        logger.info(
            "indicator %s -> %s (%s, connection %s)",
            old.state.value,
            state.value,
            reason,
            connection_id,
        )
        for listener in list(self._listeners):
            listener(new)
