"""What the platform keeps across restarts: agents, admin settings, call
records, and the sign-in lockout's failures and locks.

``Storage`` is the interface the platform uses; ``SqliteStorage`` is the
embedded implementation (stdlib ``sqlite3``), and a server database
(PostgreSQL, say) can replace it by implementing the same few methods.

The platform's event loop never waits on the disk: every write is queued, in
order, to one writer thread that runs it as its own short transaction (WAL
journal, ``synchronous=FULL``, so a commit survives a crash of the process
and of the machine). Reads for the admin API run on the same thread. Only
``open``/``load`` at start block, before anything is served.

Two platforms must never share one database (each would close the other's
calls as ``platform_restart``): the file is locked for the life of the
process, and a second platform on it stops with a clear message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 4
#: The most SQLite's page cache holds, in KiB (SQLite's own default, made
#: explicit: the platform's memory grows by it as the call records fill it).
SQLITE_CACHE_KB = 2000

#: End reason of a call that was still in progress when the platform died.
PLATFORM_RESTART = "platform_restart"


class StorageError(Exception):
    """The database cannot be used; the message names the file and why."""


@dataclass
class CallRecord:
    """One customer call, from the moment it was queued to its end."""

    call_id: str
    caller: str
    queue: str
    created_at: float
    #: Times the call was put in its queue: 1, plus one per requeue.
    queued_count: int = 1
    #: Why it went back each time (``declined``, ``connection_lost``...).
    requeue_reasons: list[str] = field(default_factory=list)
    #: Agents it was offered to, in order (an agent may appear twice).
    offered_to: list[str] = field(default_factory=list)
    answered_by: str | None = None
    answered_at: float | None = None
    #: Routed -> offered to the agent who answered, in ms.
    delivery_ms: float | None = None
    over_persistent_connection: bool | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    #: ``customer``, ``agent`` or ``platform``.
    ended_by: str | None = None
    #: Call quality as the platform measured it on the agent's connection.
    quality: dict[str, Any] | None = None
    #: What the agent heard, as the agent's phone reported it at the end of
    #: the call (``quality_report``: its jitter buffer's figures).
    heard_by_agent: dict[str, Any] | None = None
    #: ``inbound`` (a customer called a queue) or ``outbound`` (an agent
    #: dialed ``caller``'s number: ``answered_by`` is that agent, ``queue`` is
    #: empty and ``queued_count`` 0).
    direction: str = "inbound"
    #: The code the agent wrapped the call up with (``wrap_up``); None when
    #: its after-call work timed out, or the queue has none.
    wrap_up_code: str | None = None
    #: How long the after-call work lasted, in seconds.
    acw_s: float | None = None
    #: Each transfer, in order: ``{"from", "to", "consult", "at"}`` (``to``
    #: an agent, a queue or a number).
    transfers: list[dict[str, Any]] = field(default_factory=list)
    #: Every agent's after-call work on the call, in order: ``{"agent",
    #: "code", "acw_s"}`` (``wrap_up_code`` is the last agent's).
    wrap_ups: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StatusChange:
    """An agent's status changed (for reporting: time in each status)."""

    agent: str
    status: str
    reason: str
    #: ``requested`` (by the agent), ``sign_in``, or why the platform set it.
    cause: str
    #: Unix time it began.
    at: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AgentRecord:
    name: str
    permissions: list[str]
    #: Set by an administrator (wins over the configuration file).
    admin_timeout_set: bool
    persistent_timeout_s: float | None
    in_config: bool


@dataclass(frozen=True)
class SignInFailure:
    """One failed sign-in counted against a key: ``scope`` ``name`` counts
    per (user name, address), ``address`` per address (``user`` is then "")."""

    scope: str
    user: str
    address: str
    #: Unix time of the failure.
    at: float


@dataclass(frozen=True)
class SignInLock:
    """A key (as in ``SignInFailure``) refused until ``until`` (Unix time)."""

    scope: str
    user: str
    address: str
    until: float


