"""An in-process network emulator on the media path (a test and diagnostic
facility; off by default and inert unless ``AGENT_PHONE_NETEM`` is set).

The Linux kernel on our test machines has no ``sch_netem`` (``tc qdisc add
dev lo root netem delay 75ms`` -> "Specified qdisc kind is unknown"), so
impairment is done where libwebrtc's network-emulation tests and pion's
``vnet`` do it: in the process, on the UDP datagrams. Every ICE socket that
aioice opens gets a ``StunProtocol`` subclass (aioice builds them from the
module global ``aioice.ice.StunProtocol``) that drops datagrams with the
given probability and delays the rest with ``loop.call_later``, on the way
out *and* on the way in. So ``delay_ms=75`` on one process gives 150 ms
round trip between it and any peer. Everything on the socket is affected:
RTP/RTCP, DTLS, SCTP (the heartbeat channel) and STUN (ICE checks, consent).

    AGENT_PHONE_NETEM="loss=0.05,delay_ms=75,jitter_ms=5,seed=1"

Keys: ``loss`` (0..1, each direction), ``burst`` (the mean length of a run
of lost datagrams, each direction: 1, the default, loses each one on its
own; more makes a Gilbert-Elliott two-state channel whose long-run loss is
still ``loss``), ``delay_ms`` and ``jitter_ms`` (each direction; jitter is
uniform +-, so packets may reorder like netem's), ``seed`` (repeatable
drops), ``cut`` (1: drop everything, a network cut).

``AGENT_PHONE_NETEM_FILE=PATH`` names a file holding the same syntax; it is
re-read when it changes, looked at no more than every ``FILE_CHECK_S``
(checked as datagrams pass: an ICE socket always has some, at least STUN
consent and the 1 s heartbeat). Writing ``cut=1`` to it cuts the network of
a running process; writing the old settings back restores it. A missing or
empty file means: the settings of ``AGENT_PHONE_NETEM``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aioice.ice

logger = logging.getLogger(__name__)

ENV = "AGENT_PHONE_NETEM"
ENV_FILE = "AGENT_PHONE_NETEM_FILE"
FILE_CHECK_S = 0.2


KEYS = ("loss", "burst", "delay_ms", "jitter_ms", "cut", "seed")


class NetemError(ValueError):
    pass


@dataclass(frozen=True)
class Impairment:
    loss: float = 0.0
    burst: float = 1.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    cut: bool = False
    seed: int | None = None

    @property
    def inert(self) -> bool:
        return not self.cut and self.loss == 0 and self.delay_ms == 0 and self.jitter_ms == 0


def parse(spec: str) -> Impairment:
    """``"loss=0.05,delay_ms=75"`` -> Impairment; a clear NetemError otherwise."""
    values: dict[str, Any] = {}
    for part in spec.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep:
            raise NetemError(f"{ENV}: {part!r} is not key=value")
        if key not in KEYS:
            raise NetemError(f"{ENV}: unknown key {key!r} ({', '.join(KEYS)})")
        try:
            if key == "loss":
                values[key] = float(raw)
                if not 0.0 <= values[key] <= 1.0:
                    raise ValueError
            elif key == "burst":
                values[key] = float(raw)
                if not 1.0 <= values[key] <= 1000:
                    raise ValueError
            elif key in ("delay_ms", "jitter_ms"):
                values[key] = float(raw)
                if not 0.0 <= values[key] <= 10_000:
                    raise ValueError
            elif key == "cut":
                values[key] = raw.strip() in ("1", "true", "yes", "on")
            else:
                values[key] = int(raw)
        except ValueError:
            raise NetemError(f"{ENV}: bad value for {key}: {raw!r}") from None
    return Impairment(**values)


class _Settings:
    """The impairment in force: the environment's, or the control file's."""

    def __init__(self, base: Impairment, control: Path | None) -> None:
        self.base = base
        self.current = base
        self.control = control
        self._checked = 0.0
        self._mtime: float | None = None
        self.rng = random.Random(base.seed)
        #: In a burst of loss, per direction (outgoing, incoming).
        self._bad = [False, False]
        self.dropped = 0
        self.passed = 0

    def now(self) -> Impairment:
        if self.control is not None:
            now = time.monotonic()
            if now - self._checked >= FILE_CHECK_S:
                self._checked = now
                self._reload()
        return self.current

    def _reload(self) -> None:
        assert self.control is not None
        try:
            mtime = self.control.stat().st_mtime_ns
        except OSError:
            mtime = None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        text = ""
        if mtime is not None:
            try:
                text = self.control.read_text().strip()
            except OSError:
                text = ""
        try:
            new = parse(text) if text else self.base
        except NetemError as exc:
            logger.error("netem: %s ignored: %s", self.control, exc)
            return
        if new.seed is None:
            new = replace(new, seed=self.base.seed)
        if new != self.current:
            logger.warning("netem: %s -> %s", self.current, new)
            self.current = new

    def fate(self, incoming: bool = False) -> float | None:
        """None: drop this datagram; otherwise the seconds to hold it."""
        imp = self.now()
        if imp.cut or (imp.loss and self._lost(imp, int(incoming))):
            self.dropped += 1
            return None
        self.passed += 1
        delay = imp.delay_ms
        if imp.jitter_ms:
            delay += self.rng.uniform(-imp.jitter_ms, imp.jitter_ms)
        return max(0.0, delay) / 1000

    def _lost(self, imp: Impairment, direction: int) -> bool:
        if imp.burst <= 1.0:
            return self.rng.random() < imp.loss
        # Gilbert-Elliott: every datagram is lost in the bad state, none in the
        # good one; leaving bad has probability 1/burst, entering it is set so
        # that the time spent bad is ``loss``.
        leave = 1.0 / imp.burst
        enter = min(1.0, imp.loss * leave / max(1e-9, 1.0 - imp.loss))
        bad = self._bad[direction]
        bad = self.rng.random() >= leave if bad else self.rng.random() < enter
        self._bad[direction] = bad
        return bad


_settings: _Settings | None = None
_original_protocol = aioice.ice.StunProtocol


class _ImpairedTransport:
    """The socket's transport, with ``sendto`` impaired; the rest passes through."""

    def __init__(self, transport: asyncio.DatagramTransport, settings: _Settings) -> None:
        self._transport = transport
        self._settings = settings

    def sendto(self, data: bytes, addr: Any = None) -> None:
        delay = self._settings.fate()
        if delay is None:
            return
        if delay == 0:
            self._transport.sendto(data, addr)
        else:
            asyncio.get_running_loop().call_later(delay, self._send_later, data, addr)

    def _send_later(self, data: bytes, addr: Any) -> None:
        if not self._transport.is_closing():
            self._transport.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ImpairedStunProtocol(_original_protocol):  # type: ignore[misc,valid-type]
    """aioice's ICE socket protocol with the emulated network in both directions."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert _settings is not None
        super().connection_made(_ImpairedTransport(transport, _settings))  # type: ignore[arg-type]

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        assert _settings is not None
        delay = _settings.fate(incoming=True)
        if delay is None:
            return
        if delay == 0:
            super().datagram_received(data, addr)
        else:
            asyncio.get_running_loop().call_later(delay, self._receive_later, data, addr)

    def _receive_later(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        if not self.transport.is_closing():
            super().datagram_received(data, addr)


def install(impairment: Impairment, control: Path | None = None) -> None:
    """Impair every ICE socket opened from now on in this process."""
    global _settings
    _settings = _Settings(impairment, control)
    aioice.ice.StunProtocol = ImpairedStunProtocol  # type: ignore[misc]
    where = f" (control file {control})" if control else ""
    logger.warning("netem: media path impaired: %s%s", impairment, where)


def install_from_env(environ: dict[str, str] | None = None) -> Impairment | None:
    """Install from ``AGENT_PHONE_NETEM``/``AGENT_PHONE_NETEM_FILE``; unset: nothing
    is touched and None is returned. A malformed value raises NetemError."""
    env = os.environ if environ is None else environ
    spec = env.get(ENV, "")
    control = env.get(ENV_FILE) or None
    if not spec.strip() and control is None:
        return None
    impairment = parse(spec)
    install(impairment, Path(control) if control else None)
    return impairment


def install_for_program(prog: str) -> str | None:
    """What each program's ``main`` calls (the phone, the platform, the caller):
    install from the environment when it asks for it; returns an error
    message for a malformed value, None otherwise. Importing this module
    does nothing to aioice; only this call does, and only when a variable
    is set."""
    try:
        install_from_env()
    except NetemError as exc:
        return f"{prog}: {exc}"
    return None


def counters() -> tuple[int, int]:
    """Datagrams (passed, dropped) so far, both directions."""
    return (0, 0) if _settings is None else (_settings.passed, _settings.dropped)
