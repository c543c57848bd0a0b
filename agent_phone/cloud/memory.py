"""The platform's memory: what it holds, and handing freed heap back.

A long-running platform frees as much as it allocates, call after call, yet
its resident size (RSS) alone cannot show that: glibc's malloc keeps freed
pages in per-thread arenas (aiortc's codec and DTLS work runs on several
threads) and returns them to the system only now and then. So the platform
reports the figures that tell a leak from an allocator holding on:

- ``rss_kb``: resident memory, what the operating system sees;
- ``heap_in_use_kb``: bytes malloc has handed out and not had back (glibc's
  ``mallinfo2``; C libraries: libav/Opus, OpenSSL, libsrtp, numpy buffers);
- ``python_blocks``: objects Python's own allocator holds
  (``sys.getallocatedblocks``);
- ``sqlite_kb``: what SQLite holds (``sqlite3_memory_used``), part of the
  heap in use: mostly its page cache, which fills as the call records grow,
  up to the storage's ``cache_size`` (``SQLITE_CACHE_KB``, 2 MB), and then
  stays there. A soak's first few thousand calls therefore grow the heap
  by the size of their records (0.3-0.4 kB a call) with no leak at all:
  the figure to watch is the heap in use less this.

A leak grows the heap in use (less SQLite) or the Python blocks, but not
every growth is a leak: a call's WebRTC objects (aiortc's transports, each
with callbacks pointing back at its owner) form reference cycles that only
Python's full garbage collection frees, and that runs when the long-lived
objects have grown by a quarter. Between full collections both figures climb, then fall back (a
saw-tooth whose height is proportional to the live heap). So the figures to
compare are those right after a full collection: ``MemoryMonitor.snapshot``
with ``collect=True`` (the admin API's ``GET /admin/memory?collect=1``) runs
one, and counts the live objects by type, the classic way to find what
leaks. Growth of RSS alone is free memory kept by malloc;
``release_free_memory`` (glibc's ``malloc_trim``) gives it back, and the
platform calls it on a timer.

A full collection holds the event loop, and with it every call's audio. On
Python's own schedule the platform's came rarely and freed the garbage of
dozens of calls at once (200-370 ms each in a 2,000-call soak); run every
few seconds (``gc_collect_s``) each one is short and the saw-tooth low
(docs/performance.md, Soak).

Off glibc (macOS, musl) the heap figures are None and nothing is trimmed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agent_phone.cloud.events import EventLog
from agent_phone.tasks import TaskSet


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes in the sbrk/arena heaps
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mmap'd allocations (large blocks)
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use in the arenas
            "fordblks",  # bytes free in the arenas (kept by malloc)
            "keepcost",
        )
    ]


@cache
def _glibc() -> Any | None:
    """glibc with ``mallinfo2`` (2.33 and later), or None."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallinfo2 = libc.mallinfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    mallinfo2.argtypes = []
    return libc


@cache
def _sqlite_memory_used() -> Callable[[], int] | None:
    """``sqlite3_memory_used`` of the SQLite that Python's ``sqlite3`` uses
    (looked up through the ``_sqlite3`` module, whether SQLite is linked in
    or a shared library), or None."""
    try:
        import _sqlite3

        function = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    except (ImportError, OSError, AttributeError):
        return None
    function.restype = ctypes.c_int64
    function.argtypes = []
    return function  # type: ignore[no-any-return]


@dataclass(frozen=True)
class MemoryUse:
    rss_kb: int
    #: Bytes handed out by malloc, in kB (None off glibc).
    heap_in_use_kb: int | None
    #: Bytes freed but still held by malloc, in kB (None off glibc).
    heap_free_kb: int | None
    python_blocks: int
    #: SQLite's own memory (its page cache, mostly), in kB; None when unknown.
    sqlite_kb: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)


def _rss_kb() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    try:
        import resource  # where /proc is missing (macOS): the peak, not the current size
    except ImportError:  # Windows
        return 0
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes there, kB elsewhere


def memory_use() -> MemoryUse:
    libc = _glibc()
    in_use = free = None
    if libc is not None:
        info = libc.mallinfo2()
        in_use = (info.uordblks + info.hblkhd) // 1024
        free = info.fordblks // 1024
    sqlite = _sqlite_memory_used()
    return MemoryUse(
        _rss_kb(),
        in_use,
        free,
        sys.getallocatedblocks(),
        sqlite() // 1024 if sqlite is not None else None,
    )