class Storage(Protocol):
    """The platform's durable state. Writes return at once and are applied in
    the order they were made; ``close`` waits until they are on disk."""

    location: str

    def seed_agents(self, agents: Iterable[tuple[str, list[str], float | None]]) -> None:
        """The configuration's agents (name, permissions, timeout); blocking, at start."""

    def agents(self) -> list[AgentRecord]:
        """Every agent ever configured; blocking, at start."""

    def settings(self) -> dict[str, Any]:
        """Settings an administrator changed; blocking, at start."""

    def close_unfinished(self, reason: str, ended_at: float) -> list[str]:
        """End calls left open by a previous run; blocking, at start."""

    def put_setting(self, key: str, value: Any) -> None: ...

    def put_agent_timeout(self, agent: str, timeout_s: float | None) -> None: ...

    def put_call(self, record: CallRecord) -> None: ...

    async def calls(self, limit: int, before: float | None = None) -> list[CallRecord]:
        """Newest first; ``before``: only calls created before this time."""

    async def call(self, call_id: str) -> CallRecord | None: ...

    def put_status(self, change: StatusChange) -> None: ...

    async def statuses(
        self, agent: str | None, limit: int, before: float | None = None
    ) -> list[StatusChange]:
        """Newest first, of one agent or all; ``before``: only changes before this time."""

    # --- the sign-in lockout (agent_phone/cloud/auth.py) ---

    def sign_in_state(
        self, failed_since: float, now: float
    ) -> tuple[list[SignInFailure], list[SignInLock]]:
        """Failures since ``failed_since`` (oldest first) and locks still in
        force at ``now``; older rows are deleted. Blocking, at start."""

    def put_sign_in_failures(self, failures: list[SignInFailure]) -> None: ...

    def put_sign_in_lock(self, lock: SignInLock) -> None:
        """Lock the key; its failures so far are deleted (a lock that runs out
        starts the count afresh)."""

    def clear_sign_in(self, scope: str, user: str, address: str) -> None:
        """Forget the key's failures and lock (a successful sign-in, a lock run out)."""

    def prune_sign_in(self, failed_before: float, locked_before: float) -> None:
        """Delete failures older than ``failed_before`` and locks that ended
        before ``locked_before``."""

    async def synced(self) -> None:
        """Wait until every write made so far is on disk."""

    async def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY,
    permissions TEXT NOT NULL,
    config_timeout_s REAL,
    admin_timeout_set INTEGER NOT NULL DEFAULT 0,
    admin_timeout_s REAL,
    in_config INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    queue TEXT NOT NULL,
    created_at REAL NOT NULL,
    queued_count INTEGER NOT NULL,
    requeue_reasons TEXT NOT NULL,
    offered_to TEXT NOT NULL,
    answered_by TEXT,
    answered_at REAL,
    delivery_ms REAL,
    over_persistent_connection INTEGER,
    ended_at REAL,
    end_reason TEXT,
    ended_by TEXT,
    quality TEXT,
    heard_by_agent TEXT,
    direction TEXT NOT NULL DEFAULT 'inbound',
    wrap_up_code TEXT,
    acw_s REAL,
    transfers TEXT NOT NULL DEFAULT '[]',
    wrap_ups TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS calls_created ON calls (created_at);
