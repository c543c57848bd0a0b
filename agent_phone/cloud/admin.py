"""The administrator's settings that can change while the platform runs, and
the authenticated HTTP API that changes them.

    GET  /admin/settings                        -> the timeouts now in force
    PUT  /admin/settings        {"persistent_timeout_s": 300}
    PUT  /admin/agents/{agent}  {"persistent_timeout_s": 120}   (null: back to the default)
    GET  /admin/calls?limit=50&before=T         -> call records, newest first
    GET  /admin/memory?collect=1                -> the process's memory (cloud/memory.py)

Changes are kept in storage (agent_phone/cloud/storage.py) and win over the
configuration file after a restart.

Every request carries ``Authorization: Bearer <admin token>``. A new timeout
applies from the next idle period of each connection (a connection already
counting down keeps its deadline), as docs/administration.md says.
"""

from __future__ import annotations

import hmac
import logging
import math
from typing import Any

import msgspec
from aiohttp import web

from agent_phone.cloud.config import PlatformConfig
from agent_phone.cloud.events import EventLog
from agent_phone.cloud.memory import MemoryMonitor
from agent_phone.cloud.proxies import TrustedProxies
from agent_phone.cloud.storage import Storage

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
MAX_TIMEOUT_S = 7 * 24 * 3600.0
#: Most call records one ``GET /admin/calls`` returns.
MAX_CALLS_PAGE = 500


class Timeouts:
    """The persistent-connection timeout for everyone, and per agent (R7)."""

    def __init__(self, config: PlatformConfig) -> None:
        self.default_s = config.persistent_timeout_s
        self.per_agent: dict[str, float] = {
            name: agent.persistent_timeout_s
            for name, agent in config.agents.items()
            if agent.persistent_timeout_s is not None
        }

    def for_agent(self, agent: str) -> float:
        return self.per_agent.get(agent, self.default_s)

    def restore(self, storage: Storage) -> None:
        """What an administrator changed before a restart wins over the file."""
        stored = storage.settings().get("persistent_timeout_s")
        if isinstance(stored, int | float):
            self.default_s = float(stored)
        for agent in storage.agents():
            if agent.in_config and agent.admin_timeout_set:
                if agent.persistent_timeout_s is None:
                    self.per_agent.pop(agent.name, None)
                else:
                    self.per_agent[agent.name] = agent.persistent_timeout_s


class _GlobalUpdate(msgspec.Struct, forbid_unknown_fields=True):
    persistent_timeout_s: float


class _AgentUpdate(msgspec.Struct, forbid_unknown_fields=True):
    persistent_timeout_s: float | None


def _valid_timeout(value: float | None) -> None:
    if value is not None and not 1.0 <= value <= MAX_TIMEOUT_S:
        raise web.HTTPBadRequest(
            text=f"persistent_timeout_s must be between 1 and {MAX_TIMEOUT_S:g} seconds"
        )


