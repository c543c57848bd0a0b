"""The WebSocket client every program shares (agent_phone/signaling.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent_phone.protocol import decode_to_agent
from agent_phone.signaling import SignalingClient, SignalingError


async def test_a_platform_that_never_answers_the_upgrade_is_given_up_on_in_time():
    """A listener that accepts the TCP connection and then says nothing (a hung
    platform, a black-holing proxy) must not hold sign-in for aiohttp's 300 s."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = SignalingClient(f"ws://127.0.0.1:{port}/ws", decode_to_agent)
    started = time.monotonic()
    try:
        with pytest.raises(SignalingError, match=r"no answer in 1 s"):
            await client.connect(timeout=1.0)
        assert time.monotonic() - started < 30  # bounded by the timeout, not aiohttp's 300 s
        assert accepted, "the TCP connection was made: the silence came after it"
        assert not client.connected
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
