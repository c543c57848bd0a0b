"""The messages between the phone (and the caller) and the platform.

One typed, versioned definition used by both sides; see ``docs/protocol.md``.
"""

from agent_phone.protocol.codec import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    decode_from_agent,
    decode_from_caller,
    decode_to_agent,
    decode_to_caller,
    encode,
    peek_type,
)
from agent_phone.protocol.messages import *  # noqa: F403
from agent_phone.protocol.messages import __all__ as _messages

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "decode_from_agent",
    "decode_from_caller",
    "decode_to_agent",
    "decode_to_caller",
    "encode",
    "peek_type",
    *_messages,
]
