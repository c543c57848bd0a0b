"""What a customer hears, chosen by the platform: the waiting tone, the agent,
or the hold music, with the agent's DTMF digits played over it.

One ``CustomerFeed`` is the audio source of a customer leg's outbound track
for the whole call. The router switches it as the call moves: waiting in a
queue (on arrival and when re-queued) -> bridged to an agent -> held ->
bridged ... Tones are generated here, on the platform, so a held or waiting
customer hears them whatever the agent's phone does.
"""

from __future__ import annotations

import enum
import logging

import numpy as np

from agent_phone.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from agent_phone.media.fifo import AudioFifo
from agent_phone.media.tones import LoopedTone, dtmf_samples, hold_music, waiting_tone

logger = logging.getLogger(__name__)

#: At most this much DTMF waits to be played (a flood of keys is refused).
MAX_PENDING_DTMF_S = 10.0


class DtmfBusy(Exception):
    """Too many keys are still waiting to be played."""


class Feed(enum.Enum):
    WAITING = "waiting"
    AGENT = "agent"
    HOLD = "hold"


class CustomerFeed:
    """An ``AudioSource``: 20 ms blocks for the customer, per the current ``mode``.

    DTMF digits replace whatever else would be heard while they play (as an
    exchange generating in-band DTMF does), then the mode's audio resumes.
    """

    def __init__(self, from_agent: AudioFifo, call_id: str = "") -> None:
        self.call_id = call_id
        self._from_agent = from_agent
        self._waiting = LoopedTone(waiting_tone())
        self._hold = LoopedTone(hold_music())
        self._mode = Feed.WAITING
        self._dtmf = np.zeros(0, dtype=np.int16)

    @property
    def mode(self) -> Feed:
        return self._mode

    def set_mode(self, mode: Feed) -> None:
        if mode is self._mode:
            return
        logger.info("%s: customer hears %s -> %s", self.call_id, self._mode.value, mode.value)
        self._mode = mode
        if mode is Feed.WAITING:
            self._waiting.restart()
            self._dtmf = self._dtmf[:0]
        elif mode is Feed.HOLD:
            self._hold.restart()
        # Nothing stale from before: the agent's audio starts from now.
        self._from_agent.clear()

    def play_dtmf(self, digits: str) -> float:
        """Queue ``digits`` (validated: ValueError); returns their length in seconds.

        Raises ``DtmfBusy`` when more than ``MAX_PENDING_DTMF_S`` would wait."""
        samples = dtmf_samples(digits)
        waiting_s = (self._dtmf.size + samples.size) / SAMPLE_RATE
        if waiting_s > MAX_PENDING_DTMF_S:
            raise DtmfBusy(
                f"{self._dtmf.size / SAMPLE_RATE:.1f} s of DTMF keys are still playing;"
                f" at most {MAX_PENDING_DTMF_S:g} s may wait"
            )
        self._dtmf = np.concatenate([self._dtmf, samples])
        return round(samples.size / SAMPLE_RATE, 3)

    async def start(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        if self._dtmf.size:
            block = self._dtmf[:FRAME_SAMPLES]
            self._dtmf = self._dtmf[FRAME_SAMPLES:]
            # The agent's audio that arrives meanwhile is not heard, not delayed.
            self._from_agent.read()
            if block.size < FRAME_SAMPLES:
                block = np.concatenate([block, np.zeros(FRAME_SAMPLES - block.size, block.dtype)])
            return block
        if self._mode is Feed.AGENT:
            return self._from_agent.read()
        if self._mode is Feed.HOLD:
            return self._hold.read()
        return self._waiting.read()

    async def stop(self) -> None:
        pass
