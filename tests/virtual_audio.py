"""A virtual sound card for tests: a private PulseAudio daemon with null sinks.

Set up exactly as in shared/notes/audio-in-ci.md (verified on the CI kind of
machine, which has no sound card and no desktop session):

* null sinks ``speaker``, ``micsink`` and ``blackhole``; two loopbacks from the
  monitors of ``speaker`` and ``micsink`` into ``blackhole`` keep the null sinks
  at low latency (otherwise new streams stall up to 2 s);
* default sink ``speaker``, default source ``micsink.monitor``: the app under
  test simply uses the default devices (PortAudio's ALSA ``default`` PCM, which
  the ALSA ``pulse`` plugin routes to the daemon);
* two extra ALSA PCMs for the test side: ``speaker_monitor`` (what the app
  played) and ``mic_feed`` (what the app will hear from its microphone).

How it is wired into pytest (tests/conftest.py):

1. At conftest import, :func:`prepare_environment` makes a private temp dir,
   writes both configuration files and sets ``PULSE_SERVER``,
   ``ALSA_CONFIG_PATH``, ``PULSE_COOKIE`` and ``XDG_RUNTIME_DIR`` in
   ``os.environ``: before any test module imports ``sounddevice``, and inherited
   by every subprocess a test starts. So no test can reach a real sound card.
2. The session fixture ``virtual_audio`` starts the daemon (as a child of the
   test process; killed at session end, or if the test process dies), waits
   until ``pactl info`` answers and then the ~2.5 s the note asks for, and
   re-initialises PortAudio (``sd._terminate(); sd._initialize()``) so that
   ``sounddevice`` in the test process sees the devices.
3. The autouse fixture ``_virtual_audio_stop_streams`` stops any feed or
   recording a test left running.

Use::

    def test_app_hears_caller(virtual_audio):
        feed = virtual_audio.play_into_mic(make_tone(880, 1.0))      # non-blocking
        heard = virtual_audio.record_speaker(1.0)                     # blocking
        feed.wait()                                                   # bounded
        subprocess.run([...], env={**os.environ, **virtual_audio.env})  # env is inherited anyway

Without ``pulseaudio`` (or ``libportaudio2``, ``libasound2-plugins``) the fixture
fails, naming the Debian packages: audio tests must never be skipped silently.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: Debian packages the virtual sound card needs (./dev setup installs them).
DEBIAN_PACKAGES = ("pulseaudio", "pulseaudio-utils", "libportaudio2", "libasound2-plugins")

RATE = 48000
#: The note's pitfall 1: right after the daemon starts, wait this long before streams.
SETTLE_SECONDS = 2.5
#: How long to wait for the daemon to answer ``pactl info``.
START_TIMEOUT = 15.0
#: Upper bound for :meth:`VirtualAudio.start_recording`.
MAX_RECORDING_SECONDS = 120.0

# A Python string: each backslash-newline below joins two lines, so every
# load-module is one line in the file, as PulseAudio wants.
PA_CONFIG = """\
load-module module-native-protocol-unix
load-module module-null-sink sink_name=speaker rate=48000 channels=2
load-module module-null-sink sink_name=micsink rate=48000 channels=2
load-module module-null-sink sink_name=blackhole rate=48000 channels=2
load-module module-loopback source=speaker.monitor sink=blackhole latency_msec=20 \
source_dont_move=true sink_dont_move=true
load-module module-loopback source=micsink.monitor sink=blackhole latency_msec=20 \
source_dont_move=true sink_dont_move=true
load-module module-null-sink sink_name=ringer rate=48000 channels=2
load-module module-loopback source=ringer.monitor sink=blackhole latency_msec=20 \
source_dont_move=true sink_dont_move=true
set-default-sink speaker
set-default-source micsink.monitor
"""

ALSA_CONFIG = """\
pcm.speaker_monitor { type pulse device "speaker.monitor" }
pcm.mic_feed        { type pulse device "micsink" }
pcm.ringer          { type pulse device "ringer" }
pcm.ringer_monitor  { type pulse device "ringer.monitor" }
"""

SPEAKER_MONITOR_PCM = "speaker_monitor"
#: A second output for the app (its ringer device, by this name) and its monitor.
RINGER_PCM = "ringer"
RINGER_MONITOR_PCM = "ringer_monitor"
MIC_FEED_PCM = "mic_feed"


class VirtualAudioError(RuntimeError):
    """The virtual sound card could not be started or has died."""


def _install_hint() -> str:
    return (
        "Debian packages needed: " + " ".join(DEBIAN_PACKAGES) + ". Run ./dev setup as root, or: "
        "sudo apt-get install -y --no-install-recommends " + " ".join(DEBIAN_PACKAGES)
    )


# --------------------------------------------------------------------------------------
# Paths and environment (conftest import time)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioPaths:
    root: Path  # private temp dir, removed at exit
    runtime_dir: Path  # XDG_RUNTIME_DIR (0700); the socket is runtime_dir/pulse/native
    home: Path  # HOME of the daemon (its cookie lands in home/.config/pulse/cookie)
    pa_config: Path  # the -F file
    alsa_config: Path  # the extra ALSA PCMs
    log_file: Path  # the daemon's log
    stderr_file: Path  # the daemon's stdout/stderr (errors before logging starts)

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "pulse" / "native"

    @property
    def cookie(self) -> Path:
        return self.home / ".config" / "pulse" / "cookie"

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs to use the virtual sound card."""
        return {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_COOKIE": str(self.cookie),
            "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.alsa_config}",
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
        }


