"""The platform's configuration: agents, queues and timeouts, from TOML.

With no file the platform runs the built-in demo (``demo_config``). The file
format is documented in docs/administration.md; an example:

    [platform]
    persistent_timeout_s = 600    # R7, for everyone
    alert_timeout_s = 12          # R12
    ring_timeout_s = 30           # an agent's outbound call rings this long
    ice_addresses = ["127.0.0.1"] # where media may flow
    trunk_token = "..."           # callers present it (made at start when absent)
    database = "platform.sqlite3" # durable state (relative: to this file)

    [agents.alice]
    password_hash = "$argon2id$v=19$..."   # agent-phone-platform --hash-password
    permissions = ["routing:conversation:acceptOffQueue"]
    persistent_timeout_s = 300             # per-agent override (optional)

    [queues.support]
    members = ["alice", "bob"]
    wrap_up_codes = ["resolved", "escalated"]  # after-call work, ended by a code...
    acw_timeout_s = 60                         # ...or after this long (default 60)

    [status_reasons]               # the reasons an agent may give, per status
    break = ["coffee", "rest"]

    [tls]                          # serve wss:// (paths relative to this file)
    cert_file = "platform.crt"
    key_file = "platform.key"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import argon2

from agent_phone.cloud.proxies import TrustedProxies
from agent_phone.cloud.ratelimit import RateLimitConfig
from agent_phone.protocol import AGENT_STATUSES

ACCEPT_OFF_QUEUE = "routing:conversation:acceptOffQueue"
KNOWN_PERMISSIONS = frozenset({ACCEPT_OFF_QUEUE})

DEFAULT_PERSISTENT_TIMEOUT_S = 600.0
DEFAULT_ALERT_TIMEOUT_S = 12.0
DEFAULT_RING_TIMEOUT_S = 30.0
#: A customer's media that stops this long ends their call (media_edge.py).
DEFAULT_CUSTOMER_MEDIA_TIMEOUT_S = 5.0
DEFAULT_ACW_TIMEOUT_S = 60.0
DEFAULT_TOKEN_LIFETIME_S = 3600.0
DEFAULT_RESUME_GRACE_S = 30.0
DEFAULT_LOCKOUT_FAILURES = 5
DEFAULT_LOCKOUT_WINDOW_S = 300.0
DEFAULT_LOCKOUT_S = 300.0
DEFAULT_SIGN_IN_DELAY_S = 0.5
DEFAULT_SIGN_IN_DELAY_MAX_S = 4.0
DEFAULT_MEMORY_REPORT_S = 60.0
DEFAULT_GC_COLLECT_S = 5.0
DEFAULT_LOCKOUT_ADDRESS_FAILURES = 20


class ConfigError(ValueError):
    """The configuration file is unusable; the message names the problem."""


@dataclass(frozen=True)
class AgentConfig:
    name: str
    password_hash: str
    permissions: frozenset[str] = frozenset()
    #: Overrides the platform's timeout for this agent (R7).
    persistent_timeout_s: float | None = None


@dataclass(frozen=True)
class QueueConfig:
    name: str
    members: tuple[str, ...]
    #: After a call from this queue the agent is in after-call work until
    #: they pick one of these codes or ``acw_timeout_s`` passes; with no
    #: codes there is no after-call work.
    wrap_up_codes: tuple[str, ...] = ()
    acw_timeout_s: float = DEFAULT_ACW_TIMEOUT_S

    @property
    def after_call_work(self) -> bool:
        return bool(self.wrap_up_codes)


@dataclass(frozen=True)
class PlatformConfig:
    agents: dict[str, AgentConfig]
    queues: dict[str, QueueConfig]
    persistent_timeout_s: float = DEFAULT_PERSISTENT_TIMEOUT_S
    alert_timeout_s: float = DEFAULT_ALERT_TIMEOUT_S
    #: An agent's outbound call not answered within this long ends (``no_answer``).
    ring_timeout_s: float = DEFAULT_RING_TIMEOUT_S
    #: How long setting up a media connection may take before it is abandoned.
    connect_timeout_s: float = 10.0
    #: A customer's leg that sends no media this long ends its call
    #: (``customer_media_lost``), as one whose ICE or DTLS fails or closes.
    customer_media_timeout_s: float = DEFAULT_CUSTOMER_MEDIA_TIMEOUT_S
    #: Web pages (origins: ``https://example.com``) whose scripts may open the
    #: WebSocket, besides the platform's own pages; ``"*"``: any. A client
    #: that sends no ``Origin`` (the phone, the caller) is not concerned.
    allowed_origins: tuple[str, ...] = ()
    #: Queues a customer may call from the platform's web page (``/call``:
    #: click-to-call, agent_phone/cloud/web.py); none: no page.
    click_to_call_queues: tuple[str, ...] = ()
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    #: Bearer token for the admin HTTP API; a random one is made when unset.
    admin_token: str | None = None
    #: Callers (customer trunks) present it on ``place_call``; a random one
    #: is made when unset (docs/security.md).
    trunk_token: str | None = None
    #: Serve wss:// (and the admin API over https) with these; plain ws:// otherwise.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    source: str = "built-in demo"
    #: The reasons an agent may give for each status (``set_status``); a
    #: status with none listed takes no reason.
    status_reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The SQLite file for agents, settings and call records (None: the
    #: default of agent_phone.cloud.storage.default_path).
    database: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
    # --- sessions and sign-in (docs/administration.md, docs/security.md) ---
    #: A session token lasts this long; the phone refreshes it before then.
    token_lifetime_s: float = DEFAULT_TOKEN_LIFETIME_S
    #: A session whose WebSocket dropped is kept this long for a resume.
    resume_grace_s: float = DEFAULT_RESUME_GRACE_S
    #: This many failed sign-ins for one user name from one address within
    #: the window lock that name from that address.
    lockout_failures: int = DEFAULT_LOCKOUT_FAILURES
    lockout_window_s: float = DEFAULT_LOCKOUT_WINDOW_S
    #: How long a locked user name (or address) stays locked.
    lockout_s: float = DEFAULT_LOCKOUT_S
    #: This many failed sign-ins from one address (any names) within the
    #: window lock the address: no name may sign in from it meanwhile.
    lockout_address_failures: int = DEFAULT_LOCKOUT_ADDRESS_FAILURES
    #: The answer to a second failed sign-in waits this long, doubling per
    #: further failure up to ``sign_in_delay_max_s`` (the first is answered at once).
    sign_in_delay_s: float = DEFAULT_SIGN_IN_DELAY_S
    sign_in_delay_max_s: float = DEFAULT_SIGN_IN_DELAY_MAX_S
    #: Reverse proxies whose X-Forwarded-For is believed (addresses or
    #: networks; agent_phone/cloud/proxies.py). Empty: the header is ignored.
    trusted_proxies: tuple[str, ...] = ()
    #: Messages one WebSocket peer may send (docs/administration.md).
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    #: Every this often the platform hands freed heap back to the system and
    #: logs a ``memory`` event (agent_phone/cloud/memory.py).
    memory_report_s: float = DEFAULT_MEMORY_REPORT_S
    #: Run a full garbage collection this often (0: Python's own schedule;
    #: agent_phone/cloud/memory.py says why).
    gc_collect_s: float = DEFAULT_GC_COLLECT_S

    def queues_of(self, agent: str) -> list[str]:
        return [q.name for q in self.queues.values() if agent in q.members]


_hasher = argon2.PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Slow on purpose (argon2id); call it off the event loop."""
    try:
        return _hasher.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


