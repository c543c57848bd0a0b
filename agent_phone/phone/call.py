"""The phone's current call, as the engine keeps it: its state, its times,
and the agent's own DTMF keys still to be played into their speaker."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from agent_phone.media.tones import dtmf_samples

#: The agent's own DTMF keys, played quietly into their speaker as feedback.
KEY_FEEDBACK_DBM0 = -24.0
#: At most this much key feedback waits (10 s, like the platform's queue of keys).
KEY_FEEDBACK_MAX_SAMPLES = 480_000


class CallState(enum.Enum):
    ALERTING = "alerting"
    ANSWERING = "answering"
    CONNECTED = "connected"


@dataclass
class CallInfo:
    call_id: str
    caller: str
    queue: str
    connection_id: str
    over_persistent_connection: bool
    delivery_ms: float
    state: CallState = CallState.ALERTING
    offered_at: float = 0.0
    answered_at: float = 0.0
    connected_at: float = 0.0
    heard: bool = False
    auto: bool = False
    #: On hold, as the platform last said (``call_held``).
    held: bool = False
    #: Key feedback still to be mixed into the speaker.
    key_feedback: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))

    def add_key_feedback(self, digits: str) -> None:
        """Queue the tones of ``digits`` for the agent's speaker (bounded)."""
        if self.key_feedback.size < KEY_FEEDBACK_MAX_SAMPLES:
            tones = dtmf_samples(digits, level_dbm0=KEY_FEEDBACK_DBM0)
            self.key_feedback = np.concatenate([self.key_feedback, tones])

    def mix_key_feedback(self, samples: np.ndarray) -> np.ndarray:
        """``samples`` with the next stretch of the key feedback added."""
        n = min(samples.size, self.key_feedback.size)
        mixed = samples.astype(np.int32)
        mixed[:n] += self.key_feedback[:n]
        self.key_feedback = self.key_feedback[n:]
        out: np.ndarray = np.clip(mixed, -32768, 32767).astype(np.int16)
        return out