_paths: AudioPaths | None = None


def _temp_parent() -> str:
    # A unix socket path must stay under ~107 bytes: fall back to /tmp for long TMPDIRs.
    parent = tempfile.gettempdir()
    return parent if len(parent) <= 40 else "/tmp"


_DIR_PREFIX = "agent-phone-audio-"


def _remove_stale_dirs(parent: str) -> None:
    """Remove the dirs of earlier test processes that died without cleaning up
    (killed pytest: atexit did not run; their daemons died with them)."""
    for d in Path(parent).glob(_DIR_PREFIX + "*"):
        try:
            pid = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue  # being created, or not ours
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(d, ignore_errors=True)


def prepare_environment() -> AudioPaths:
    """Make the private dirs and config files and point this process's env at them.

    Idempotent. Call it before ``sounddevice`` is imported (conftest import time).
    """
    global _paths
    if _paths is not None:
        return _paths
    parent = _temp_parent()
    if sys.platform.startswith("linux"):
        _remove_stale_dirs(parent)
    root = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=parent))
    (root / "owner.pid").write_text(str(os.getpid()))
    runtime_dir = root / "runtime"
    runtime_dir.mkdir(mode=0o700)
    os.chmod(runtime_dir, 0o700)  # whatever the umask
    home = root / "home"
    home.mkdir(mode=0o700)
    paths = AudioPaths(
        root=root,
        runtime_dir=runtime_dir,
        home=home,
        pa_config=root / "virtual.pa",
        alsa_config=root / "asound.conf",
        log_file=root / "pulse.log",
        stderr_file=root / "pulse.stderr",
    )
    paths.pa_config.write_text(PA_CONFIG)
    paths.alsa_config.write_text(ALSA_CONFIG)
    os.environ.update(paths.env)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    _paths = paths
    return paths


# --------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------


