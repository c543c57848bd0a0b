"""What the phone engine tells its observers (a window, the headless phone, tests).

Each event is a frozen dataclass; ``name`` is its name in the headless phone's
JSON lines, and its fields are the line's fields.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class PhoneEvent:
    name: ClassVar[str]
    t: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.name, **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class SignedIn(PhoneEvent):
    name: ClassVar[str] = "signed_in"
    agent: str
    permissions: list[str]
    queues: list[str]
    #: The reasons the platform accepts for each status.
    status_reasons: dict[str, list[str]] = field(default_factory=dict)
    #: Whom calls may be transferred to: the other agents, every queue.
    directory_agents: list[str] = field(default_factory=list)
    directory_queues: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SignedOut(PhoneEvent):
    name: ClassVar[str] = "signed_out"
    reason: str


@dataclass(frozen=True, kw_only=True)
class Session(PhoneEvent):
    """The session with the platform changed state (agent_phone/phone/session.py):
    ``signed_out``, ``signing_in``, ``signed_in``, ``resuming``,
    ``reconnecting`` or ``closed``; told from the first sign-in on (a
    sign-in that fails is its error alone)."""

    name: ClassVar[str] = "session"
    state: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Reconnecting(PhoneEvent):
    """The platform went away; the phone will try again after ``delay_s``."""

    name: ClassVar[str] = "reconnecting"
    attempt: int
    delay_s: float


@dataclass(frozen=True, kw_only=True)
class Presence(PhoneEvent):
    name: ClassVar[str] = "presence"
    on_queue: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class Status(PhoneEvent):
    """The agent's status, as the platform has it now (docs/headless.md)."""

    name: ClassVar[str] = "status"
    status: str
    reason: str
    #: Unix time the status began (the time in it is shown from this).
    since: float
    #: ``requested``, ``sign_in``, or why the platform set it.
    cause: str


@dataclass(frozen=True, kw_only=True)
class Party(PhoneEvent):
    """Another agent on one of the agent's calls: offered it (``alerting``),
    on it (``connected``) or gone (``ended``, with ``reason``)."""

    name: ClassVar[str] = "party"
    call_id: str
    agent: str
    #: ``consult`` or ``conference``.
    role: str
    state: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class AfterCallWork(PhoneEvent):
    """The call ended and the agent is in after-call work: no call comes
    until they wrap it up with one of ``codes`` (``wrap_up``) or
    ``deadline`` (Unix time) passes (docs/headless.md)."""

    name: ClassVar[str] = "after_call_work"
    call_id: str
    codes: list[str]
    deadline: float
    queue: str = ""
    timeout_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Connection(PhoneEvent):
    """The persistent-connection indicator changed (see ConnectionStateModel)."""

    name: ClassVar[str] = "connection"
    state: str
    reason: str
    in_call: bool = False
    expires_at: float | None = None
    connection_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class CallChanged(PhoneEvent):
    """A call's state changed, or a call began (``previous`` None): the whole
    call as the engine keeps it (agent_phone/phone/call.py), so front-ends
    need nothing else to show it. Sent before the older per-step events
    (``alerting``, ``answered``, ``held``, ``ended``)."""

    name: ClassVar[str] = "call"
    call_id: str
    #: dialing, ringing, alerting, connected, held or ended.
    state: str
    #: inbound, outbound or internal.
    direction: str
    #: The other end: the caller, the number dialed, the agent called.
    peer: str
    previous: str | None
    #: Why it changed (for ``ended``, the end reason).
    reason: str
    queue: str = ""
    #: The agent answered it (by a click or auto answer).
    answered: bool = False
    auto_answer: bool = False
    over_persistent_connection: bool = False
    #: Routed at the platform -> offered here.
    delivery_ms: float = 0.0
    #: When it was offered or dialed (Unix time).
    started_at: float = 0.0
    #: Connected time so far (to the end, for ``ended``).
    duration_s: float = 0.0
    #: Offered by another agent: who, and why (``transfer``, ``consult``,
    #: ``conference``).
    from_agent: str = ""
    purpose: str = ""
    #: Offered while the agent is on another call (call waiting): it beeps
    #: in the headset rather than ringing, and is never auto-answered.
    waiting: bool = False


@dataclass(frozen=True, kw_only=True)
class Alerting(PhoneEvent):
    name: ClassVar[str] = "alerting"
    call_id: str
    caller: str
    queue: str
    over_persistent_connection: bool
    #: Routed at the platform -> alerting here.
    delivery_ms: float
    auto_answer: bool


