"""Noticing within seconds that the far end of a connection is gone.

aiortc reports a dead peer only when ICE consent expires, ~30 s after it
stopped answering (shared/notes/webrtc-and-qt.md), and a hung peer never
closes its signaling socket. Both ends therefore send a tiny heartbeat over a
pre-negotiated data channel once a second; silence for ``timeout`` seconds
means the connection is dead. About 0.4 kB/s per connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiortc import RTCDataChannel, RTCPeerConnection

logger = logging.getLogger(__name__)

INTERVAL_S = 1.0
TIMEOUT_S = 3.5


def create_liveness_channel(pc: RTCPeerConnection) -> RTCDataChannel:
    """The heartbeat channel; both ends create it (negotiated, id 0)."""
    return pc.createDataChannel("liveness", negotiated=True, id=0)


class Heartbeat:
    """Sends a heartbeat each ``interval`` and calls ``on_dead`` once on silence.

    Silence counts from ``start()``: call it when the connection is up (ICE
    and DTLS connected), since a channel that never opens must count as
    silence too. The channel's opening starts it as well."""

    def __init__(
        self,
        channel: RTCDataChannel,
        on_dead: Callable[[], None],
        interval: float = INTERVAL_S,
        timeout: float = TIMEOUT_S,
    ) -> None:
        self._channel = channel
        self._on_dead = on_dead
        self._interval = interval
        self._timeout = timeout
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
            if self.silent_for > self._timeout:
                logger.warning("no heartbeat for %.1f s: connection dead", self.silent_for)
                self._on_dead()
                return

    def stop(self) -> None:
        """Idempotent; a channel opening later does not start it again."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
