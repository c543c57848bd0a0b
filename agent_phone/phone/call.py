"""A call as the phone keeps it: one ``Call`` per call, with its state, its
times, and the agent's own DTMF keys still to be played into their speaker.

The state changes in one method, ``Call.set_state``: it refuses a change
the call's life does not allow, logs ``old -> new`` and tells its listener
(the engine, which turns it into the ``call`` event) only on a change, as
``connection_state.py`` does for the indicator. Front-ends observe those
events and never rebuild a call from the platform's messages.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from agent_phone.media.tones import dtmf_samples

if TYPE_CHECKING:
    from agent_phone.phone.quality import QualityReporter

logger = logging.getLogger(__name__)

#: The agent's own DTMF keys, played quietly into their speaker as feedback.
KEY_FEEDBACK_DBM0 = -24.0
#: At most this much key feedback waits (10 s, like the platform's queue of keys).
KEY_FEEDBACK_MAX_SAMPLES = 480_000


class CallState(enum.Enum):
    #: Placed by the agent; the far end is not ringing yet.
    DIALING = "dialing"
    #: Placed by the agent and ringing at the far end.
    RINGING = "ringing"
    #: Offered to the agent, who has not answered yet (or whose answer is on
    #: its way: ``Call.answering``).
    ALERTING = "alerting"
    CONNECTED = "connected"
    #: Connected, and on hold as the platform confirmed.
    HELD = "held"
    ENDED = "ended"


class Direction(enum.Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


#: The changes a call's life allows; anything else is refused.
ALLOWED: dict[CallState, frozenset[CallState]] = {
    CallState.DIALING: frozenset({CallState.RINGING, CallState.CONNECTED, CallState.ENDED}),
    CallState.RINGING: frozenset({CallState.CONNECTED, CallState.ENDED}),
    CallState.ALERTING: frozenset({CallState.CONNECTED, CallState.ENDED}),
    CallState.CONNECTED: frozenset({CallState.HELD, CallState.ENDED}),
    CallState.HELD: frozenset({CallState.CONNECTED, CallState.ENDED}),
    CallState.ENDED: frozenset(),
}

#: Told of each change: the call, its state before, and why it changed.
Listener = Callable[["Call", CallState, str], None]


class Call:
    """One call of the agent's, from its offer (or dialing) to its end."""

    def __init__(
        self,
        call_id: str,
        direction: Direction,
        peer: str,
        *,
        queue: str = "",
        connection_id: str = "",
        over_persistent_connection: bool = False,
        delivery_ms: float = 0.0,
        auto: bool = False,
        state: CallState = CallState.ALERTING,
        listener: Listener | None = None,
        from_agent: str = "",
        purpose: str = "",
    ) -> None:
        self.call_id = call_id
        self.direction = direction
        #: Who is on the other end: the caller's name or number, an agent.
        self.peer = peer
        self.queue = queue
        #: The media connection that carries the call.
        self.connection_id = connection_id
        self.over_persistent_connection = over_persistent_connection
        #: Routed at the platform -> offered here.
        self.delivery_ms = delivery_ms
        #: Answered by auto answer, not by the agent.
        self.auto = auto
        #: Offered by another agent (not by a queue), and why: ``transfer``,
        #: ``consult`` or ``conference``.
        self.from_agent = from_agent
        self.purpose = purpose
        #: The other agents on the call now (consulted, or in a conference),
        #: by name: ``alerting`` or ``connected``.
        self.parties: dict[str, str] = {}
        self._state = state
        self._listener = listener
        #: When the call was offered or dialed (Unix time, and monotonic).
        self.started_wall = time.time()
        self.offered_at = time.monotonic()
        #: When the agent answered (0: not yet), and when it connected.
        self.answered_at = 0.0
        self.connected_at = 0.0
        self.ended_at = 0.0
        self.end_reason = ""
        #: The customer's first audible frame reached the speaker.
        self.heard = False
        #: The call's quality reporter while its audio flows.
        self.quality: QualityReporter | None = None
        #: Offered while the agent was on another call (call waiting).
        self.waiting = False
        #: Key feedback (and call-waiting beeps) still to be mixed into the speaker.
        self.key_feedback = np.zeros(0, dtype=np.int16)

    def __repr__(self) -> str:
        return f"<Call {self.call_id} {self.direction.value} {self._state.value}>"

    # --- state ----------------------------------------------------------------------

    @property
    def state(self) -> CallState:
        return self._state

    @property
    def ended(self) -> bool:
        return self._state is CallState.ENDED

    @property
    def held(self) -> bool:
        return self._state is CallState.HELD

    @property
    def answering(self) -> bool:
        """Answered by the agent, and not connected yet."""
        return self._state is CallState.ALERTING and self.answered_at > 0

    @property
    def phase(self) -> str:
        """The state as commands name it: ``answering`` for an alerting call
        whose answer is on its way, else the state's name."""
        return "answering" if self.answering else self._state.value

    @property
    def answered(self) -> bool:
        """The agent answered (by a click or auto answer)."""
        return self.answered_at > 0 or self.connected_at > 0

    @property
    def has_media(self) -> bool:
        """Its audio is (or is being) set up on the phone's devices."""
        return self.answering or self._state in (CallState.CONNECTED, CallState.HELD)

    @property
    def talk_s(self) -> float:
        """Connected time: to the end, or to now."""
        if not self.connected_at:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.connected_at

    def mark_answered(self) -> None:
        self.answered_at = time.monotonic()

    def set_state(self, new: CallState, reason: str) -> bool:
        """The one place a call's state changes. False, with nothing told,
        when ``new`` is the current state or not a change its life allows
        (a late or repeated message from the platform)."""
        old = self._state
        if new is old:
            return False
        if new not in ALLOWED[old]:
            logger.warning("%s: %s -> %s refused (%s)", self.call_id, old.value, new.value, reason)
            return False
        now = time.monotonic()
        if new is CallState.CONNECTED and not self.connected_at:
            self.connected_at = now
        elif new is CallState.ENDED:
            self.ended_at = now
            self.end_reason = reason
        if new is not CallState.CONNECTED:
            self.key_feedback = self.key_feedback[:0]
        self._state = new
        logger.info("%s: %s -> %s (%s)", self.call_id, old.value, new.value, reason)
        if self._listener is not None:
            self._listener(self, old, reason)
        return True

    # --- the agent's key feedback ------------------------------------------------------

    def add_key_feedback(self, digits: str) -> None:
        """Queue the tones of ``digits`` for the agent's speaker (bounded)."""
        self.add_sound(dtmf_samples(digits, level_dbm0=KEY_FEEDBACK_DBM0))

    def add_sound(self, samples: np.ndarray) -> None:
        """Queue ``samples`` for the agent's speaker only, over the call (bounded)."""
        if self.key_feedback.size < KEY_FEEDBACK_MAX_SAMPLES:
            self.key_feedback = np.concatenate([self.key_feedback, samples])

    def mix_key_feedback(self, samples: np.ndarray) -> np.ndarray:
        """``samples`` with the next stretch of the key feedback added."""
        n = min(samples.size, self.key_feedback.size)
        mixed = samples.astype(np.int32)
        mixed[:n] += self.key_feedback[:n]
        self.key_feedback = self.key_feedback[n:]
        out: np.ndarray = np.clip(mixed, -32768, 32767).astype(np.int16)
        return out
