"""The platform's network face: one WebSocket endpoint for phones and trunks.

The first message decides who the peer is: ``sign_in`` makes it an agent's
phone, ``place_call`` a customer's trunk. Each message is validated by the
protocol codec; anything refused is answered with an ``error`` message and
the connection stays open (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import WSMsgType, web

from agent_phone.cloud.admin import AdminApi, Timeouts
from agent_phone.cloud.auth import SessionTokens
from agent_phone.cloud.config import PlatformConfig
from agent_phone.cloud.connections import ConnectionManager
from agent_phone.cloud.errors import RequestError
from agent_phone.cloud.events import EventLog
from agent_phone.cloud.lockout import SignInGuard
from agent_phone.cloud.memory import MemoryMonitor
from agent_phone.cloud.proxies import TrustedProxies
from agent_phone.cloud.ratelimit import CLOSE_POLICY, MessageRateLimit, Verdict
from agent_phone.cloud.records import CallRecorder, StatusRecorder
from agent_phone.cloud.routing import Router
from agent_phone.cloud.sessions import (
    AgentSession,
    CallerSession,
    SessionServices,
    error_for,
    log_refusal,
    resume_session,
)
from agent_phone.cloud.storage import PLATFORM_RESTART, Storage, default_path, open_storage
from agent_phone.cloud.tls import fingerprint_of, server_ssl_context
from agent_phone.cloud.web import CallTokens, ClickToCall
from agent_phone.media.ice import restrict_ice_addresses
from agent_phone.protocol import (
    MAX_MESSAGE_BYTES,
    Error,
    Message,
    ProtocolError,
    ResumeSession,
    decode_from_agent,
    decode_from_caller,
    encode,
    peek_type,
)
from agent_phone.tasks import TaskSet
from agent_phone.tls import is_loopback_host

logger = logging.getLogger(__name__)

#: Beyond this aiohttp closes the socket (code 1009); between the protocol's
#: limit and this, the message is refused with an error and the socket stays.
_TRANSPORT_MAX_BYTES = 16 * MAX_MESSAGE_BYTES


class Outbox:
    """Messages to one peer, sent in order by one owned writer task.

    Routing code sends without awaiting; a peer that stops reading is cut off
    once ``limit`` messages wait, rather than growing memory without bound.
    """

    def __init__(self, ws: web.WebSocketResponse, limit: int = 1000) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[str] = asyncio.Queue(limit)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox")

    def put(self, text: str) -> None:
        if self._ws.closed:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            logger.warning("peer is not reading its messages: closing")
            self._task.cancel()
            asyncio.get_running_loop().create_task(self._ws.close(code=1008))

    async def _run(self) -> None:
        while True:
            text = await self._queue.get()
            try:
                await self._ws.send_str(text)
            except ConnectionError:
                return
            finally:
                self._queue.task_done()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def flush_and_close(
        self, timeout: float = 2.0, code: int = 1000, reason: str = ""
    ) -> None:
        """Send what is queued (a ``signed_out`` saying why), then close."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            pass
        await self._ws.close(code=code, message=reason.encode()[:120])


class InsecureListenError(ValueError):
    """Plain ws:// asked for on an address other machines can reach."""


