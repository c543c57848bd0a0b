"""Every message of the protocol, as typed msgspec structs.

A message is a JSON object whose ``"type"`` names its class (the tag below).
Fields without a default are required; unknown fields are ignored so that a
newer peer may add fields (adding is allowed, renaming is not). Changing the
meaning of a field or removing one is a new ``PROTOCOL_VERSION``.

Three conversations share this module:

- the agent's phone and the platform (``AgentToPlatform`` / ``PlatformToAgent``),
- a customer's trunk (the caller tool) and the platform
  (``CallerToPlatform`` / ``PlatformToCaller``),
- ``Error`` goes to either.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "AgentToPlatform",
    "AnswerCall",
    "CallAccepted",
    "CallConnected",
    "CallEnded",
    "CallHeld",
    "CallOffered",
    "CallRinging",
    "Dial",
    "WrapUp",
    "TransferCall",
    "CompleteTransfer",
    "CancelTransfer",
    "AddToConference",
    "LeaveConference",
    "PartyChanged",
    "AfterCallWork",
    "SetStatus",
    "StatusChanged",
    "AGENT_STATUSES",
    "PLATFORM_STATUSES",
    "PHONE_NUMBER_PATTERN",
    "IncomingCall",
    "IceCandidate",
    "DtmfReceived",
    "MAX_CANDIDATE_CHARS",
    "AcceptIncoming",
    "AwaitCalls",
    "AwaitingCalls",
    "CallerHangup",
    "CallerToPlatform",
    "ConnectionAnswer",
    "ConnectionOffer",
    "ConnectionState",
    "DeclineCall",
    "EndConnection",
    "Error",
    "Hangup",
    "HoldCall",
    "Message",
    "PlaceCall",
    "PlatformToAgent",
    "PlatformToCaller",
    "PresenceChanged",
    "QueuePosition",
    "QualityReport",
    "HeardQuality",
    "SendDtmf",
    "RefreshSession",
    "ResumeSession",
    "SessionRefreshed",
    "SessionResumed",
    "CallSnapshot",
    "SetPersistent",
    "SetPresence",
    "SignIn",
    "SignOut",
    "SignedIn",
    "SignedOut",
    "UnholdCall",
]


class Message(msgspec.Struct, tag_field="type", kw_only=True, frozen=True):
    """Base of every message; the subclass's tag is its ``"type"``."""


# --- either direction --------------------------------------------------------


class Error(Message, tag="error", frozen=True):
    #: A stable machine-readable code; see docs/protocol.md.
    code: str
    #: What went wrong, for a person.
    message: str
    #: The ``type`` of the message that caused it, when known.
    in_reply_to: str | None = None
    call_id: str | None = None
    #: With ``locked_out``: seconds until sign-in is accepted again.
    retry_after_s: float | None = None


# --- phone -> platform -------------------------------------------------------


class SignIn(Message, tag="sign_in", frozen=True):
    """First message on an agent's connection."""

    version: int
    user: str
    password: str
    #: "Maintain a persistent connection" (R2, R10).
    persistent: bool = True
    client: str = ""


class SetPresence(Message, tag="set_presence", frozen=True):
    on_queue: bool


class ConnectionAnswer(Message, tag="connection_answer", frozen=True):
    """The phone's SDP answer to a ``connection_offer`` (R1)."""

    connection_id: str
    sdp: str


class AnswerCall(Message, tag="answer_call", frozen=True):
    call_id: str


class DeclineCall(Message, tag="decline_call", frozen=True):
    call_id: str


class Hangup(Message, tag="hangup", frozen=True):
    call_id: str
    #: The phone cannot carry the call (its audio device failed): the
    #: customer goes back to the head of the queue instead of being cut off.
    requeue: bool = False


class SetPersistent(Message, tag="set_persistent", frozen=True):
    on: bool


class EndConnection(Message, tag="end_connection", frozen=True):
    """The agent ends the persistent connection (R9); waits for a current call."""


class SignOut(Message, tag="sign_out", frozen=True):
    pass


