"""The click-to-call page's HTTP side, against a real platform process: the
page for a listed queue only, call tokens only for the platform's own pages,
each good for one call to its queue (the trunk token never leaves the
server), and at most TOKENS_PER_ADDRESS a minute from one address.
(test_browser_customer.py calls through the page from a real browser.)"""

from __future__ import annotations

import json

import aiohttp
from aiortc import RTCSessionDescription

from agent_phone.cloud.web import TOKENS_PER_ADDRESS
from agent_phone.media.peer import new_peer_connection
from agent_phone.media.tracks import OutboundAudioTrack
from agent_phone.media.wav import ToneSource

BILLING = '[queues.billing]\nmembers = ["carol"]'


def http(platform) -> str:
    return platform.url.replace("ws://", "http://").removesuffix("/ws")


async def place(url: str, token: str, queue: str = "support") -> dict:
    """A place_call with ``token``: the platform's first answer."""
    pc = new_peer_connection()
    pc.addTrack(OutboundAudioTrack(ToneSource(440.0)))
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_str(
                json.dumps(
                    {
                        "type": "place_call",
                        "version": 1,
                        "queue": queue,
                        "caller": "Web",
                        "sdp": pc.localDescription.sdp,
                        "trunk_token": token,
                    }
                )
            )
            answer = json.loads((await ws.receive(10)).data)
            if answer["type"] == "call_accepted":
                await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
                hangup = {"type": "caller_hangup", "call_id": answer["call_id"]}
                await ws.send_str(json.dumps(hangup))
            return answer
    finally:
        await pc.close()


async def test_the_page_and_its_call_tokens(start_platform):
    platform = start_platform(click_to_call_queues=["support", "billing"], more=BILLING)
    base = http(platform)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/call?queue=support") as page:
            assert page.status == 200 and 'data-queue="support"' in await page.text()
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        async with session.get(f"{base}/call/call.js") as script:
            assert script.status == 200 and "place_call" in await script.text()
        async with session.get(f"{base}/call?queue=nope") as missing:
            assert missing.status == 404

        async def token(queue: str = "support", **headers: str) -> aiohttp.ClientResponse:
            return await session.post(f"{base}/call/token", json={"queue": queue}, headers=headers)

        # Only the platform's own pages (and allowed_origins) get tokens.
        refused = await token(Origin="https://evil.example")
        assert refused.status == 403 and "allowed_origins" in await refused.text()
        async with session.post(f"{base}/call/token", data="nope") as bad:
            assert bad.status == 400
        assert (await token("nope")).status == 404

        granted = await (await token(Origin=base)).json()
        assert granted["token"].startswith("web-") and granted["queue"] == "support"
        assert granted["token"] != platform.trunk_token
        # One call to its queue: then it is used up.
        first = await place(platform.url, granted["token"])
        assert first["type"] == "call_accepted"
        again = await place(platform.url, granted["token"])
        assert again["type"] == "error" and again["code"] == "auth_failed"
        other = await (await token()).json()
        wrong_queue = await place(platform.url, other["token"], queue="billing")
        assert wrong_queue["code"] == "auth_failed"

        # An address asks for too many: refused for a while.
        statuses = [(await token()).status for _ in range(TOKENS_PER_ADDRESS)]
        assert statuses.count(429) >= 1 and statuses[0] == 200
    assert platform.wait_for("trunk_refused", reason="bad_call_token")["queue"] == "support"
    assert platform.wait_for("call_token_refused")["queue"] == "support"


async def test_no_page_without_click_to_call_queues(start_platform):
    platform = start_platform()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{http(platform)}/call") as page:
            assert page.status == 404
        async with session.post(f"{http(platform)}/call/token", json={}) as token:
            assert token.status == 404
