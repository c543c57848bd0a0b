"""The people on a call, for end-to-end tests in one process: customers and
outside numbers (a trunk's ``place_call`` in this event loop), each saying
its own tone into the call and hearing it through an ``Ear``, and checks of
who hears whom with an FFT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import numpy as np
from audio_analysis import has_tone, tone_snr_db
from inprocess import Agent, Ear, signed_in_agent

from agent_phone.caller.client import CallPlan, CallResult, place_call
from agent_phone.media.wav import ToneSource
from agent_phone.phone import events

CUSTOMER_HZ, BOB_HZ, CAROL_HZ = 440.0, 660.0, 1000.0
NUMBER_HZ = 1500.0
#: Every voice a check knows of.
VOICES = (CUSTOMER_HZ, BOB_HZ, CAROL_HZ, NUMBER_HZ)
#: Each phase is heard this long before its ears are checked.
PHASE_S = 1.2


class Trunk:
    """One side of a trunk's call in this loop: a customer calling a queue
    (``queue``), or a number answering the calls made to it (``number``,
    the caller's ``--answer``), saying ``hz``, with an ``Ear``."""

    def __init__(
        self,
        platform,
        tmp_path: Path,
        *,
        queue: str = "",
        number: str = "",
        hz: float = CUSTOMER_HZ,
        caller: str = "Dana",
        decline: bool = False,
        trickle: bool = False,
    ) -> None:
        self.ear = Ear(tmp_path / f"{number or caller}.wav")
        self.hangup = asyncio.Event()
        plan = CallPlan(
            platform.url,
            queue,
            caller=caller,
            duration_s=None,
            wait_s=30,
            trunk_token=platform.trunk_token or "",
            answer_number=number or None,
            decline=decline,
            trickle=trickle,
        )
        self.task = asyncio.create_task(
            place_call(plan, ToneSource(hz), self.ear, hangup=self.hangup)
        )

    async def end(self) -> CallResult:
        self.hangup.set()
        return await asyncio.wait_for(self.task, 20)


def Customer(platform, tmp_path: Path, queue: str = "support", **kwargs) -> Trunk:  # noqa: N802
    """A customer calling ``queue`` (support), saying CUSTOMER_HZ."""
    return Trunk(platform, tmp_path, queue=queue, **kwargs)


def Number(  # noqa: N802
    platform, tmp_path: Path, number: str, hz: float, decline=False, trickle=False
) -> Trunk:
    """A trunk answering calls to ``number``, saying ``hz``."""
    return Trunk(platform, tmp_path, number=number, hz=hz, decline=decline, trickle=trickle)


@asynccontextmanager
async def agents(platform, tmp_path: Path) -> AsyncIterator[tuple[Agent, Agent]]:
    """bob (on queue: the customer's calls go to him) and carol (busy: no
    queue's calls, but another agent may still offer her one)."""
    async with AsyncExitStack() as stack:
        bob = await stack.enter_async_context(signed_in_agent(platform, "bob", tmp_path, hz=BOB_HZ))
        carol = await stack.enter_async_context(
            signed_in_agent(platform, "carol", tmp_path, hz=CAROL_HZ)
        )
        await carol.engine.set_status("busy")
        await carol.wait_for(events.Status, lambda e: e.status == "busy")
        yield bob, carol


async def answered(agent: Agent, since: int = 0, **match: str) -> str:
    """The agent answers the first call offered to them (from the
    ``since``-th event on) that matches."""
    offered = await agent.wait_for(
        events.CallChanged,
        lambda e: e.state == "alerting" and all(getattr(e, k) == v for k, v in match.items()),
        since,
    )
    mark = agent.mark()
    await agent.engine.answer(offered.call_id)  # type: ignore[attr-defined]
    await agent.wait_for(
        events.CallChanged,
        lambda e: e.call_id == offered.call_id and e.state == "connected",  # type: ignore[attr-defined]
        mark,
    )
    return offered.call_id  # type: ignore[attr-defined]


async def phase() -> float:
    """Let a phase be heard; returns when it began (after ~0.3 s to settle)."""
    await asyncio.sleep(0.3)
    start = time.monotonic()
    await asyncio.sleep(PHASE_S)
    return start


def hears(ear: Ear | None, start: float, *voices: float) -> bool:
    """Between ``start`` and now ``ear`` heard exactly ``voices`` (none: no
    voice at all)."""
    assert ear is not None
    samples = ear.since(start)
    if not voices:
        return not any(has_tone(samples, hz) for hz in VOICES)
    if len(voices) == 1:
        return has_tone(samples, voices[0])
    levels = {hz: tone_snr_db(samples, hz, tolerance_hz=10)[0] for hz in voices}
    return all(level > -6 for level in levels.values())


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0