#: A call's id, as the phone makes one for a call it places.
CallId = Annotated[str, msgspec.Meta(pattern=r"^call-[0-9a-f]{12}$")]
#: A telephone number: E.164 (``+`` and up to 15 digits) or an extension.
PHONE_NUMBER_PATTERN = r"^\+?[0-9]{2,15}$"
PhoneNumber = Annotated[str, msgspec.Meta(pattern=PHONE_NUMBER_PATTERN)]


#: What an agent sets (``available`` is on queue: calls are routed to them).
AgentStatus = Literal[
    "available", "busy", "away", "break", "meal", "training", "meeting", "offline"
]
AGENT_STATUSES: tuple[str, ...] = AgentStatus.__args__  # type: ignore[attr-defined]
#: What only the platform sets.
PLATFORM_STATUSES = ("not_responding", "after_call_work")
#: A status's reason, from the platform's configuration (``[status_reasons]``).
StatusReason = Annotated[str, msgspec.Meta(max_length=64)]


class SetStatus(Message, tag="set_status", frozen=True):
    """The agent's status, with a reason the configuration lists for it
    (or none); ``available`` puts them on queue, any other takes them off."""

    status: AgentStatus
    reason: StatusReason = ""


class WrapUp(Message, tag="wrap_up", frozen=True):
    """The agent ends after-call work on ``call_id`` with one of the codes
    its ``after_call_work`` listed; the status they had before follows."""

    call_id: str
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


#: An agent's name, a queue's name (as the configuration spells them).
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class TransferCall(Message, tag="transfer_call", frozen=True):
    """Hand the connected call to another agent or queue (exactly one of
    ``agent``, ``queue``, ``number``). Blind (``consult`` false): the call
    leaves this phone at once. Consult: the customer is held and hears hold
    music while the target is offered the call to talk with this agent
    first; then ``complete_transfer`` or ``cancel_transfer``."""

    call_id: str
    agent: Name | None = None
    queue: Name | None = None
    number: PhoneNumber | None = None
    consult: bool = False


class CompleteTransfer(Message, tag="complete_transfer", frozen=True):
    """The consulted agent takes the customer; this phone leaves the call."""

    call_id: str


class CancelTransfer(Message, tag="cancel_transfer", frozen=True):
    """The consulted agent leaves; the customer is back with this phone."""

    call_id: str


class AddToConference(Message, tag="add_to_conference", frozen=True):
    """Offer the connected call to another agent (``agent``); once they
    answer, each of the three hears the two others."""

    call_id: str
    agent: Name | None = None
    number: PhoneNumber | None = None


class LeaveConference(Message, tag="leave_conference", frozen=True):
    """Leave a conference; the other two stay connected to each other."""

    call_id: str


class Dial(Message, tag="dial", frozen=True):
    """The agent places a call to ``number``, or to another ``agent`` by
    name (an internal call): one of the two (docs/protocol.md "Outbound
    calls"). The phone names the call; the platform answers ``call_ringing``
    when the far end rings, or an ``error`` with this ``call_id``."""

    call_id: CallId
    number: PhoneNumber | None = None
    agent: Name | None = None


# --- hold and DTMF (phone <-> platform) ----------------------------------------

#: 1 to 32 DTMF keys (the same rule as ``agent_phone.media.tones.validate_dtmf``).
DtmfDigits = Annotated[str, msgspec.Meta(pattern=r"^[0-9*#A-D]{1,32}$")]


class HoldCall(Message, tag="hold_call", frozen=True):
    """Put the connected call on hold: the customer hears the hold music."""

    call_id: str


class UnholdCall(Message, tag="unhold_call", frozen=True):
    """Take the held call off hold: the two sides hear each other again."""

    call_id: str


class SendDtmf(Message, tag="send_dtmf", frozen=True):
    """Play DTMF keys to the customer, in band (refused while held)."""

    call_id: str
    digits: DtmfDigits


class DtmfReceived(Message, tag="dtmf_received", frozen=True):
    """The customer (or a number on the call) pressed a key: an RFC 4733
    event from their endpoint."""

    call_id: str
    digit: Annotated[str, msgspec.Meta(pattern=r"^[0-9*#A-D]$")]


class CallHeld(Message, tag="call_held", frozen=True):
    """The platform put the call on hold (``on``) or took it off."""

    call_id: str
    on: bool


# --- what the agent heard (phone -> platform) -----------------------------------

