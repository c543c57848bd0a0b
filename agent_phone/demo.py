"""``agent-phone --demo``: see calls arrive with nothing set up.

Starts a local platform (built-in demo configuration, a short persistent-
connection timeout) and a caller that places a call every few seconds with a
recorded voice, and signs agent ``alice`` in with auto answer (and
wrapping each call up at once). It shows the
first call setting up the connection, the next ones arriving over it at
once, the connection timing out during a pause, and the call after that
setting it up again. Everything stays on 127.0.0.1; the demo ends by itself
after ``--demo-calls`` calls (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from agent_phone.caller.client import CallPlan, place_call
from agent_phone.cloud.config import demo_config
from agent_phone.cloud.events import EventLog
from agent_phone.cloud.server import Platform
from agent_phone.media.ice import restrict_ice_addresses
from agent_phone.media.wav import WavLoopSource
from agent_phone.phone import events
from agent_phone.phone.audio_io import CallAudio, call_audio
from agent_phone.phone.engine import PhoneEngine
from agent_phone.phone.errors import SignInError
from agent_phone.phone.settings import PhoneSettings
from agent_phone.resources import resource
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)

#: Calls arrive this far apart, with one long pause that outlasts the timeout.
GAP_S = 3.0
TALK_S = 4.0


def _say(text: str) -> None:
    print(time.strftime("%H:%M:%S ") + text, flush=True)


def describe(event: events.PhoneEvent) -> str | None:
    """One line for a person, or None for events not worth a line."""
    match event:
        case events.SignedIn(agent=agent, queues=queues):
            return f"signed in as {agent} (queues: {', '.join(queues)})"
        case events.Presence(on_queue=on):
            return "on queue: waiting for calls" if on else "off queue"
        case events.Connection(state=state, reason=reason, expires_at=expires_at):
            icon = {
                "active": "[green]",
                "connecting": "[....]",
                "inactive": "[ -- ]",
                "off": "[off ]",
            }
            extra = f", closes in {expires_at - time.time():.0f} s if idle" if expires_at else ""
            return f"persistent connection {icon.get(state, '')} {state} ({reason}{extra})"
        case events.CallChanged(state="alerting", previous=None, peer=caller):
            how = (
                "over the kept connection"
                if event.over_persistent_connection
                else "on a new connection"
            )
            return f"incoming call from {caller}, {how}, delivered in {event.delivery_ms:.1f} ms"
        case events.CallChanged(state="connected", previous="alerting", auto_answer=auto):
            return "answered" + (" automatically" if auto else "")
        case events.CallChanged(state="ended", reason=reason, duration_s=d):
            return f"call ended ({reason}) after {d:.1f} s"
        case events.AfterCallWork(codes=codes, timeout_s=timeout_s):
            return f"after-call work: codes {', '.join(codes)} (ends by itself in {timeout_s:g} s)"
        case events.Status(status=status, cause=cause) if cause != "requested":
            return f"status: {status} ({cause})"
        case events.Error(message=message):
            return f"error: {message}"
    return None


#: What the agent hears, when there is no sound card to play it on.
HEARD_FILE = Path(tempfile.gettempdir()) / "agent-phone-demo-heard.wav"
DEMO_CALLS = 9
DEMO_TIMEOUT_S = 8.0


def demo_options(args: argparse.Namespace) -> tuple[int, float]:
    """How many calls, and the persistent-connection timeout, for this demo."""
    calls = getattr(args, "demo_calls", None) or DEMO_CALLS
    return calls, getattr(args, "demo_timeout", None) or DEMO_TIMEOUT_S


def demo_platform(timeout_s: float) -> Platform:
    return Platform(demo_config(persistent_timeout_s=timeout_s), EventLog(out=None))


def has_sound_devices() -> bool:
    """A default microphone and speaker exist (blocking: it probes PortAudio)."""
    from agent_phone.phone.devices import AudioDeviceError, list_devices

    try:
        devices = list_devices()
    except AudioDeviceError:
        return False
    has_in = any(d.is_default_input for d in devices)
    return has_in and any(d.is_default_output for d in devices)


def demo_audio(
    has_devices: bool, mic_device: str | None = None, speaker_device: str | None = None
) -> CallAudio:
    """The sound devices when there are some; otherwise a recorded agent
    voice, and what they hear written to ``HEARD_FILE``."""
    if has_devices:
        return call_audio(mic_device=mic_device, speaker_device=speaker_device)
    return call_audio(mic_file=resource("sounds", "agent.wav"), speaker_file=HEARD_FILE)


async def run_callers(
    url: str, calls: int, timeout_s: float, stop: asyncio.Event, trunk_token: str
) -> None:
    """Customers calling every few seconds; every fourth gap outlasts the
    persistent-connection timeout, so the connection closes and comes back.
    ``trunk_token``: the demo platform's (``Platform.trunk_token``)."""
    pause_s = timeout_s + 4.0
    voice = resource("sounds", "customer.wav")
    for n in range(1, calls + 1):
        plan = CallPlan(
            platform=url,
            queue="support",
            caller=f"Customer {n}",
            duration_s=TALK_S,
            trunk_token=trunk_token,
        )
        result = await place_call(plan, WavLoopSource(voice))
        if not result.answered:
            _say(f"Customer {n}'s call was not answered: {result.error or result.reason}")
        gap = pause_s if n % 4 == 0 else GAP_S
        if n % 4 == 0 and n < calls:
            _say(f"(a pause of {gap:.0f} s: longer than the timeout, so the connection will close)")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), gap)
        if stop.is_set():
            return


async def run_demo(args: argparse.Namespace) -> int:
    calls, timeout_s = demo_options(args)
    restrict_ice_addresses(["127.0.0.1"])
    platform = demo_platform(timeout_s)
    url = await platform.start("127.0.0.1", 0)
    _say(f"local platform at {url} (persistent-connection timeout {timeout_s:g} s)")
    has_devices = has_sound_devices()
    audio = demo_audio(has_devices)
    if has_devices:
        _say("audio: your default microphone and speaker")
    else:
        _say(
            "audio: no sound card: the agent speaks a recording; "
            f"what they hear goes to {HEARD_FILE}"
        )
    settings = PhoneSettings(
        platform=url, user="alice", password="demo", on_queue=True, auto_answer=True
    )
    engine = PhoneEngine(settings, audio)

    def show(event: events.PhoneEvent) -> None:
        if (line := describe(event)) is not None:
            _say(line)
        if isinstance(event, events.AfterCallWork):
            # The agent of this demo picks the first code at once (the
            # window's wrap-up form leaves it to the person at it).
            code = event.codes[0]
            _say(f"wrapping up: {code}")
            tasks.spawn(engine.wrap_up(code, event.call_id), "wrap-up")

    tasks = TaskSet("demo")

    engine.subscribe(show)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await engine.start()
        await run_callers(url, calls, timeout_s, stop, platform.trunk_token)
        _say("demo finished")
        return 0
    except SignInError as exc:
        print(f"agent-phone: demo sign-in failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await tasks.close()
        await engine.close()
        await platform.close()
