"""Fixtures for end-to-end tests: the platform, phones and callers as processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from procs import CallerProcess, PhoneProcess, PlatformProcess

from agent_phone.cloud.config import ACCEPT_OFF_QUEUE, hash_password


def write_config(path: Path, **platform: Any) -> Path:
    """The demo's agents and queue, with the ``[platform]`` settings given."""
    h = hash_password("demo")
    lines = ["[platform]"]
    lines += [f"{k} = {v!r}" for k, v in platform.items()]
    for name in ("alice", "bob", "carol"):
        lines += [f"[agents.{name}]", f'password_hash = "{h}"']
        if name == "alice":
            lines.append(f'permissions = ["{ACCEPT_OFF_QUEUE}"]')
    lines += ["[queues.support]", 'members = ["alice", "bob", "carol"]']
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def start_platform(tmp_path: Path) -> Iterator[Callable[..., PlatformProcess]]:
    started: list[PlatformProcess] = []

    def start(port: int = 0, extra: tuple[str, ...] = (), **platform: Any) -> PlatformProcess:
        """``extra``: more command-line arguments (``--dev-tls``...)."""
        config = (
            write_config(tmp_path / f"platform{len(started)}.toml", **platform)
            if platform
            else None
        )
        p = PlatformProcess(
            config,
            log_dir=tmp_path,
            port=port,
            extra=extra,
            trunk_token=platform.get("trunk_token"),
        )
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def platform(start_platform: Callable[..., PlatformProcess]) -> PlatformProcess:
    """The platform with its built-in demo configuration."""
    return start_platform()


@pytest.fixture
def start_phone(tmp_path: Path, virtual_audio: Any) -> Iterator[Callable[..., PhoneProcess]]:
    """Headless phones; their default audio devices are the virtual sound card."""
    started: list[PhoneProcess] = []

    def start(platform: str, user: str, *extra: str, **kw: Any) -> PhoneProcess:
        phone = PhoneProcess(platform, user, *extra, log_dir=tmp_path, **kw)
        started.append(phone)
        return phone

    yield start
    for phone in started:
        if phone.proc.poll() is None:
            phone.send("quit")
        phone.stop()


@pytest.fixture
def start_caller(tmp_path: Path) -> Iterator[Callable[..., CallerProcess]]:
    started: list[CallerProcess] = []

    def start(platform: str, *extra: str, **kw: Any) -> CallerProcess:
        caller = CallerProcess(platform, *extra, log_dir=tmp_path, **kw)
        started.append(caller)
        return caller

    yield start
    for caller in started:
        caller.stop()