#: A count of packets or 48 kHz samples (a day of audio is ~4e9 samples).
Count = Annotated[int, msgspec.Meta(ge=0, le=2**40)]
Millis = Annotated[float, msgspec.Meta(ge=0, le=3_600_000)]


class HeardQuality(msgspec.Struct, kw_only=True, frozen=True):
    """What the agent's phone played of one call: its jitter buffer's
    figures, named as WebRTC names them (agent_phone/media/quality.py)."""

    packets_received: Count = 0
    packets_lost: Count = 0
    packets_discarded: Count = 0
    total_samples_received: Count = 0
    concealed_samples: Count = 0
    silent_concealed_samples: Count = 0
    concealment_events: Count = 0
    fec_recovered_samples: Count = 0
    inserted_samples_for_deceleration: Count = 0
    removed_samples_for_acceleration: Count = 0
    jitter_buffer_delay_ms: Millis | None = None
    jitter_buffer_target_delay_ms: Millis | None = None
    jitter_ms: Millis | None = None
    rtt_ms: Millis | None = None
    concealed_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    grade: Literal["good", "fair", "poor"] = "good"


class QualityReport(Message, tag="quality_report", frozen=True):
    """After a call ends, what the agent heard of it; kept with the call's
    record (``heard_by_agent``). For the agent's own calls only."""

    call_id: str
    heard: HeardQuality


# --- sessions: token refresh and resume after a dropped WebSocket ------------


class RefreshSession(Message, tag="refresh_session", frozen=True):
    """A new session token before the current one expires; the old one is revoked."""


class ResumeSession(Message, tag="resume_session", frozen=True):
    """First message of a new WebSocket that takes over a session whose
    WebSocket dropped (within the platform's grace period)."""

    version: int
    session_token: str

    def __repr__(self) -> str:  # never the token in a log line
        return "ResumeSession(session_token=<hidden>)"


# --- trickle ICE: both conversations, both directions --------------------------

#: An ICE candidate line is well under this (RFC 8839: a few hundred chars).
MAX_CANDIDATE_CHARS = 512


class IceCandidate(Message, tag="ice_candidate", frozen=True, kw_only=True):
    """Trickle ICE (RFC 8838): one more ICE candidate of the sender's side of
    a media connection, after its offer or answer went without it. It names
    the connection as the offer and answer do: ``connection_id`` (an agent's
    connection) or ``call_id`` (a customer's call). ``candidate`` is the
    ``candidate`` string of an ``RTCIceCandidateInit`` (``candidate:...``);
    an empty string is the end of the sender's candidates."""

    candidate: Annotated[str, msgspec.Meta(max_length=MAX_CANDIDATE_CHARS)]
    connection_id: str | None = None
    call_id: str | None = None
    sdp_mid: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    sdp_mline_index: Annotated[int, msgspec.Meta(ge=0, le=15)] | None = None


AgentToPlatform = (
    SignIn
    | SetPresence
    | ConnectionAnswer
    | AnswerCall
    | DeclineCall
    | Hangup
    | SetPersistent
    | EndConnection
    | SignOut
    | HoldCall
    | UnholdCall
    | SendDtmf
    | RefreshSession
    | ResumeSession
    | QualityReport
    | Dial
    | SetStatus
    | WrapUp
    | TransferCall
    | CompleteTransfer
    | CancelTransfer
    | AddToConference
    | LeaveConference
    | IceCandidate
)


# --- platform -> phone -------------------------------------------------------


class SignedIn(Message, tag="signed_in", frozen=True):
    version: int
    agent: str
    permissions: list[str]
    queues: list[str]
    alert_timeout_s: float
    persistent_timeout_s: float
    #: Resumes this session on a new WebSocket (``resume_session``); refreshed
    #: with ``refresh_session`` before it expires. Never logged in full.
    session_token: str = ""
    token_expires_in_s: float = 0.0
    #: Unix time of the expiry (informative; phones use ``token_expires_in_s``).
    token_expires_at: float = 0.0
    #: How long the platform keeps the session after its WebSocket drops.
    resume_grace_s: float = 0.0
    #: The reasons the agent may give for each status (``set_status``).
    status_reasons: dict[str, list[str]] = msgspec.field(default_factory=dict)
    #: Whom the agent may transfer to or call: the other agents, every queue.
    directory_agents: list[str] = msgspec.field(default_factory=list)
    directory_queues: list[str] = msgspec.field(default_factory=list)

    def __repr__(self) -> str:  # never the token in a log line
        return f"SignedIn(agent={self.agent!r}, session_token=<hidden>)"


