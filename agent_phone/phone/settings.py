"""What the phone engine is started with: a plain frozen value.

The engine never reads a settings store; the front-end (command line, Qt
settings) builds one of these and hands it over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PhoneSettings:
    platform: str
    user: str
    password: str = field(repr=False)
    #: Go on queue right after signing in.
    on_queue: bool = False
    #: Connect offered calls with no click (R3).
    auto_answer: bool = False
    #: "Maintain a persistent connection" (R2, R10).
    persistent: bool = True
    mic_device: str | None = None
    speaker_device: str | None = None
    mic_file: Path | None = None
    speaker_file: Path | None = None
    #: Noise suppression and automatic gain control on the microphone
    #: (None: on for a sound card, off for a ``mic_file``).
    voice_processing: bool | None = None
    #: Addresses media may use (ICE host candidates).
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    #: Sign in again this many times (with backoff) when the platform goes
    #: away; 0 gives up at once.
    reconnect_attempts: int = 0
    client: str = "agent-phone"
    #: Verify a wss:// platform against this CA file instead of the system's
    #: trust store (docs/security.md).
    ca_file: Path | None = None
