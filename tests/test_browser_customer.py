"""A web browser as the customer: headless Chromium (Debian's, its fake
microphone playing a tone) opens the platform's click-to-call page, clicks
Call, and talks with bob (a phone engine in this process) through the real
platform process: audio both ways checked with an FFT, trickle ICE as the
browser does it, a hang-up by closing only the browser's peer connection
(noticed within 10 s: customer_media_lost), and a second call ended with
the page's Hang up button."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from audio_analysis import has_tone, make_tone
from browser import CHROMIUM, Chromium
from inprocess import signed_in_agent

from agent_phone.media.wav import write_wav
from agent_phone.phone import events

CUSTOMER_HZ, BOB_HZ = 440.0, 880.0

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("chromium is not installed (./dev installs it)", allow_module_level=True)


def http(platform) -> str:
    return platform.url.replace("ws://", "http://").removesuffix("/ws")


async def test_a_browser_customer_calls_from_the_page_and_is_heard_both_ways(
    start_platform, tmp_path: Path
):
    platform = start_platform(click_to_call_queues=["support"], customer_media_timeout_s=3.0)
    microphone = tmp_path / "customer.wav"
    write_wav(microphone, make_tone(CUSTOMER_HZ, 4.0, amplitude=0.3))
    browser = Chromium(microphone, tmp_path / "chromium")
    try:
        await browser.start()
        async with signed_in_agent(platform, "bob", tmp_path, auto_answer=True, hz=BOB_HZ) as bob:
            page = await browser.open(f"{http(platform)}/call?queue=support")
            assert await page.evaluate("document.body.dataset.queue") == "support"
            await page.evaluate("document.getElementById('call').click()")
            answered = await bob.wait_for(events.CallChanged, lambda e: e.state == "connected")
            await page.wait_for("callPage.state === 'connected'")
            assert await page.evaluate("callPage.agent") == "bob"
            shown = await page.evaluate("document.getElementById('state').textContent")
            assert "talking with bob" in shown
            # The browser sent its offer at once and its candidates after it.
            assert await page.evaluate("callPage.offerHadCandidates") is False
            assert await page.evaluate("callPage.candidatesSent") >= 1

            start = time.monotonic()
            heard_in_browser = await page.record("remote", 1.5)
            assert has_tone(heard_in_browser, BOB_HZ)
            assert has_tone(bob.ear.since(start), CUSTOMER_HZ)

            # Keys the customer presses on the page's keypad reach bob as
            # RFC 4733 events (the browser's DTMF sender works: negotiated).
            mark = bob.mark()
            for key in "12#":
                await page.evaluate(
                    f"[...document.querySelectorAll('#keypad button')]"
                    f".find((b) => b.textContent === {key!r}).click()"
                )
                await bob.wait_for(events.DtmfReceived, lambda e, k=key: e.digit == k, mark)
            keys = [e.digit for e in bob.events[mark:] if isinstance(e, events.DtmfReceived)]
            assert keys == ["1", "2", "#"]
            assert not has_tone(bob.ear.since(start), 697.0)  # (no tones in the audio)

            # The browser's peer connection closes; its WebSocket stays.
            mark = bob.mark()
            closed_at = time.monotonic()
            await page.evaluate("callPage.pc.close()")
            ended = await bob.wait_for(
                events.CallChanged,
                lambda e: e.call_id == answered.call_id and e.state == "ended",  # type: ignore[attr-defined]
                mark,
            )
            assert ended.reason == "customer_media_lost"  # type: ignore[attr-defined]
            noticed_s = time.monotonic() - closed_at
            print(f"browser's peer connection closed -> call ended: {noticed_s * 1000:.0f} ms")
            assert noticed_s < 10.0
            await page.wait_for("callPage.state === 'ended'")
            assert await page.evaluate("callPage.reason") == "customer_media_lost"

            # Again from the same page, ended with its Hang up button.
            mark = bob.mark()
            await page.evaluate("document.getElementById('call').click()")
            second = await bob.wait_for(events.CallChanged, lambda e: e.state == "connected", mark)
            await page.wait_for("callPage.state === 'connected'")
            await page.evaluate("document.getElementById('hangup').click()")
            ended = await bob.wait_for(
                events.CallChanged,
                lambda e: e.call_id == second.call_id and e.state == "ended",  # type: ignore[attr-defined]
                mark,
            )
            assert ended.reason == "customer_hangup"  # type: ignore[attr-defined]
            await page.close()
    finally:
        browser.stop()
    pressed = platform.matching("dtmf_received", call_id=answered.call_id)  # type: ignore[attr-defined]
    assert [e["digit"] for e in pressed] == ["1", "2", "#"]
    records = platform.call_records()
    assert records[answered.call_id]["end_reason"] == "customer_media_lost"  # type: ignore[attr-defined]
    assert records[second.call_id]["end_reason"] == "customer_hangup"  # type: ignore[attr-defined]
