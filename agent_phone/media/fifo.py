"""A bounded FIFO of audio samples, used on the asyncio loop only."""

from __future__ import annotations

from collections import deque

import numpy as np

from agent_phone.media.audio import DTYPE, FRAME_SAMPLES, SAMPLE_RATE


class AudioFifo:
    """Samples in, 20 ms blocks out; the oldest audio is dropped past ``max_ms``.

    Dropping keeps the latency bounded when the producer runs ahead of the
    consumer (two clocks never agree exactly); ``dropped`` counts it.
    It is also an ``AudioSource``, so a bridge can feed a track from it.
    """

    def __init__(self, max_ms: float = 120.0) -> None:
        self._max = int(SAMPLE_RATE * max_ms / 1000)
        self._chunks: deque[np.ndarray] = deque()
        self._size = 0
        self.dropped = 0
        self.underruns = 0

    def __len__(self) -> int:
        return self._size

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.clear()

    def write(self, samples: np.ndarray) -> None:
        if samples.size == 0:
            return
        self._chunks.append(np.asarray(samples, dtype=DTYPE).reshape(-1))
        self._size += samples.size
        while self._size > self._max:
            excess = self._size - self._max
            head = self._chunks[0]
            if head.size <= excess:
                self._chunks.popleft()
                self._size -= head.size
                self.dropped += head.size
            else:
                self._chunks[0] = head[excess:]
                self._size -= excess
                self.dropped += excess

    def read(self, n: int = FRAME_SAMPLES) -> np.ndarray | None:
        """The next ``n`` samples, or None (an underrun) when fewer are buffered."""
        if self._size < n:
            self.underruns += 1
            return None
        out = np.empty(n, dtype=DTYPE)
        filled = 0
        while filled < n:
            head = self._chunks[0]
            take = min(n - filled, head.size)
            out[filled : filled + take] = head[:take]
            filled += take
            if take == head.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = head[take:]
        self._size -= n
        return out

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0