def release_free_memory() -> bool:
    """Give malloc's free pages back to the system; False when it cannot.

    It walks every arena under its lock: run it off the event loop."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def freeze_start_up_objects() -> int:
    """Collect, then move every object alive now (modules, classes, the
    configuration: tens of thousands) out of the garbage collector's sight
    (``gc.freeze``), and return how many. A full collection then walks only
    what was made since, and holds the event loop for a fraction of the
    time; it also runs more often, so the saw-tooth above stays lower.
    Call it once, as the platform starts."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def live_types(top: int) -> list[tuple[str, int]]:
    """The ``top`` most numerous types among the objects the collector tracks."""
    counts = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    return counts.most_common(top)


class FullCollections:
    """Times Python's full (generation 2) garbage collections: each one holds
    the event loop, and with it every call's audio on the platform."""

    def __init__(self) -> None:
        self.count = 0
        self.max_ms = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.max_ms = max(self.max_ms, (time.perf_counter() - self._started) * 1000)

    def take(self) -> dict[str, Any]:
        """The count so far, and the longest since the last call."""
        taken = {"gc_full_collections": self.count, "gc_full_max_ms": round(self.max_ms, 1)}
        self.max_ms = 0.0
        return taken


class MemoryMonitor:
    """Every ``interval_s``: hand freed heap back, then emit a ``memory`` event
    with the figures above, the full collections, and ``extra()`` (the
    platform's counts)."""

    def __init__(
        self,
        events: EventLog,
        interval_s: float,
        extra: Callable[[], dict[str, Any]] = dict,
        collect_every_s: float = 0.0,
    ) -> None:
        self._events = events
        self._interval_s = interval_s
        self._collect_every_s = collect_every_s
        self._extra = extra
        self._tasks = TaskSet("memory")
        self._collections = FullCollections()

    def start(self) -> None:
        gc.callbacks.append(self._collections)
        self._tasks.spawn(self._run(), "monitor")
        if self._collect_every_s > 0:
            self._tasks.spawn(self._collect(), "collector")

    async def report(self) -> dict[str, Any]:
        before = memory_use()
        started = time.perf_counter()
        trimmed = await asyncio.to_thread(release_free_memory)
        trim_ms = (time.perf_counter() - started) * 1000
        after = memory_use()
        return self._events.emit(
            "memory",
            **after.as_dict(),
            released_kb=before.rss_kb - after.rss_kb if trimmed else None,
            trim_ms=round(trim_ms, 1) if trimmed else None,
            **self._collections.take(),
            **self._extra(),
        )

    async def snapshot(self, collect: bool = False, top: int = 30) -> dict[str, Any]:
        """The figures now; with ``collect``, after a full garbage collection
        (it holds the event loop for tens of milliseconds: for diagnosis, not
        for a timer) and with the ``top`` most numerous live types."""
        found: dict[str, Any] = {}
        if collect:
            watching = self._collections in gc.callbacks
            if watching:  # this one is asked for: not counted as the platform's
                gc.callbacks.remove(self._collections)
            started = time.perf_counter()
            found["gc_freed_objects"] = gc.collect()
            found["gc_ms"] = round((time.perf_counter() - started) * 1000, 1)
            if watching:
                gc.callbacks.append(self._collections)
            await asyncio.to_thread(release_free_memory)
            found["gc_frozen"] = gc.get_freeze_count()  # not among the types below
            found["gc_tracked"] = len(gc.get_objects())
            found["live_types"] = live_types(top)
        return {**memory_use().as_dict(), **self._extra(), **found}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.report()

    async def _collect(self) -> None:
        """Full collections in small batches: a finished call's cycles are
        freed within seconds, and each collection holds the loop for a short
        time, where Python's own schedule lets garbage pile up and then
        frees it all in one long stop."""
        while True:
            await asyncio.sleep(self._collect_every_s)
            gc.collect()

    async def close(self) -> None:
        if self._collections in gc.callbacks:
            gc.callbacks.remove(self._collections)
        await self._tasks.close()
