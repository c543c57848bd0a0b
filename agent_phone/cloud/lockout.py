"""The sign-in lockout: how often one may guess a password, and from where.

``SignInGuard`` counts failed sign-ins under two keys (docs/security.md):

- **per (user name, address)**: the answer to the second failure for a name
  from one address waits ``sign_in_delay_s`` (0.5 s), then 1, 2 ... s, capped
  at ``sign_in_delay_max_s``; after ``lockout_failures`` failures within
  ``lockout_window_s`` that name is refused *from that address* for
  ``lockout_s`` (``locked_out``), even with the right password. The same name
  from another address is not slowed or locked by them, so an attacker who
  knows an agent's name cannot lock the agent out of their own desk.
- **per address**: ``lockout_address_failures`` failures from one address,
  whatever the names, within the window lock the address for ``lockout_s``:
  no name may sign in from it meanwhile (against password spraying). A
  successful sign-in does not clear this count (an attacker with one
  account of their own could otherwise reset it between guesses).

Attempts in flight count too, so a burst on many sockets gets no more
guesses. The guard never sleeps itself: it says how long the caller's own
coroutine should wait, so one attacker's delay holds up no one else.

The state lives in memory for speed (every check is a dictionary look-up
on the event loop) and is written through to the ``Storage`` (failure times
and lock expiries, in Unix time), from which a restarted platform takes it
back: a lock outlives a restart until it expires. The address is the socket's
peer, or behind a trusted reverse proxy the client it names (proxies.py),
as ``client_address`` counts it.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from agent_phone.cloud.config import PlatformConfig
from agent_phone.cloud.errors import RequestError
from agent_phone.cloud.storage import SignInFailure, SignInLock, Storage, StorageError

logger = logging.getLogger(__name__)

#: Scopes of a count: a user name from one address, or a whole address.
NAME = "name"
ADDRESS = "address"
#: Bounds on what attackers can make us remember, per scope (the oldest
#: are forgotten first).
MAX_TRACKED = 10_000
#: Old failures and ended locks are deleted from the storage at most this often.
PRUNE_EVERY_S = 60.0

#: (scope, user name or "" for an address, address)
Key = tuple[str, str, str]


def client_address(remote: str | None) -> str:
    """The address a peer's failures are counted by: its IPv4 address, or
    the /64 prefix of its IPv6 address (one host usually holds a whole /64
    and may pick any address in it, so single IPv6 addresses would make the
    per-address limit moot)."""
    if not remote:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote.split("%")[0])  # without an IPv6 zone
    except ValueError:
        return remote
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if not ip.is_loopback:
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _keys(user: str, address: str) -> tuple[Key, Key]:
    return (NAME, user, address), (ADDRESS, "", address)


@dataclass
class _Failures:
    #: Monotonic times of the failures counted.
    times: list[float]
    #: Monotonic; 0: never locked.
    locked_until: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """After a failed sign-in: how long to wait before answering, and whether
    the name (from this address) or the address is now locked."""

    #: Failures for this name from this address.
    failures: int
    delay_s: float
    locked_for_s: float = 0.0
    #: Failures from this address, any name.
    address_failures: int = 0
    address_locked_for_s: float = 0.0


class LockedOut(RequestError):
    def __init__(self, seconds: float, scope: str = NAME) -> None:
        what = "this address is locked" if scope == ADDRESS else "this user is locked"
        super().__init__(
            "locked_out",
            f"too many failed sign-ins: {what}; try again in {max(1.0, seconds):.0f} s",
        )
        self.scope = scope
        self.retry_after_s = round(seconds, 1)


class SignInGuard:
    def __init__(self, config: PlatformConfig, storage: Storage) -> None:
        self._limits = {NAME: config.lockout_failures, ADDRESS: config.lockout_address_failures}
        self._window = config.lockout_window_s
        self._lock_s = config.lockout_s
        self._delay = config.sign_in_delay_s
        self._delay_max = config.sign_in_delay_max_s
        self._storage = storage
        self._entries: dict[str, OrderedDict[Key, _Failures]] = {
            NAME: OrderedDict(),
            ADDRESS: OrderedDict(),
        }
        #: Sign-ins being checked (or their failure's answer delayed) per key.
        self._in_flight: dict[Key, int] = {}
        self._next_prune = 0.0
        #: Taken back from the storage at start: (locks in force, failures).
        self.restored = self._restore()

    # --- at start ---------------------------------------------------------------

    def _restore(self) -> tuple[int, int]:
        """The storage's failures within the window and locks in force, with
        their Unix times turned into this process's monotonic clock. A lock
        lasts no longer than ``lockout_s`` from now (the clock was set back,
        or the setting shortened) and no failure is in the future."""
        mono, wall = time.monotonic(), time.time()
        failures, locks = self._storage.sign_in_state(wall - self._window, wall)
        for f in failures:
            entry = self._entry((f.scope, f.user, f.address), create=True)
            assert entry is not None
            entry.times.append(mono - max(0.0, wall - f.at))
        for lock in locks:
            entry = self._entry((lock.scope, lock.user, lock.address), create=True)
            assert entry is not None
            entry.locked_until = mono + min(self._lock_s, lock.until - wall)
        for entries in self._entries.values():
            while len(entries) > MAX_TRACKED:
                entries.popitem(last=False)
        self._next_prune = mono + min(PRUNE_EVERY_S, self._window)
        return len(locks), len(failures)

    # --- per attempt -------------------------------------------------------------

    def check(self, user: str, address: str) -> None:
        """Refuse a locked name (from this address) or a locked address at
        once, before any password is checked; the longer lock is named."""
        now = time.monotonic()
        worst: tuple[float, str] | None = None
        for key in _keys(user, address):
            entry = self._entry(key)
            if entry is not None and (left := entry.locked_until - now) > 0:
                if worst is None or left > worst[0]:
                    worst = (left, key[0])
        if worst is not None:
            raise LockedOut(*worst)

    def begin(self, user: str, address: str) -> None:
        """An attempt starts (``end`` when it is answered). A burst of
        parallel attempts gets no more password checks than the failures
        still allowed, per name and per address: the rest are refused at once."""
        now = time.monotonic()
        keys = _keys(user, address)
        for key in keys:
            if self._recent(key, now) + self._in_flight.get(key, 0) >= self._limits[key[0]]:
                raise LockedOut(1.0, key[0])
        for key in keys:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def end(self, user: str, address: str) -> None:
        for key in _keys(user, address):
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)

    def failed(self, user: str, address: str) -> Verdict:
        now, wall = time.monotonic(), time.time()
        name_key, address_key = _keys(user, address)
        count, locked = self._count_failure(name_key, now)
        address_count, address_locked = self._count_failure(address_key, now)
        # One transaction for both counts (in order after any reset above).
        self._storage.put_sign_in_failures(
            [SignInFailure(*name_key, at=wall), SignInFailure(*address_key, at=wall)]
        )
        for key, now_locked in ((name_key, locked), (address_key, address_locked)):
            if now_locked:
                self._storage.put_sign_in_lock(SignInLock(*key, until=wall + self._lock_s))
        if now >= self._next_prune:
            self._prune(now, wall)
        # A single slip of the finger costs nothing; repeats cost 0.5, 1, 2 ... s.
        delay = 0.0 if count == 1 else min(self._delay_max, self._delay * 2 ** (count - 2))
        return Verdict(
            failures=count,
            delay_s=delay,
            locked_for_s=self._lock_s if locked else 0.0,
            address_failures=address_count,
            address_locked_for_s=self._lock_s if address_locked else 0.0,
        )

    def succeeded(self, user: str, address: str) -> None:
        """The name's count from this address starts afresh (the address's does not)."""
        key = _keys(user, address)[0]
        if self._entries[NAME].pop(key, None) is not None:
            self._storage.clear_sign_in(*key)

    async def synced(self) -> None:
        """Wait until what was counted so far is on disk: a lock that was
        announced outlives a crash right after."""
        try:
            await self._storage.synced()
        except StorageError as exc:  # only while the platform shuts down
            logger.warning("sign-in lockout not saved: %s", exc)

    # --- the counts ---------------------------------------------------------------

    def _entry(self, key: Key, create: bool = False) -> _Failures | None:
        entries = self._entries[key[0]]
        entry = entries.get(key)
        if entry is None and create:
            entry = entries[key] = _Failures([])
        return entry

    def _recent(self, key: Key, now: float) -> int:
        entry = self._entry(key)
        if entry is None or (entry.locked_until and entry.locked_until <= now):
            return 0  # a lock that ran out starts the count afresh
        return sum(1 for t in entry.times if now - t < self._window)

    def _count_failure(self, key: Key, now: float) -> tuple[int, bool]:
        """Count one failure against ``key`` in memory; (failures in the
        window, locked now). The caller writes it to the storage."""
        entries = self._entries[key[0]]
        entry = entries.get(key)
        if entry is not None and entry.locked_until and entry.locked_until <= now:
            self._storage.clear_sign_in(*key)  # a lock that ran out starts the count afresh
            entry = None
        if entry is None:
            entry = _Failures([])
        entry.times = [t for t in entry.times if now - t < self._window] + [now]
        entries[key] = entry
        entries.move_to_end(key)
        while len(entries) > MAX_TRACKED:
            entries.popitem(last=False)
        count = len(entry.times)
        if count < self._limits[key[0]]:
            return count, False
        entry.locked_until = now + self._lock_s
        return count, True

    def _prune(self, now: float, wall: float) -> None:
        """Forget failures out of the window and locks run out, here and on disk."""
        self._next_prune = now + min(PRUNE_EVERY_S, self._window)
        self._storage.prune_sign_in(wall - self._window, wall)
        for entries in self._entries.values():
            for key in [
                k
                for k, e in entries.items()
                if e.locked_until <= now and all(now - t >= self._window for t in e.times)
            ]:
                del entries[key]