@cache
def demo_password_hash() -> str:
    """The hash of the demo agents' password, ``demo`` (made once)."""
    return hash_password("demo")


def dummy_hash() -> str:
    """Checked against for unknown users, so they take as long as known ones."""
    return demo_password_hash()


def demo_config(**overrides: object) -> PlatformConfig:
    """Queue ``support``; agents alice, bob and carol, password ``demo``."""
    h = demo_password_hash()
    agents = {
        "alice": AgentConfig("alice", h, frozenset({ACCEPT_OFF_QUEUE})),
        "bob": AgentConfig("bob", h),
        "carol": AgentConfig("carol", h),
    }
    queues = {
        "support": QueueConfig(
            "support",
            ("alice", "bob", "carol"),
            wrap_up_codes=DEMO_WRAP_UP_CODES,
            acw_timeout_s=DEMO_ACW_TIMEOUT_S,
        )
    }
    overrides.setdefault("status_reasons", DEMO_STATUS_REASONS)
    overrides.setdefault("click_to_call_queues", ("support",))
    return PlatformConfig(agents=agents, queues=queues, **overrides)  # type: ignore[arg-type]


#: The demo's wrap-up codes for queue ``support``, and its after-call work
#: timeout: short, so a demo agent who ignores the form is soon back on queue.
DEMO_WRAP_UP_CODES = ("resolved", "callback_promised", "escalated")
DEMO_ACW_TIMEOUT_S = 15.0

#: The demo's reasons for each status.
DEMO_STATUS_REASONS: dict[str, tuple[str, ...]] = {
    "break": ("coffee", "rest"),
    "meal": ("lunch", "dinner"),
    "training": ("e-learning", "coaching"),
    "meeting": ("team", "one-to-one"),
    "away": ("personal", "technical problem"),
}


