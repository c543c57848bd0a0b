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

from agent_phone.demo import (
    HEARD_FILE,
    demo_audio,
    demo_options,
    demo_platform,
    has_sound_devices,
    run_callers,
)
from agent_phone.phone.engine import PhoneEngine
from agent_phone.phone.settings import PhoneSettings
from agent_phone.ui.tasks import OwnedTasks

logger = logging.getLogger(__name__)

USER = "alice"
PASSWORD = "demo"


class DemoRun:
    """The demo's platform and callers; ``close()`` stops both (idempotent)."""

    def __init__(self, args: argparse.Namespace, tasks: OwnedTasks) -> None:
        self.calls, self.timeout_s = demo_options(args)
        self.tasks = tasks
        self._platform = demo_platform(self.timeout_s)
        self._stop = asyncio.Event()
        self._has_devices = False
        self.url = ""
        self.heard_file = HEARD_FILE
        self._closed = False

    async def start(self) -> str:
        self.url = await self._platform.start("127.0.0.1", 0)
        # PortAudio's first call probes every host API: off the loop.
        self._has_devices = await asyncio.to_thread(has_sound_devices)
        logger.info("demo platform at %s; sound devices: %s", self.url, self._has_devices)
        return self.url

    @property
    def has_devices(self) -> bool:
        """A default microphone and speaker exist (known after ``start()``)."""
        return self._has_devices

    @property
    def audio_note(self) -> str:
        if self._has_devices:
            return "Demo audio: your default microphone and speaker."
        # The path is in the log and docs/desktop.md: the status bar is too narrow for it.
        logger.info("demo: no sound card; what the agent hears goes to %s", self.heard_file)
        return "Demo without a sound card: the agent's voice is a recording."

    def engine(self, settings: PhoneSettings) -> PhoneEngine:
        """The engine factory for the demo: devices when there are some, else files."""
        audio = demo_audio(self._has_devices, settings.mic_device, settings.speaker_device)
        return PhoneEngine(settings, audio)

    def start_callers(self) -> None:
        self.tasks.spawn(
            "run the demo callers",
            run_callers(
                self.url, self.calls, self.timeout_s, self._stop, self._platform.trunk_token
            ),
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        await self.tasks.close(timeout=2.0)
        await self._platform.close()
