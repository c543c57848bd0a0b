"""Headless Chromium as a standard WebRTC endpoint, for tests: its fake
microphone plays a WAV file, and pages are driven over the DevTools
protocol (a WebSocket: ``Runtime.evaluate``).

Chromium is Debian's ``chromium`` (installed by ``./dev``). On a machine
whose only interface is ``lo`` it gathers ICE candidates only with
``--allow-loopback-in-peer-connection`` (shared/notes/voice-and-interop.md),
and with no ICE servers nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab, driven over its DevTools WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self._ws = ws
        self._session = session
        self._ids = itertools.count(1)

    async def evaluate(self, expression: str, timeout: float = 20.0) -> Any:
        """The value of ``expression`` (a promise is awaited), or RuntimeError."""
        number = next(self._ids)
        await self._ws.send_json(
            {
                "id": number,
                "method": "Runtime.evaluate",
                "params": {
                    "expression": expression,
                    "awaitPromise": True,
                    "returnByValue": True,
                    "userGesture": True,
                },
            }
        )
        for _ in range(10_000):  # skip events until our answer
            message = json.loads((await self._ws.receive(timeout)).data)
            if message.get("id") != number:
                continue
            result = message.get("result", {})
            if "exceptionDetails" in result:
                details = result["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                raise RuntimeError(f"in the page: {text}")
            return result.get("result", {}).get("value")
        raise RuntimeError("no answer from the page")

    async def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll ``expression`` until it is truthy (bounded by ``timeout``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the page never had {expression}")
            await asyncio.sleep(0.1)

    async def record(self, element_id: str, seconds: float) -> np.ndarray:
        """What the page's ``<audio id=element_id>`` plays, for ``seconds``,
        as 48 kHz int16 samples (a Web Audio tap on its stream)."""
        floats = await self.evaluate(
            f"""(async () => {{
                const ctx = new AudioContext({{ sampleRate: 48000 }});
                const source = ctx.createMediaStreamSource(
                    document.getElementById({json.dumps(element_id)}).srcObject);
                const tap = ctx.createScriptProcessor(4096, 1, 1);
                const chunks = [];
                tap.onaudioprocess = (e) =>
                    chunks.push(Array.from(e.inputBuffer.getChannelData(0)));
                source.connect(tap);
                tap.connect(ctx.destination);
                await new Promise((r) => setTimeout(r, {int(seconds * 1000)}));
                source.disconnect();
                tap.disconnect();
                await ctx.close();
                return chunks.flat();
            }})()""",
            timeout=seconds + 20,
        )
        return np.clip(np.asarray(floats, dtype=np.float64) * 32767, -32768, 32767).astype(np.int16)

    async def screenshot(self, path: Path, width: int = 640, height: int = 420) -> None:
        """The page as shown, at ``width`` x ``height``, as a PNG."""
        await self._call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        shot = await self._call("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        number = next(self._ids)
        await self._ws.send_json({"id": number, "method": method, "params": params})
        for _ in range(10_000):
            message = json.loads((await self._ws.receive(20)).data)
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
        raise RuntimeError(f"no answer to {method}")

    async def close(self) -> None:
        await self._ws.close()
        await self._session.close()


class Chromium:
    """A headless Chromium process; ``open`` gives a ``Page``."""

    def __init__(self, microphone_wav: Path, profile: Path) -> None:
        if CHROMIUM is None:
            raise RuntimeError("chromium is not installed (./dev installs it)")
        profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",  # (root in CI)
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone_wav}",
                "--allow-loopback-in-peer-connection",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.devtools = ""

    async def start(self, timeout: float = 30.0) -> None:
        """Wait for its DevTools endpoint (it prints where it listens)."""
        assert self.process.stderr is not None

        def read_endpoint() -> str:
            assert self.process.stderr is not None
            for line in itertools.islice(self.process.stderr, 2000):
                found = re.search(r"DevTools listening on ws://([^/]+)/", line)
                if found:
                    return found.group(1)
            return ""

        self.devtools = await asyncio.wait_for(asyncio.to_thread(read_endpoint), timeout)
        if not self.devtools:
            raise RuntimeError(f"chromium did not start (exit {self.process.poll()})")

    async def open(self, url: str) -> Page:
        """A new tab showing ``url`` (navigated to, so its query is its own)."""
        session = aiohttp.ClientSession()
        async with session.put(f"http://{self.devtools}/json/new?about:blank") as response:
            target = await response.json()
        ws = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 << 20)
        page = Page(ws, session)
        await page._call("Page.navigate", {"url": url})
        await page.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        )
        return page

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