def _status_reasons(data: dict[str, object]) -> dict[str, tuple[str, ...]]:
    table = data.get("status_reasons", {})
    if not isinstance(table, dict):
        raise ConfigError("status_reasons must be a table of lists")
    reasons: dict[str, tuple[str, ...]] = {}
    for status, names in table.items():
        if status not in AGENT_STATUSES:
            raise ConfigError(
                f"status_reasons.{status}: not a status an agent sets ({', '.join(AGENT_STATUSES)})"
            )
        if not isinstance(names, list) or not all(
            isinstance(n, str) and 0 < len(n) <= 64 for n in names
        ):
            raise ConfigError(f"status_reasons.{status} must be a list of names (1-64 characters)")
        reasons[status] = tuple(names)
    return reasons


def _wrap_up_codes(table: dict[str, object], where: str) -> tuple[str, ...]:
    codes = table.get("wrap_up_codes", [])
    if (
        not isinstance(codes, list)
        or not all(isinstance(c, str) and 0 < len(c) <= 64 for c in codes)
        or len(set(codes)) != len(codes)
    ):
        raise ConfigError(
            f"{where}.wrap_up_codes must be a list of distinct codes (1-64 characters)"
        )
    return tuple(codes)


def _number(table: dict[str, object], key: str, where: str, default: float | None) -> float | None:
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}.{key} must be a positive number of seconds, not {value!r}")
    return float(value)


def _seconds_or_off(platform: dict[str, object], key: str, default: float) -> float:
    """A number of seconds, or 0 for off."""
    value = platform.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"platform.{key} must be a number of seconds (0: off), not {value!r}")
    return float(value)


def _token(platform: dict[str, object], key: str = "admin_token") -> str | None:
    token = platform.get(key)
    if token is None:
        return None
    if not isinstance(token, str) or len(token) < 16:
        raise ConfigError(f"platform.{key} must be a string of at least 16 characters")
    return token


def _tls_files(data: dict[str, object], base: Path) -> tuple[Path | None, Path | None]:
    """``[tls] cert_file, key_file``, relative to the configuration file."""
    table = data.get("tls")
    if table is None:
        return None, None
    if not isinstance(table, dict):
        raise ConfigError("[tls] must be a table with cert_file and key_file")
    files = []
    for key in ("cert_file", "key_file"):
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"tls.{key} must name a PEM file (both cert_file and key_file)")
        path = base / Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"tls.{key}: no such file: {path}")
        files.append(path)
    return files[0], files[1]


def _count(table: dict[str, object], key: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"platform.{key} must be a whole number of at least 1, not {value!r}")
    return value


def _session_settings(platform: dict[str, object]) -> dict[str, float | int]:
    """The ``[platform]`` keys for session tokens, resume and lockout."""

    def seconds(key: str, default: float) -> float:
        return _number(platform, key, "platform", default) or default

    return {
        "token_lifetime_s": seconds("token_lifetime_s", DEFAULT_TOKEN_LIFETIME_S),
        "resume_grace_s": seconds("resume_grace_s", DEFAULT_RESUME_GRACE_S),
        "lockout_failures": _count(platform, "lockout_failures", DEFAULT_LOCKOUT_FAILURES),
        "lockout_window_s": seconds("lockout_window_s", DEFAULT_LOCKOUT_WINDOW_S),
        "lockout_s": seconds("lockout_s", DEFAULT_LOCKOUT_S),
        "lockout_address_failures": _count(
            platform, "lockout_address_failures", DEFAULT_LOCKOUT_ADDRESS_FAILURES
        ),
        "sign_in_delay_s": seconds("sign_in_delay_s", DEFAULT_SIGN_IN_DELAY_S),
        "sign_in_delay_max_s": seconds("sign_in_delay_max_s", DEFAULT_SIGN_IN_DELAY_MAX_S),
    }


def _trusted_proxies(platform: dict[str, object]) -> tuple[str, ...]:
    value = platform.get("trusted_proxies", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"platform.trusted_proxies must be a list of addresses or networks, not {value!r}"
        )
    try:
        TrustedProxies(value)
    except ValueError as exc:
        raise ConfigError(f"platform.trusted_proxies: {exc}") from None
    return tuple(value)


def _rate_limit(platform: dict[str, object]) -> RateLimitConfig:
    d = RateLimitConfig()
    burst = platform.get("rate_limit_burst", d.burst)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ConfigError(f"platform.rate_limit_burst must be a whole number >= 1, not {burst!r}")

    def number(key: str, default: float) -> float:
        value = platform.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"platform.{key} must be a positive number, not {value!r}")
        return float(value)

    return RateLimitConfig(
        rate=number("rate_limit_per_s", d.rate),
        burst=burst,
        abuse_factor=number("rate_limit_abuse_factor", d.abuse_factor),
        abuse_s=number("rate_limit_abuse_s", d.abuse_s),
    )


