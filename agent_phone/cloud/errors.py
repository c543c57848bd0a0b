"""The platform's error for a request it cannot honour, in its own module:
every part that refuses a request raises it, and none imports another part
for it."""

from __future__ import annotations


class RequestError(Exception):
    """A request that cannot be honoured; becomes an ``error`` message."""

    def __init__(self, code: str, message: str, call_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.call_id = call_id
