"""Session tokens: who may act (the sign-in lockout is in ``lockout.py``).

``SessionTokens`` issues the token a ``signed_in`` carries. It is what a phone
shows to resume its session on a new WebSocket (``resume_session``), and it
expires unless refreshed (``refresh_session``). Only a SHA-256 digest of each
token is kept, and logs show only its first characters (``token_hint``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from agent_phone.cloud.errors import RequestError

#: Revoked and expired tokens are remembered this long (to answer
#: ``token_expired`` rather than ``invalid_token``), then forgotten.
_REMEMBER_S = 3600.0
#: Bounds on what attackers can make us remember.
MAX_TOKENS = 100_000


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_hint(token: str) -> str:
    """What a log line may show of a token."""
    return token[:4] + "…"


@dataclass
class _TokenRecord:
    agent: str
    expires_at: float  # monotonic
    revoked: bool = False


@dataclass(frozen=True)
class Issued:
    token: str
    expires_in_s: float
    #: Unix time, for people and other programs.
    expires_at: float


class SessionTokens:
    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._records: OrderedDict[str, _TokenRecord] = OrderedDict()

    def issue(self, agent: str) -> Issued:
        self._prune()
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        self._records[_digest(token)] = _TokenRecord(agent, now + self.lifetime_s)
        return Issued(token, self.lifetime_s, time.time() + self.lifetime_s)

    def check(self, token: str) -> str:
        """The agent a live token belongs to; ``invalid_token`` or ``token_expired`` otherwise."""
        record = self._records.get(_digest(token))
        if record is None or record.revoked:
            raise RequestError("invalid_token", "unknown or ended session; sign in again")
        if time.monotonic() >= record.expires_at:
            raise RequestError("token_expired", "the session token has expired; sign in again")
        return record.agent

    def remaining_s(self, token: str) -> float:
        record = self._records.get(_digest(token))
        return 0.0 if record is None else max(0.0, record.expires_at - time.monotonic())

    def refresh(self, token: str) -> Issued:
        """A new token for the same agent; the old one is revoked at once."""
        agent = self.check(token)
        self.revoke(token)
        return self.issue(agent)

    def revoke(self, token: str) -> None:
        if (record := self._records.get(_digest(token))) is not None:
            record.revoked = True

    def _prune(self) -> None:
        now = time.monotonic()
        while self._records:
            digest, record = next(iter(self._records.items()))
            if len(self._records) < MAX_TOKENS and record.expires_at + _REMEMBER_S > now:
                break
            del self._records[digest]
