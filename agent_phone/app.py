"""``agent-phone``: the agent's phone (window, headless or demo)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from agent_phone import __version__
from agent_phone.media.ice import restrict_ice_addresses
from agent_phone.phone.settings import PhoneSettings
from agent_phone.tls import CaFileError, check_ca_file


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agent-phone", description="A softphone for contact-center agents."
    )
    p.add_argument("--version", action="version", version=f"agent-phone {__version__}")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--headless", action="store_true", help="no window: JSON events out, JSON commands in"
    )
    mode.add_argument(
        "--demo",
        action="store_true",
        help="start a local platform and callers and take their calls",
    )
    p.add_argument(
        "--platform", help="the platform's URL: wss://HOST:PORT/ws, or ws://127.0.0.1:PORT/ws"
    )
    p.add_argument(
        "--ca",
        type=Path,
        metavar="FILE",
        help="verify a wss:// platform against this CA file (PEM) instead of the system's",
    )
    p.add_argument("--user", help="agent name")
    p.add_argument("--password", help="password (or the AGENT_PHONE_PASSWORD environment variable)")
    p.add_argument("--on-queue", action="store_true", help="go on queue after signing in")
    p.add_argument("--auto-answer", action="store_true", help="connect offered calls at once")
    p.add_argument(
        "--persistent",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="maintain a persistent connection (default: on)",
    )
    mic = p.add_mutually_exclusive_group()
    mic.add_argument("--mic", metavar="DEVICE", help="microphone: name (part of it) or index")
    mic.add_argument(
        "--mic-file", type=Path, metavar="WAV", help="loop a WAV file as the microphone"
    )
    speaker = p.add_mutually_exclusive_group()
    speaker.add_argument("--speaker", metavar="DEVICE", help="speaker: name (part of it) or index")
    speaker.add_argument(
        "--speaker-file", type=Path, metavar="WAV", help="write call audio to a WAV file"
    )
    p.add_argument(
        "--voice-processing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="noise suppression and automatic gain control on the microphone "
        "(default: on for a microphone, off for --mic-file)",
    )
    p.add_argument(
        "--ice-address",
        action="append",
        metavar="ADDR",
        help="address media may use (repeatable; default 127.0.0.1)",
    )
    p.add_argument(
        "--reconnect",
        type=int,
        default=0,
        metavar="N",
        help="when the platform goes away, sign in again up to N times (with backoff)",
    )
    p.add_argument("--demo-calls", type=int, default=9, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--demo-timeout", type=float, default=8.0, metavar="S", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    return p


def settings_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> PhoneSettings:
    password: str = args.password or os.environ.get("AGENT_PHONE_PASSWORD") or ""
    missing = [n for n, v in (("--platform", args.platform), ("--user", args.user)) if not v]
    if not password:
        missing.append("--password (or AGENT_PHONE_PASSWORD)")
    if missing:
        parser.error("missing " + ", ".join(missing))
    if args.mic_file is not None and not args.mic_file.is_file():
        parser.error(f"--mic-file: no such file: {args.mic_file}")
    try:
        check_ca_file(args.ca)
    except CaFileError as exc:
        parser.error(f"--ca: {exc}")
    return PhoneSettings(
        platform=args.platform,
        user=args.user,
        password=password,
        on_queue=args.on_queue,
        auto_answer=args.auto_answer,
        persistent=args.persistent,
        mic_device=args.mic,
        speaker_device=args.speaker,
        mic_file=args.mic_file,
        speaker_file=args.speaker_file,
        voice_processing=args.voice_processing,
        ice_addresses=tuple(args.ice_address or ["127.0.0.1"]),
        reconnect_attempts=max(0, args.reconnect),
        ca_file=args.ca,
    )


def _install_netem(parser: argparse.ArgumentParser) -> None:
    """The test network emulator, only when its variables are set (agent_phone/media/netem.py)."""
    if os.environ.get("AGENT_PHONE_NETEM") or os.environ.get("AGENT_PHONE_NETEM_FILE"):
        from agent_phone.media import netem

        if error := netem.install_for_program(parser.prog):
            parser.error(error)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``agent-phone``'s command line, as the window and the tests receive it."""
    return _parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _install_netem(parser)
    # The demo is for people: offscreen rendering shows them nothing.
    if args.demo and not (has_display(offscreen_counts=False) and gui_available()):
        from agent_phone.demo import run_demo

        print("agent-phone: no display, so the demo runs in this terminal", file=sys.stderr)
        return asyncio.run(run_demo(args))
    if args.headless:
        settings = settings_from_args(args, parser)
        restrict_ice_addresses(settings.ice_addresses)
        from agent_phone.headless import run_headless

        return asyncio.run(run_headless(settings))
    if not gui_available():
        print(
            "agent-phone: the desktop window needs PySide6 and qasync "
            "(pip install 'agent-phone[gui]'); or use --headless or --demo",
            file=sys.stderr,
        )
        return 2
    if not has_display():
        print(
            "agent-phone: no display (DISPLAY or WAYLAND_DISPLAY) for the window; "
            "use --headless, or set QT_QPA_PLATFORM=offscreen",
            file=sys.stderr,
        )
        return 2
    restrict_ice_addresses(tuple(args.ice_address or ["127.0.0.1"]))
    from agent_phone.ui.app import run_gui

    return run_gui(args)


def has_display(offscreen_counts: bool = True) -> bool:
    offscreen = os.environ.get("QT_QPA_PLATFORM") in ("offscreen", "minimal")
    return bool(
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or (offscreen_counts and offscreen)
        or sys.platform in ("win32", "darwin")
    )


def gui_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("PySide6", "qasync"))


if __name__ == "__main__":
    sys.exit(main())
