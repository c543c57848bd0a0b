"""The built app (packaging/, docs/packaging.md): build it, then use it as a user would.

The module's fixture runs ``bash packaging/build.sh`` (about 40 s here), or
reuses ``dist/agent-phone/`` when its executable is newer than every file
under agent_phone/, packaging/ and resources/ (build.sh touches the
executable last, once its checks passed). Every program then runs from the
bundle, never from the checkout: ``dist/agent-phone/agent-phone``, its
``platform`` and ``caller`` subcommands, started in a temp dir without
PYTHONPATH. The phone uses the real default sound devices of the virtual
sound card (tests/virtual_audio.py), through the PortAudio inside the bundle.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audio_analysis import has_tone, make_tone
from procs import JsonLinesProcess

from agent_phone.media.wav import read_wav, write_wav

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "dist" / "agent-phone"
EXE = BUNDLE / "agent-phone"
#: What the bundle is made of; a newer file here means it must be rebuilt.
SOURCES = ("agent_phone", "packaging", "resources", "pyproject.toml")
BUILD_TIMEOUT = 600.0

CUSTOMER_HZ = 440.0
AGENT_HZ = 880.0


# --------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in SOURCES:
        path = REPO / name
        files = [path] if path.is_file() else path.rglob("*")
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc" or not f.is_file():
                continue
            newest = max(newest, f.stat().st_mtime)
    return newest


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/agent-phone/agent-phone, built now unless a fresh one exists."""
    if EXE.is_file() and EXE.stat().st_mtime > _newest_source_mtime():
        return EXE
    log = tmp_path_factory.mktemp("build") / "build.log"
    t0 = time.monotonic()
    with open(log, "w") as out:
        try:
            code = subprocess.run(
                ["bash", str(REPO / "packaging" / "build.sh")],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT,
            ).returncode
        except subprocess.TimeoutExpired:
            pytest.fail(f"packaging/build.sh took over {BUILD_TIMEOUT:.0f} s; log: {log}")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    assert code == 0, f"packaging/build.sh failed (exit {code}):\n{tail}"
    assert EXE.is_file(), f"build.sh succeeded but made no {EXE}:\n{tail}"
    print(f"built the bundle in {time.monotonic() - t0:.0f} s")
    return EXE


# --------------------------------------------------------------------------------------
# Running the bundle's programs
# --------------------------------------------------------------------------------------


def bundle_env(**extra: str) -> dict[str, str]:
    """This process's environment (the virtual sound card's PULSE_SERVER etc.)
    minus anything that could make the bundle use the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.pop("AGENT_PHONE_RESOURCES", None)
    env.update(extra)
    return env


class BundleProcess(JsonLinesProcess):
    """One of the bundle's programs, run from its executable (tests/procs.py
    collects its JSON lines, as for the checkout's programs)."""

    def __init__(
        self, name: str, args: list[str], cwd: Path, stdin: bool = False, **env: str
    ) -> None:
        self.name = name
        self.url = ""  # the platform's, once it is ready
        self.trunk_token = ""  # the platform's, once it is ready
        super().__init__(
            args,
            stdin=stdin,
            log_dir=cwd,
            command=[str(EXE), *args],
            env=bundle_env(**env),
            cwd=cwd,
        )


