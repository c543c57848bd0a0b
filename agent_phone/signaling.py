"""The WebSocket client that the phone and the caller use to reach the platform.

The codec (``agent_phone.protocol``) says what a message is; this moves
messages over a WebSocket and nothing else. Transport security (wss://
verification, plain ws:// only on loopback) is decided in agent_phone/tls.py.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from agent_phone.protocol import MAX_MESSAGE_BYTES, Message, ProtocolError, encode
from agent_phone.tls import (
    CaFileError,
    InsecureUrlError,
    check_platform_url,
    client_ssl_context,
    untrusted_message,
)

logger = logging.getLogger(__name__)


class SignalingError(Exception):
    """The platform cannot be reached or the connection broke."""


class UntrustedPlatformError(SignalingError):
    """Refused before signing in: an insecure URL, or a certificate that
    failed verification. Retrying will not help."""


class SignalingClient:
    def __init__(
        self,
        url: str,
        decode: Callable[[str], Any],
        on_invalid: Callable[[ProtocolError], None] | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.url = url
        self._decode = decode
        #: Told of each message that was not accepted (it is skipped).
        self._on_invalid = on_invalid
        self._ca_file = ca_file
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        """Checked before anything is sent (agent_phone/tls.py)."""
        try:
            check_platform_url(self.url)
            if self.url.startswith("wss:"):
                return client_ssl_context(self._ca_file)
        except (InsecureUrlError, CaFileError) as exc:
            raise UntrustedPlatformError(str(exc)) from None
        return True  # plain ws:// (loopback): aiohttp's default, never "don't verify"

    async def connect(self, timeout: float = 10.0) -> None:
        ssl_context = self._ssl()
        self._session = aiohttp.ClientSession()
        try:
            # The whole connect (TCP, TLS, upgrade) is bounded: an address that
            # drops packets would otherwise hold it for aiohttp's 300 s default.
            async with asyncio.timeout(timeout):
                self._ws = await self._session.ws_connect(
                    self.url,
                    heartbeat=5.0,
                    max_msg_size=4 * MAX_MESSAGE_BYTES,
                    timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                    ssl=ssl_context,
                )
        except aiohttp.ClientConnectorCertificateError as exc:
            await self.close()
            raise UntrustedPlatformError(untrusted_message(exc)) from None
        except aiohttp.ClientConnectorSSLError as exc:
            await self.close()
            raise UntrustedPlatformError(
                f"no TLS session with the platform at {self.url}: {exc.strerror or exc}"
            ) from None
        except TimeoutError:
            await self.close()
            raise SignalingError(
                f"cannot reach the platform at {self.url}: no answer in {timeout:g} s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            await self.close()
            raise SignalingError(f"cannot reach the platform at {self.url}: {exc}") from None

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def send(self, message: Message) -> None:
        if self._ws is None or self._ws.closed:
            raise SignalingError("not connected to the platform")
        try:
            await self._ws.send_str(encode(message))
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise SignalingError(f"lost the platform: {exc}") from None

    async def messages(self) -> AsyncGenerator[Message, None]:
        """Validated messages until the socket closes; invalid ones are logged."""
        assert self._ws is not None
        async for frame in self._ws:
            if frame.type is aiohttp.WSMsgType.TEXT:
                try:
                    yield self._decode(frame.data)
                except ProtocolError as exc:
                    logger.warning("ignored a message from the platform: %s", exc.message)
                    if self._on_invalid is not None:
                        self._on_invalid(exc)
            elif frame.type is aiohttp.WSMsgType.BINARY:
                logger.warning("ignored a binary frame from the platform")
                if self._on_invalid is not None:
                    self._on_invalid(ProtocolError("malformed", "a binary frame"))
            elif frame.type is aiohttp.WSMsgType.ERROR:
                break

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None
