"""A web browser as the agent's phone: headless Chromium runs the example
page docs/examples/browser-phone.html (the phone protocol in plain
JavaScript over the browser's own WebRTC), served by a web site of its own
that the platform lists in allowed_origins, and takes two customers' calls
over one kept connection: the second with no new connection offer, and
audio both ways each time, checked with an FFT."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiohttp import web
from audio_analysis import has_tone, make_tone
from browser import CHROMIUM, Chromium
from parties import CUSTOMER_HZ, Customer, phase

from agent_phone.media.wav import write_wav

BROWSER_HZ = 660.0
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (./dev installs it)", allow_module_level=True)


async def test_a_browser_takes_two_calls_over_one_kept_connection(start_platform, tmp_path: Path):
    app = web.Application()
    app.router.add_static("/", EXAMPLES)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    origin = f"http://127.0.0.1:{port}"
    platform = start_platform(allowed_origins=[origin])
    microphone = tmp_path / "agent.wav"
    write_wav(microphone, make_tone(BROWSER_HZ, 4.0))
    browser = Chromium(microphone, tmp_path / "chromium")
    try:
        await browser.start()
        page = await browser.open(
            f"{origin}/browser-phone.html?platform={platform.url}&user=bob&password=demo"
            "&auto=1&processing=off"  # (its noise suppression would fade the test tone)
        )
        await page.wait_for("phone.agent === 'bob'")
        for n in (1, 2):
            customer = Customer(platform, tmp_path, caller=f"Customer {n}")
            try:
                await page.wait_for(
                    f"phone.calls.length === {n} && phone.calls[{n - 1}].state === 'connected'"
                )
                t = await phase()
                heard_in_browser = await page.record("remote", 1.2)
                assert has_tone(heard_in_browser, CUSTOMER_HZ), f"call {n}: the browser hears"
                assert has_tone(customer.ear.since(t), BROWSER_HZ), f"call {n}: the customer"
            finally:
                result = await customer.end()  # (never left calling: bounded)
            assert result.answered and result.agent == "bob"
            await page.wait_for(f"phone.calls[{n - 1}].state === 'ended'")
        calls = await page.evaluate("phone.calls")
        assert [c["over"] for c in calls] == [False, True]
        assert await page.evaluate("phone.connectionOffers") == 1
        await page.close()
    finally:
        browser.stop()
        await runner.cleanup()
    delivered = platform.matching("call_delivered", agent="bob")
    assert [e["over_persistent_connection"] for e in delivered] == [False, True]
    assert len(platform.matching("connection_established", agent="bob")) == 1
