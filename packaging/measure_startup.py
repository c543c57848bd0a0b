"""Start-up times of the bundle against the checkout (docs/packaging.md).

    .venv/bin/python packaging/measure_startup.py [--runs 7]

Needs a built bundle (bash packaging/build.sh), PulseAudio and Xvfb (what
./dev setup installs). Starts the tests' virtual sound card
(tests/virtual_audio.py) and a private Xvfb, then times, for the bundle
(dist/agent-phone/agent-phone) and for the checkout (.venv/bin/agent-phone):

- ``--version``;
- ``--headless`` on the default (virtual) devices until its ``signed_in`` event;
- the desktop window until it is mapped on the X server;
- for the bundle, ``selfcheck`` (Qt's own time to show a window).

Prints one line per figure: median, min and max of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "dist" / "agent-phone" / "agent-phone"
CHECKOUT = REPO / ".venv" / "bin" / "agent-phone"
sys.path.insert(0, str(REPO / "tests"))


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    e.pop("QT_QPA_PLATFORM", None)
    e.update(extra)
    return e


def summary(times: list[float]) -> str:
    if not times:
        return "no result"
    ms = [t * 1000 for t in times]
    median = statistics.median(ms)
    return f"median {median:.0f} ms (min {min(ms):.0f}, max {max(ms):.0f}, n={len(ms)})"


def version(exe: Path) -> float:
    t0 = time.monotonic()
    subprocess.run([str(exe), "--version"], env=env(), capture_output=True, check=True, timeout=60)
    return time.monotonic() - t0


def headless(exe: Path, url: str) -> float:
    t0 = time.monotonic()
    p = subprocess.Popen(
        [str(exe), "--headless", "--platform", url, "--user", "bob", "--password", "demo"],
        env=env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert p.stdin is not None and p.stdout is not None
    try:
        for line in p.stdout:
            if '"signed_in"' in line:
                return time.monotonic() - t0
        raise RuntimeError(f"{exe} exited {p.wait()} before signing in")
    finally:
        p.stdin.write('{"cmd": "quit"}\n')
        p.stdin.flush()
        p.wait(30)


def window(exe: Path, url: str, display: str) -> float | None:
    from test_packaging import x_window_titles

    home = Path(tempfile.mkdtemp(prefix="agent-phone-measure-"))  # settings, not the user's
    t0 = time.monotonic()
    p = subprocess.Popen(
        [str(exe), "--platform", url, "--user", "bob", "--password", "demo"],
        env=env(DISPLAY=display, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config")),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while time.monotonic() - t0 < 30 and p.poll() is None:
            if any(t.startswith("Agent Phone") for t in x_window_titles(display)):
                return time.monotonic() - t0
            time.sleep(0.01)
        return None  # no window
    finally:
        p.terminate()
        p.wait(30)
        shutil.rmtree(home, ignore_errors=True)


def selfcheck(display: str) -> float:
    out = subprocess.run(
        [str(BUNDLE), "selfcheck", "--no-audio"], env=env(DISPLAY=display),
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    gui = [json.loads(line) for line in out.splitlines() if '"gui"' in line]
    return gui[0]["shown_ms"] / 1000 if gui else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    runs = p.parse_args().runs
    if not BUNDLE.is_file():
        raise SystemExit(f"no {BUNDLE}: run bash packaging/build.sh first")
    import virtual_audio

    audio = virtual_audio.VirtualAudio(virtual_audio.prepare_environment())
    audio.start()
    from test_packaging import start_xvfb, stop_process

    xvfb, display = start_xvfb()
    platform = subprocess.Popen(
        [str(BUNDLE), "platform", "--port", "0"], env=env(), stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert platform.stdout is not None
        url = json.loads(platform.stdout.readline())["url"]
        figures: list[tuple[str, Callable[[Path], float | None]]] = [
            ("--version", version),
            ("headless until signed_in", lambda exe: headless(exe, url)),
            ("window mapped", lambda exe: window(exe, url, display)),
        ]
        for what, measure in figures:
            for name, exe in (("bundle", BUNDLE), ("checkout", CHECKOUT)):
                times = [t for t in (measure(exe) for _ in range(runs)) if t is not None]
                print(f"{what:28} {name:9} {summary(times)}", flush=True)
        print(f"{'selfcheck: Qt window shown':28} {'bundle':9} "
              f"{summary([selfcheck(display) for _ in range(runs)])}")  # fmt: skip
    finally:
        platform.terminate()
        platform.wait(30)
        stop_process(xvfb)
        audio.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
