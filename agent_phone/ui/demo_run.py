"""``agent-phone --demo`` with a window: a local platform and callers, in-process.

The same scene as the text demo (agent_phone/demo.py, whose callers it
reuses): a platform on 127.0.0.1 with a short persistent-connection timeout,
a caller placing a call every few seconds, and agent ``alice`` signed in on
queue with auto answer, so a newcomer sees calls arrive, the indicator go
green, time out during the long pause and come back with the next call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from pathlib import Path

from agent_phone.cloud.config import demo_config
from agent_phone.cloud.events import EventLog
from agent_phone.cloud.server import Platform
from agent_phone.demo import _callers
from agent_phone.phone.audio_io import call_audio
from agent_phone.phone.devices import AudioDeviceError, list_devices
from agent_phone.phone.engine import PhoneEngine
from agent_phone.phone.settings import PhoneSettings
from agent_phone.resources import resource
from agent_phone.ui.tasks import OwnedTasks

logger = logging.getLogger(__name__)

USER = "alice"
PASSWORD = "demo"


class DemoRun:
    """The demo's platform and callers; ``close()`` stops both (idempotent)."""

    def __init__(self, args: argparse.Namespace, tasks: OwnedTasks) -> None:
        self.calls = getattr(args, "demo_calls", None) or 9
        self.timeout_s = getattr(args, "demo_timeout", None) or 8.0
        self.tasks = tasks
        self._platform = Platform(
            demo_config(persistent_timeout_s=self.timeout_s), EventLog(out=None)
        )
        self._stop = asyncio.Event()
        self._has_devices = False
        self.url = ""
        self.heard_file = Path(tempfile.gettempdir()) / "agent-phone-demo-heard.wav"
        self._closed = False

    async def start(self) -> str:
        self.url = await self._platform.start("127.0.0.1", 0)
        try:
            # PortAudio's first call probes every host API: off the loop.
            devices = await asyncio.to_thread(list_devices)
        except AudioDeviceError:
            devices = []
        self._has_devices = any(d.is_default_input for d in devices) and any(
            d.is_default_output for d in devices
        )
        logger.info("demo platform at %s; sound devices: %s", self.url, self._has_devices)
        return self.url

    @property
    def audio_note(self) -> str:
        if self._has_devices:
            return "Demo audio: your default microphone and speaker."
        # The path is in the log and docs/desktop.md: the status bar is too narrow for it.
        logger.info("demo: no sound card; what the agent hears goes to %s", self.heard_file)
        return "Demo without a sound card: the agent's voice is a recording."

    def engine(self, settings: PhoneSettings) -> PhoneEngine:
        """The engine factory for the demo: devices when there are some, else files."""
        if self._has_devices:
            audio = call_audio(
                mic_device=settings.mic_device, speaker_device=settings.speaker_device
            )
        else:
            audio = call_audio(
                mic_file=resource("sounds", "agent.wav"), speaker_file=self.heard_file
            )
        return PhoneEngine(settings, audio)

    def start_callers(self) -> None:
        self.tasks.spawn(
            "run the demo callers",
            _callers(self.url, self.calls, self.timeout_s + 4.0, self._stop),
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        await self.tasks.close(timeout=2.0)
        await self._platform.close()
