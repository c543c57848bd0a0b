"""What a customer hears, chosen by the platform: the waiting tone, the agent,
the hold music or a conference's mix, with the agent's DTMF digits played
over it.

One ``CustomerFeed`` is the audio source of a customer leg's outbound track
for the whole call. The router switches it as the call moves: waiting in a
queue (on arrival and when re-queued) -> bridged to an agent -> held ->
bridged ... Tones are generated here, on the platform, so a held or waiting
customer hears them whatever the agent's phone does.

While the customer is bridged to an agent, the feed asks its track to
*forward* the agent's Opus packets as they come (``forwarding``): the
platform decodes nothing. The waiting tone and the hold music are encoded
once for the whole platform (``tones_encoded``) and only replayed; DTMF
digits are encoded while they play.
"""

from __future__ import annotations

import enum
import functools
import logging

import numpy as np

from agent_phone.media.audio import FRAME_SAMPLES, SAMPLE_RATE, AudioSource
from agent_phone.media.tones import dtmf_samples, hold_music, waiting_tone
from agent_phone.media.tracks import PacketLoop, encode_loop

logger = logging.getLogger(__name__)

#: At most this much DTMF waits to be played (a flood of keys is refused).
MAX_PENDING_DTMF_S = 10.0


class DtmfBusy(Exception):
    """Too many keys are still waiting to be played."""


class Feed(enum.Enum):
    WAITING = "waiting"
    #: The other party's packets, forwarded (an agent, or whoever is bridged).
    AGENT = "agent"
    HOLD = "hold"
    #: A conference's mix for this customer (agent_phone/cloud/media_paths.py).
    MIX = "mix"


@functools.cache
def tones_encoded() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The waiting tone's and the hold music's Opus packets, encoded once."""
    return encode_loop(waiting_tone()), encode_loop(hold_music())


class CustomerFeed:
    """An ``AudioSource`` for the customer's track, per the current ``mode``:
    the agent's packets forwarded, or the platform's own tones.

    DTMF digits replace whatever else would be heard while they play (as an
    exchange generating in-band DTMF does), then the mode's audio resumes.
    """

    def __init__(self, call_id: str = "") -> None:
        self.call_id = call_id
        waiting, hold = tones_encoded()
        self._waiting = PacketLoop(waiting)
        self._hold = PacketLoop(hold)
        self._mode = Feed.WAITING
        self._mix: AudioSource | None = None
        self._dtmf = np.zeros(0, dtype=np.int16)

    @property
    def mode(self) -> Feed:
        return self._mode

    def set_mode(self, mode: Feed, mix: AudioSource | None = None) -> None:
        """``mix``: with ``Feed.MIX``, the conference's audio for this customer."""
        self._mix = mix if mode is Feed.MIX else None
        if mode is self._mode:
            return
        logger.info("%s: customer hears %s -> %s", self.call_id, self._mode.value, mode.value)
        self._mode = mode
        if mode is Feed.WAITING:
            self._waiting.restart()
            self._dtmf = self._dtmf[:0]
        elif mode is Feed.HOLD:
            self._hold.restart()

    @property
    def forwarding(self) -> bool:
        """The track sends the agent's packets on as they come."""
        return self._mode is Feed.AGENT and not self._dtmf.size

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

    def read_packet(self) -> bytes | None:
        """The next packet of a tone encoded once, or None: ``read`` then."""
        if self._dtmf.size or self._mode in (Feed.AGENT, Feed.MIX):
            return None
        return (self._hold if self._mode is Feed.HOLD else self._waiting).read_packet()

    def read(self) -> np.ndarray | None:
        """DTMF digits still to play (the agent's packets that arrive
        meanwhile are dropped: not heard, not delayed); otherwise the
        conference's mix, or nothing."""
        if not self._dtmf.size:
            if self._mode is Feed.MIX and self._mix is not None:
                return self._mix.read()
            return None
        block = self._dtmf[:FRAME_SAMPLES]
        self._dtmf = self._dtmf[FRAME_SAMPLES:]
        if block.size < FRAME_SAMPLES:
            block = np.concatenate([block, np.zeros(FRAME_SAMPLES - block.size, block.dtype)])
        return block

    async def stop(self) -> None:
        pass
