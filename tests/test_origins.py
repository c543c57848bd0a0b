"""Which web pages may open the platform's WebSocket: a browser names the
page's origin (``Origin``), and only the platform's own and those listed in
``[platform] allowed_origins`` are let in; others get HTTP 403 with the
reason, and an ``origin_refused`` event. Clients that send no ``Origin``
(the phone, the caller) are not concerned: every other test is one."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
import pytest

from agent_phone.protocol import PROTOCOL_VERSION, SignIn, decode_to_agent, encode

LISTED = "https://shop.example.com"


async def connect(url: str, origin: str | None) -> aiohttp.ClientWebSocketResponse | int:
    """The socket, or the HTTP status it was refused with."""
    headers = {"Origin": origin} if origin is not None else {}
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(url, headers=headers)
    except aiohttp.WSServerHandshakeError as exc:
        await session.close()
        return exc.status
    ws._test_session = session  # type: ignore[attr-defined]  # closed with it
    return ws


async def signs_in(ws: aiohttp.ClientWebSocketResponse) -> bool:
    await ws.send_str(
        encode(SignIn(version=PROTOCOL_VERSION, user="bob", password="demo", client="test"))
    )
    reply = decode_to_agent((await ws.receive(timeout=10)).data)
    await ws.close()
    await ws._test_session.close()  # type: ignore[attr-defined]
    return type(reply).__name__ == "SignedIn"


async def test_only_the_platforms_own_and_listed_origins_may_connect(start_platform):
    platform = start_platform(allowed_origins=[LISTED])
    url = platform.url
    parts = urlsplit(url)
    own = f"http://{parts.netloc}"
    for origin in (None, own, LISTED, LISTED.upper()):
        ws = await connect(url, origin)
        assert not isinstance(ws, int), f"{origin} refused"
        assert await signs_in(ws)
    for origin in ("https://evil.example", "null", f"http://{parts.hostname}:1", LISTED + ":444"):
        assert await connect(url, origin) == 403
    refused = platform.wait_for("origin_refused", origin="https://evil.example")
    assert refused["address"] == "127.0.0.1"
    async with aiohttp.ClientSession() as session:
        async with session.get(
            url.replace("ws://", "http://"), headers={"Origin": "https://evil.example"}
        ) as response:
            assert response.status == 403
            assert "allowed_origins" in await response.text()


@pytest.mark.parametrize("bad", ['"https://a.example"', '["https://a.example/path"]', "[1]"])
def test_allowed_origins_must_be_a_list_of_origins(tmp_path, bad):
    from agent_phone.cloud.config import ConfigError, load_config

    path = tmp_path / "platform.toml"
    path.write_text(f"[platform]\nallowed_origins = {bad}\n[agents]\n[queues]\n")
    with pytest.raises(ConfigError, match="allowed_origins"):
        load_config(path)