def load_config(path: Path) -> PlatformConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    platform = data.get("platform", {})
    agents: dict[str, AgentConfig] = {}
    for name, table in data.get("agents", {}).items():
        where = f"agents.{name}"
        password_hash = table.get("password_hash")
        if not isinstance(password_hash, str) or not password_hash.startswith("$argon2"):
            raise ConfigError(f"{where}.password_hash must be an argon2 hash")
        permissions = frozenset(table.get("permissions", []))
        if unknown := permissions - KNOWN_PERMISSIONS:
            raise ConfigError(f"{where}.permissions: unknown {sorted(unknown)}")
        timeout = _number(table, "persistent_timeout_s", where, None)
        agents[name] = AgentConfig(name, password_hash, permissions, timeout)
    queues: dict[str, QueueConfig] = {}
    for name, table in data.get("queues", {}).items():
        members = tuple(table.get("members", []))
        if missing := [m for m in members if m not in agents]:
            raise ConfigError(f"queues.{name}.members: no such agent {missing}")
        queues[name] = QueueConfig(
            name,
            members,
            wrap_up_codes=_wrap_up_codes(table, f"queues.{name}"),
            acw_timeout_s=_number(table, "acw_timeout_s", f"queues.{name}", DEFAULT_ACW_TIMEOUT_S)
            or DEFAULT_ACW_TIMEOUT_S,
        )
    ice = tuple(platform.get("ice_addresses", ["127.0.0.1"]))
    tls_cert, tls_key = _tls_files(data, path.resolve().parent)
    return PlatformConfig(
        agents=agents,
        queues=queues,
        persistent_timeout_s=_number(
            platform, "persistent_timeout_s", "platform", DEFAULT_PERSISTENT_TIMEOUT_S
        )
        or DEFAULT_PERSISTENT_TIMEOUT_S,
        alert_timeout_s=_number(platform, "alert_timeout_s", "platform", DEFAULT_ALERT_TIMEOUT_S)
        or DEFAULT_ALERT_TIMEOUT_S,
        ring_timeout_s=_number(platform, "ring_timeout_s", "platform", DEFAULT_RING_TIMEOUT_S)
        or DEFAULT_RING_TIMEOUT_S,
        connect_timeout_s=_number(platform, "connect_timeout_s", "platform", 10.0) or 10.0,
        customer_media_timeout_s=_number(
            platform, "customer_media_timeout_s", "platform", DEFAULT_CUSTOMER_MEDIA_TIMEOUT_S
        )
        or DEFAULT_CUSTOMER_MEDIA_TIMEOUT_S,
        allowed_origins=_origins(platform),
        click_to_call_queues=_click_to_call(platform, queues),
        ice_addresses=ice,
        admin_token=_token(platform),
        trunk_token=_token(platform, "trunk_token"),
        tls_cert_file=tls_cert,
        tls_key_file=tls_key,
        source=str(path),
        status_reasons=_status_reasons(data),
        database=_database(platform, path),
        **_session_settings(platform),  # type: ignore[arg-type]
        trusted_proxies=_trusted_proxies(platform),
        rate_limit=_rate_limit(platform),
        memory_report_s=_number(platform, "memory_report_s", "platform", DEFAULT_MEMORY_REPORT_S)
        or DEFAULT_MEMORY_REPORT_S,
        gc_collect_s=_seconds_or_off(platform, "gc_collect_s", DEFAULT_GC_COLLECT_S),
    )


def _click_to_call(platform: dict[str, object], queues: dict[str, QueueConfig]) -> tuple[str, ...]:
    value = platform.get("click_to_call_queues", [])
    if not isinstance(value, list) or not all(isinstance(q, str) for q in value):
        raise ConfigError(
            'platform.click_to_call_queues must be a list of queues, e.g. ["support"]'
        )
    for queue in value:
        if queue not in queues:
            raise ConfigError(f"platform.click_to_call_queues: there is no queue {queue!r}")
    return tuple(value)


def _origins(platform: dict[str, object]) -> tuple[str, ...]:
    """``allowed_origins``: web origins (a scheme, a host, maybe a port; no
    path), or ``"*"``."""
    value = platform.get("allowed_origins", [])
    if not isinstance(value, list):
        raise ConfigError('platform.allowed_origins must be a list, e.g. ["https://example.com"]')
    origins = []
    for origin in value:
        if origin == "*":
            origins.append(origin)
            continue
        if not isinstance(origin, str) or not re.fullmatch(_ORIGIN, origin):
            raise ConfigError(
                f"platform.allowed_origins: {origin!r} is not a web origin"
                " (a scheme, a host and maybe a port, such as https://example.com:8443)"
            )
        origins.append(origin.lower())
    return tuple(origins)


_ORIGIN = r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"


def _database(platform: dict[str, object], path: Path) -> str | None:
    value = platform.get("database")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("platform.database must be a file name")
    return str(path.parent / Path(value).expanduser())
