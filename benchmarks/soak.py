#!/usr/bin/env python3
"""Soak: many customer calls through one platform, with everything going wrong.

    python benchmarks/soak.py [--calls N] [--agents K] [--callers P] [--json FILE]

One platform process, K headless phones (real ``agent-phone --headless``
processes whose audio is the virtual sound card of tests/virtual_audio.py:
real PortAudio streams, opened per call), and P callers placing calls in
parallel from this process (``place_call``: real WebRTC, a tone). Along the
way, chosen at random (seeded):

- agents answer most calls, decline some, and let some ring until the alert
  timeout (R12: they are then off queue, and go back on after a moment);
- agents hang up some calls, customers hang up the others;
- some customers give up while waiting (an intentional abandon);
- one phone is SIGKILLed in the middle of a call, and restarted.

A call is *lost* when its customer was neither answered nor intentionally
abandoned (an error, a platform hang-up, a wait that never ended), or when
the platform never ended it. Lost must be 0: the script exits 1 otherwise.
It reports calls placed, answered, re-queued, abandoned, lost, delivery
p50/p95 (the platform's routed -> offered ``delivery_ms``), audio heard both
ways, and the platform's memory and CPU from start to end.

Memory (agent_phone/cloud/memory.py says what the figures mean): the calls
run in ``--checkpoints`` phases (4: quarters). When each phase has ended and
the platform is idle again (every agent still signed in with a kept
connection), the soak asks the admin API for the platform's memory after a
full garbage collection (``GET /admin/memory?collect=1``). The first phase
is the warm-up; the growth from its checkpoint to the last, per call, is
what a leak would leave behind (less SQLite's page cache, which fills with
the call records up to its 2 MB cap: ``heap_less_sqlite_kb``); the live
object counts by type say what. The platform's ``memory``
events every ``--memory-report`` s give the curve in between.
Prints a table and writes JSON (default benchmarks/results/soak.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from procs import child_env  # noqa: E402

from agent_phone.caller.client import CallPlan, place_call  # noqa: E402
from agent_phone.cloud.config import hash_password  # noqa: E402
from agent_phone.media import liveness  # noqa: E402
from agent_phone.media.ice import restrict_ice_addresses  # noqa: E402
from agent_phone.media.playout import WallClockSink  # noqa: E402
from agent_phone.media.wav import ToneSource, write_wav  # noqa: E402

AUDIBLE = 100
PASSWORD = "soak"
#: A customer who was not intentionally abandoned waits at most this long.
WAIT_CAP_S = 90.0


# --- processes ------------------------------------------------------------------------


#: The trunk token written into this benchmark's platform configuration.
TRUNK_TOKEN = "benchmark-trunk-token-0123456789"
#: Talk time of the call whose phone is killed (counted from the latest answer).
KILLED_CALL_TALK_S = 8.0
ADMIN_TOKEN = "benchmark-admin-token-0123456789"
#: Memory samples from calls placed before this share of the run are warm-up.
WARM_UP = 0.25


class JsonProc:
    """A child process printing JSON lines, read by an asyncio task."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log_dir: Path,
        stdin: bool = False,
        under: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.args = args
        #: A command to run it under (``heaptrack -o FILE``): stopping it
        #: then signals the wrapper's children, the process itself.
        self.under = under
        self.log_dir = log_dir
        self.stdin = stdin
        self.proc: asyncio.subprocess.Process | None = None
        self.listeners: list[Any] = []
        self._reader: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()

    async def start(self) -> None:
        stderr = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 - child owns it
        self.proc = await asyncio.create_subprocess_exec(
            *self.under,
            sys.executable,
            "-m",
            *self.args,
            stdin=asyncio.subprocess.PIPE if self.stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=child_env(),
            cwd=REPO,
            limit=1 << 20,
        )
        stderr.close()
        self._reader = asyncio.ensure_future(self._read())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        tee = open(self.log_dir / f"{self.name}.jsonl", "ab")  # noqa: SIM115
        async for line in self.proc.stdout:
            tee.write(line)
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                for listener in list(self.listeners):
                    try:
                        listener(event)
                    except Exception as exc:  # a bug here must not stop the reading
                        print(
                            f"soak: {self.name}: listener failed on {event}: {exc!r}",
                            file=sys.stderr,
                        )
        tee.close()
        self.ended.set()

    def send(self, **command: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        if self.proc.returncode is None and not self.proc.stdin.is_closing():
            self.proc.stdin.write((json.dumps(command) + "\n").encode())

    async def wait_event(self, name: str, timeout: float, **fields: Any) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def listen(e: dict[str, Any]) -> None:
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items()):
                if not future.done():
                    future.set_result(e)

        self.listeners.append(listen)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.listeners.remove(listen)

    async def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            if self.stdin:
                self.send(cmd="quit")
            elif self.under:
                for child in _children(self.proc.pid):
                    os.kill(child, signal.SIGTERM)
                timeout *= 4  # a tracer writes its data out
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return self.proc.returncode


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def proc_status_kb(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


# --- the run --------------------------------------------------------------------------


@dataclass
class Options:
    calls: int = 1000
    agents: int = 6
    callers: int = 8
    seed: int = 7
    alert_timeout_s: float = 2.0
    p_decline: float = 0.07
    p_ignore: float = 0.03
    p_agent_hangup: float = 0.4
    p_abandon: float = 0.07
    talk_s: tuple[float, float] = (0.3, 1.2)
    kill_at: float = 0.4
    audio: str = "virtual"
    memory_report_s: float = 5.0
    checkpoints: int = 4
    #: The platform's gc_collect_s (None: its default).
    gc_collect_s: float | None = None
    #: Run the platform under this command (a memory tracer).
    platform_under: tuple[str, ...] = ()


@dataclass
class Tally:
    placed: int = 0
    answered: int = 0
    abandoned: int = 0
    lost: int = 0
    lost_detail: list[dict[str, Any]] = field(default_factory=list)
    heard_by_customer: int = 0
    caller_results: Counter[str] = field(default_factory=Counter)
    # From the platform's events.
    queued: set[str] = field(default_factory=set)
    ended: dict[str, str] = field(default_factory=dict)
    requeued: Counter[str] = field(default_factory=Counter)
    delivery_ms: list[float] = field(default_factory=list)
    platform_events: Counter[str] = field(default_factory=Counter)
    # From the phones.
    agent_actions: Counter[str] = field(default_factory=Counter)
    hearing: set[str] = field(default_factory=set)
    answered_at_phone: set[str] = field(default_factory=set)
    phone_errors: Counter[str] = field(default_factory=Counter)
    killed: dict[str, Any] = field(default_factory=dict)
    answered_by: dict[str, list[str]] = field(default_factory=dict)


class Agent:
    """A headless phone and the agent's behaviour at it."""

    def __init__(self, name: str, run: Soak) -> None:
        self.name = name
        self.run = run
        self.phone: JsonProc | None = None
        self.call: str | None = None
        self.connected = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        extra: list[str] = []
        if self.run.options.audio == "files":
            extra = ["--mic-file", str(self.run.tone_wav), "--speaker-file", os.devnull]
        self.phone = JsonProc(
            f"phone-{self.name}",
            [
                "agent_phone.app",
                "--headless",
                "--platform",
                self.run.url,
                "--user",
                self.name,
                "--password",
                PASSWORD,
                "--on-queue",
                *extra,
            ],
            self.run.log_dir,
            stdin=True,
        )
        self.phone.listeners.append(self._on_event)
        await self.phone.start()
        await self.phone.wait_event("presence", 30, on_queue=True)

    def _later(self, delay: float, fn: Any, **kwargs: Any) -> None:
        async def go() -> None:
            await asyncio.sleep(delay)
            fn(**kwargs)

        task = asyncio.ensure_future(go())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _send(self, **command: Any) -> None:
        if self.phone is not None:
            self.phone.send(**command)

    def _on_event(self, e: dict[str, Any]) -> None:
        t, rnd, o = self.run.tally, self.run.rnd, self.run.options
        match e.get("event"):
            case "alerting":
                call_id = e["call_id"]
                self.call, self.connected = call_id, False
                if self.run.kill_pending and e.get("caller") == self.run.kill_caller:
                    self.run.kill_call_id = call_id
                r = rnd.random()
                if r < o.p_decline:
                    t.agent_actions["decline"] += 1
                    self._later(rnd.uniform(0.05, 0.3), self._send, cmd="decline", call_id=call_id)
                elif r < o.p_decline + o.p_ignore:
                    t.agent_actions["let_ring"] += 1  # the alert times out (R12)
                else:
                    t.agent_actions["answer"] += 1
                    self._later(rnd.uniform(0.0, 0.3), self._send, cmd="answer", call_id=call_id)
            case "answered":
                self.connected = True
                t.answered_at_phone.add(e["call_id"])
                if self.run.kill_pending and e["call_id"] == self.run.kill_call_id:
                    self.run.kill_pending = False
                    task = asyncio.ensure_future(self.run.kill(self, e["call_id"]))
                    self.run._background.add(task)
                    return
                if self.run.rnd.random() < o.p_agent_hangup:
                    t.agent_actions["agent_hangup"] += 1
                    self._later(
                        rnd.uniform(*o.talk_s) * 0.8, self._send, cmd="hangup", call_id=e["call_id"]
                    )
            case "hearing":
                t.hearing.add(e["call_id"])
            case "ended":
                if self.call == e["call_id"]:
                    self.call, self.connected = None, False
            case "presence" if not e["on_queue"]:
                # Back on queue after being set not responding (R12).
                t.agent_actions["back_on_queue"] += 1
                self._later(rnd.uniform(0.2, 0.6), self._send, cmd="on_queue")
            case "error":
                t.phone_errors[str(e.get("code"))] += 1

    async def kill(self) -> None:
        assert self.phone is not None and self.phone.proc is not None
        self.phone.listeners.clear()
        self.phone.proc.send_signal(signal.SIGKILL)
        await self.phone.proc.wait()
        self.call, self.connected = None, False

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.phone is not None:
            await self.phone.stop()


class Soak:
    def __init__(self, options: Options, log_dir: Path) -> None:
        self.options = options
        self.log_dir = log_dir
        self.rnd = random.Random(options.seed)
        self.tally = Tally()
        self.url = ""
        self.tone_wav = log_dir / "tone.wav"
        self.platform: JsonProc | None = None
        self.agents: list[Agent] = []
        self._next = 0
        self._kill_done = False
        self.kill_pending = False
        #: The customer whose call is answered by the phone to be killed.
        self.kill_caller: str | None = None
        self.kill_call_id: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        #: The platform's ``memory`` events, with the calls placed by then.
        self.memory: list[dict[str, Any]] = []
        #: The platform's memory after a full collection, at the end of each phase.
        self.checkpoints: list[dict[str, Any]] = []
        self._until = 0
        self.admin_url = ""

    def _config(self) -> Path:
        h = hash_password(PASSWORD)
        names = [f"agent{i:02d}" for i in range(1, self.options.agents + 1)]
        lines = [
            "[platform]",
            f"alert_timeout_s = {self.options.alert_timeout_s}",
            "persistent_timeout_s = 600",
            f'trunk_token = "{TRUNK_TOKEN}"',
            f"memory_report_s = {self.options.memory_report_s}",
            *([f"gc_collect_s = {g}"] if (g := self.options.gc_collect_s) is not None else []),
            f'admin_token = "{ADMIN_TOKEN}"',
        ]
        for name in names:
            lines += [f"[agents.{name}]", f'password_hash = "{h}"']
        lines += ["[queues.support]", f"members = {json.dumps(names)}"]
        path = self.log_dir / "platform.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _on_platform(self, e: dict[str, Any]) -> None:
        t = self.tally
        kind = e.get("event", "")
        t.platform_events[kind] += 1
        match kind:
            case "call_queued":
                t.queued.add(e["call_id"])
            case "call_ended":
                t.ended[e["call_id"]] = e["reason"]
            case "call_requeued":
                t.requeued[e["reason"]] += 1
            case "call_delivered":
                t.delivery_ms.append(float(e["delivery_ms"]))
            case "call_answered":
                t.answered_by.setdefault(e["call_id"], []).append(e["agent"])
            case "memory":
                self.memory.append(with_heap_less_sqlite({**e, "placed": t.placed}))

    async def _caller(self, index: int) -> None:
        o, t = self.options, self.tally
        while self._next < self._until:
            n = self._next
            self._next += 1
            t.placed += 1
            kill_this = not self._kill_done and n >= int(o.kill_at * o.calls)
            if kill_this:
                # The phone that answers this call is killed mid-call. The
                # customer stays on long enough for the platform to notice
                # (its media heartbeat: the dropped WebSocket alone only
                # detaches the session for a resume) and requeue the call.
                self._kill_done = True
                self.kill_pending = True
                self.kill_caller = f"customer{n:05d}"
            abandon = not kill_this and self.rnd.random() < o.p_abandon
            hangup = asyncio.Event()
            if abandon:
                asyncio.get_running_loop().call_later(self.rnd.uniform(0.05, 2.0), hangup.set)
            plan = CallPlan(
                platform=self.url,
                queue="support",
                caller=f"customer{n:05d}",
                duration_s=KILLED_CALL_TALK_S if kill_this else self.rnd.uniform(*o.talk_s),
                wait_s=WAIT_CAP_S,
                trunk_token=TRUNK_TOKEN,
            )
            heard = HeardAgent()
            result = await place_call(plan, ToneSource(440.0), heard, hangup)
            t.caller_results[f"{result.ended_by}:{result.reason}"] += 1
            if result.answered:
                t.answered += 1
                t.heard_by_customer += heard.heard
            elif abandon and hangup.is_set() and result.reason == "abandoned":
                t.abandoned += 1
            else:
                t.lost += 1
                t.lost_detail.append({"caller": plan.caller, **result.as_dict()})

    async def kill(self, victim: Agent, call_id: str) -> None:
        """SIGKILL a phone just after it answered a call, then start it again."""
        t = self.tally
        t.killed = {"agent": victim.name, "call_id": call_id, "at_call": self._next}
        killed_at = time.monotonic()
        await victim.kill()
        # Back once the platform has noticed by itself (the media heartbeat),
        # not by the new sign-in replacing the dead session.
        await asyncio.sleep(liveness.TIMEOUT_S + 1.0)
        await victim.start()
        t.killed["back_after_s"] = round(time.monotonic() - killed_at, 2)

    async def _report_progress(self, stop: asyncio.Event) -> None:
        """A line on stderr every 5 s (the platform's ``memory`` events carry
        its memory on the same beat)."""
        start = time.monotonic()
        while not stop.is_set():
            t = self.tally
            print(
                f"soak: {time.monotonic() - start:5.0f} s placed {t.placed} answered {t.answered}"
                f" abandoned {t.abandoned} lost {t.lost} requeued {sum(t.requeued.values())}",
                file=sys.stderr,
                flush=True,
            )
            try:
                await asyncio.wait_for(stop.wait(), 5.0)
            except TimeoutError:
                pass

    async def _phase(self, until: int) -> None:
        """Place calls up to number ``until``; wait for the platform to end
        them all; then take its memory after a full collection."""
        t = self.tally
        self._until = until
        await asyncio.gather(*(self._caller(i) for i in range(self.options.callers)))
        await asyncio.gather(*self._background)
        # Every call the platform queued must have ended there too.
        for _ in range(100):
            if t.queued <= set(t.ended):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # let the last connections settle
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{self.admin_url}/memory",
                params={"collect": "1"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response,
        ):
            response.raise_for_status()
            self.checkpoints.append(
                with_heap_less_sqlite({"placed": t.placed, **await response.json()})
            )

    async def run(self) -> dict[str, Any]:
        o, t = self.options, self.tally
        write_wav(self.tone_wav, tone_samples(330.0, 1.0))
        self.platform = JsonProc(
            "platform",
            ["agent_phone.cloud", "--port", "0", "--config", str(self._config())],
            self.log_dir,
            under=o.platform_under,
        )
        self.platform.listeners.append(self._on_platform)
        ready_wait = asyncio.ensure_future(self.platform.wait_event("ready", 30))
        await self.platform.start()
        ready = await ready_wait
        self.url, self.admin_url = ready["url"], ready["admin_url"]
        pid = self.platform.pid
        self.agents = [Agent(f"agent{i:02d}", self) for i in range(1, o.agents + 1)]
        await asyncio.gather(*(a.start() for a in self.agents))
        print(f"soak: {len(self.agents)} phones on queue", file=sys.stderr, flush=True)
        rss_start = proc_status_kb(pid)
        cpu_start = proc_cpu_s(pid)
        load_start = loadavg()
        stop_progress = asyncio.Event()
        progress = asyncio.ensure_future(self._report_progress(stop_progress))
        started = time.monotonic()
        phases = max(1, min(o.checkpoints, o.calls))
        for k in range(1, phases + 1):
            await self._phase(o.calls * k // phases)
        elapsed = time.monotonic() - started
        rss_end = proc_status_kb(pid)
        rss_peak = proc_status_kb(pid, "VmHWM")
        cpu_s = proc_cpu_s(pid) - cpu_start
        load_end = loadavg()
        stop_progress.set()
        await progress
        never_ended = sorted(t.queued - set(t.ended))
        if t.killed:
            # The killed phone's customer: re-queued and answered by the next agent.
            t.killed["answered_by"] = t.answered_by.get(t.killed["call_id"], [])
            t.killed["ended"] = t.ended.get(t.killed["call_id"])
        not_answered_ends = Counter(
            r for r in t.ended.values() if r not in ("customer_hangup", "agent_hangup")
        )
        for agent in self.agents:
            await agent.stop()
        platform_exit = await self.platform.stop()
        lost = t.lost + len(never_ended)
        return {
            "options": {**o.__dict__, "talk_s": list(o.talk_s)},
            "elapsed_s": round(elapsed, 1),
            "calls_per_s": round(t.placed / elapsed, 2),
            "placed": t.placed,
            "answered": t.answered,
            "requeued": sum(t.requeued.values()),
            "requeued_by_reason": dict(t.requeued),
            "abandoned": t.abandoned,
            "lost": lost,
            "lost_detail": t.lost_detail[:20],
            "never_ended_at_platform": never_ended[:20],
            "platform_end_reasons_other": dict(not_answered_ends),
            "caller_results": dict(t.caller_results),
            "agent_actions": dict(t.agent_actions),
            "phone_errors": dict(t.phone_errors),
            "killed": t.killed,
            "delivery_ms": {
                "count": len(t.delivery_ms),
                "p50": percentile(t.delivery_ms, 50),
                "p95": percentile(t.delivery_ms, 95),
                "max": round(max(t.delivery_ms), 2) if t.delivery_ms else None,
            },
            "audio": {
                "answered_at_phone": len(t.answered_at_phone),
                "customer_heard_by_agent": len(t.hearing & t.answered_at_phone),
                "agent_heard_by_customer": t.heard_by_customer,
            },
            "platform": {
                "rss_start_mb": round(rss_start / 1024, 1),
                "rss_end_mb": round(rss_end / 1024, 1),
                "rss_peak_mb": round(rss_peak / 1024, 1),
                "memory_after_collection": after_collection(self.checkpoints),
                "memory_growth": memory_growth(self.memory, int(WARM_UP * o.calls)),
                "memory_samples": [
                    {k: m.get(k) for k in MEMORY_FIELDS + SAMPLE_EXTRA} for m in self.memory
                ],
                "cpu_s": round(cpu_s, 1),
                "cpu_percent_of_core": round(100 * cpu_s / elapsed, 1),
                "rate_limited_events": t.platform_events["rate_limited"],
                "exit_code": platform_exit,
            },
            "loadavg_start": load_start,
            "loadavg_end": load_end,
        }


class HeardAgent(WallClockSink):
    """The caller's sink: notes whether the agent was ever audible."""

    def __init__(self) -> None:
        super().__init__(self._listen)
        self.heard = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def _listen(self, samples: np.ndarray) -> None:
        if not self.heard and samples.size and np.abs(samples).max() > AUDIBLE:
            self.heard = True


MEMORY_FIELDS = (
    "rss_kb",
    "heap_in_use_kb",
    "heap_free_kb",
    "python_blocks",
    "sqlite_kb",
    "heap_less_sqlite_kb",
)
SAMPLE_EXTRA = (
    "placed",
    "calls",
    "links",
    "agents",
    "released_kb",
    "trim_ms",
    "gc_full_collections",
    "gc_full_max_ms",
)


def with_heap_less_sqlite(m: dict[str, Any]) -> dict[str, Any]:
    """Add the heap in use less SQLite's share: SQLite's page cache fills
    with the call records up to its cap (storage.SQLITE_CACHE_KB), growth
    that is bounded by design; a leak would show in what remains."""
    if m.get("heap_in_use_kb") is not None and m.get("sqlite_kb") is not None:
        m["heap_less_sqlite_kb"] = m["heap_in_use_kb"] - m["sqlite_kb"]
    return m


def memory_growth(samples: list[dict[str, Any]], warm_up_calls: int) -> dict[str, Any]:
    """Growth per call of each memory figure after the warm-up (least
    squares), and the first and last values it was fitted between."""
    after = [m for m in samples if m["placed"] >= warm_up_calls]
    growth: dict[str, Any] = {"samples": len(after), "from_call": warm_up_calls}
    if len(after) < 3 or after[-1]["placed"] == after[0]["placed"]:
        return growth
    calls = np.array([m["placed"] for m in after], dtype=float)
    for key in MEMORY_FIELDS:
        if after[0].get(key) is None:
            continue
        values = np.array([m[key] for m in after], dtype=float)
        slope = float(np.polyfit(calls, values, 1)[0])
        growth[key] = {
            "first": after[0][key],
            "last": after[-1][key],
            "per_call": round(slope, 3),
        }
    return growth


def after_collection(checkpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """The idle checkpoints, the growth per call from the first (the end of
    the warm-up) to the last, and the live types whose count changed between
    those two."""
    if len(checkpoints) < 2:
        return {"checkpoints": checkpoints}
    first, last = checkpoints[0], checkpoints[-1]
    calls = last["placed"] - first["placed"]
    per_call = {
        key: round((last[key] - first[key]) / calls, 3)
        for key in MEMORY_FIELDS
        if calls and first.get(key) is not None
    }
    before, after = dict(first["live_types"]), dict(last["live_types"])
    changed = {
        name: after.get(name, 0) - before.get(name, 0)
        for name in before.keys() | after.keys()
        if after.get(name, 0) != before.get(name, 0)
    }
    return {
        "calls_between": calls,
        "per_call": per_call,
        "live_types_changed": dict(sorted(changed.items(), key=lambda kv: -abs(kv[1]))[:20]),
        "checkpoints": [
            {k: v for k, v in c.items() if k != "live_types"} | {"live_types": c["live_types"][:15]}
            for c in checkpoints
        ],
    }


def tone_samples(hz: float, seconds: float, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def table(r: dict[str, Any]) -> str:
    d, a, p = r["delivery_ms"], r["audio"], r["platform"]
    rows = [
        ("calls placed", r["placed"]),
        ("answered", r["answered"]),
        ("re-queued (declined, alert timeout, phone killed)", r["requeued"]),
        ("abandoned by the caller (intentional)", r["abandoned"]),
        ("lost", r["lost"]),
        ("delivery p50 / p95 / max (ms)", f"{d['p50']} / {d['p95']} / {d['max']}"),
        (
            "customer heard by agent / answered at a phone",
            f"{a['customer_heard_by_agent']} / {a['answered_at_phone']}",
        ),
        ("agent heard by customer / answered", f"{a['agent_heard_by_customer']} / {r['answered']}"),
        (
            "platform RSS start / end / peak (MB)",
            f"{p['rss_start_mb']} / {p['rss_end_mb']} / {p['rss_peak_mb']}",
        ),
        *collected_rows(p["memory_after_collection"]),
        *growth_rows(p["memory_growth"]),
        ("platform CPU (% of a core)", p["cpu_percent_of_core"]),
        ("elapsed (s) / calls per s", f"{r['elapsed_s']} / {r['calls_per_s']}"),
        ("load average start / end", f"{r['loadavg_start'][0]} / {r['loadavg_end'][0]}"),
        ("killed", json.dumps(r["killed"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def collected_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    if "per_call" not in m:
        return []
    points = m["checkpoints"]
    at = " / ".join(str(c["placed"]) for c in points)
    rows = [(f"idle, after a full collection, at calls {at}", "growth per call after the first")]
    for key in MEMORY_FIELDS:
        if key in m["per_call"]:
            values = " / ".join(str(c[key]) for c in points)
            rows.append((f"  {key}", f"{values}: {m['per_call'][key]:+}"))
    return rows


def growth_rows(g: dict[str, Any]) -> list[tuple[str, str]]:
    names = {
        "rss_kb": "RSS (kB)",
        "heap_in_use_kb": "malloc heap in use (kB)",
        "heap_free_kb": "malloc heap free, kept (kB)",
        "python_blocks": "Python blocks",
        "sqlite_kb": "SQLite (page cache; kB)",
        "heap_less_sqlite_kb": "heap in use less SQLite (kB)",
    }
    return [("memory samples every few seconds (a saw-tooth: see the docstring)", "")] + [
        (
            f"  {label}, {g['samples']} samples from call {g['from_call']}: first / last, trend",
            f"{g[key]['first']} / {g[key]['last']}, {g[key]['per_call']:+}",
        )
        for key, label in names.items()
        if key in g
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--agents", type=int, default=6)
    p.add_argument("--callers", type=int, default=8)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--alert-timeout", type=float, default=2.0, help="the platform's, in seconds")
    p.add_argument(
        "--audio",
        choices=["virtual", "files"],
        default="virtual",
        help="phones use the virtual sound card (started here unless one runs) or WAV files",
    )
    p.add_argument(
        "--memory-report",
        type=float,
        default=5.0,
        help="the platform's memory_report_s: seconds between memory samples",
    )
    p.add_argument(
        "--checkpoints",
        type=int,
        default=4,
        help="phases; the platform's memory is taken (idle, collected) after each",
    )
    p.add_argument(
        "--gc-collect",
        type=float,
        metavar="S",
        help="the platform's gc_collect_s (0: Python's own schedule; default: the platform's)",
    )
    p.add_argument(
        "--platform-under",
        metavar="CMD",
        default="",
        help='run the platform under this command, e.g. "heaptrack -o /tmp/platform" '
        "(its CPU and RSS figures are then the wrapper's; the memory checkpoints are not)",
    )
    p.add_argument("--keep-logs", type=Path, metavar="DIR", help="keep every process's log here")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "soak.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.calls < 1 or args.agents < 2 or args.callers < 1:
        print("soak: need --calls >= 1, --agents >= 2, --callers >= 1", file=sys.stderr)
        return 2
    options = Options(
        calls=args.calls,
        agents=args.agents,
        callers=args.callers,
        seed=args.seed,
        alert_timeout_s=args.alert_timeout,
        audio=args.audio,
        memory_report_s=args.memory_report,
        checkpoints=args.checkpoints,
        gc_collect_s=args.gc_collect,
        platform_under=tuple(shlex.split(args.platform_under)),
    )
    restrict_ice_addresses(["127.0.0.1"])
    audio = None
    if args.audio == "virtual" and not os.environ.get("AGENT_PHONE_SOAK_AUDIO_RUNNING"):
        import virtual_audio

        audio = virtual_audio.VirtualAudio(virtual_audio.prepare_environment())
        audio.start()
    try:
        feed = None
        if audio is not None:
            # Every phone's microphone hears this tone, so the customer hears the agent.
            feed = audio.play_into_mic(tone_samples(330.0, 1.0), loop=True)
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            result = asyncio.run(Soak(options, args.keep_logs).run())
        else:
            with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
                result = asyncio.run(Soak(options, Path(tmp)).run())
        if feed is not None:
            feed.stop()
    finally:
        if audio is not None:
            audio.close()
    print(table(result))
    if result["lost"]:
        print("LOST CALLS:", json.dumps(result["lost_detail"], indent=1), file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 1 if result["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