CREATE INDEX IF NOT EXISTS calls_open ON calls (ended_at) WHERE ended_at IS NULL;
CREATE TABLE IF NOT EXISTS status_changes (
    agent TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    cause TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS status_changes_agent ON status_changes (agent, at);
CREATE INDEX IF NOT EXISTS status_changes_at ON status_changes (at);
CREATE TABLE IF NOT EXISTS sign_in_failures (
    scope TEXT NOT NULL CHECK (scope IN ('name', 'address')),
    user TEXT NOT NULL,
    address TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sign_in_failures_key ON sign_in_failures (scope, address, user);
CREATE INDEX IF NOT EXISTS sign_in_failures_at ON sign_in_failures (at);
CREATE TABLE IF NOT EXISTS sign_in_locks (
    scope TEXT NOT NULL CHECK (scope IN ('name', 'address')),
    user TEXT NOT NULL,
    address TEXT NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (scope, user, address)
);
"""
# The sign_in_* and status_changes tables were added without a schema version
# change: they are created where missing, and a platform that predates them
# ignores them.

_CALL_COLUMNS = [f.name for f in dataclasses.fields(CallRecord)]
_JSON_COLUMNS = {
    "requeue_reasons",
    "offered_to",
    "quality",
    "heard_by_agent",
    "transfers",
    "wrap_ups",
}


def _to_row(record: CallRecord) -> tuple[Any, ...]:
    row = []
    for name in _CALL_COLUMNS:
        value = getattr(record, name)
        if name in _JSON_COLUMNS:
            value = None if value is None else json.dumps(value)
        elif name == "over_persistent_connection" and value is not None:
            value = int(value)
        row.append(value)
    return tuple(row)


def _from_row(row: sqlite3.Row) -> CallRecord:
    values: dict[str, Any] = {}
    for name in _CALL_COLUMNS:
        value = row[name]
        if name in _JSON_COLUMNS and value is not None:
            value = json.loads(value)
        elif name == "over_persistent_connection" and value is not None:
            value = bool(value)
        values[name] = value
    return CallRecord(**values)


def default_path(config_path: Path | None) -> Path | None:
    """Next to the configuration file (``platform.toml`` -> ``platform.sqlite3``);
    for the built-in demo None: a temporary file for this run (``open_storage``)."""
    return None if config_path is None else config_path.with_suffix(".sqlite3")


class SqliteStorage:
    """``Storage`` in one SQLite file, written by one thread."""

    def __init__(self, path: Path, temporary: bool = False) -> None:
        self.path = path
        #: A throwaway file (the demo's): removed with its folder on close.
        self.temporary = temporary
        self.location = str(path)
        self._lock_file = self._lock(path)
        try:
            self._db = self._open(path)
        except sqlite3.Error as exc:
            self._lock_file.close()
            raise StorageError(f"cannot use the database {path}: {exc}") from None
        # One thread owns the connection: writes stay in order, reads see them.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")
        self._closed = False
        self.writes = 0
        self.write_s_max = 0.0

    @staticmethod
    def _lock(path: Path) -> Any:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(f"{path}.lock", "w")  # noqa: SIM115 - held for the process's life
        except OSError as exc:
            raise StorageError(f"cannot use the database {path}: {exc.strerror}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StorageError(
                f"the database {path} is in use by another platform process"
            ) from None
        return lock

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        # SQLite's page cache grows with the database up to this, then stays
        # (the platform's memory reports show it: memory.py, sqlite_kb).
        db.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KB}")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {row[0]} is newer than this platform's {SCHEMA_VERSION}"
            )
        else:
            SqliteStorage._migrate(db, int(row[0]))
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection, version: int) -> None:
        """Bring an older database up to SCHEMA_VERSION, in place."""
        steps = {
            # 2: what the agent heard, with each call record.
            2: ["ALTER TABLE calls ADD COLUMN heard_by_agent TEXT"],
            # 3: inbound or outbound.
            3: ["ALTER TABLE calls ADD COLUMN direction TEXT NOT NULL DEFAULT 'inbound'"],
            # 4: after-call work (its code and length) and transfers.
            4: [
                "ALTER TABLE calls ADD COLUMN wrap_up_code TEXT",
                "ALTER TABLE calls ADD COLUMN acw_s REAL",
                "ALTER TABLE calls ADD COLUMN transfers TEXT NOT NULL DEFAULT '[]'",
                "ALTER TABLE calls ADD COLUMN wrap_ups TEXT NOT NULL DEFAULT '[]'",
            ],
        }
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with db:
                db.execute("BEGIN IMMEDIATE")
                for sql in steps[target]:
                    db.execute(sql)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(target),))

    # --- at start (blocking, before serving) -------------------------------------

    def seed_agents(self, agents: Iterable[tuple[str, list[str], float | None]]) -> None:
        rows = list(agents)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE agents SET in_config = 0")
            self._db.executemany(
                "INSERT INTO agents (name, permissions, config_timeout_s, in_config)"
                " VALUES (?, ?, ?, 1) ON CONFLICT (name) DO UPDATE SET"
                " permissions = excluded.permissions,"
                " config_timeout_s = excluded.config_timeout_s, in_config = 1",
                [(name, json.dumps(sorted(perms)), timeout) for name, perms, timeout in rows],
            )

    def agents(self) -> list[AgentRecord]:
        out = []
        for row in self._db.execute("SELECT * FROM agents ORDER BY name"):
            admin = bool(row["admin_timeout_set"])
            out.append(
                AgentRecord(
                    name=row["name"],
                    permissions=json.loads(row["permissions"]),
                    admin_timeout_set=admin,
                    persistent_timeout_s=row["admin_timeout_s"]
                    if admin
                    else row["config_timeout_s"],
                    in_config=bool(row["in_config"]),
                )
            )
        return out

    def settings(self) -> dict[str, Any]:
        return {
            row["key"]: json.loads(row["value"])
            for row in self._db.execute("SELECT key, value FROM settings")
        }

    def close_unfinished(self, reason: str, ended_at: float) -> list[str]:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            ids = [
                row[0]
                for row in self._db.execute("SELECT call_id FROM calls WHERE ended_at IS NULL")
            ]
            self._db.execute(
                "UPDATE calls SET ended_at = ?, end_reason = ?, ended_by = 'platform'"
                " WHERE ended_at IS NULL",
                (ended_at, reason),
            )
        return ids

    # --- while running (queued to the writer thread) ----------------------------------

    def _submit(self, what: str, work: Callable[[], T]) -> Future[T]:
        if self._closed:
            # Only at shutdown, after the last call was written.
            logger.warning("storage closed: %s not written", what)
            done: Future[T] = Future()
            done.set_exception(StorageError("the storage is closed"))
            return done

        def timed() -> T:
            started = time.perf_counter()
            try:
                return work()
            finally:
                took = time.perf_counter() - started
                self.writes += 1
                self.write_s_max = max(self.write_s_max, took)

        future = self._pool.submit(timed)
        future.add_done_callback(lambda f: self._log_failure(what, f))
        return future

    @staticmethod
    def _log_failure(what: str, future: Future[Any]) -> None:
        if not future.cancelled() and (exc := future.exception()) is not None:
            logger.error("storage: %s failed: %s", what, exc, exc_info=exc)

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(sql, params)

    def put_setting(self, key: str, value: Any) -> None:
        self._submit(
            f"setting {key}",
            lambda: self._write(
                "INSERT INTO settings VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            ),
        )

    def put_agent_timeout(self, agent: str, timeout_s: float | None) -> None:
        self._submit(
            f"timeout of {agent}",
            lambda: self._write(
                "UPDATE agents SET admin_timeout_set = 1, admin_timeout_s = ? WHERE name = ?",
                (timeout_s, agent),
            ),
        )

    def put_call(self, record: CallRecord) -> None:
        row = _to_row(record)  # a snapshot: the record may change before the write runs
        placeholders = ", ".join("?" for _ in _CALL_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _CALL_COLUMNS[1:])
        sql = (
            f"INSERT INTO calls ({', '.join(_CALL_COLUMNS)}) VALUES ({placeholders})"
            f" ON CONFLICT (call_id) DO UPDATE SET {updates}"
        )
        self._submit(f"call {record.call_id}", lambda: self._write(sql, row))

    def put_status(self, change: StatusChange) -> None:
        row = (change.agent, change.status, change.reason, change.cause, change.at)
        self._submit(
            f"status {change.agent}",
            lambda: self._write("INSERT INTO status_changes VALUES (?, ?, ?, ?, ?)", row),
        )

    def _read_statuses(
        self, agent: str | None, limit: int, before: float | None
    ) -> list[StatusChange]:
        where: list[str] = []
        args: list[Any] = []
        if agent is not None:
            where.append("agent = ?")
            args.append(agent)
        if before is not None:
            where.append("at < ?")
            args.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT agent, status, reason, cause, at FROM status_changes {clause}"
            " ORDER BY at DESC LIMIT ?",
            (*args, limit),
        )
        return [StatusChange(*row) for row in rows]

    async def statuses(
        self, agent: str | None, limit: int, before: float | None = None
    ) -> list[StatusChange]:
        return await asyncio.wrap_future(
            self._submit("read statuses", lambda: self._read_statuses(agent, limit, before))
        )

    def _read_calls(self, limit: int, before: float | None) -> list[CallRecord]:
        if before is None:
            rows = self._db.execute(
                "SELECT * FROM calls ORDER BY created_at DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._db.execute(
                "SELECT * FROM calls WHERE created_at < ? ORDER BY created_at DESC LIMIT ?",
                (before, limit),
            )
        return [_from_row(r) for r in rows]

    async def calls(self, limit: int, before: float | None = None) -> list[CallRecord]:
        return await asyncio.wrap_future(
            self._submit("read calls", lambda: self._read_calls(limit, before))
        )

    def _read_call(self, call_id: str) -> CallRecord | None:
        row = self._db.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        return None if row is None else _from_row(row)

    async def call(self, call_id: str) -> CallRecord | None:
        return await asyncio.wrap_future(
            self._submit("read call", lambda: self._read_call(call_id))
        )

    # --- the sign-in lockout ------------------------------------------------------

    def sign_in_state(
        self, failed_since: float, now: float
    ) -> tuple[list[SignInFailure], list[SignInLock]]:
        self._prune_sign_in(failed_since, now)
        failures = [
            SignInFailure(r["scope"], r["user"], r["address"], r["at"])
            for r in self._db.execute(
                "SELECT scope, user, address, at FROM sign_in_failures ORDER BY at"
            )
        ]
        locks = [
            SignInLock(r["scope"], r["user"], r["address"], r["until"])
            for r in self._db.execute("SELECT scope, user, address, until FROM sign_in_locks")
        ]
        return failures, locks

    def put_sign_in_failures(self, failures: list[SignInFailure]) -> None:
        rows = [(f.scope, f.user, f.address, f.at) for f in failures]

        def write() -> None:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO sign_in_failures VALUES (?, ?, ?, ?)", rows)

        self._submit("sign-in failure", write)

    def put_sign_in_lock(self, lock: SignInLock) -> None:
        key = (lock.scope, lock.user, lock.address)

        def write() -> None:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "DELETE FROM sign_in_failures WHERE scope = ? AND user = ? AND address = ?",
                    key,
                )
                self._db.execute(
                    "INSERT INTO sign_in_locks VALUES (?, ?, ?, ?) ON CONFLICT"
                    " (scope, user, address) DO UPDATE SET until = excluded.until",
                    (*key, lock.until),
                )

        self._submit("sign-in lock", write)

    def clear_sign_in(self, scope: str, user: str, address: str) -> None:
        key = (scope, user, address)

        def write() -> None:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for table in ("sign_in_failures", "sign_in_locks"):
                    self._db.execute(
                        f"DELETE FROM {table} WHERE scope = ? AND user = ? AND address = ?", key
                    )

        self._submit("sign-in clear", write)

    def _prune_sign_in(self, failed_before: float, locked_before: float) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM sign_in_failures WHERE at < ?", (failed_before,))
            self._db.execute("DELETE FROM sign_in_locks WHERE until < ?", (locked_before,))

    def prune_sign_in(self, failed_before: float, locked_before: float) -> None:
        self._submit("sign-in prune", lambda: self._prune_sign_in(failed_before, locked_before))

    async def synced(self) -> None:
        await asyncio.wrap_future(self._submit("sync", lambda: None))

    def flush(self) -> None:
        """Block until every queued write is done (tests, shutdown)."""
        self._submit("flush", lambda: None).result()

    async def close(self) -> None:
        """Idempotent: waits for queued writes, then closes the file."""
        if self._closed:
            return
        await asyncio.get_running_loop().run_in_executor(None, self.flush)
        self._closed = True
        self._pool.shutdown(wait=True)
        self._db.close()
        self._lock_file.close()
        if self.temporary:
            shutil.rmtree(self.path.parent, ignore_errors=True)


def open_storage(path: Path | None) -> SqliteStorage:
    """The database at ``path``; None: a temporary one for this run only."""
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="agent-phone-platform-")) / "platform.sqlite3"
        logger.warning("storage: %s is temporary: nothing is kept after this run", path)
        return SqliteStorage(path, temporary=True)
    storage = SqliteStorage(path)
    logger.info("storage: %s (pid %d)", path, os.getpid())
    return storage
