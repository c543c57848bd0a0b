"""The window's settings: declared once, typed, with a default and a description.

Each ``Setting`` below is the one place its key, type, default, label and
description live; the settings dialog is built from them and ``SettingsStore``
reads and writes them in a QSettings INI file. The engine never sees the
store: ``phone_settings`` builds the frozen ``PhoneSettings`` it is given
(STYLE.md habit 10). Passwords are not settings: they go to the keyring
(``agent_phone.ui.passwords``), never here. Window geometry is kept apart
from preferences, in the ``window/`` group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from PySide6.QtCore import QByteArray, QObject, QSettings, Signal

from agent_phone.phone.ringer import AlertSoundSettings
from agent_phone.phone.settings import PhoneSettings

logger = logging.getLogger(__name__)

T = TypeVar("T", bool, int, str)

#: Bumped when a key changes meaning; ``SettingsStore`` upgrades older files.
VERSION = 1


@dataclass(frozen=True)
class Setting(Generic[T]):
    key: str
    type: type[T]
    default: T
    label: str
    description: str


PERSISTENT = Setting(
    "phone/persistent",
    bool,
    True,
    "Maintain a persistent connection",
    "Keep the media connection open between calls, so the next call arrives at once. "
    "Turning it off during a call never drops the call: the connection closes when it ends.",
)
AUTO_ANSWER = Setting(
    "phone/auto_answer",
    bool,
    False,
    "Auto answer",
    "Connect offered calls at once, with no click.",
)
ON_QUEUE_AT_SIGN_IN = Setting(
    "phone/on_queue_at_sign_in",
    bool,
    False,
    "Go on queue when signed in",
    "Start taking calls as soon as the sign-in succeeds.",
)
MIC = Setting(
    "audio/mic",
    str,
    "",
    "Microphone",
    "The input device for calls (empty: the system default). Applies from the next call.",
)
SPEAKER = Setting(
    "audio/speaker",
    str,
    "",
    "Speaker",
    "The output device for calls (empty: the system default). Applies from the next call.",
)
VOICE_PROCESSING = Setting(
    "audio/voice_processing",
    bool,
    True,
    "Noise suppression and automatic gain control",
    "Take background noise out of your microphone and keep your voice at an even level "
    "for the customer. Applies at once, also during a call.",
)
RINGER = Setting(
    "audio/ringer",
    str,
    "",
    "Ringer",
    "The device that rings for an incoming call (empty: the speaker). Applies from the next call.",
)
RINGER_VOLUME = Setting(
    "audio/ringer_volume",
    int,
    80,
    "Ringer volume",
    "How loud the phone rings, in percent (0 is silent).",
)
PLATFORM_URL = Setting(
    "account/platform",
    str,
    "",
    "Platform URL",
    "The contact-center platform, e.g. ws://127.0.0.1:8765/ws.",
)
USER = Setting("account/user", str, "", "Agent name", "The last agent who signed in here.")
RECONNECT_ATTEMPTS = Setting(
    "network/reconnect_attempts",
    int,
    5,
    "Reconnection attempts",
    "When the platform goes away, sign in again this many times (after 1, 2, 4, 8, 15 s); "
    "0 signs out at once.",
)
ICE_ADDRESSES = Setting(
    "network/ice_addresses",
    str,
    "127.0.0.1",
    "Media addresses",
    "The local addresses call audio may use, separated by commas.",
)
CA_FILE = Setting(
    "network/ca_file",
    str,
    "",
    "CA certificate",
    "A PEM file to verify a wss:// platform against instead of the system's trust store "
    "(e.g. the cert.pem of agent-phone-platform --dev-tls); empty uses the system's.",
)

REGISTRY: tuple[Setting[bool] | Setting[int] | Setting[str], ...] = (
    PERSISTENT,
    AUTO_ANSWER,
    ON_QUEUE_AT_SIGN_IN,
    MIC,
    VOICE_PROCESSING,
    SPEAKER,
    RINGER,
    RINGER_VOLUME,
    PLATFORM_URL,
    USER,
    RECONNECT_ATTEMPTS,
    ICE_ADDRESSES,
    CA_FILE,
)


class SettingsStore(QObject):
    """Typed access to the registry's settings in one QSettings file."""

    #: A setting's key, after its value changed.
    changed = Signal(str)

    def __init__(self, qsettings: QSettings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._qs = qsettings
        self._upgrade()

    @classmethod
    def at(cls, path: Path) -> SettingsStore:
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    @property
    def path(self) -> str:
        return self._qs.fileName()

    def get(self, setting: Setting[T]) -> T:
        raw = self._qs.value(setting.key, setting.default)
        if setting.type is bool:
            # INI files hand booleans back as the strings "true" / "false".
            if isinstance(raw, str):
                return raw.strip().lower() in ("true", "1", "yes", "on")
            return bool(raw)
        if setting.type is int:
            try:
                return int(raw)  # type: ignore[call-overload, no-any-return]
            except (TypeError, ValueError):
                logger.warning("setting %s: %r is not a number", setting.key, raw)
                return setting.default
        return str(raw if raw is not None else "")  # type: ignore[return-value]

    def set(self, setting: Setting[T], value: T) -> None:
        if not isinstance(value, setting.type) or (setting.type is int and isinstance(value, bool)):
            raise TypeError(f"{setting.key} takes {setting.type.__name__}, not {value!r}")
        if self.get(setting) == value and self._qs.contains(setting.key):
            return
        self._qs.setValue(setting.key, value)
        self._qs.sync()
        logger.info("setting %s = %r", setting.key, value)
        self.changed.emit(setting.key)

    def geometry(self) -> QByteArray | None:
        value = self._qs.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    def save_geometry(self, geometry: QByteArray) -> None:
        self._qs.setValue("window/geometry", geometry)
        self._qs.sync()

    def _upgrade(self) -> None:
        found = int(self._qs.value("meta/version", 0) or 0)  # type: ignore[call-overload]
        if found > VERSION:
            logger.warning("settings file is from a newer version (%d > %d)", found, VERSION)
            return
        # Version 1 is the first: nothing to migrate yet; later upgrades go here.
        if found != VERSION:
            self._qs.setValue("meta/version", VERSION)
            self._qs.sync()


def alert_sound_settings(store: SettingsStore) -> AlertSoundSettings:
    """The ringer's frozen settings: the ringer device (else the speaker) and volume."""
    speaker = store.get(SPEAKER) or None
    return AlertSoundSettings(
        ringer_device=store.get(RINGER) or speaker,
        speaker_device=speaker,
        ringer_volume=max(0, min(100, store.get(RINGER_VOLUME))),
    )


def stored_ice_addresses(store: SettingsStore) -> tuple[str, ...]:
    parts = (a.strip() for a in store.get(ICE_ADDRESSES).split(","))
    return tuple(a for a in parts if a) or ("127.0.0.1",)


def phone_settings(
    store: SettingsStore,
    platform: str,
    user: str,
    password: str,
    *,
    on_queue: bool | None = None,
    auto_answer: bool | None = None,
    persistent: bool | None = None,
    mic_device: str | None = None,
    speaker_device: str | None = None,
    mic_file: Path | None = None,
    speaker_file: Path | None = None,
    reconnect_attempts: int | None = None,
    ice_addresses: tuple[str, ...] | None = None,
    ca_file: Path | None = None,
) -> PhoneSettings:
    """The engine's frozen settings: the store's values, with any overrides given."""
    return PhoneSettings(
        platform=platform,
        user=user,
        password=password,
        on_queue=store.get(ON_QUEUE_AT_SIGN_IN) if on_queue is None else on_queue,
        auto_answer=store.get(AUTO_ANSWER) if auto_answer is None else auto_answer,
        persistent=store.get(PERSISTENT) if persistent is None else persistent,
        mic_device=mic_device or store.get(MIC) or None,
        speaker_device=speaker_device or store.get(SPEAKER) or None,
        mic_file=mic_file,
        speaker_file=speaker_file,
        voice_processing=store.get(VOICE_PROCESSING),
        ice_addresses=ice_addresses or stored_ice_addresses(store),
        ca_file=ca_file or (Path(store.get(CA_FILE)).expanduser() if store.get(CA_FILE) else None),
        reconnect_attempts=max(
            0, store.get(RECONNECT_ATTEMPTS) if reconnect_attempts is None else reconnect_attempts
        ),
    )