class Playback:
    """int16 mono samples being played into a PCM. Returned by ``play_into_mic``."""

    def __init__(
        self, owner: VirtualAudio, device: int, samples: np.ndarray, rate: int, loop: bool
    ) -> None:
        sd = owner.sd
        data = np.asarray(samples)
        if data.dtype != np.int16 or data.ndim != 1:
            raise TypeError(f"expected 1-D int16 samples, got {data.dtype} {data.shape}")
        if len(data) == 0:
            raise ValueError("no samples to play")
        self._owner = owner
        self._data = np.ascontiguousarray(data)
        self._pos = 0
        self._loop = loop
        self.rate = rate
        self.duration = len(data) / rate
        self.status_flags: list[str] = []  # underflows etc., for diagnostics
        self._done = threading.Event()
        self._closed = False
        self._started = time.monotonic()
        self._stream = sd.OutputStream(
            device=device,
            samplerate=rate,
            channels=1,
            dtype="int16",
            latency=0.2,  # the note's pitfall 3: a small latency underruns on busy machines
            callback=self._callback,
            finished_callback=self._done.set,
        )
        self._stream.start()

    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if status:
            self.status_flags.append(str(status))
        out = outdata[:, 0]
        data, n = self._data, 0
        while n < frames:
            if self._pos >= len(data):
                if not self._loop:
                    out[n:] = 0
                    raise self._owner.sd.CallbackStop  # this last block is still played
                self._pos = 0
            k = min(frames - n, len(data) - self._pos)
            out[n : n + k] = data[self._pos : self._pos + k]
            self._pos += k
            n += k

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until every sample was played, then close the stream.

        ``timeout`` defaults to the remaining play time + 5 s. Raises TimeoutError
        (and stops the stream) if it runs out, e.g. for a looping feed.
        """
        if timeout is None:
            if self._loop:
                raise ValueError("a looping feed never ends by itself: pass a timeout or stop() it")
            timeout = self.duration - (time.monotonic() - self._started) + 5.0
        if not self._done.wait(max(0.0, timeout)):
            self.stop()
            self._owner.check_alive()
            raise TimeoutError(
                f"playback of {self.duration:.2f} s not finished after {timeout:.1f} s"
            )
        self._close()

    def stop(self) -> None:
        """Stop at once (discarding what is buffered) and close. Idempotent."""
        if not self._closed:
            self._stream.abort()
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stream.close()
            self._owner._forget(self)

    def __enter__(self) -> Playback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Recording:
    """A recording of a PCM as int16 mono. Returned by ``start_recording``."""

    def __init__(self, owner: VirtualAudio, device: int, rate: int, max_seconds: float) -> None:
        self._owner = owner
        self.rate = rate
        self._max_frames = int(round(max_seconds * rate))
        self._blocks: list[np.ndarray] = []
        self._frames = 0
        self._lock = threading.Lock()
        self.full = threading.Event()  # set when max_seconds were recorded
        self.status_flags: list[str] = []  # overflows etc., for diagnostics
        self._result: np.ndarray | None = None
        self._stream = owner.sd.InputStream(
            device=device,
            samplerate=rate,
            channels=1,
            dtype="int16",
            callback=self._callback,
        )
        self._stream.start()

    def _callback(self, indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        if status:
            self.status_flags.append(str(status))
        with self._lock:
            take = min(frames, self._max_frames - self._frames)
            if take > 0:
                self._blocks.append(indata[:take, 0].copy())
                self._frames += take
            if self._frames >= self._max_frames:
                self.full.set()
                raise self._owner.sd.CallbackStop

    @property
    def seconds(self) -> float:
        """How much has been recorded so far."""
        return self._frames / self.rate

    def stop(self) -> np.ndarray:
        """Stop and return everything recorded (int16 mono). Idempotent."""
        if self._result is None:
            self._stream.abort()
            self._stream.close()
            with self._lock:
                blocks = self._blocks
                self._result = np.concatenate(blocks) if blocks else np.zeros(0, np.int16)
            self._owner._forget(self)
        return self._result

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------------------


def _die_with_parent_hook() -> Any:
    """A preexec_fn that makes the child get SIGTERM when the test process dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG

    return hook


