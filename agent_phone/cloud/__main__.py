"""``agent-phone-platform``: the contact-center platform the phones talk to."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from agent_phone.cloud.config import (
    ConfigError,
    PlatformConfig,
    demo_config,
    hash_password,
    load_config,
)
from agent_phone.cloud.memory import freeze_start_up_objects
from agent_phone.cloud.server import InsecureListenError, Platform
from agent_phone.cloud.storage import StorageError
from agent_phone.cloud.tls import TlsError, make_dev_certificate
from agent_phone.media import netem


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agent-phone-platform",
        description="Run the contact-center platform: agents, queues, routing, media edge.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port; 0 takes a free one (default 8765)")
    p.add_argument("--config", type=Path, help="TOML configuration (default: the built-in demo)")
    p.add_argument(
        "--dev-tls",
        nargs="?",
        const="",
        metavar="DIR",
        help="serve wss:// with a new self-signed certificate, written to DIR (default: a "
        "temporary directory removed on exit); clients pass its cert.pem as --ca",
    )
    p.add_argument(
        "--db",
        type=Path,
        metavar="PATH",
        help="SQLite file for agents, settings and call records (default: next to --config,"
        " or a temporary file for the built-in demo)",
    )
    p.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password from stdin (or prompt) and print its hash for the config",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    return p


async def _serve(platform: Platform, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    freeze_start_up_objects()  # before the memory monitor starts timing collections
    await platform.start(host, port)
    try:
        await stop.wait()
    finally:
        await platform.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.hash_password:
        password = (
            sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
        )
        print(hash_password(password))
        return 0
    try:
        config = load_config(args.config) if args.config else demo_config()
    except ConfigError as exc:
        print(f"agent-phone-platform: {exc}", file=sys.stderr)
        return 2
    if args.db is not None:
        config = dataclasses.replace(config, database=str(args.db))
    # The test network emulator on every media leg of this platform, when
    # AGENT_PHONE_NETEM asks (agent_phone/media/netem.py).
    if error := netem.install_for_program("agent-phone-platform"):
        print(error, file=sys.stderr)
        return 2
    temp_dir: Path | None = None
    try:
        if args.dev_tls is not None:
            if config.tls_cert_file is not None:
                print(
                    "agent-phone-platform: --dev-tls and a [tls] section in the "
                    "configuration: give one or the other",
                    file=sys.stderr,
                )
                return 2
            if not args.dev_tls:
                temp_dir = Path(tempfile.mkdtemp(prefix="agent-phone-tls-"))
            config = _with_dev_certificate(config, Path(args.dev_tls) if args.dev_tls else temp_dir)
        platform = Platform(config)
        asyncio.run(_serve(platform, args.host, args.port))
    except (InsecureListenError, TlsError, StorageError) as exc:
        print(f"agent-phone-platform: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"agent-phone-platform: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


def _with_dev_certificate(config: PlatformConfig, directory: Path | None) -> PlatformConfig:
    assert directory is not None
    try:
        dev = make_dev_certificate(directory)
    except OSError as exc:
        raise TlsError(f"cannot write the development certificate to {directory}: {exc}") from None
    print(
        f"agent-phone-platform: development TLS certificate {dev.cert_file} "
        f"(self-signed, SHA-256 {dev.fingerprint}); clients pass --ca {dev.cert_file}",
        file=sys.stderr,
        flush=True,
    )
    return dataclasses.replace(config, tls_cert_file=dev.cert_file, tls_key_file=dev.key_file)


if __name__ == "__main__":
    sys.exit(main())
