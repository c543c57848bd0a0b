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

from typing import Literal

import msgspec

__all__ = [
    "AgentToPlatform",
    "AnswerCall",
    "CallAccepted",
    "CallConnected",
    "CallEnded",
    "CallOffered",
    "CallerHangup",
    "CallerToPlatform",
    "ConnectionAnswer",
    "ConnectionOffer",
    "ConnectionState",
    "DeclineCall",
    "EndConnection",
    "Error",
    "Hangup",
    "Message",
    "PlaceCall",
    "PlatformToAgent",
    "PlatformToCaller",
    "PresenceChanged",
    "QueuePosition",
    "SetPersistent",
    "SetPresence",
    "SignIn",
    "SignOut",
    "SignedIn",
    "SignedOut",
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
)


# --- platform -> phone -------------------------------------------------------


class SignedIn(Message, tag="signed_in", frozen=True):
    version: int
    agent: str
    permissions: list[str]
    queues: list[str]
    alert_timeout_s: float
    persistent_timeout_s: float


class SignedOut(Message, tag="signed_out", frozen=True):
    #: ``requested``, ``signed_in_elsewhere`` (R13), ``shutdown``.
    reason: str


class PresenceChanged(Message, tag="presence", frozen=True):
    on_queue: bool
    #: ``requested``, ``not_responding`` (R12), ``sign_in``.
    reason: str


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


class CallConnected(Message, tag="call_connected", frozen=True):
    call_id: str
    agent: str = ""


class CallEnded(Message, tag="call_ended", frozen=True):
    call_id: str
    #: ``agent_hangup``, ``customer_hangup``, ``connection_lost``, ``declined``,
    #: ``alert_timeout``, ``cancelled``, ``shutdown``.
    reason: str


PlatformToAgent = (
    SignedIn
    | SignedOut
    | PresenceChanged
    | ConnectionOffer
    | ConnectionState
    | CallOffered
    | CallConnected
    | CallEnded
    | Error
)


# --- caller (customer trunk) <-> platform ------------------------------------


class PlaceCall(Message, tag="place_call", frozen=True):
    """A customer call into a queue, with the customer leg's SDP offer."""

    version: int
    queue: str
    caller: str
    sdp: str


class CallerHangup(Message, tag="caller_hangup", frozen=True):
    call_id: str


CallerToPlatform = PlaceCall | CallerHangup


class CallAccepted(Message, tag="call_accepted", frozen=True):
    """The platform took the call into its queue; ``sdp`` answers the offer."""

    call_id: str
    sdp: str
    position: int


class QueuePosition(Message, tag="queue_position", frozen=True):
    call_id: str
    #: 1 is the head of the queue.
    position: int


PlatformToCaller = CallAccepted | QueuePosition | CallConnected | CallEnded | Error


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
    "rate_limited",
]
