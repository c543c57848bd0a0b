"""The agent's call history, kept across restarts (no Qt in it).

``CallHistory`` is an engine observer (``engine.subscribe(history.on_event)``):
each offered call becomes one ``CallRecord`` when it ends: when it was
offered, the caller, the queue, the talk time, whether it was answered
(``missed`` when not), the end reason, whether it came over the persistent
connection, and its delivery time (routed at the platform -> alerting here).

Records are JSON lines appended to one file (by default
``call-history.jsonl`` in the user data directory, platformdirs), one
``write`` + ``flush`` per call, so a crash loses at most the call in
progress and a torn last line is skipped on reading. The file is bounded:
past ``2 * limit`` lines it is rewritten with the newest ``limit``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import platformdirs

from agent_phone.phone import events

logger = logging.getLogger(__name__)

APP_NAME = "agent-phone"
FILE_NAME = "call-history.jsonl"
LIMIT = 1000


def default_path() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / FILE_NAME


@dataclass(frozen=True)
class CallRecord:
    call_id: str
    #: When the call was offered (Unix time).
    time: float
    caller: str
    queue: str
    answered: bool
    auto_answered: bool
    #: Talk time; 0 for a call that was not answered.
    duration_s: float
    end_reason: str
    over_persistent_connection: bool
    #: Routed at the platform -> alerting at the phone.
    delivery_ms: float
    #: ``inbound`` or ``outbound`` (then ``caller`` is the number dialed).
    direction: str = "inbound"

    @property
    def outcome(self) -> str:
        """``answered``, ``declined`` or ``missed``."""
        if self.answered:
            return "answered"
        return "declined" if self.end_reason == "declined" else "missed"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


Listener = Callable[[CallRecord], None]


class CallHistory:
    """Calls as the engine reports them, appended to ``path`` as they end."""

    def __init__(self, path: Path | None = None, limit: int = LIMIT) -> None:
        self.path = path or default_path()
        self.limit = limit
        self._records: list[CallRecord] = []
        self._listeners: list[Listener] = []
        self._lines = 0
        self._load()

    def records(self) -> list[CallRecord]:
        """Every kept call, newest first."""
        return list(reversed(self._records))

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # --- engine events ----------------------------------------------------------------

    def on_event(self, event: events.PhoneEvent) -> None:
        if isinstance(event, events.CallChanged) and event.state == "ended":
            self.add(
                CallRecord(
                    call_id=event.call_id,
                    time=event.started_at,
                    caller=event.peer,
                    queue=event.queue,
                    answered=event.answered,
                    auto_answered=event.auto_answer,
                    duration_s=event.duration_s,
                    end_reason=event.reason,
                    over_persistent_connection=event.over_persistent_connection,
                    delivery_ms=event.delivery_ms,
                    direction=event.direction,
                )
            )

    def add(self, record: CallRecord) -> None:
        self._records.append(record)
        del self._records[: -self.limit]
        try:
            self._append(record)
        except OSError as exc:
            logger.error("cannot write the call history to %s: %s", self.path, exc)
        logger.info(
            "history: %s from %s %s (%s)",
            record.call_id,
            record.caller,
            record.outcome,
            record.end_reason,
        )
        for listener in list(self._listeners):
            listener(record)

    # --- the file ---------------------------------------------------------------------

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.error("cannot read the call history %s: %s", self.path, exc)
            return
        skipped = 0
        for line in lines:
            try:
                self._records.append(CallRecord.from_json(json.loads(line)))
            except (ValueError, TypeError):
                skipped += 1  # a torn last line after a crash, or a hand edit
        if skipped:
            logger.warning("call history %s: %d unreadable line(s) skipped", self.path, skipped)
        del self._records[: -self.limit]
        self._lines = len(lines)

    def _append(self, record: CallRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._lines + 1 > 2 * self.limit:
            self._rewrite()
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(record)) + "\n")
            f.flush()
        self._lines += 1

    def _rewrite(self) -> None:
        temp = self.path.with_suffix(".tmp")
        with temp.open("w", encoding="utf-8") as f:
            for record in self._records:
                f.write(json.dumps(asdict(record)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        temp.replace(self.path)
        self._lines = len(self._records)
