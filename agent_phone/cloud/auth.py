"""Session tokens and the sign-in lockout: who may act, and how often they may try.

``SessionTokens`` issues the token a ``signed_in`` carries. It is what a phone
shows to resume its session on a new WebSocket (``resume_session``), and it
expires unless refreshed (``refresh_session``). Only a SHA-256 digest of each
token is kept, and logs show only its first characters (``token_hint``).

``SignInGuard`` slows repeated failed sign-ins for a user name (the answer
to the second failure waits 0.5 s, then 1, 2 ... s, capped) and, after
``lockout_failures`` failures within ``lockout_window_s``, refuses that name
for ``lockout_s`` (``locked_out``), even with the right password. Attempts
in flight count too, so a burst on many sockets gets no more guesses. It never
sleeps itself: it says how long the caller's own coroutine should wait, so
one attacker's delay holds up no one else (docs/security.md).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from agent_phone.cloud.config import PlatformConfig
from agent_phone.cloud.connections import RequestError

#: Revoked and expired tokens are remembered this long (to answer
#: ``token_expired`` rather than ``invalid_token``), then forgotten.
_REMEMBER_S = 3600.0
#: Bounds on what attackers can make us remember.
MAX_TOKENS = 100_000
MAX_TRACKED_USERS = 10_000


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


@dataclass
class _Failures:
    times: list[float]
    locked_until: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """After a failed sign-in: how long to wait before answering, and whether
    the user name is now locked (and for how long)."""

    failures: int
    delay_s: float
    locked_for_s: float = 0.0


class SignInGuard:
    def __init__(self, config: PlatformConfig) -> None:
        self._limit = config.lockout_failures
        self._window = config.lockout_window_s
        self._lock_s = config.lockout_s
        self._delay = config.sign_in_delay_s
        self._delay_max = config.sign_in_delay_max_s
        self._users: OrderedDict[str, _Failures] = OrderedDict()
        #: Sign-ins being checked (or their failure's answer delayed) per name.
        self._in_flight: dict[str, int] = {}

    def check(self, user: str) -> None:
        """Refuse a locked user name at once, before any password is checked."""
        entry = self._users.get(user)
        if entry is None:
            return
        left = entry.locked_until - time.monotonic()
        if left > 0:
            raise LockedOut(left)

    def begin(self, user: str) -> None:
        """An attempt for ``user`` starts (``end`` when it is answered). A burst
        of parallel attempts gets no more password checks than the failures
        still allowed: the rest are refused at once."""
        entry = self._users.get(user)
        now = time.monotonic()
        if entry is None or (entry.locked_until and entry.locked_until <= now):
            recent = 0  # a lock that ran out starts the count afresh
        else:
            recent = sum(1 for t in entry.times if now - t < self._window)
        if recent + self._in_flight.get(user, 0) >= self._limit:
            raise LockedOut(1.0)
        self._in_flight[user] = self._in_flight.get(user, 0) + 1

    def end(self, user: str) -> None:
        left = self._in_flight.get(user, 0) - 1
        if left > 0:
            self._in_flight[user] = left
        else:
            self._in_flight.pop(user, None)

    def failed(self, user: str) -> Verdict:
        now = time.monotonic()
        entry = self._users.get(user)
        if entry is None or (entry.locked_until and entry.locked_until <= now):
            entry = _Failures([])  # a lock that ran out starts the count afresh
        entry.times = [t for t in entry.times if now - t < self._window] + [now]
        self._users[user] = entry
        self._users.move_to_end(user)
        while len(self._users) > MAX_TRACKED_USERS:
            self._users.popitem(last=False)
        count = len(entry.times)
        # A single slip of the finger costs nothing; repeats cost 0.5, 1, 2 ... s.
        delay = 0.0 if count == 1 else min(self._delay_max, self._delay * 2 ** (count - 2))
        if count >= self._limit:
            entry.locked_until = now + self._lock_s
            return Verdict(count, delay, self._lock_s)
        return Verdict(count, delay)

    def succeeded(self, user: str) -> None:
        self._users.pop(user, None)


class LockedOut(RequestError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            "locked_out",
            f"too many failed sign-ins: this user is locked; try again in {seconds:.0f} s",
        )
        self.retry_after_s = round(seconds, 1)