class Platform:
    """Builds the platform's parts and serves them."""

    def __init__(
        self,
        config: PlatformConfig,
        events: EventLog | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.config = config
        self.events = events or EventLog()
        self.agents: dict[str, AgentSession] = {}
        # Durable state first: a database that cannot be used stops the start.
        self.storage = storage or open_storage(storage_path(config))
        self.storage.seed_agents(
            (a.name, sorted(a.permissions), a.persistent_timeout_s) for a in config.agents.values()
        )
        self.timeouts = Timeouts(config)
        self.timeouts.restore(self.storage)
        # Hex, not url-safe base64: a token that begins with "-" would be read
        # as an option by `agent-phone-caller --trunk-token TOKEN`.
        self.admin_token = config.admin_token or secrets.token_hex(24)
        self.trunk_token = config.trunk_token or secrets.token_hex(24)
        self.connections = ConnectionManager(config, self.events, self.timeouts)
        self.router = Router(
            config, self.events, self.connections, lambda: list(self.agents.values())
        )
        self.records = CallRecorder(self.events, self.storage, self.connections.link)
        self.status_records = StatusRecorder(self.events, self.storage)
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.url = ""
        self.tokens = SessionTokens(config.token_lifetime_s)
        self.guard = SignInGuard(config, self.storage)
        #: Whose X-Forwarded-For names the client (proxies.py).
        self.proxies = TrustedProxies(config.trusted_proxies)
        self.tasks = TaskSet("platform")
        #: All a session may use of the platform.
        self.services = SessionServices(
            config=config,
            events=self.events,
            agents=self.agents,
            tokens=self.tokens,
            guard=self.guard,
            connections=self.connections,
            router=self.router,
            records=self.records,
            tasks=self.tasks,
            trunk_token=self.trunk_token,
            numbers={},
            call_tokens=CallTokens(),
        )
        self.memory = MemoryMonitor(
            self.events, config.memory_report_s, self._counts, config.gc_collect_s
        )
        restrict_ice_addresses(config.ice_addresses)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port``; raises InsecureListenError (before binding)
        for plain ws:// on a non-loopback address, TlsError for a bad
        certificate or key."""
        tls = self.config.tls_cert_file is not None and self.config.tls_key_file is not None
        if not tls and not is_loopback_host(host):
            raise InsecureListenError(
                f"refusing to serve plain ws:// on {host}: only loopback addresses may go "
                "without TLS; give [tls] cert_file and key_file in the configuration, "
                "or use --dev-tls"
            )
        ssl_context = None
        fingerprint = None
        if tls:
            assert self.config.tls_cert_file is not None and self.config.tls_key_file is not None
            ssl_context = server_ssl_context(self.config.tls_cert_file, self.config.tls_key_file)
            fingerprint = fingerprint_of(self.config.tls_cert_file)
        app = web.Application()
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/health", self._health)
        ClickToCall(
            self.config,
            self.events,
            self.services.call_tokens,
            self._origin_refused,
            self.proxies.of,
        ).add_routes(app)
        AdminApi(
            config=self.config,
            timeouts=self.timeouts,
            events=self.events,
            token=self.admin_token,
            storage=self.storage,
            memory=self.memory,
            proxies=self.proxies,
        ).add_routes(app)
        # Calls a previous run left open (it was killed) are ended, never lost.
        if closed := self.storage.close_unfinished(PLATFORM_RESTART, time.time()):
            self.events.emit("calls_closed", reason=PLATFORM_RESTART, call_ids=closed)
        if any(self.guard.restored):
            locks, failures = self.guard.restored
            self.events.emit("sign_in_lockout_restored", locks=locks, failures=failures)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        bound = server.sockets[0].getsockname()  # type: ignore[attr-defined]
        where = f"[{host}]" if ":" in host else host
        self.url = f"{'wss' if tls else 'ws'}://{where}:{bound[1]}/ws"
        self.events.emit(
            "ready",
            url=self.url,
            admin_url=f"{'https' if tls else 'http'}://{where}:{bound[1]}/admin",
            # The customers' web page, when a queue has one (web.py).
            click_to_call_url=(
                f"{'https' if tls else 'http'}://{where}:{bound[1]}/call"
                if self.config.click_to_call_queues
                else None
            ),
            # Shown only when the configuration names none: the operator's
            # console is the one place it is printed.
            admin_token=None if self.config.admin_token else self.admin_token,
            trunk_token=None if self.config.trunk_token else self.trunk_token,
            tls_cert=str(self.config.tls_cert_file) if tls else None,
            tls_fingerprint=fingerprint,
            config=self.config.source,
            queues=sorted(self.config.queues),
            agents=sorted(self.config.agents),
            persistent_timeout_s=self.timeouts.default_s,
            alert_timeout_s=self.config.alert_timeout_s,
            database=self.storage.location,
        )
        self.memory.start()
        return self.url

    def _counts(self) -> dict[str, int]:
        return {
            "agents": len(self.agents),
            "calls": len(self.router.calls),
            "sockets": len(self._sockets),
            **self.connections.counts(),
        }

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "agents": len(self.agents)})

    def _origin_refused(self, request: web.Request) -> str:
        """Why a web page's script may not open the WebSocket ('' if it may).

        A browser names the page's origin; a page of another site than the
        platform's own, and not in ``allowed_origins``, could otherwise use a
        visitor's browser to talk to the platform. Clients that send no
        ``Origin`` (the phone, the caller) are not web pages."""
        origin = request.headers.get("Origin")
        if origin is None:
            return ""
        allowed = self.config.allowed_origins
        own = f"{request.scheme}://{request.host}".lower()
        if origin.lower() == own or "*" in allowed or origin.lower() in allowed:
            return ""
        return (
            f"origin {origin[:200]!r} is not allowed: the platform's"
            " [platform] allowed_origins lists the web pages that may connect"
        )

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if refused := self._origin_refused(request):
            self.events.emit(
                "origin_refused",
                origin=request.headers.get("Origin", "")[:200],
                address=self.proxies.of(request),
            )
            return web.Response(status=403, text=refused + "\n")
        ws = web.WebSocketResponse(max_msg_size=_TRANSPORT_MAX_BYTES, heartbeat=5.0)
        await ws.prepare(request)
        self._sockets.add(ws)

        outbox = Outbox(ws)

        def send(message: Message) -> None:
            outbox.put(encode(message))

        session: AgentSession | CallerSession | None = None
        # The lockout counts by this address: the socket's peer, or the
        # client a trusted reverse proxy names (proxies.py).
        peer = self.proxies.of(request)
        binding: object = None
        limit = MessageRateLimit(self.config.rate_limit)
        try:
            async for frame in ws:
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    verdict = limit.check()
                    if verdict is not Verdict.ACCEPT:
                        if await self._over_limit(verdict, limit, session, send, outbox):
                            break
                        continue
                if frame.type is not WSMsgType.TEXT:
                    if frame.type is WSMsgType.BINARY:
                        send(Error(code="malformed", message="binary frames are not accepted"))
                    continue
                data: str = frame.data
                if session is None:
                    first = peek_type(data) if len(data) <= MAX_MESSAGE_BYTES else None
                    if first in ("place_call", "await_calls"):
                        session = CallerSession(self.services, send, peer=peer)
                    elif first in ("sign_in", "resume_session"):
                        session = AgentSession(
                            self.services, send, outbox.flush_and_close, peer=peer
                        )
                        binding = session.binding
                decode = (
                    decode_from_caller if isinstance(session, CallerSession) else decode_from_agent
                )
                kind = None
                try:
                    message = decode(data)
                    kind = str(type(message).__struct_config__.tag)
                    if session is None:
                        raise RequestError("not_signed_in", "sign in (or place a call) first")
                    if isinstance(message, ResumeSession) and isinstance(session, AgentSession):
                        session = resume_session(self.services, session, message)
                        continue
                    await session.handle(message)
                except ProtocolError as exc:
                    self.events.emit("protocol_error", code=exc.code, message=exc.message)
                    send(Error(code=exc.code, message=exc.message, in_reply_to=exc.in_reply_to))
                except RequestError as exc:
                    log_refusal(self.events, session, kind, exc)
                    send(error_for(exc, kind))
        finally:
            self._sockets.discard(ws)
            await outbox.close()
            if isinstance(session, AgentSession):
                # Kept for a resume within the grace period (docs/protocol.md).
                await session.transport_lost(binding)
            elif isinstance(session, CallerSession):
                await session.gone()
        return ws

    async def _over_limit(
        self,
        verdict: Verdict,
        limit: MessageRateLimit,
        session: AgentSession | CallerSession | None,
        send: Callable[[Message], None],
        outbox: Outbox,
    ) -> bool:
        """A message over the peer's rate limit is dropped; True: closed for abuse."""
        rate = limit.config
        who = session.name if isinstance(session, AgentSession) else None
        if verdict is Verdict.CLOSE:
            reason = f"rate limit: over {rate.abuse_count} messages in {rate.abuse_s:g} s; closing"
            self.events.emit("peer_closed", reason="abusive", agent=who, dropped=limit.dropped)
            send(Error(code="rate_limited", message=reason))
            if isinstance(session, AgentSession):
                # Not kept for a resume: an abusive peer's session ends here
                # (its call, if any, goes back to the queue).
                await session.sign_out("rate_limited")
            await outbox.flush_and_close(1.0, CLOSE_POLICY, reason)
            return True
        if verdict is Verdict.DROP_AND_TELL:
            dropped = limit.told()
            self.events.emit("rate_limited", agent=who, dropped=dropped)
            send(
                Error(
                    code="rate_limited",
                    message=f"over {rate.rate:g} messages a second (bursts of {rate.burst}): "
                    f"{dropped} message(s) dropped",
                )
            )
        return False

    async def close(self) -> None:
        await self.memory.close()
        for session in list(self.agents.values()):
            await session.sign_out("shutdown")
        await self.router.close()
        await self.records.close()
        self.status_records.close()
        await self.storage.close()
        await self.connections.close()
        await self.tasks.close()
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def storage_path(config: PlatformConfig) -> Path | None:
    """The configured database, or the default (docs/administration.md);
    None: a temporary one for this run."""
    if config.database is not None:
        return Path(config.database)
    from_file = config.source != "built-in demo"
    return default_path(Path(config.source) if from_file else None)