@dataclass(frozen=True, kw_only=True)
class Answered(PhoneEvent):
    name: ClassVar[str] = "answered"
    call_id: str
    over_persistent_connection: bool
    delivery_ms: float
    auto: bool


@dataclass(frozen=True, kw_only=True)
class Hearing(PhoneEvent):
    """The first audible frame of the customer reached the speaker."""

    name: ClassVar[str] = "hearing"
    call_id: str
    #: Answer given -> first audible frame at the speaker.
    since_answer_ms: float


@dataclass(frozen=True, kw_only=True)
class Ended(PhoneEvent):
    name: ClassVar[str] = "ended"
    call_id: str
    reason: str
    duration_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Muted(PhoneEvent):
    name: ClassVar[str] = "muted"
    on: bool


@dataclass(frozen=True, kw_only=True)
class Error(PhoneEvent):
    name: ClassVar[str] = "error"
    message: str
    code: str = "error"
    call_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Quality(PhoneEvent):
    """Call quality during a call (every ~2 s) and at its end (``final``);
    counts are for this call only (agent_phone/media/quality.py)."""

    name: ClassVar[str] = "quality"
    call_id: str
    final: bool
    packets_received: int
    packets_lost: int
    fraction_lost: float
    jitter_ms: float | None
    rtt_ms: float | None
    packets_sent: int
    remote_packets_lost: int
    remote_fraction_lost: float | None
    #: What the agent heard, from the jitter buffer (agent_phone/media/quality.py).
    packets_discarded: int = 0
    total_samples_received: int = 0
    concealed_samples: int = 0
    silent_concealed_samples: int = 0
    concealment_events: int = 0
    fec_recovered_samples: int = 0
    inserted_samples_for_deceleration: int = 0
    removed_samples_for_acceleration: int = 0
    jitter_buffer_delay_ms: float | None = None
    jitter_buffer_target_delay_ms: float | None = None
    concealed_ratio: float = 0.0
    #: ``good``, ``fair`` or ``poor``: what the window shows.
    grade: str = "good"


@dataclass(frozen=True, kw_only=True)
class AudioClock(PhoneEvent):
    """A call's audio started: when (Unix time) the microphone's first frame
    was sent and the speaker's playout began, and where in a
    ``--speaker-file`` this call's audio starts (None for a sound card)."""

    name: ClassVar[str] = "audio_clock"
    call_id: str
    mic_started_at: float | None
    speaker_started_at: float | None
    speaker_file_offset_s: float | None


@dataclass(frozen=True, kw_only=True)
class Held(PhoneEvent):
    """The platform put the call on hold (``on``) or took it off hold."""

    name: ClassVar[str] = "held"
    call_id: str
    on: bool


@dataclass(frozen=True, kw_only=True)
class DtmfSent(PhoneEvent):
    """DTMF digits went to the platform, which plays them to the customer."""

    name: ClassVar[str] = "dtmf"
    call_id: str
    digits: str


@dataclass(frozen=True, kw_only=True)
class DtmfReceived(PhoneEvent):
    """The customer pressed a key (an RFC 4733 event from their endpoint)."""

    name: ClassVar[str] = "dtmf_received"
    call_id: str
    digit: str


# --- sessions: token refresh and resume after a dropped WebSocket -------------


@dataclass(frozen=True, kw_only=True)
class SessionRefreshed(PhoneEvent):
    """The platform issued a new session token (the token itself is not shown)."""

    name: ClassVar[str] = "session_refreshed"
    expires_in_s: float


@dataclass(frozen=True, kw_only=True)
class Resuming(PhoneEvent):
    """The WebSocket to the platform dropped; the phone will try to resume its
    session (call and connection untouched) after ``delay_s``."""

    name: ClassVar[str] = "resuming"
    attempt: int
    delay_s: float


@dataclass(frozen=True, kw_only=True)
class Resumed(PhoneEvent):
    """The session is back on a new WebSocket; the phone's state was
    resynchronised from the platform's snapshot."""

    name: ClassVar[str] = "resumed"
    agent: str
    on_queue: bool
    #: The platform's media connection (none: ``None``) and its state.
    connection_id: str | None
    connection_state: str | None
    call_id: str | None
    call_state: str | None
    #: Since the WebSocket dropped.
    away_s: float
    attempts: int


@dataclass(frozen=True, kw_only=True)
class ResumeFailed(PhoneEvent):
    """The session could not be resumed; the phone signs in afresh (when
    ``--reconnect`` allows it) or stops, as after losing the platform."""

    name: ClassVar[str] = "resume_failed"
    #: The platform's refusal (``invalid_token``, ``token_expired``) or
    #: ``unreachable``/``no_connection``.
    code: str
    message: str
