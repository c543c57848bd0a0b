"""Click-to-call: a web page, served by the platform, from which a customer
calls a queue with their browser's microphone (docs/administration.md).

- ``GET /call?queue=Q`` serves the page (``resources/web/call.html``, with
  its script ``call.js``) for a queue listed in ``click_to_call_queues``.
- ``POST /call/token`` (from that page) gives it a *call token*: good for
  one ``place_call`` to that queue within ``CALL_TOKEN_TTL_S``, in place of
  the trunk token, which never leaves the server. An address gets at most
  ``TOKENS_PER_ADDRESS`` of them a minute (HTTP 429 beyond).

The page speaks docs/protocol.md over the platform's WebSocket like any
trunk, with trickle ICE, and shows the queue position, the call's state and
how it ended.
"""

from __future__ import annotations

import html
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from agent_phone.cloud.config import PlatformConfig
from agent_phone.cloud.events import EventLog
from agent_phone.resources import resources_dir

logger = logging.getLogger(__name__)

#: A call token is good this long, and for one call.
CALL_TOKEN_TTL_S = 60.0
#: How a call token begins (a trunk token is hex: the two never mix).
WEB_TOKEN_PREFIX = "web-"
#: Call tokens one address may have a minute; and at most this many unused
#: ones at once, whoever asked (the oldest are dropped first).
TOKENS_PER_ADDRESS = 10
MAX_OUTSTANDING = 10_000
_WINDOW_S = 60.0
#: What the page may load and where it may connect: its own origin only.
_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:;"
    " style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class _Grant:
    queue: str
    expires_at: float


class CallTokens:
    """Single-use tokens for web callers, each for one queue."""

    def __init__(
        self, ttl_s: float = CALL_TOKEN_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._grants: dict[str, _Grant] = {}
        self._asked: dict[str, deque[float]] = {}

    def mint(self, queue: str, address: str) -> str | None:
        """A token for ``queue``; None when ``address`` asked too often."""
        now = self._clock()
        asked = self._asked.setdefault(address, deque())
        while asked and asked[0] <= now - _WINDOW_S:
            asked.popleft()
        if len(asked) >= TOKENS_PER_ADDRESS:
            return None
        asked.append(now)
        self._prune(now)
        token = WEB_TOKEN_PREFIX + secrets.token_urlsafe(24)
        self._grants[token] = _Grant(queue, now + self._ttl_s)
        return token

    def take(self, token: str, queue: str) -> bool:
        """Whether ``token`` is good for a call to ``queue``; it is used up."""
        grant = self._grants.pop(token, None)
        return grant is not None and grant.queue == queue and grant.expires_at > self._clock()

    def _prune(self, now: float) -> None:
        for token in [t for t, g in self._grants.items() if g.expires_at <= now]:
            del self._grants[token]
        while len(self._grants) >= MAX_OUTSTANDING:
            del self._grants[next(iter(self._grants))]
        for address in [a for a, q in self._asked.items() if not q or q[-1] <= now - _WINDOW_S]:
            del self._asked[address]


class ClickToCall:
    """The page's HTTP routes."""

    def __init__(
        self,
        config: PlatformConfig,
        events: EventLog,
        tokens: CallTokens,
        refused_origin: Callable[[web.Request], str],
        address_of: Callable[[web.Request], str | None],
    ) -> None:
        self._config = config
        self._events = events
        self._tokens = tokens
        self._refused_origin = refused_origin
        self._address_of = address_of
        self._dir = resources_dir() / "web"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/call", self._page)
        app.router.add_get("/call/call.js", self._script)
        app.router.add_post("/call/token", self._token)

    def _queue(self, name: str | None) -> str | None:
        queues = self._config.click_to_call_queues
        if name is None:
            return queues[0] if queues else None
        return name if name in queues else None

    async def _page(self, request: web.Request) -> web.Response:
        queue = self._queue(request.query.get("queue"))
        if queue is None:
            return web.Response(status=404, text="no click-to-call for that queue here\n")
        page = (self._dir / "call.html").read_text(encoding="utf-8")
        page = page.replace("{{queue}}", html.escape(queue, quote=True))
        return web.Response(
            text=page, content_type="text/html", headers={"Content-Security-Policy": _CSP}
        )

    async def _script(self, _request: web.Request) -> web.Response:
        script = (self._dir / "call.js").read_text(encoding="utf-8")
        return web.Response(text=script, content_type="text/javascript")

    async def _token(self, request: web.Request) -> web.Response:
        if refused := self._refused_origin(request):
            return web.Response(status=403, text=refused + "\n")
        try:
            body = await request.json()
            asked = body.get("queue") if isinstance(body, dict) else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.Response(status=400, text='send JSON: {"queue": NAME}\n')
        queue = self._queue(asked if isinstance(asked, str) else None)
        if queue is None:
            return web.Response(status=404, text="no click-to-call for that queue here\n")
        address = self._address_of(request) or "?"
        token = self._tokens.mint(queue, address)
        if token is None:
            self._events.emit("call_token_refused", address=address, queue=queue)
            return web.Response(
                status=429,
                text=f"too many calls from here: at most {TOKENS_PER_ADDRESS} a minute\n",
                headers={"Retry-After": str(int(_WINDOW_S))},
            )
        self._events.emit("call_token", address=address, queue=queue)
        return web.json_response(
            {"token": token, "queue": queue, "expires_in_s": CALL_TOKEN_TTL_S},
            headers={"Cache-Control": "no-store"},
        )
