"""``agent-phone selfcheck``: does this copy of Agent Phone work on this machine?

Checks, in a few seconds and without a platform, the parts a bundled app can
lack: the resources folder, PortAudio and the sound devices it sees, and Qt
(its platform plugin, a window shown on the screen, the SVG icon). Prints
one JSON line per check (``{"check": ..., "ok": ..., ...}``, the same habit
as the other programs) and exits 0 when every check passed, 1 otherwise.
Meant for support ("run agent-phone selfcheck and send me what it prints")
and for tests/test_packaging.py, which runs it from the built bundle.

    agent-phone selfcheck [--no-audio] [--no-gui] [--hold S]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any


def _report(check: str, ok: bool, **fields: Any) -> bool:
    print(json.dumps({"check": check, "ok": ok, **fields}), flush=True)
    return ok


def check_version() -> bool:
    from agent_phone import __version__

    return _report(
        "version",
        True,
        version=__version__,
        frozen=bool(getattr(sys, "frozen", False)),
        python=sys.version.split()[0],
        executable=sys.executable,
    )


def check_resources() -> bool:
    from agent_phone.resources import resource, resources_dir

    try:
        folder = resources_dir()
        resource("sounds", "agent.wav")  # what the demo plays as the agent's voice
    except FileNotFoundError as exc:
        return _report("resources", False, error=str(exc))
    icons = sorted(p.name for p in (folder / "icons").glob("*.svg"))
    return _report("resources", True, path=str(folder), icons=icons)


def check_audio() -> bool:
    try:
        import sounddevice as sd
    except OSError as exc:  # "PortAudio library not found"
        return _report("audio", False, error=f"cannot load PortAudio: {exc}")
    try:
        devices = sd.query_devices()
        inputs = [d["name"] for d in devices if d["max_input_channels"] > 0]
        outputs = [d["name"] for d in devices if d["max_output_channels"] > 0]

        def default(kind: str) -> str | None:
            try:
                return str(sd.query_devices(kind=kind)["name"])
            except sd.PortAudioError:
                return None

        default_input, default_output = default("input"), default("output")
    except sd.PortAudioError as exc:
        return _report("audio", False, library=sd._libname, error=str(exc))
    ok = default_input is not None and default_output is not None
    return _report(
        "audio",
        ok,
        library=sd._libname,
        portaudio=sd.get_portaudio_version()[1],
        default_input=default_input,
        default_output=default_output,
        inputs=len(inputs),
        outputs=len(outputs),
        **({} if ok else {"error": "no default microphone or speaker"}),
    )


def check_gui(hold_s: float) -> bool:
    if (
        sys.platform.startswith("linux")
        and not os.environ.get("QT_QPA_PLATFORM")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
    ):
        # Qt would abort the process ("could not connect to display").
        return _report(
            "gui",
            False,
            error="no display: DISPLAY and WAYLAND_DISPLAY are unset "
            "(QT_QPA_PLATFORM=offscreen checks Qt without one)",
        )
    t0 = time.monotonic()
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QGuiApplication, QIcon
    from PySide6.QtWidgets import QApplication, QLabel

    from agent_phone.resources import resources_dir

    app = QApplication.instance() or QApplication([sys.argv[0]])
    window = QLabel("Agent Phone self-check")
    window.setWindowTitle("Agent Phone self-check")
    window.resize(320, 80)
    # The app's icon (the one the desktop entry installs), or any other SVG.
    icons = sorted((resources_dir() / "icons").glob("*.svg"), key=lambda p: p.name != "phone.svg")
    icon = QIcon(str(icons[0])) if icons else QIcon()
    icon_ok = not icon.pixmap(QSize(32, 32)).isNull()  # needs Qt's SVG icon engine
    window.setWindowIcon(icon)
    window.show()
    deadline = time.monotonic() + 10.0
    handle = window.windowHandle()
    while not (handle is not None and handle.isExposed()) and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.005)
        handle = window.windowHandle()
    shown = handle is not None and handle.isExposed()
    shown_ms = round((time.monotonic() - t0) * 1000, 1)
    end = time.monotonic() + hold_s
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)
    window.close()
    return _report(
        "gui",
        shown and icon_ok,
        platform=QGuiApplication.platformName(),
        qt=__import__("PySide6").__version__,
        window_shown=shown,
        shown_ms=shown_ms,
        icon_ok=icon_ok,
        **(
            {}
            if shown and icon_ok
            else {"error": "window not shown" if not shown else "SVG icon not rendered"}
        ),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="agent-phone selfcheck",
        description="Check that Agent Phone's parts work on this machine (JSON lines out).",
    )
    p.add_argument("--no-audio", action="store_true", help="skip the PortAudio check")
    p.add_argument("--no-gui", action="store_true", help="skip the Qt window check")
    p.add_argument("--hold", type=float, default=0.0, metavar="S", help="keep the window up S s")
    args = p.parse_args(argv)
    results = [check_version(), check_resources()]
    if not args.no_audio:
        results.append(check_audio())
    if not args.no_gui:
        results.append(check_gui(max(0.0, args.hold)))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