class SignedOut(Message, tag="signed_out", frozen=True):
    #: ``requested``, ``signed_in_elsewhere`` (R13), ``shutdown``.
    reason: str


class PresenceChanged(Message, tag="presence", frozen=True):
    on_queue: bool
    #: ``requested``, ``not_responding`` (R12), ``sign_in``.
    reason: str


class StatusChanged(Message, tag="status", frozen=True):
    """The agent's status now: set by them, or by the platform
    (``not_responding``, ``after_call_work``), with when it began."""

    status: str
    reason: str
    #: Unix time the status began.
    since: float
    #: ``requested`` (by the agent), ``sign_in``, or why the platform set it.
    cause: str = "requested"


class AfterCallWork(Message, tag="after_call_work", frozen=True):
    """The call ended and the agent is in after-call work (status
    ``after_call_work``): no call is routed to them until they ``wrap_up``
    with one of ``codes`` or ``deadline`` passes (docs/protocol.md)."""

    call_id: str
    queue: str
    codes: list[str]
    #: Unix time after-call work ends by itself, with no code.
    deadline: float
    timeout_s: float


class ConnectionOffer(Message, tag="connection_offer", frozen=True):
    """The platform opens a media connection to the phone (R1)."""

    connection_id: str
    sdp: str
    #: Why it is being set up: ``call`` (R1/R6/R8) or ``sign_in`` (R5).
    reason: str = "call"


class ConnectionState(Message, tag="connection_state", frozen=True):
    """The platform's view of the phone's media connection."""

    connection_id: str
    #: ``connecting``, ``active`` or ``closed``.
    state: str
    reason: str
    #: Kept after the current call (persistent connection).
    kept: bool = False
    in_call: bool = False
    #: Unix time at which the platform will close it if no call arrives.
    expires_at: float | None = None


class CallOffered(Message, tag="call_offered", frozen=True):
    call_id: str
    caller: str
    queue: str
    connection_id: str
    over_persistent_connection: bool
    alert_timeout_s: float
    #: Routed -> offered at the platform, connection set-up included.
    delivery_ms: float = 0.0
    #: Offered by another agent rather than by a queue: their name, and why:
    #: ``transfer`` (blind: theirs no more), ``consult`` (they talk with you
    #: first, the customer held) or ``conference`` (the three of you).
    from_agent: str = ""
    purpose: str = ""


class PartyChanged(Message, tag="party", frozen=True):
    """Another agent in one of this phone's calls: offered it
    (``alerting``), on it (``connected``), or gone (``ended``, with why:
    ``declined``, ``alert_timeout``, ``agent_hangup``, ``transferred``,
    ``cancelled``, ``left``, ``connection_lost``...)."""

    call_id: str
    agent: str
    #: ``consult`` or ``conference`` (as ``call_offered.purpose``).
    role: str
    state: Literal["alerting", "connected", "ended"]
    reason: str = ""


class CallRinging(Message, tag="call_ringing", frozen=True):
    """The agent's outbound call is ringing at the far end, and will be
    carried over ``connection_id`` (set up first when there was none: R1)."""

    call_id: str
    number: str
    connection_id: str
    over_persistent_connection: bool
    #: Dialed -> ringing at the platform, connection set-up included.
    delivery_ms: float = 0.0


class CallConnected(Message, tag="call_connected", frozen=True):
    call_id: str
    agent: str = ""


class CallEnded(Message, tag="call_ended", frozen=True):
    call_id: str
    #: ``agent_hangup``, ``customer_hangup``, ``connection_lost``, ``declined``,
    #: ``alert_timeout``, ``cancelled``, ``shutdown``.
    reason: str


class SessionRefreshed(Message, tag="session_refreshed", frozen=True):
    session_token: str
    token_expires_in_s: float
    token_expires_at: float

    def __repr__(self) -> str:  # never the token in a log line
        return f"SessionRefreshed(token_expires_in_s={self.token_expires_in_s})"


class CallSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    """The agent's current call, as the platform sees it (in ``session_resumed``)."""

    call_id: str
    #: ``routing``, ``alerting`` or ``connected``.
    state: str
    caller: str
    queue: str
    connection_id: str | None = None
    #: On hold by the agent (the customer hears the hold music).
    held: bool = False


class SessionResumed(Message, tag="session_resumed", frozen=True):
    """The session is bound to this WebSocket again; a snapshot of its state,
    from which the phone resynchronises (messages sent while it was away are
    not replayed)."""

    agent: str
    on_queue: bool
    persistent: bool
    #: The agent's status now (as in ``status``).
    status: StatusChanged | None = None
    #: The after-call work the agent is in (with status ``after_call_work``).
    after_call_work: AfterCallWork | None = None
    #: The media connection (as in ``connection_state``), or none.
    connection: ConnectionState | None = None
    #: The call on the agent's connection (the one not held), or their only one.
    call: CallSnapshot | None = None
    #: Every call the agent is in, held and waiting ones too (call waiting).
    calls: list[CallSnapshot] = []
    token_expires_in_s: float = 0.0
    token_expires_at: float = 0.0
    resume_grace_s: float = 0.0


PlatformToAgent = (
    SignedIn
    | SignedOut
    | PresenceChanged
    | ConnectionOffer
    | ConnectionState
    | CallOffered
    | StatusChanged
    | AfterCallWork
    | PartyChanged
    | CallRinging
    | CallConnected
    | CallEnded
    | SessionRefreshed
    | SessionResumed
    | Error
    | CallHeld
    | IceCandidate
    | DtmfReceived
)


# --- caller (customer trunk) <-> platform ------------------------------------


class PlaceCall(Message, tag="place_call", frozen=True):
    """A customer call into a queue, with the customer leg's SDP offer."""

    version: int
    queue: str
    caller: str
    sdp: str
    #: The platform's trunk token: only its trunks may place calls
    #: (docs/security.md). Missing or wrong: ``auth_failed``.
    trunk_token: str = ""


class CallerHangup(Message, tag="caller_hangup", frozen=True):
    """The customer hangs up (or, for a call still ringing at them, declines it)."""

    call_id: str


class AwaitCalls(Message, tag="await_calls", frozen=True):
    """The trunk takes calls to ``number`` (the answering customer): the
    platform answers ``awaiting_calls``, then ``incoming_call`` for each call."""

    version: int
    number: PhoneNumber
    trunk_token: str = ""


class AcceptIncoming(Message, tag="accept_incoming", frozen=True):
    """The customer answers an ``incoming_call``, with their leg's SDP offer;
    the platform answers ``call_accepted``, then ``call_connected``."""

    call_id: str
    sdp: str


CallerToPlatform = PlaceCall | CallerHangup | AwaitCalls | AcceptIncoming | IceCandidate


class CallAccepted(Message, tag="call_accepted", frozen=True):
    """The platform took the call into its queue; ``sdp`` answers the offer."""

    call_id: str
    sdp: str
    position: int


class QueuePosition(Message, tag="queue_position", frozen=True):
    call_id: str
    #: 1 is the head of the queue.
    position: int


class AwaitingCalls(Message, tag="awaiting_calls", frozen=True):
    number: str


class IncomingCall(Message, tag="incoming_call", frozen=True):
    """An agent calls the number this trunk awaits calls to."""

    call_id: str
    number: str
    #: Who calls: the agent's name.
    agent: str


PlatformToCaller = (
    CallAccepted
    | QueuePosition
    | CallConnected
    | CallEnded
    | AwaitingCalls
    | IncomingCall
    | IceCandidate
    | Error
)


ErrorCode = Literal[
    "malformed",
    "invalid",
    "unknown_type",
    "too_large",
    "unsupported_version",
    "not_signed_in",
    "already_signed_in",
    "auth_failed",
    "unknown_queue",
    "unknown_call",
    "not_your_call",
    "wrong_state",
    "unknown_connection",
    "media_failed",
    "invalid_token",
    "token_expired",
    "locked_out",
    "rate_limited",
    "unknown_number",
    "number_taken",
    "busy",
]