@pytest.fixture
def run_bundle(bundle: Path, tmp_path: Path) -> Iterator[Any]:
    """Start the bundle's programs in tmp_path; all stopped after the test."""
    started: list[BundleProcess] = []

    def start(name: str, *args: str, stdin: bool = False, **env: str) -> BundleProcess:
        p = BundleProcess(name, list(args), tmp_path, stdin=stdin, **env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def bundle_platform(run_bundle: Any) -> BundleProcess:
    platform = run_bundle("platform", "platform", "--port", "0")
    ready = platform.wait_for("ready", timeout=30)
    platform.url = ready["url"]
    platform.trunk_token = ready["trunk_token"]
    return platform


def phone_args(platform: str, *extra: str) -> list[str]:
    """The headless phone's arguments: agent bob of the built-in demo configuration."""
    return ["--headless", "--platform", platform, "--user", "bob", "--password", "demo", *extra]


def assert_clean_failure(p: BundleProcess, code: int) -> None:
    """A non-zero exit with a message, and no Python traceback anywhere."""
    stderr = p.stderr()
    assert code != 0, f"{p.name} exited 0: {p.lines} {stderr}"
    assert "Traceback" not in stderr, stderr
    assert not any("Traceback" in line for line in p.lines), p.lines


def bundled_libraries(pid: int) -> dict[str, str]:
    """Shared library name -> path, as mapped into process ``pid``."""
    libs = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[-1]
        if ".so" in path:
            libs[Path(path).name] = path
    return libs


# --------------------------------------------------------------------------------------
# A screen: Xvfb
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xvfb() -> Iterator[str]:
    """A private X server; yields its DISPLAY."""
    if not any((Path(d) / "Xvfb").is_file() for d in os.environ["PATH"].split(os.pathsep)):
        pytest.fail("Xvfb not found: install the Debian package xvfb (./dev setup does)")
    server, display = start_xvfb()
    try:
        yield display
    finally:
        stop_process(server)


_KEEP_ALIVE: list[Any] = []  # ctypes callbacks handed to C


@functools.cache
def _xlib() -> Any:
    """libX11 through ctypes, with the prototypes used here.

    (xwininfo would do, but x11-utils is not among the test machine's packages.)
    X errors (a window closed while we walk the tree) are ignored: Xlib's
    default handler would end this process.
    """
    import ctypes
    import ctypes.util

    try:
        x = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    except OSError as exc:
        pytest.fail(f"cannot load libX11 ({exc}): install the Debian package libx11-6")
    win = ctypes.c_ulong
    x.XOpenDisplay.restype = ctypes.c_void_p
    x.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x.XDefaultRootWindow.restype = win
    x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x.XQueryTree.argtypes = [
        ctypes.c_void_p, win, ctypes.POINTER(win), ctypes.POINTER(win),
        ctypes.POINTER(ctypes.POINTER(win)), ctypes.POINTER(ctypes.c_uint),
    ]  # fmt: skip
    x.XFetchName.argtypes = [ctypes.c_void_p, win, ctypes.POINTER(ctypes.c_char_p)]
    x.XFree.argtypes = [ctypes.c_void_p]
    x.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handler_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    ignore_errors = handler_type(lambda _display, _event: 0)
    _KEEP_ALIVE.append(ignore_errors)
    x.XSetErrorHandler.argtypes = [handler_type]
    x.XSetErrorHandler.restype = ctypes.c_void_p
    x.XSetErrorHandler(ignore_errors)
    return x


def x_accepts(display: str, server: subprocess.Popen[bytes], timeout: float = 10.0) -> bool:
    """Whether the X server ``server`` at ``display`` takes a connection within ``timeout``."""
    x = _xlib()
    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        dpy = x.XOpenDisplay(display.encode())
        if dpy:
            x.XCloseDisplay(dpy)
            return True
        time.sleep(0.05)
    return False


def start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    """A private Xvfb and its DISPLAY, on a random display number :100-:999.

    ``-noreset``: otherwise the server resets whenever its last client
    disconnects, and a connection made meanwhile is reset (seen here several
    times in 30 tries: the readiness probe's own disconnect does it). A random
    number rather than ``-displayfd`` (the lowest one with no lock file in this
    /tmp): on the shared machine :0 was once held by an Xvfb this /tmp did not show.
    """
    for _ in range(8):
        number = random.randint(100, 999)
        if Path(f"/tmp/.X{number}-lock").exists():
            continue
        display = f":{number}"
        server = subprocess.Popen(
            ["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp", "-noreset"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if x_accepts(display, server):
            return server, display
        stop_process(server)
    pytest.fail("could not start Xvfb on a free display (8 tries)")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def x_window_titles(display: str) -> list[str]:
    """The titles (WM_NAME) of every window on an X server."""
    import ctypes

    x = _xlib()
    win = ctypes.c_ulong
    dpy = x.XOpenDisplay(display.encode())
    assert dpy, f"cannot open X display {display}"
    titles: list[str] = []
    try:
        stack = [x.XDefaultRootWindow(dpy)]
        while stack:
            w = stack.pop()
            title = ctypes.c_char_p()
            if x.XFetchName(dpy, w, ctypes.byref(title)) and title.value is not None:
                titles.append(title.value.decode(errors="replace"))
                x.XFree(title)
            root, parent = win(), win()
            children = ctypes.POINTER(win)()
            count = ctypes.c_uint()
            if x.XQueryTree(
                dpy, w, ctypes.byref(root), ctypes.byref(parent), ctypes.byref(children),
                ctypes.byref(count),
            ):  # fmt: skip
                stack.extend(children[i] for i in range(count.value))
                if children:
                    x.XFree(children)
    finally:
        x.XCloseDisplay(dpy)
    return titles


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def test_starts_quickly_and_reports_its_version(bundle: Path, tmp_path: Path) -> None:
    from agent_phone import __version__

    times = []
    for _ in range(3):
        t0 = time.monotonic()
        done = subprocess.run(
            [str(bundle), "--version"],
            env=bundle_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        times.append(time.monotonic() - t0)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"agent-phone {__version__}"
    print(f"--version: best {min(times) * 1000:.0f} ms of {len(times)}")
    assert min(times) < 5.0


def test_selfcheck_finds_resources_portaudio_and_qt_inside_the_bundle(
    bundle: Path, virtual_audio: Any, xvfb: str, tmp_path: Path
) -> None:
    env = bundle_env(DISPLAY=xvfb)
    env.pop("QT_QPA_PLATFORM", None)  # the real X11 plugin (xcb), not offscreen
    done = subprocess.run(
        [str(bundle), "selfcheck"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    checks = {c["check"]: c for c in map(json.loads, done.stdout.splitlines())}
    assert done.returncode == 0, (checks, done.stderr)
    internal = str(bundle.parent)
    assert checks["version"]["frozen"] is True
    assert checks["resources"]["path"].startswith(internal)
    assert "phone.svg" in checks["resources"]["icons"]
    # PortAudio is the bundled copy, and it sees the (virtual) sound card.
    assert checks["audio"]["library"].startswith(internal), checks["audio"]
    assert checks["audio"]["default_input"] and checks["audio"]["default_output"]
    # Qt draws a window on the X server, with the SVG icon.
    gui = checks["gui"]
    assert gui["platform"] == "xcb" and gui["window_shown"] and gui["icon_ok"], gui
    print(f"selfcheck: Qt window shown {gui['shown_ms']} ms after importing Qt")


def test_a_call_through_the_bundle_with_real_devices(
    bundle: Path,
    virtual_audio: Any,
    bundle_platform: BundleProcess,
    run_bundle: Any,
    tmp_path: Path,
) -> None:
    url = bundle_platform.url
    t0 = time.monotonic()
    phone = run_bundle("phone", *phone_args(url, "--on-queue", "--auto-answer"), stdin=True)
    phone.wait_for("signed_in", timeout=30)
    signed_in_s = time.monotonic() - t0
    phone.wait_for("presence", on_queue=True)
    feed = virtual_audio.play_into_mic(make_tone(AGENT_HZ, 1.0), loop=True)
    recording = virtual_audio.start_recording()
    try:
        caller = run_bundle(
            "caller",
            *("caller", "--platform", url, "--queue", "support", "--duration", "3"),
            f"--trunk-token={bundle_platform.trunk_token}",
            *("--tone", str(CUSTOMER_HZ), "--record", str(tmp_path / "customer.wav")),
        )
        code = caller.wait_exit(60)
    finally:
        heard_by_agent = recording.stop()
        feed.stop()
    summaries = [json.loads(line) for line in caller.lines if '"answered"' in line]
    assert summaries, f"caller printed no summary; stderr: {caller.stderr()[-2000:]}"
    summary = summaries[-1]
    assert code == 0, summary
    assert summary["answered"] is True and summary["agent"] == "bob", summary

    # Real audio both ways, through the bundle's PortAudio.
    assert has_tone(read_wav(tmp_path / "customer.wav"), AGENT_HZ), "customer heard no agent"
    assert has_tone(heard_by_agent, CUSTOMER_HZ), "agent's speaker played no customer"
    phone.wait_for("ended", call_id=summary["call_id"])
    libs = bundled_libraries(phone.proc.pid)
    assert libs.get("libportaudio.so.2", "").startswith(str(bundle.parent)), libs.get(
        "libportaudio.so.2"
    )

    phone.send("quit")
    assert phone.wait_exit(20) == 0, phone.stderr()[-2000:]
    assert "Traceback" not in phone.stderr() + caller.stderr()
    bundle_platform.proc.send_signal(signal.SIGTERM)
    assert bundle_platform.wait_exit(20) == 0
    print(f"headless phone: started to signed_in in {signed_in_s * 1000:.0f} ms")


def test_a_missing_audio_device_is_a_clear_error_at_start(
    virtual_audio: Any, bundle_platform: BundleProcess, run_bundle: Any
) -> None:
    phone = run_bundle(
        "phone", *phone_args(bundle_platform.url, "--mic", "nosuchdevice"), stdin=True
    )
    code = phone.wait_exit(30)
    assert_clean_failure(phone, code)
    errors = [e for e in phone.events if e.get("event") == "error"]
    assert len(errors) == 1 and len(phone.lines) == 1, phone.lines
    # ...before signing in: that one error line is all the phone printed.
    assert errors[0]["code"] == "audio" and "nosuchdevice" in errors[0]["message"], errors


def test_an_unreachable_platform_is_a_clear_error(run_bundle: Any, tmp_path: Path) -> None:
    mic = tmp_path / "mic.wav"
    write_wav(mic, make_tone(AGENT_HZ, 1.0))
    heard = str(tmp_path / "heard.wav")
    phone = run_bundle(
        "phone",
        *phone_args("ws://127.0.0.1:9/ws", "--mic-file", str(mic), "--speaker-file", heard),
        stdin=True,
    )
    code = phone.wait_exit(40)
    assert_clean_failure(phone, code)
    assert len(phone.lines) == 1, phone.lines
    error = phone.events[0]
    assert error["event"] == "error" and error["code"] == "sign_in", error
    assert "127.0.0.1:9" in error["message"], error


def test_the_window_opens_from_the_bundle(
    bundle: Path,
    virtual_audio: Any,
    bundle_platform: BundleProcess,
    xvfb: str,
    tmp_path: Path,
) -> None:
    """The real desktop window (agent_phone.ui), started from the bundle under Xvfb."""
    home = tmp_path / "home"
    home.mkdir()
    env = bundle_env(DISPLAY=xvfb, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    env.pop("QT_QPA_PLATFORM", None)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(bundle), "--platform", bundle_platform.url, "--user", "bob", "--password", "demo"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shown_s = None
        while time.monotonic() - t0 < 30:
            if proc.poll() is not None:
                break
            if any(t.startswith("Agent Phone") for t in x_window_titles(xvfb)):
                shown_s = time.monotonic() - t0
                break
            time.sleep(0.05)
        if proc.poll() is not None:
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"the app exited {proc.returncode} without a window: {out} {err}")
        assert shown_s is not None, "no 'Agent Phone' window on the X server within 30 s"
        print(f"desktop window shown {shown_s * 1000:.0f} ms after start")
        # The window signs in with the command line's account...
        bundle_platform.wait_for("agent_signed_in", agent="bob", timeout=30)
        # ...and SIGTERM (a logout, `kill`) closes it cleanly, signing out.
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, (out, err)
        assert "Traceback" not in err, err
        bundle_platform.wait_for("agent_signed_out", agent="bob", timeout=15)
    finally:
        stop_process(proc)
