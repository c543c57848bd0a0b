"""Who hears whom on the platform.

A call's parties (``MediaParty``: an agent's link, a customer's leg) are
joined by one media path, made for the call's shape of the moment and
closed when it changes (a hold, a transfer, a third party joining):

- a ``Bridge`` joins two parties by forwarding each one's Opus packets to
  the other as they come: nothing is decoded or encoded, and the FEC each
  sender put in reaches the other end (agent_phone/media/tracks.py);
- a ``Conference`` joins three or more: each party's packets go through the
  one receive path (jitter buffer, FEC, concealment:
  agent_phone/media/receiver.py), and every 20 ms each party is sent the sum
  of what the others said, encoded for them. The platform mixes only here.

Closing a path leaves its parties speaking to nobody; the router then says
what each hears next (the hold music, the waiting tone, another path).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import numpy as np

from agent_phone.cloud.media_edge import Hearing, MediaParty
from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, PTIME
from agent_phone.media.receiver import AudioReceiver

logger = logging.getLogger(__name__)

#: Mixed frames waiting for a listener's track at most (its clock and the
#: mixer's drift apart by a frame now and then; more would be delay).
MIX_QUEUE = 3
#: The mixer asks each voice's jitter buffer this far ahead of "now".
_LEAD_S = PTIME
#: When the mixer's loop was stalled longer than this, it skips ahead.
_RESYNC_S = 0.1
#: Pulls from one jitter buffer for one frame at most (each gives ~20 ms).
_MAX_PULLS = 4


class Bridge:
    """Two parties, each hearing the other's packets as they come."""

    def __init__(self, a: MediaParty, b: MediaParty) -> None:
        self.parties = (a, b)
        a.speak_to(lambda payload, timestamp, _seq: b.forward(payload, timestamp))
        b.speak_to(lambda payload, timestamp, _seq: a.forward(payload, timestamp))
        a.hear(Hearing.FORWARDED)
        b.hear(Hearing.FORWARDED)

    def __repr__(self) -> str:
        return f"<Bridge {self.parties[0].name} <-> {self.parties[1].name}>"

    def close(self) -> None:
        for party in self.parties:
            party.speak_to(None)


class _Voice:
    """One party in a conference: their jitter buffer, read 20 ms at a time."""

    def __init__(self) -> None:
        self.receiver = AudioReceiver()
        self.receiver.start()
        self._pending = np.zeros(0, dtype=DTYPE)

    def frame(self, now: float) -> np.ndarray:
        # The buffer hands out ~20 ms per pull, more or less while it steers
        # its delay; the mixer takes exactly one frame.
        for _ in range(_MAX_PULLS):
            if self._pending.size >= FRAME_SAMPLES:
                break
            self._pending = np.concatenate([self._pending, self.receiver.pull(now + _LEAD_S, now)])
        frame = self._pending[:FRAME_SAMPLES]
        self._pending = self._pending[FRAME_SAMPLES:]
        if frame.size < FRAME_SAMPLES:
            frame = np.concatenate([frame, np.zeros(FRAME_SAMPLES - frame.size, dtype=DTYPE)])
        return frame


class _Mix:
    """What one party hears in a conference: an ``AudioSource`` their track
    encodes, read every 20 ms."""

    def __init__(self) -> None:
        self.frames: deque[np.ndarray] = deque(maxlen=MIX_QUEUE)

    async def start(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        return self.frames.popleft() if self.frames else None

    async def stop(self) -> None:
        pass


class Conference:
    """Three or more parties, each hearing the sum of the others."""

    def __init__(self, parties: list[MediaParty]) -> None:
        self.parties = tuple(parties)
        self._voices = [_Voice() for _ in parties]
        self._mixes = [_Mix() for _ in parties]
        self.frames_mixed = 0
        for party, voice, mix in zip(self.parties, self._voices, self._mixes, strict=True):
            party.speak_to(voice.receiver.put)
            party.hear(Hearing.MIX, mix)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="conference")

    def __repr__(self) -> str:
        return f"<Conference {', '.join(p.name for p in self.parties)}>"

    def mix_once(self, now: float) -> None:
        """One frame for everyone: each hears the others, never themselves."""
        frames = [voice.frame(now).astype(np.int32) for voice in self._voices]
        total = np.sum(frames, axis=0)
        for frame, mix in zip(frames, self._mixes, strict=True):
            mix.frames.append(np.clip(total - frame, -32768, 32767).astype(DTYPE))
        self.frames_mixed += 1

    async def _run(self) -> None:
        start = time.monotonic()
        index = 0
        while True:  # until closed
            now = time.monotonic()
            due = start + index * PTIME
            if due > now:
                await asyncio.sleep(due - now)
                now = time.monotonic()
            elif now - due > _RESYNC_S:  # the loop stalled: skip, don't burst
                index = int((now - start) / PTIME)
            self.mix_once(now)
            index += 1

    def close(self) -> None:
        self._task.cancel()
        for party in self.parties:
            party.speak_to(None)
        for voice in self._voices:
            voice.receiver.close()


MediaPath = Bridge | Conference


def join(parties: list[MediaParty]) -> MediaPath:
    """The path for these parties: a bridge for two, a conference for more."""
    if len(parties) < 2:
        raise ValueError("a media path joins two parties or more")
    return Bridge(parties[0], parties[1]) if len(parties) == 2 else Conference(parties)
