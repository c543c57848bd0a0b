"""``agent-phone-caller``: place one customer call with real audio, or
(``--answer NUMBER``) take one when an agent dials that number.

Prints one JSON summary line and exits 0 when the call was answered (or, with
``--answer``, taken), 1 when it was not (with the reason on stderr when it was
an error), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from agent_phone.caller.client import CallPlan, place_call
from agent_phone.media import netem
from agent_phone.media.audio import AudioSink, AudioSource
from agent_phone.media.ice import restrict_ice_addresses
from agent_phone.media.wav import ToneSource, WavFileSink, WavLoopSource
from agent_phone.tls import CaFileError, check_ca_file

TOKEN_ENV = "AGENT_PHONE_TRUNK_TOKEN"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agent-phone-caller",
        description="Place one customer call into a queue, or take one to a number, "
        "with real audio.",
    )
    p.add_argument(
        "--platform",
        required=True,
        help="the platform's URL: wss://host:port/ws (ws:// on loopback only)",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--queue", help="queue to call into")
    mode.add_argument(
        "--answer",
        metavar="NUMBER",
        help="await a call to NUMBER (an agent's outbound call), answer it, and talk",
    )
    p.add_argument(
        "--trunk-token",
        metavar="TOKEN",
        help=f"the platform's trunk token (or the {TOKEN_ENV} environment variable)",
    )
    p.add_argument(
        "--ca",
        type=Path,
        metavar="FILE",
        help="verify a wss:// platform against this CA file (PEM) instead of the system's",
    )
    sound = p.add_mutually_exclusive_group()
    sound.add_argument("--tone", type=float, metavar="HZ", help="send a sine tone (default 440)")
    sound.add_argument("--play", type=Path, metavar="WAV", help="send a WAV file, looped")
    p.add_argument("--record", type=Path, metavar="WAV", help="write what the customer hears")
    p.add_argument(
        "--duration",
        type=float,
        default=5.0,
        metavar="S",
        help="talk this long after the answer, then hang up (0: until the agent hangs up, "
        "at most 4 hours)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="S",
        help="give up after waiting this long for an agent (with --answer: for a call)",
    )
    p.add_argument(
        "--ring",
        type=float,
        default=0.0,
        metavar="S",
        help="with --answer: let the call ring this long before answering",
    )
    p.add_argument(
        "--decline", action="store_true", help="with --answer: refuse the call that rings"
    )
    p.add_argument("--caller", default="customer", help="caller name shown to the agent")
    p.add_argument(
        "--rfc4733",
        action="store_true",
        help="offer RFC 4733 telephone-events (as browsers do): the agent's keys come as"
        " events (dtmf_events in the summary), not as tones",
    )
    p.add_argument(
        "--trickle",
        action="store_true",
        help="send the SDP offer without its ICE candidates, then each as an ice_candidate"
        " message (trickle ICE)",
    )
    p.add_argument(
        "--ice-address",
        action="append",
        metavar="ADDR",
        help="address to send media from (repeatable; default 127.0.0.1)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


async def _run(args: argparse.Namespace) -> int:
    source: AudioSource = WavLoopSource(args.play) if args.play else ToneSource(args.tone or 440.0)
    sink: AudioSink | None = WavFileSink(args.record) if args.record else None
    plan = CallPlan(
        platform=args.platform,
        queue=args.queue or "",
        caller=args.caller,
        duration_s=args.duration or None,
        wait_s=args.wait,
        trunk_token=args.trunk_token or os.environ.get(TOKEN_ENV, ""),
        ca_file=args.ca,
        listen=True,
        answer_number=args.answer,
        ring_s=args.ring,
        decline=args.decline,
        trickle=args.trickle,
        rfc4733=args.rfc4733,
    )
    hangup = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, hangup.set)
    result = await place_call(plan, source, sink, hangup)
    print(json.dumps(result.as_dict()), flush=True)
    if result.error:
        print(f"agent-phone-caller: {result.error}", file=sys.stderr, flush=True)
    return 0 if result.answered else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.play is not None and not args.play.is_file():
        print(f"agent-phone-caller: no such file: {args.play}", file=sys.stderr)
        return 2
    try:
        check_ca_file(args.ca)
    except CaFileError as exc:
        print(f"agent-phone-caller: --ca: {exc}", file=sys.stderr)
        return 2
    restrict_ice_addresses(args.ice_address or ["127.0.0.1"])
    # The test network emulator on the customer's leg, when AGENT_PHONE_NETEM asks.
    if error := netem.install_for_program("agent-phone-caller"):
        print(error, file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except ValueError as exc:
        print(f"agent-phone-caller: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
