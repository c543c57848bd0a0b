"""A TCP proxy on 127.0.0.1 that a test can sever and restore: a network cut
for one path (the phone's WebSocket to the platform) while everything else,
the call's media included, goes on.

It runs its own asyncio loop in a thread, so synchronous tests drive it with
plain calls::

    with TcpProxy(platform_port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/ws"
        ...
        proxy.sever()    # every open connection is cut; new ones are refused
        proxy.restore()  # listening again, on the same port

``sever`` resets both sides' sockets (RST, as a broken network path looks to
the kernel after a timeout), so both ends see the loss at once.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from concurrent.futures import Future
from typing import Any


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.port = 0
        #: How many client connections were accepted and cut, for the test to assert on.
        self.accepted = 0
        self.cut = 0
        self._call(self._listen())

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not writer.is_closing():
                try:
                    writer.write_eof()
                except (OSError, RuntimeError):
                    pass

    async def _sever(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # no new connections from here on
        for pair in list(self._pairs):
            self.cut += 1
            for w in pair:
                sock = w.get_extra_info("socket")
                if sock is not None:
                    # SO_LINGER 0: close sends RST, no orderly goodbye.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                w.transport.abort()
        self._pairs.clear()
        if server is not None:
            await asyncio.wait_for(server.wait_closed(), 5)

    def sever(self) -> None:
        """Cut every open connection and refuse new ones."""
        self._call(self._sever())

    def restore(self) -> None:
        """Accept connections again on the same port."""
        self._call(self._listen())

    def close(self) -> None:
        try:
            self._call(self._sever())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