class VirtualAudio:
    """The running virtual sound card. The object the ``virtual_audio`` fixture gives.

    Attributes: ``env`` (dict of the env vars a client process needs; already in
    ``os.environ``), ``paths``, ``speaker_monitor_device`` / ``mic_feed_device``
    (sounddevice indexes), ``start_seconds`` (daemon start to ready, settle excluded).
    """

    def __init__(self, paths: AudioPaths) -> None:
        self.paths = paths
        self.env = paths.env
        self.process: subprocess.Popen[bytes] | None = None
        self.sd: Any = None
        self.speaker_monitor_device = -1
        self.ringer_monitor_device = -1
        self.mic_feed_device = -1
        self.start_seconds = float("nan")
        self._open: set[Playback | Recording] = set()
        self._open_lock = threading.Lock()

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> None:
        exe = shutil.which("pulseaudio")
        pactl = shutil.which("pactl")
        if exe is None or pactl is None:
            missing = "pulseaudio" if exe is None else "pactl (pulseaudio-utils)"
            raise VirtualAudioError(f"{missing} not found. {_install_hint()}")
        if not glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so") and not glob(
            "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so"
        ):
            raise VirtualAudioError(f"the ALSA pulse plugin is missing. {_install_hint()}")
        try:
            import sounddevice as sd
        except OSError as e:  # "PortAudio library not found"
            raise VirtualAudioError(
                f"sounddevice cannot load PortAudio ({e}). {_install_hint()}"
            ) from e
        self.sd = sd

        os.environ.update(self.env)  # in case a test changed them
        daemon_env = dict(os.environ)
        daemon_env.update(
            HOME=str(self.paths.home),
            XDG_RUNTIME_DIR=str(self.paths.runtime_dir),
            XDG_CONFIG_HOME=str(self.paths.home / ".config"),
            # No D-Bus: fail fast instead of autolaunching a dbus-daemon under Xvfb.
            DBUS_SESSION_BUS_ADDRESS=f"unix:path={self.paths.root}/no-dbus",
        )
        for name in ("PULSE_SERVER", "PULSE_COOKIE", "DISPLAY", "WAYLAND_DISPLAY"):
            daemon_env.pop(name, None)
        # As root PulseAudio only warns ("not intended to be run as root (unless
        # --system is specified)"); --system=no is the default, said for clarity.
        cmd = [
            exe,
            "--daemonize=no",
            "--system=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "-n",
            "-F",
            str(self.paths.pa_config),
            f"--log-target=file:{self.paths.log_file}",
        ]
        t0 = time.monotonic()
        with open(self.paths.stderr_file, "wb") as err:
            self.process = subprocess.Popen(
                cmd,
                env=daemon_env,
                cwd=self.paths.root,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent_hook(),
            )
        deadline = t0 + START_TIMEOUT
        while True:
            self.check_alive()
            try:
                answer = subprocess.run(
                    [pactl, "info"],
                    env={**os.environ, **self.env},
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=3,
                )
                if answer.returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise VirtualAudioError(
                    f"PulseAudio did not answer `pactl info` within {START_TIMEOUT:.0f} s.\n"
                    + self.log_tail()
                )
            time.sleep(0.02)
        self.start_seconds = time.monotonic() - t0
        time.sleep(SETTLE_SECONDS)
        self.check_alive()
        self.reinit_portaudio()

    def reinit_portaudio(self) -> None:
        """Make PortAudio in this process re-read devices and the ALSA configuration.

        Only when no stream is open: open streams die with it.
        """
        sd = self.sd
        sd._terminate()
        sd._initialize()
        self.speaker_monitor_device = self._find_device(SPEAKER_MONITOR_PCM, "input")
        self.ringer_monitor_device = self._find_device(RINGER_MONITOR_PCM, "input")
        self.mic_feed_device = self._find_device(MIC_FEED_PCM, "output")

    def _find_device(self, name: str, kind: str) -> int:
        devices = self.sd.query_devices()
        for index, dev in enumerate(devices):
            if dev["name"] == name and dev[f"max_{kind}_channels"] > 0:
                return index
        raise VirtualAudioError(
            f"PortAudio lists no ALSA device {name!r} (is {self.paths.alsa_config} in "
            f"ALSA_CONFIG_PATH, and libasound2-plugins installed?). Devices:\n{devices}\n"
            + self.log_tail()
        )

    def close(self) -> None:
        self.stop_all()
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def check_alive(self) -> None:
        """Raise VirtualAudioError (with the daemon's log) if the daemon has exited."""
        if self.process is None:
            raise VirtualAudioError("the virtual sound card is not running")
        code = self.process.poll()
        if code is not None:
            raise VirtualAudioError(f"PulseAudio exited with code {code}.\n" + self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for f in (self.paths.stderr_file, self.paths.log_file):
            try:
                text = f.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {f} (last {lines} lines) ---\n" + "\n".join(text))
        return "\n".join(out)

    def pactl(self, *args: str, timeout: float = 5) -> str:
        """Run ``pactl ARGS`` against the private daemon and return its output."""
        res = subprocess.run(
            ["pactl", *args],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return res.stdout

    # -- streams --------------------------------------------------------------------

    def play_into_mic(self, samples: np.ndarray, rate: int = RATE, loop: bool = False) -> Playback:
        """Start playing int16 mono ``samples`` into the virtual microphone (``mic_feed``).

        Non-blocking. The app under test hears them on its default input device.
        ``loop=True`` repeats them until ``.stop()``. ``.wait(timeout)`` blocks until played.
        """
        self.check_alive()
        return self._track(Playback(self, self.mic_feed_device, samples, rate, loop))

    def start_recording(
        self, max_seconds: float = MAX_RECORDING_SECONDS, sink: str = "speaker"
    ) -> Recording:
        """Start recording what is played on the speaker (``speaker_monitor``), int16 mono 48 kHz.

        ``.stop()`` returns the samples. Recording stops by itself after ``max_seconds``.
        """
        self.check_alive()
        if not 0 < max_seconds <= MAX_RECORDING_SECONDS:
            raise ValueError(f"max_seconds must be in (0, {MAX_RECORDING_SECONDS}]")
        device = self.ringer_monitor_device if sink == "ringer" else self.speaker_monitor_device
        return self._track(Recording(self, device, RATE, max_seconds))

    def record_speaker(self, seconds: float) -> np.ndarray:
        """Record ``seconds`` of the speaker (int16 mono 48 kHz), blocking; bounded."""
        rec = self.start_recording(seconds)
        try:
            if not rec.full.wait(seconds + 10.0):
                self.check_alive()
                raise TimeoutError(
                    f"recording {seconds} s got only {rec.seconds:.2f} s in {seconds + 10:.0f} s"
                )
        finally:
            samples = rec.stop()
        return samples

    def stop_all(self) -> None:
        """Stop every feed and recording still running."""
        with self._open_lock:
            handles = list(self._open)
        for handle in handles:
            try:
                handle.stop()
            except Exception:
                pass

    def _track(self, handle: Any) -> Any:
        with self._open_lock:
            self._open.add(handle)
        return handle

    def _forget(self, handle: Playback | Recording) -> None:
        with self._open_lock:
            self._open.discard(handle)


# --------------------------------------------------------------------------------------
# Fixtures (imported into tests/conftest.py)
# --------------------------------------------------------------------------------------

_running: VirtualAudio | None = None


@pytest.fixture(scope="session")
def virtual_audio() -> Any:
    """The private PulseAudio daemon, started once per session. See the module docstring."""
    global _running
    audio = VirtualAudio(prepare_environment())
    try:
        audio.start()
    except VirtualAudioError as e:
        audio.close()
        pytest.fail(f"virtual sound card unavailable: {e}", pytrace=False)
    _running = audio
    try:
        yield audio
    finally:
        _running = None
        audio.close()


@pytest.fixture(autouse=True)
def _virtual_audio_stop_streams() -> Any:
    """After each test, stop feeds and recordings it left running (no-op without audio)."""
    yield
    if _running is not None:
        _running.stop_all()
