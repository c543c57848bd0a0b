"""PortAudio itself, through ``sounddevice``: the device list, and opening
and closing streams.

This is the only module that imports ``sounddevice``, and it does so lazily,
inside functions, so importing it never fails on a machine without PortAudio
(the platform, CI jobs without sound); using it there raises
``AudioDeviceError`` with the cause. The microphone and the speaker
(``devices``) and the other players (``sounds``) open their streams through
``StreamHandle``.

Opening, starting, stopping and closing a stream block (up to seconds on
some hosts, forever in one PortAudio bug), so they run in daemon threads
that ``StreamHandle.start()`` and ``stop()`` await with a time limit.
``list_devices``, ``refresh_devices`` and ``resolve_device`` are
synchronous: call them through ``asyncio.to_thread`` from the loop, because
the first call initialises PortAudio, which probes every host API.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, TypeVar

logger = logging.getLogger(__name__)

DeviceKind = Literal["input", "output"]
DeviceSpec = str | int | None
T = TypeVar("T")

# PortAudio is one process-wide library that is not documented as thread-safe:
# stream open/close, device queries and re-initialisation from different
# worker threads are serialised here. The stream callbacks never take it.
_portaudio_lock = threading.Lock()
# Bounds on blocking PortAudio calls. Opening stalled up to 2 s on an idle
# PulseAudio null sink (shared/notes/audio-in-ci.md); Bluetooth headsets are
# slow too. Closing normally takes ~10 ms; see StreamHandle.stop for why it
# may never finish.
_OPEN_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 5.0
# Streams this module has open; re-initialising PortAudio under them would
# free them while their Stream objects still point at them.
_open_streams = 0


class AudioDeviceError(RuntimeError):
    """A sound device is missing or unusable, or PortAudio itself is."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device, as listed for the user to choose from."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    is_default_input: bool
    is_default_output: bool

    def channels(self, kind: DeviceKind) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels

    def describe(self) -> str:
        return (
            f"{self.index} {self.name!r} ({self.host_api}, "
            f"{self.max_input_channels} in, {self.max_output_channels} out)"
        )


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio knows (blocking; see the module docstring)."""
    sd = _sounddevice("cannot list audio devices")
    with _portaudio_lock:
        return _query_devices(sd)


def refresh_devices() -> list[DeviceInfo]:
    """Re-read the device list from the system and return it (blocking).

    PortAudio enumerates devices once, when it initialises; re-initialising it
    is the only way to see a headset plugged in since. It would also free
    every open stream, so this refuses while a microphone or speaker of this
    module is running: stop them first.
    """
    sd = _sounddevice("cannot refresh audio devices")
    with _portaudio_lock:
        if _open_streams:
            raise AudioDeviceError(
                f"cannot refresh audio devices while {_open_streams} audio stream(s) "
                "are open (or stuck closing after the sound server died)"
            )
        try:
            sd._terminate()
            sd._initialize()
        except sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot re-initialise PortAudio: {exc}") from exc
        devices = _query_devices(sd)
    logger.info("audio devices refreshed: %d found", len(devices))
    return devices


def resolve_device(spec: DeviceSpec, kind: DeviceKind) -> int | None:
    """Turn a user's device choice into a PortAudio device index.

    ``None`` (or an empty string, as a settings field stores it) means the
    system default and returns ``None``. An int, or a string of digits, is an
    index. Any other string is a case-insensitive part of the device name; an
    exact name beats a partial one, and a device on the default host API beats
    the same device seen through another (Windows lists each device under
    MME, DirectSound, WASAPI...). Raises ``AudioDeviceError`` naming the
    device if nothing matches, if several different devices match, or if the
    device has no channels of ``kind``. Blocking; see the module docstring.
    """
    _check_kind(kind)
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    return match_device(list_devices(), spec, kind)


def match_device(devices: list[DeviceInfo], spec: DeviceSpec, kind: DeviceKind) -> int | None:
    """``resolve_device`` against a given device list (no PortAudio call).

    For a settings page that already holds the list from ``list_devices``.
    """
    _check_kind(kind)
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, bool):
        raise TypeError(f"device must be a name or an index, got {spec!r}")
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        found = [d for d in devices if d.index == index]
        if not found:
            raise AudioDeviceError(
                f"no audio device with index {index}; {kind} devices: "
                f"{_describe_all(devices, kind)}"
            )
        if not found[0].channels(kind):
            raise AudioDeviceError(f"audio device {found[0].describe()} has no {kind} channels")
        return index

    needle = spec.strip().casefold()
    named = [d for d in devices if needle in d.name.casefold()]
    if not named:
        raise AudioDeviceError(
            f"no {kind} device matches {spec!r}; {kind} devices: {_describe_all(devices, kind)}"
        )
    # An exact name settles it even when that device lacks the channels: the
    # user meant it, and silently picking a longer-named neighbour would not be.
    named = [d for d in named if d.name.casefold() == needle] or named
    candidates = [d for d in named if d.channels(kind)]
    if not candidates:
        raise AudioDeviceError(
            f"audio device {named[0].describe()} matches {spec!r} but has no {kind} channels"
        )
    default_apis = {d.host_api for d in devices if d.is_default_input or d.is_default_output}
    candidates = [d for d in candidates if d.host_api in default_apis] or candidates
    if len({d.name for d in candidates}) > 1:
        raise AudioDeviceError(
            f"{spec!r} matches several {kind} devices: "
            + "; ".join(d.describe() for d in candidates)
        )
    return min(d.index for d in candidates)


class StreamHandle:
    """Opens and closes one PortAudio stream from daemon threads, bounded in time.

    Shared by the microphone, the speaker and the other players
    (``agent_phone.phone.sounds``): resolving the device, turning
    PortAudio's errors into ``AudioDeviceError``, serialising with other
    PortAudio calls, and keeping start/stop idempotent even when called
    concurrently.
    """

    def __init__(self, kind: DeviceKind, device: DeviceSpec) -> None:
        self._kind: DeviceKind = kind
        self._device = device
        self._stream: Any = None
        self._what = self._describe_spec()
        self._lifecycle = asyncio.Lock()

    @property
    def open(self) -> bool:
        return self._stream is not None

    async def start(self, make_stream: Callable[[ModuleType, int], Any]) -> None:
        async with self._lifecycle:
            if self._stream is not None:
                return
            opening = _in_daemon_thread(
                functools.partial(self._open_blocking, make_stream), f"open-{self._kind}"
            )
            try:
                self._stream, self._what = await asyncio.wait_for(
                    asyncio.shield(opening), _OPEN_TIMEOUT
                )
            except TimeoutError:
                opening.add_done_callback(_close_orphan)
                raise AudioDeviceError(
                    f"cannot open {self._describe_spec()}: PortAudio did not answer within "
                    f"{_OPEN_TIMEOUT:.0f} s (https://github.com/PortAudio/portaudio/issues/535)"
                ) from None
            except asyncio.CancelledError:
                # The thread cannot be interrupted: close whatever it opens,
                # so a cancelled start() leaks no stream.
                opening.add_done_callback(_close_orphan)
                raise

    async def stop(self) -> None:
        async with self._lifecycle:
            stream, self._stream = self._stream, None
            if stream is None:
                return
            closing = _in_daemon_thread(
                functools.partial(_close_stream, stream, self._what), f"close-{self._kind}"
            )
            try:
                await asyncio.wait_for(asyncio.shield(closing), _CLOSE_TIMEOUT)
            except TimeoutError:
                # PortAudio's ALSA thread can spin forever when the sound server
                # dies under a stream, and stopping it then never returns
                # (https://github.com/PortAudio/portaudio/issues/1037, fixed
                # after 19.7). Give up on it rather than freeze the caller.
                logger.error(
                    "%s did not stop within %.0f s; abandoning it", self._what, _CLOSE_TIMEOUT
                )
                _skip_portaudio_exit_cleanup()

    def _describe_spec(self) -> str:
        if self._device is None or (isinstance(self._device, str) and not self._device.strip()):
            return f"the default {self._kind} device"
        return f"{self._kind} device {self._device!r}"

    def _open_blocking(self, make_stream: Callable[[ModuleType, int], Any]) -> tuple[Any, str]:
        """Open and start the stream; return it and its description (in a thread)."""
        global _open_streams
        what = self._describe_spec()
        sd = _sounddevice(f"cannot open {what}")
        began = time.monotonic()
        with _portaudio_lock:
            devices = _query_devices(sd)
            index = match_device(devices, self._device, self._kind)
            if index is None:
                index = _default_index(devices, self._kind)
            device = next(d for d in devices if d.index == index)
            what = f"{self._kind} device {device.describe()}"
            try:
                stream = make_stream(sd, index)
            except (sd.PortAudioError, ValueError) as exc:
                raise AudioDeviceError(f"cannot open {what}: {exc}") from exc
            opened = time.monotonic()
            try:
                stream.start()
            except sd.PortAudioError as exc:
                stream.close(ignore_errors=True)
                raise AudioDeviceError(f"cannot start {what}: {exc}") from exc
            _open_streams += 1
        logger.info(
            "%s running (open %.0f ms, start %.0f ms)",
            what,
            (opened - began) * 1000,
            (time.monotonic() - opened) * 1000,
        )
        return stream, what


def _close_stream(stream: Any, what: str) -> None:
    """Stop and close a stream (in a thread); never raises: stop() must succeed."""
    global _open_streams
    began = time.monotonic()
    try:
        # abort, not stop: stop waits for queued output to play, which took
        # ~1 s on an idle PulseAudio null sink (shared/notes/audio-in-ci.md),
        # and the last few ms of a call do not matter. Outside the lock: this
        # is the call that can hang for good (see StreamHandle.stop), and
        # other devices must stay usable if it does. ignore_errors: a stream
        # whose sound server died errors here but must still be closed.
        stream.abort(ignore_errors=True)
    except Exception:
        logger.warning("stopping %s failed", what, exc_info=True)
    with _portaudio_lock:
        try:
            stream.close(ignore_errors=True)
        except Exception:
            logger.warning("closing %s failed", what, exc_info=True)
        finally:
            _open_streams -= 1
    logger.info("%s closed (%.0f ms)", what, (time.monotonic() - began) * 1000)


def _close_orphan(opening: asyncio.Future[tuple[Any, str]]) -> None:
    """Close a stream whose start() gave up waiting for it (a done callback)."""
    if opening.cancelled() or opening.exception() is not None:
        return
    stream, what = opening.result()
    threading.Thread(
        target=_close_stream, args=(stream, what), name="close-orphan", daemon=True
    ).start()


def _skip_portaudio_exit_cleanup() -> None:
    """Keep sounddevice from stopping streams and terminating PortAudio at exit.

    With a stream stuck as in PortAudio issue 1037, that atexit handler hangs
    in Pa_Terminate and the process never exits; the OS reclaims the device
    anyway. sounddevice offers no public switch, hence the private name.
    """
    sd = sys.modules.get("sounddevice")
    handler = getattr(sd, "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)


def _in_daemon_thread(function: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Run ``function`` in a new daemon thread; its outcome settles the returned future.

    Not ``asyncio.to_thread``: a PortAudio call that never returns would keep
    an executor thread forever, and both interpreter exit and asyncio.run()'s
    executor shutdown wait for those threads, so the app could never quit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # else the waiting side was cancelled
            outcome()

    def run() -> None:
        outcome: Callable[[], None]
        try:
            outcome = functools.partial(future.set_result, function())
        except BaseException as exc:
            outcome = functools.partial(future.set_exception, exc)
        try:
            loop.call_soon_threadsafe(settle, outcome)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    threading.Thread(target=run, name=f"portaudio-{name}", daemon=True).start()
    return future


def _sounddevice(context: str) -> ModuleType:
    """Import sounddevice, turning a missing PortAudio into ``AudioDeviceError``."""
    try:
        # import_module rather than an import statement: the name stays typed
        # as a module although sounddevice ships no type information.
        return importlib.import_module("sounddevice")
    except OSError as exc:
        # The wheel carries no PortAudio on Linux: "PortAudio library not found".
        raise AudioDeviceError(
            f"{context}: {exc} (install PortAudio, e.g. the libportaudio2 package)"
        ) from exc
    except ImportError as exc:
        raise AudioDeviceError(f"{context}: the sounddevice package is missing ({exc})") from exc


def _query_devices(sd: ModuleType) -> list[DeviceInfo]:
    """Read PortAudio's device list; the caller holds ``_portaudio_lock``."""
    try:
        host_apis = sd.query_hostapis()
        default_api = host_apis[sd.default.hostapi] if host_apis else None
        raw_devices = sd.query_devices()
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"cannot list audio devices: {exc}") from exc
    default_in = default_api["default_input_device"] if default_api else -1
    default_out = default_api["default_output_device"] if default_api else -1
    return [
        DeviceInfo(
            index=int(raw["index"]),
            name=str(raw["name"]),
            host_api=str(host_apis[raw["hostapi"]]["name"]),
            max_input_channels=int(raw["max_input_channels"]),
            max_output_channels=int(raw["max_output_channels"]),
            default_samplerate=float(raw["default_samplerate"]),
            is_default_input=raw["index"] == default_in,
            is_default_output=raw["index"] == default_out,
        )
        for raw in raw_devices
    ]


def _default_index(devices: list[DeviceInfo], kind: DeviceKind) -> int:
    for device in devices:
        if device.is_default_input if kind == "input" else device.is_default_output:
            return device.index
    raise AudioDeviceError(
        f"cannot open the default {kind} device: PortAudio reports none "
        f"(no sound card, or no sound server reachable); devices: "
        f"{_describe_all(devices, kind)}"
    )


def _check_kind(kind: str) -> None:
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")


def _describe_all(devices: list[DeviceInfo], kind: DeviceKind) -> str:
    usable = [d.describe() for d in devices if d.channels(kind)]
    return "; ".join(usable) if usable else "none"
