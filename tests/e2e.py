"""Fixtures for end-to-end tests: the platform, phones and callers as processes,
and the set-up of a call whose two sides say different tones."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_analysis import make_tone
from procs import CallerProcess, PhoneProcess, PlatformProcess, write_config

from agent_phone.media.wav import read_wav, write_wav


@pytest.fixture
def start_platform(tmp_path: Path) -> Iterator[Callable[..., PlatformProcess]]:
    started: list[PlatformProcess] = []

    def start(
        port: int = 0,
        extra: tuple[str, ...] = (),
        queue: dict[str, Any] | None = None,
        more: str = "",
        **platform: Any,
    ) -> PlatformProcess:
        """``extra``: more command-line arguments (``--dev-tls``...);
        ``queue``: settings of queue ``support``, ``more``: more TOML
        (``write_config``)."""
        config = write_config(tmp_path / f"platform{len(started)}.toml", queue, more, **platform)
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
    """The platform with the demo's agents and queue (without after-call work)."""
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
            try:
                phone.send("quit")
            except BrokenPipeError:
                pass  # it was exiting by itself (a platform that died, say)
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


# --- a two-way tone call --------------------------------------------------------------
#
# The e2e tests tell the two voices apart by pitch: the customer (the caller's
# ``--tone``) says CUSTOMER_HZ and the agent's microphone carries AGENT_HZ.

CUSTOMER_HZ = 440.0
AGENT_HZ = 880.0


def agent_mic_file(tmp_path: Path) -> str:
    """A WAV of the agent's voice (1 s of AGENT_HZ) for a phone's ``--mic-file``."""
    mic = tmp_path / "mic.wav"
    write_wav(mic, make_tone(AGENT_HZ, 1.0))
    return str(mic)


def audio_through_files(tmp_path: Path) -> tuple[str, ...]:
    """A headless phone's arguments for audio through WAV files, not the sound
    card: its microphone says AGENT_HZ and what its speaker plays goes to
    ``tmp_path/agent.wav`` (written when the phone quits)."""
    return ("--mic-file", agent_mic_file(tmp_path), "--speaker-file", str(tmp_path / "agent.wav"))


def start_tone_caller(
    start_caller: Callable[..., CallerProcess],
    url: str,
    record: Path | None,
    duration: float,
    *extra: str,
) -> CallerProcess:
    """A customer saying CUSTOMER_HZ for ``duration`` s after the answer (0: until
    the agent hangs up), recording what they hear into ``record`` (if given)."""
    recording = ("--record", str(record)) if record is not None else ()
    return start_caller(
        url, "--tone", str(CUSTOMER_HZ), *recording, "--duration", f"{duration:g}", *extra
    )


@dataclass
class AgentSoundCard:
    """The agent's side of a call on the virtual sound card."""

    started_at: float
    """Unix time at which the speaker recording started (sample 0 of ``heard``)."""
    heard: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    """What the agent's speaker played (int16, 48 kHz); filled when the block exits."""


@contextmanager
def agent_voice_on_sound_card(virtual_audio: Any) -> Iterator[AgentSoundCard]:
    """For the block: the virtual microphone says AGENT_HZ on a loop and the
    speaker is recorded; both stop on the way out, however the block ends."""
    feed = virtual_audio.play_into_mic(make_tone(AGENT_HZ, 1.0), loop=True)
    recording = virtual_audio.start_recording()
    agent = AgentSoundCard(started_at=time.time())
    try:
        yield agent
    finally:
        agent.heard = recording.stop()
        feed.stop()


@dataclass
class ToneCall:
    """The outcome of ``two_way_tone_call``."""

    code: int
    """The caller's exit code."""
    summary: dict[str, Any]
    """The caller's summary (``call_id``, ``agent``, ``ended_by``...)."""
    heard_by_agent: np.ndarray
    """The agent's speaker, recorded on the virtual sound card."""
    customer_wav: Path
    """What the customer heard, written by the caller."""

    def heard_by_customer(self) -> np.ndarray:
        return read_wav(self.customer_wav)


def two_way_tone_call(
    virtual_audio: Any,
    start_caller: Callable[..., CallerProcess],
    url: str,
    tmp_path: Path,
    duration: float,
    timeout: float,
) -> ToneCall:
    """One customer call, talking both ways, through a phone already on queue
    with ``--auto-answer`` on the virtual sound card: the customer says
    CUSTOMER_HZ for ``duration`` s and hangs up, the agent's microphone says
    AGENT_HZ. Returns when the caller has exited (within ``timeout`` s)."""
    customer_wav = tmp_path / "customer.wav"
    with agent_voice_on_sound_card(virtual_audio) as agent:
        caller = start_tone_caller(start_caller, url, customer_wav, duration)
        code, summary = caller.result(timeout=timeout)
    return ToneCall(code, summary, agent.heard, customer_wav)
