"""Encoding and validating messages; the transport (WebSocket) is elsewhere."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from agent_phone.protocol.messages import (
    AgentToPlatform,
    CallerToPlatform,
    Message,
    PlatformToAgent,
    PlatformToCaller,
)

PROTOCOL_VERSION = 1

#: Largest message either side accepts. An SDP offer with a handful of
#: candidates is ~1.5 kB; 64 kB leaves room while bounding what a peer can
#: make us parse.
MAX_MESSAGE_BYTES = 64 * 1024


#: Deepest nesting of arrays and objects accepted. No message of the protocol
#: nests more than three levels; msgspec itself stops at the interpreter's
#: recursion limit, which depends on the caller's stack, so the code a deep
#: message got was not stable (found by tests/test_fuzz.py).
MAX_NESTING = 32

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def _too_deep(raw: bytes) -> bool:
    """Nesting deeper than MAX_NESTING, outside strings (cheap for short messages)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:
        return False
    depth = 0
    for c in _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if c in (0x5B, 0x7B) else -1
        if depth > MAX_NESTING:
            return True
    return False


class ProtocolError(Exception):
    """A received message that cannot be accepted; ``code`` says why."""

    def __init__(self, code: str, message: str, in_reply_to: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.in_reply_to = in_reply_to


_encoder = msgspec.json.Encoder()


def encode(message: Message) -> str:
    return _encoder.encode(message).decode()


def _decoder(union: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(union)


_from_agent = _decoder(AgentToPlatform)
_to_agent = _decoder(PlatformToAgent)
_from_caller = _decoder(CallerToPlatform)
_to_caller = _decoder(PlatformToCaller)
_peek = msgspec.json.Decoder(dict[str, Any])


def _decode(decoder: msgspec.json.Decoder[Any], data: str | bytes) -> Any:
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            "too_large", f"message of {len(raw)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}"
        )
    if _too_deep(raw):
        raise ProtocolError("invalid", f"message nested deeper than {MAX_NESTING} levels")
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        kind = peek_type(raw)
        if "`$.type`" in str(exc):
            if kind is None:
                raise ProtocolError("invalid", "message has no string field 'type'") from None
            raise ProtocolError(
                "unknown_type", f"unknown message type {kind!r}", in_reply_to=kind
            ) from None
        raise ProtocolError("invalid", f"invalid {kind or 'message'}: {exc}", kind) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError("malformed", f"malformed JSON: {exc}") from None
    except RecursionError:
        # msgspec gives up on deep nesting (found by tests/test_fuzz.py): no
        # message of the protocol nests more than a few levels.
        raise ProtocolError("invalid", "message nested too deeply") from None


def peek_type(raw: str | bytes) -> str | None:
    """The ``type`` a message claims, without validating the rest."""
    if _too_deep(raw.encode() if isinstance(raw, str) else raw):
        return None
    try:
        kind = _peek.decode(raw).get("type")
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    return kind if isinstance(kind, str) else None


def decode_from_agent(data: str | bytes) -> AgentToPlatform:
    """Validate a message the platform received from a phone."""
    return _decode(_from_agent, data)  # type: ignore[no-any-return]


def decode_to_agent(data: str | bytes) -> PlatformToAgent:
    """Validate a message the phone received from the platform."""
    return _decode(_to_agent, data)  # type: ignore[no-any-return]


def decode_from_caller(data: str | bytes) -> CallerToPlatform:
    """Validate a message the platform received from a customer trunk."""
    return _decode(_from_caller, data)  # type: ignore[no-any-return]


def decode_to_caller(data: str | bytes) -> PlatformToCaller:
    """Validate a message a customer trunk received from the platform."""
    return _decode(_to_caller, data)  # type: ignore[no-any-return]