class AdminApi:
    def __init__(
        self,
        config: PlatformConfig,
        timeouts: Timeouts,
        events: EventLog,
        token: str,
        storage: Storage | None = None,
        memory: MemoryMonitor | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self._memory = memory
        self._proxies = proxies or TrustedProxies()
        self._config = config
        self._timeouts = timeouts
        self._events = events
        self._token = token
        self._storage = storage

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/admin/settings", self._get)
        app.router.add_put("/admin/settings", self._put_global)
        app.router.add_put("/admin/agents/{agent}", self._put_agent)
        app.router.add_get("/admin/calls", self._get_calls)
        app.router.add_get("/admin/statuses", self._get_statuses)
        app.router.add_get("/admin/memory", self._get_memory)

    def _check(self, request: web.Request) -> None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
            self._events.emit("admin_refused", path=request.path, peer=self._proxies.of(request))
            raise web.HTTPUnauthorized(text="a valid admin token is needed")

    async def _body(self, request: web.Request, kind: type[Any]) -> Any:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, request.content_length)
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, len(raw))
        try:
            return msgspec.json.decode(raw, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise web.HTTPBadRequest(text=f"invalid body: {exc}") from None

    def _state(self) -> dict[str, Any]:
        return {
            "persistent_timeout_s": self._timeouts.default_s,
            "alert_timeout_s": self._config.alert_timeout_s,
            "agents": {
                name: {"persistent_timeout_s": self._timeouts.for_agent(name)}
                for name in sorted(self._config.agents)
            },
        }

    async def _get_memory(self, request: web.Request) -> web.Response:
        self._check(request)
        if self._memory is None:
            raise web.HTTPNotFound(text="no memory monitor")
        collect = request.query.get("collect", "0")
        if collect not in ("0", "1"):
            raise web.HTTPBadRequest(text="collect must be 0 or 1")
        return web.json_response(await self._memory.snapshot(collect == "1"))

    async def _get(self, request: web.Request) -> web.Response:
        self._check(request)
        return web.json_response(self._state())

    async def _put_global(self, request: web.Request) -> web.Response:
        self._check(request)
        update = await self._body(request, _GlobalUpdate)
        _valid_timeout(update.persistent_timeout_s)
        self._timeouts.default_s = update.persistent_timeout_s
        if self._storage is not None:
            self._storage.put_setting("persistent_timeout_s", update.persistent_timeout_s)
        self._events.emit("settings_changed", persistent_timeout_s=update.persistent_timeout_s)
        return web.json_response(self._state())

    async def _put_agent(self, request: web.Request) -> web.Response:
        self._check(request)
        agent = request.match_info["agent"]
        if agent not in self._config.agents:
            raise web.HTTPNotFound(text=f"there is no agent {agent!r}")
        update = await self._body(request, _AgentUpdate)
        _valid_timeout(update.persistent_timeout_s)
        if update.persistent_timeout_s is None:
            self._timeouts.per_agent.pop(agent, None)
        else:
            self._timeouts.per_agent[agent] = update.persistent_timeout_s
        if self._storage is not None:
            self._storage.put_agent_timeout(agent, update.persistent_timeout_s)
        self._events.emit(
            "settings_changed", agent=agent, persistent_timeout_s=update.persistent_timeout_s
        )
        return web.json_response(self._state())

    async def _get_statuses(self, request: web.Request) -> web.Response:
        """Status changes, newest first, of ``agent`` or everyone; page on
        with ``before`` = the last change's ``at``."""
        self._check(request)
        if self._storage is None:
            raise web.HTTPNotFound(text="this platform keeps no records")
        limit, before = self._page(request)
        agent = request.query.get("agent")
        changes = [c.as_dict() for c in await self._storage.statuses(agent, limit, before)]
        next_before = changes[-1]["at"] if len(changes) == limit else None
        return web.json_response({"statuses": changes, "next_before": next_before})

    def _page(self, request: web.Request) -> tuple[int, float | None]:
        try:
            limit = int(request.query.get("limit", "50"))
            before = float(request.query["before"]) if "before" in request.query else None
        except ValueError:
            raise web.HTTPBadRequest(text="limit must be an integer, before a time") from None
        if before is not None and not math.isfinite(before):
            raise web.HTTPBadRequest(text="before must be a finite time")
        if not 1 <= limit <= MAX_CALLS_PAGE:
            raise web.HTTPBadRequest(text=f"limit must be between 1 and {MAX_CALLS_PAGE}")
        return limit, before

    async def _get_calls(self, request: web.Request) -> web.Response:
        """Call records, newest first; page on with ``before`` = the last
        record's ``created_at``."""
        self._check(request)
        if self._storage is None:
            raise web.HTTPNotFound(text="this platform keeps no call records")
        limit, before = self._page(request)
        records = await self._storage.calls(limit, before)
        calls = [r.as_dict() for r in records]
        next_before = calls[-1]["created_at"] if len(calls) == limit else None
        return web.json_response({"calls": calls, "next_before": next_before})
