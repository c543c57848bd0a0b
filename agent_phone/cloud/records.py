"""Call records (every customer call, kept in storage from queue to end)
and status records (every change of an agent's status, for reporting).

The recorder follows the platform's own event stream (the contract in
docs/protocol.md), so routing stays free of bookkeeping: each ``call_*``
event updates the call's record and the record is written at once (queued to
the storage's writer thread). While a call is connected it also samples the
quality of the agent's connection every ``QUALITY_INTERVAL_S`` and stores the
figures of the call's end with the record. The agent's phone reports what
the agent heard after the call (``quality_report``); that goes with the
record too (``heard_by_agent``), for a call that agent answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec

from agent_phone.cloud.errors import RequestError
from agent_phone.cloud.events import EventLog
from agent_phone.cloud.media_edge import AgentLink, LinkState
from agent_phone.cloud.storage import CallRecord, StatusChange, Storage
from agent_phone.media.quality import CallQuality, StatsSample, sample
from agent_phone.protocol import QualityReport
from agent_phone.tasks import TaskSet

logger = logging.getLogger(__name__)

QUALITY_INTERVAL_S = 2.0
#: Ended calls kept for their agent's late report: this many, the newest.
RECENT_CALLS = 1000

_ENDED_BY = {"customer_hangup": "customer", "declined": "customer", "agent_hangup": "agent"}


class _Quality:
    """Samples one connection for the length of one call."""

    def __init__(self, link: AgentLink) -> None:
        self.link = link
        self.start: StatsSample | None = None
        self.latest: StatsSample | None = None
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self.start = await sample(self.link.pc)
        self.latest = self.start
        while self.link.state is not LinkState.CLOSED:
            await asyncio.sleep(QUALITY_INTERVAL_S)
            self.latest = await sample(self.link.pc)

    def result(self) -> dict[str, Any] | None:
        if self.start is None or self.latest is None:
            return None
        return CallQuality.since(self.start, self.latest).as_dict()


class CallRecorder:
    def __init__(
        self,
        events: EventLog,
        storage: Storage,
        link_of: Callable[[str], AgentLink | None],
    ) -> None:
        self._events = events
        self._storage = storage
        self._link_of = link_of
        self.open: dict[str, CallRecord] = {}
        #: Calls ended lately, for the report the agent's phone sends after.
        self._recent: OrderedDict[str, CallRecord] = OrderedDict()
        self._quality: dict[str, _Quality] = {}
        #: Everyone who had each open or recent call (a transfer hands it on).
        self._answerers: dict[str, set[str]] = {}
        self._tasks = TaskSet("records")
        self._unsubscribe = events.subscribe(self._on_event)

    def _on_event(self, e: dict[str, Any]) -> None:
        name = e.get("event")
        call_id = e.get("call_id")
        if name == "after_call_work" and isinstance(call_id, str):
            self._wrapped_up(call_id, e)
            return
        if not isinstance(name, str) or not name.startswith("call_") or call_id is None:
            return
        if name == "call_queued":
            self.open[call_id] = CallRecord(
                call_id=call_id, caller=e["caller"], queue=e["queue"], created_at=e["t"]
            )
        elif name == "call_dialed":
            self.open[call_id] = CallRecord(
                call_id=call_id,
                caller=e.get("to") or e["number"],
                queue="",
                created_at=e["t"],
                queued_count=0,
                direction=e.get("direction", "outbound"),
            )
        record = self.open.get(call_id)
        if record is None:
            return
        if name in ("call_queued", "call_dialed"):
            pass
        elif name == "call_ringing":
            record.delivery_ms = e.get("delivery_ms")
            record.over_persistent_connection = e.get("over_persistent_connection")
        elif name == "call_requeued":
            record.queued_count += 1
            record.requeue_reasons.append(str(e.get("reason")))
            self._stop_quality(call_id)
        elif name == "call_delivered":
            record.offered_to.append(e["agent"])
            record.delivery_ms = e.get("delivery_ms")
            record.over_persistent_connection = e.get("over_persistent_connection")
        elif name == "call_answered":
            # (again after a consult transfer or a conference: the agent who
            # has the customer now, measured on their connection)
            self._answerers.setdefault(call_id, set()).add(e["agent"])
            record.answered_by = e["agent"]
            record.answered_at = e["t"]
            self._stop_quality(call_id)
            self._start_quality(call_id, e["agent"])
        elif name == "call_transferred":
            record.transfers.append(
                {"from": e["from"], "to": e["to"], "consult": e["consult"], "at": e["t"]}
            )
        elif name == "call_ended":
            record.ended_at = e["t"]
            record.end_reason = e["reason"]
            record.ended_by = _ENDED_BY.get(e["reason"], "platform")
            self.open.pop(call_id, None)
            self._recent[call_id] = record
            while len(self._recent) > RECENT_CALLS:
                old, _ = self._recent.popitem(last=False)
                self._answerers.pop(old, None)
            self._storage.put_call(record)
            quality = self._stop_quality(call_id)
            if quality is not None:
                self._tasks.spawn(self._finish(record, quality), f"finish-{call_id}")
            return
        else:
            return
        self._storage.put_call(record)

    def _wrapped_up(self, call_id: str, e: dict[str, Any]) -> None:
        """The agent's after-call work on the call ended: its code (None when
        it timed out) and its length go with the record."""
        record = self.open.get(call_id) or self._recent.get(call_id)
        if record is None:
            logger.warning("%s: after-call work for a call with no record", call_id)
            return
        record.wrap_ups.append(
            {"agent": e["agent"], "code": e.get("code"), "acw_s": e.get("acw_s")}
        )
        if e["agent"] == record.answered_by:  # (the agent who had the customer last)
            record.wrap_up_code = e.get("code")
            record.acw_s = e.get("acw_s")
        self._storage.put_call(record)

    def _start_quality(self, call_id: str, agent: str) -> None:
        link = self._link_of(agent)
        if link is None:
            return
        quality = _Quality(link)
        self._quality[call_id] = quality
        quality.task = self._tasks.spawn(quality.run(), f"quality-{call_id}")

    def _stop_quality(self, call_id: str) -> _Quality | None:
        quality = self._quality.pop(call_id, None)
        if quality is not None and quality.task is not None:
            quality.task.cancel()
        return quality

    async def _finish(self, record: CallRecord, quality: _Quality) -> None:
        """The call's quality, added to its (already stored) record."""
        if quality.start is None:
            return
        try:
            # The link's counters outlive its close; a last sample covers
            # the end of the call.
            quality.latest = await sample(quality.link.pc)
        except Exception as exc:  # the last sample is a bonus, never a loss
            logger.info("%s: no final stats: %s", record.call_id, exc)
        record.quality = quality.result()
        if record.quality is not None:
            self._events.emit("call_quality", call_id=record.call_id, **record.quality)
            self._storage.put_call(record)

    def heard_by_agent(self, agent: str, report: QualityReport) -> None:
        """The phone's account of what ``agent`` heard on one of their calls."""
        record = self.open.get(report.call_id) or self._recent.get(report.call_id)
        if record is None:
            raise RequestError(
                "unknown_call", f"there is no call {report.call_id!r}", report.call_id
            )
        if agent not in self._answerers.get(report.call_id, set()):
            raise RequestError(
                "not_your_call", f"call {report.call_id!r} is not yours", report.call_id
            )
        if record.answered_by != agent:
            # An agent who handed the call on: the record keeps what the
            # agent who had it last heard.
            logger.info("%s: %s's report kept out of the record", report.call_id, agent)
            return
        record.heard_by_agent = msgspec.structs.asdict(report.heard)
        self._events.emit(
            "call_heard", call_id=record.call_id, agent=agent, **record.heard_by_agent
        )
        self._storage.put_call(record)

    async def close(self) -> None:
        self._unsubscribe()
        await self._tasks.close()


class StatusRecorder:
    """Keeps each ``status_changed`` event in storage, as it happens."""

    def __init__(self, events: EventLog, storage: Storage) -> None:
        self._storage = storage
        self._unsubscribe = events.subscribe(self._on_event)

    def _on_event(self, e: dict[str, Any]) -> None:
        if e.get("event") == "status_changed":
            self._storage.put_status(
                StatusChange(
                    agent=e["agent"],
                    status=e["status"],
                    reason=e["reason"],
                    cause=e["cause"],
                    at=e["t"],
                )
            )

    def close(self) -> None:
        self._unsubscribe()
