"""How many messages one WebSocket peer may send: a token bucket per connection.

A peer may send ``rate`` messages a second on average, with bursts of up to
``burst``. A message over the limit is dropped (not parsed, not acted on) and
the peer is told with an ``error`` of code ``rate_limited`` (at most one such
error a second, so a flood does not make the platform flood back). A peer
that keeps sending at ``abuse_factor`` times the limit for ``abuse_s``
seconds is abusive: its connection is closed (code 1008, policy violation)
with a close reason saying so.

A phone sends a handful of messages per call and a customer's trunk two, so
legitimate traffic stays far below the default 20 a second.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: WebSocket close code for a peer closed for abuse ("policy violation").
CLOSE_POLICY = 1008


@dataclass(frozen=True)
class RateLimitConfig:
    #: Messages a second, sustained.
    rate: float = 20.0
    #: Messages at once after a quiet spell.
    burst: int = 50
    #: Sending this many times ``rate`` ...
    abuse_factor: float = 5.0
    #: ... over this many seconds closes the connection.
    abuse_s: float = 3.0

    @property
    def abuse_count(self) -> int:
        """Messages within ``abuse_s`` seconds that mark a peer abusive."""
        return max(self.burst + 1, int(self.abuse_factor * self.rate * self.abuse_s))


class Verdict(enum.Enum):
    ACCEPT = "accept"
    #: Dropped; tell the peer (``rate_limited``).
    DROP_AND_TELL = "drop_and_tell"
    #: Dropped; the peer was told less than a second ago.
    DROP = "drop"
    #: Abusive: close the connection.
    CLOSE = "close"


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; starts full."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class MessageRateLimit:
    """The verdict on each message one connection receives."""

    def __init__(
        self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._clock = clock
        self._bucket = TokenBucket(config.rate, config.burst, clock)
        #: Arrival times of the last ``abuse_count`` messages (sliding window).
        self._recent: deque[float] = deque(maxlen=config.abuse_count)
        self._told_at = float("-inf")
        #: Messages dropped since the peer was last told.
        self.dropped_since_told = 0
        self.dropped = 0

    def check(self) -> Verdict:
        now = self._clock()
        recent = self._recent
        recent.append(now)
        if len(recent) == recent.maxlen and now - recent[0] <= self.config.abuse_s:
            return Verdict.CLOSE
        if self._bucket.take():
            return Verdict.ACCEPT
        self.dropped += 1
        self.dropped_since_told += 1
        if now - self._told_at >= 1.0:
            self._told_at = now
            return Verdict.DROP_AND_TELL
        return Verdict.DROP

    def told(self) -> int:
        """The number of drops to report now; resets the count."""
        count, self.dropped_since_told = self.dropped_since_told, 0
        return count
