"""``agent-phone --headless``: the phone engine with no window.

One JSON line per event on stdout; one JSON command per line on stdin
(``{"cmd": "answer"}``; see docs/headless.md). It exits 0 on ``quit``, at the
end of stdin, or on SIGTERM, after hanging up and closing everything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import threading
from typing import Any, TextIO

from agent_phone.phone import events
from agent_phone.phone.audio_io import call_audio
from agent_phone.phone.devices import AudioDeviceError
from agent_phone.phone.engine import PhoneEngine
from agent_phone.phone.errors import PhoneError, SignInError
from agent_phone.phone.settings import PhoneSettings

logger = logging.getLogger(__name__)

#: A command line longer than this is refused (bounded parsing).
MAX_COMMAND_BYTES = 4096


class Headless:
    def __init__(self, engine: PhoneEngine, out: TextIO = sys.stdout) -> None:
        self.engine = engine
        self._out = out
        self._quit = asyncio.Event()
        engine.subscribe(self.show)

    def show(self, event: events.PhoneEvent) -> None:
        self._out.write(json.dumps(event.as_dict()) + "\n")
        self._out.flush()

    def _error(self, message: str) -> None:
        self.show(events.Error(message=message, code="command"))

    async def command(self, line: str) -> None:
        """Carry out one command line; any problem is reported as an error event."""
        line = line.strip()
        if not line:
            return
        if len(line) > MAX_COMMAND_BYTES:
            self._error(f"command longer than {MAX_COMMAND_BYTES} bytes")
            return
        try:
            command = json.loads(line)
        except json.JSONDecodeError as exc:
            self._error(f"not JSON: {exc}")
            return
        if not isinstance(command, dict) or not isinstance(command.get("cmd"), str):
            self._error('a command is a JSON object with a string "cmd"')
            return
        try:
            await self._dispatch(command)
        except PhoneError as exc:
            self._error(f"{command['cmd']}: {exc}")

    async def _dispatch(self, c: dict[str, Any]) -> None:
        e = self.engine
        call_id = c.get("call_id")
        if call_id is not None and not isinstance(call_id, str):
            raise PhoneError('"call_id" must be a string')
        match c["cmd"]:
            case "answer":
                await e.answer(call_id)
            case "decline":
                await e.decline(call_id)
            case "dial":
                number, agent = c.get("number"), c.get("agent")
                if agent is not None:
                    if not isinstance(agent, str) or number is not None:
                        raise PhoneError('"agent" must be an agent\'s name (and no "number")')
                    await e.dial(agent=agent)
                    return
                if not isinstance(number, str):
                    raise PhoneError('"number" must be a string such as "+15550100"')
                await e.dial(number)
            case "hangup":
                await e.hangup(call_id)
            case "mute":
                e.set_mute(_flag(c))
            case "hold":
                await e.hold(call_id)
            case "unhold":
                await e.unhold(call_id)
            case "dtmf":
                digits = c.get("digits")
                if not isinstance(digits, str):
                    raise PhoneError('"digits" must be a string of 0-9, *, #, A-D')
                await e.send_dtmf(digits, call_id)
            case "status":
                status, reason = c.get("status"), c.get("reason", "")
                if not isinstance(status, str) or not isinstance(reason, str):
                    raise PhoneError('"status" (and "reason", if given) must be strings')
                await e.set_status(status, reason)
            case "transfer":
                targets = _one_of(c, ("agent", "queue", "number"), "name one target")
                consult = c.get("consult", False)
                if not isinstance(consult, bool):
                    raise PhoneError('"consult" must be true or false')
                await e.transfer(**targets, consult=consult, call_id=call_id)
            case "complete_transfer":
                await e.complete_transfer(call_id)
            case "cancel_transfer":
                await e.cancel_transfer(call_id)
            case "conference":
                targets = _one_of(c, ("agent", "number"), "name one party")
                await e.conference(**targets, call_id=call_id)
            case "leave_conference":
                await e.leave_conference(call_id)
            case "wrap_up":
                code = c.get("code")
                if not isinstance(code, str):
                    raise PhoneError('"code" must be one of the wrap-up codes of after_call_work')
                await e.wrap_up(code, call_id)
            case "on_queue":
                await e.set_on_queue(True)
            case "off_queue":
                await e.set_on_queue(False)
            case "persistent":
                await e.set_persistent(_flag(c))
            case "end_connection":
                await e.end_connection()
            case "voice_processing":
                e.set_voice_processing(_flag(c))
            case "quit":
                self._quit.set()
            case other:
                raise PhoneError(f"unknown command {other!r}")

    async def run(self, lines: asyncio.Queue[str | None]) -> None:
        """Serve commands until quit, end of input or the platform goes away."""
        quit_task = asyncio.ensure_future(self._quit.wait())
        closed_task = asyncio.ensure_future(self.engine.closed.wait())
        try:
            while not self._quit.is_set() and not self.engine.closed.is_set():
                next_line = asyncio.ensure_future(lines.get())
                done, _ = await asyncio.wait(
                    {next_line, quit_task, closed_task}, return_when=asyncio.FIRST_COMPLETED
                )
                if next_line not in done:
                    next_line.cancel()
                    break
                line = next_line.result()
                if line is None:
                    break
                await self.command(line)
        finally:
            quit_task.cancel()
            closed_task.cancel()


def _one_of(command: dict[str, Any], keys: tuple[str, ...], what: str) -> dict[str, str]:
    """Exactly one of ``keys`` in ``command``, a string: as keyword arguments."""
    given = {k: command[k] for k in keys if k in command}
    if len(given) != 1 or not all(isinstance(v, str) for v in given.values()):
        names = ", ".join(f'"{k}"' for k in keys)
        raise PhoneError(f"{what}: one of {names} (a string)")
    return given


def _flag(command: dict[str, Any]) -> bool:
    on = command.get("on", True)
    if not isinstance(on, bool):
        raise PhoneError('"on" must be true or false')
    return on


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """A thread: stdin may be a pipe, a file or a terminal; None marks its end."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(lines.put_nowait, line)
    loop.call_soon_threadsafe(lines.put_nowait, None)


async def run_headless(settings: PhoneSettings) -> int:
    audio = call_audio(
        mic_device=settings.mic_device,
        mic_file=settings.mic_file,
        speaker_device=settings.speaker_device,
        speaker_file=settings.speaker_file,
        voice_processing=settings.voice_processing,
    )
    engine = PhoneEngine(settings, audio)
    front = Headless(engine)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lines.put_nowait, None)
    try:
        await audio.check()
    except AudioDeviceError as exc:
        front.show(events.Error(message=f"audio device: {exc}", code="audio"))
        return 1
    try:
        await engine.start()
    except SignInError as exc:
        front.show(events.Error(message=f"sign-in failed: {exc}", code="sign_in"))
        await engine.close()
        return 1
    threading.Thread(target=_read_stdin, args=(loop, lines), daemon=True).start()
    try:
        await front.run(lines)
    finally:
        lost = engine.closed.is_set()
        await engine.close()
    return 1 if lost else 0
