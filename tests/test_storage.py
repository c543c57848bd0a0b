"""The storage module and the network emulator's settings, in-process."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from agent_phone.cloud import storage as storage_module
from agent_phone.cloud.storage import (
    CallRecord,
    SqliteStorage,
    Storage,
    StorageError,
    open_storage,
)
from agent_phone.media import netem


def test_sqlite_storage_implements_the_interface(tmp_path: Path) -> None:
    storage: Storage = SqliteStorage(tmp_path / "db.sqlite3")  # mypy checks the Protocol
    assert storage.location.endswith("db.sqlite3")


def test_admin_changes_win_over_the_file_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    first = SqliteStorage(path)
    first.seed_agents([("alice", ["p"], None), ("bob", [], 300.0), ("carol", [], 200.0)])
    first.put_setting("persistent_timeout_s", 42.0)
    first.put_agent_timeout("alice", 60.0)
    first.put_agent_timeout("bob", None)  # back to the platform's default
    first.flush()
    first._db.close()
    first._lock_file.close()  # as a killed process would leave it

    second = SqliteStorage(path)
    # The file now drops carol and gives bob another timeout.
    second.seed_agents([("alice", ["p"], 10.0), ("bob", [], 500.0)])
    agents = {a.name: a for a in second.agents()}
    assert agents["alice"].persistent_timeout_s == 60.0 and agents["alice"].admin_timeout_set
    assert agents["bob"].persistent_timeout_s is None and agents["bob"].admin_timeout_set
    assert agents["carol"].in_config is False  # kept for its call records
    assert second.settings() == {"persistent_timeout_s": 42.0}


async def test_calls_left_open_are_closed_and_paged_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    storage = SqliteStorage(path)
    now = time.time()
    for i in range(5):
        record = CallRecord(f"call-{i}", "c", "support", created_at=now + i)
        if i % 2 == 0:
            record.ended_at, record.end_reason, record.ended_by = now + i + 1, "x", "customer"
        storage.put_call(record)
    assert [r.call_id for r in await storage.calls(2)] == ["call-4", "call-3"]
    page2 = await storage.calls(2, before=now + 3)
    assert [r.call_id for r in page2] == ["call-2", "call-1"]
    await storage.close()

    again = SqliteStorage(path)
    assert sorted(again.close_unfinished("platform_restart", now + 10)) == ["call-1", "call-3"]
    closed = await again.call("call-3")
    assert closed is not None and closed.end_reason == "platform_restart"
    assert closed.ended_by == "platform" and closed.ended_at == now + 10
    assert again.close_unfinished("platform_restart", now + 20) == []
    await again.close()
    await again.close()  # idempotent


def test_one_database_one_platform(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    first = SqliteStorage(path)
    with pytest.raises(StorageError, match="in use by another platform"):
        SqliteStorage(path)
    assert first.agents() == []


async def test_the_demo_database_is_temporary() -> None:
    storage = open_storage(None)
    folder = storage.path.parent
    assert folder.is_dir()
    await storage.close()
    assert not folder.exists()


def test_netem_settings_parse_and_refuse() -> None:
    imp = netem.parse("loss=0.05,delay_ms=75,jitter_ms=5,seed=1")
    assert imp == netem.Impairment(loss=0.05, delay_ms=75, jitter_ms=5, seed=1)
    assert netem.parse("").inert and netem.parse("cut=1").cut
    for bad, words in (
        ("loss=2", "bad value for loss"),
        ("delay=5", "unknown key 'delay'"),
        ("loss", "not key=value"),
        ("seed=x", "bad value for seed"),
    ):
        with pytest.raises(netem.NetemError, match=words):
            netem.parse(bad)
    assert netem.install_from_env({}) is None  # unset: nothing is touched


def test_netem_drops_at_the_given_rate_and_cuts_from_its_file(tmp_path: Path) -> None:
    control = tmp_path / "netem"
    settings = netem._Settings(netem.parse("loss=0.05,delay_ms=75,jitter_ms=5,seed=3"), control)
    fates = [settings.fate() for _ in range(20000)]
    kept = [f for f in fates if f is not None]
    assert 0.04 < 1 - len(kept) / len(fates) < 0.06
    assert 0.070 <= min(kept) and max(kept) <= 0.080
    control.write_text("cut=1")
    time.sleep(netem.FILE_CHECK_S + 0.05)
    assert all(settings.fate() is None for _ in range(100))
    control.write_text("")  # empty: back to the environment's settings
    time.sleep(netem.FILE_CHECK_S + 0.05)
    assert any(settings.fate() is not None for _ in range(100))


def test_netem_bursts_keep_the_loss_rate_and_lengthen_the_runs() -> None:
    def runs(spec: str) -> tuple[float, float]:
        settings = netem._Settings(netem.parse(spec), None)
        lost = [settings.fate() is None for _ in range(40000)]
        lengths = [len(list(g)) for k, g in itertools.groupby(lost) if k]
        return sum(lost) / len(lost), sum(lengths) / len(lengths)

    rate, mean_run = runs("loss=0.05,burst=4,seed=5")
    assert 0.04 < rate < 0.06 and 3.4 < mean_run < 4.6
    rate, mean_run = runs("loss=0.05,seed=5")  # burst=1: independent losses
    assert 0.04 < rate < 0.06 and mean_run < 1.2
    with pytest.raises(netem.NetemError, match="bad value for burst"):
        netem.parse("loss=0.05,burst=0.5")


def test_a_version_1_database_gains_what_the_agent_heard(tmp_path: Path) -> None:
    """A platform's database from before call records kept ``heard_by_agent``
    (version 2), ``direction`` (3) and the wrap-up code (4) opens, keeps its
    records, and stores the new fields from then on."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    schema = (
        storage_module._SCHEMA.replace(",\n    heard_by_agent TEXT", "")
        .replace(",\n    direction TEXT NOT NULL DEFAULT 'inbound'", "")
        .replace(",\n    wrap_up_code TEXT", "")
        .replace(",\n    acw_s REAL", "")
        .replace(",\n    transfers TEXT NOT NULL DEFAULT '[]'", "")
        .replace(",\n    wrap_ups TEXT NOT NULL DEFAULT '[]'", "")
    )
    assert "heard_by_agent" not in schema and "direction" not in schema
    assert "wrap_up_code" not in schema and "wrap_ups" not in schema
    db.executescript(schema)
    db.execute("INSERT INTO meta VALUES ('schema', '1')")
    new = ("heard_by_agent", "direction", "wrap_up_code", "acw_s", "transfers", "wrap_ups")
    columns = [c for c in storage_module._CALL_COLUMNS if c not in new]
    db.execute(
        f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        ("call-old", "dana", "support", 1.0, 1, "[]", "[]") + (None,) * (len(columns) - 7),
    )
    db.commit()
    db.close()

    upgraded = storage_module.SqliteStorage._open(path)
    version = upgraded.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
    assert version == str(storage_module.SCHEMA_VERSION) == "4"
    row = upgraded.execute("SELECT * FROM calls WHERE call_id = 'call-old'").fetchone()
    record = storage_module._from_row(row)
    assert record.caller == "dana" and record.heard_by_agent is None
    assert record.direction == "inbound" and record.wrap_up_code is None
    assert record.transfers == []
    heard = {"concealed_samples": 960, "grade": "good"}
    record.heard_by_agent = heard
    record.wrap_up_code = "resolved"
    upgraded.execute(
        f"INSERT OR REPLACE INTO calls ({', '.join(storage_module._CALL_COLUMNS)})"
        f" VALUES ({', '.join('?' * len(storage_module._CALL_COLUMNS))})",
        storage_module._to_row(record),
    )
    row = upgraded.execute("SELECT * FROM calls WHERE call_id = 'call-old'").fetchone()
    assert storage_module._from_row(row).wrap_up_code == "resolved"
    assert storage_module._from_row(row).heard_by_agent == {
        "concealed_samples": 960,
        "grade": "good",
    }
    upgraded.close()
