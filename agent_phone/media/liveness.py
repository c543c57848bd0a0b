"""Noticing within seconds that the far end of a connection is gone.

aiortc reports a dead peer only when ICE consent expires, ~30 s after it
stopped answering (shared/notes/webrtc-and-qt.md), and a hung peer never
closes its signaling socket. Both ends therefore send a tiny heartbeat over a
pre-negotiated data channel once a second; silence for ``TIMEOUT_S`` means
the connection is dead. About 0.4 kB/s per connection.

The channel is unordered and never retransmits (``maxRetransmits=0``): each
beat stands alone. A reliable, ordered channel let one lost beat hold back
every later one until SCTP resent it, and SCTP's first retransmission waits
3 s: one lost packet early in a connection could outlast the limit (1 call
in 8 at 30 ms of jitter was dropped as dead). Now a healthy connection is
declared dead only if five beats in a row are lost (at 5 % loss: 1 in 3
million), and a dead one is noticed within ``TIMEOUT_S`` plus a beat. (Two
beats a second bought nothing more, and took an idle kept connection over
1 kB/s.)

Until the channel first opens, the limit is ``OPEN_TIMEOUT_S``: SCTP's own
handshake (INIT, COOKIE) is reliable and resends a lost packet after a
second (agent_phone/media/peer.py), so a lost handshake packet must not
count as a dead peer; a peer gone before the channel ever opens is still
noticed within it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiortc import RTCDataChannel, RTCPeerConnection

logger = logging.getLogger(__name__)

INTERVAL_S = 1.0
TIMEOUT_S = 5.0
OPEN_TIMEOUT_S = 8.0


def create_liveness_channel(pc: RTCPeerConnection) -> RTCDataChannel:
    """The heartbeat channel; both ends create it (negotiated, id 0,
    unordered, no retransmissions: docs/protocol.md)."""
    return pc.createDataChannel("liveness", negotiated=True, id=0, ordered=False, maxRetransmits=0)


class Heartbeat:
    """Sends a heartbeat each ``interval`` and calls ``on_dead`` once on silence.

    Silence counts from ``start()``: call it when the connection is up (ICE
    and DTLS connected), since a channel that never opens must count as
    silence too (for ``open_timeout``, then ``timeout`` once it has opened).
    The channel's opening starts it as well."""

    def __init__(
        self,
        channel: RTCDataChannel,
        on_dead: Callable[[], None],
        interval: float = INTERVAL_S,
        timeout: float = TIMEOUT_S,
        open_timeout: float = OPEN_TIMEOUT_S,
    ) -> None:
        self._channel = channel
        self._on_dead = on_dead
        self._interval = interval
        self._timeout = timeout
        self._open_timeout = max(timeout, open_timeout)
        self._opened = channel.readyState == "open"
        self._last_heard = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        channel.on("message", self._on_message)
        channel.on("open", self._on_open)

    @property
    def silent_for(self) -> float:
        return time.monotonic() - self._last_heard

    def _on_message(self, _message: object) -> None:
        self._last_heard = time.monotonic()

    def _on_open(self) -> None:
        self._opened = True
        self._last_heard = time.monotonic()
        self.start()

    def start(self) -> None:
        if self._task is None and not self._stopped:
            self._last_heard = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeat")
            self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("heartbeat failed", exc_info=exc)

    async def _run(self) -> None:
        while True:
            if self._channel.readyState == "open":
                self._channel.send(b"\x01")
            await asyncio.sleep(self._interval)
            limit = self._timeout if self._opened else self._open_timeout
            if self.silent_for > limit:
                logger.warning("no heartbeat for %.1f s: connection dead", self.silent_for)
                self._on_dead()
                return

    def stop(self) -> None:
        """Idempotent; a channel opening later does not start it again."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
