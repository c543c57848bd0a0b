"""The phone refuses media whose DTLS certificate is not the one signaled.

Real aiortc on both ends, in one process, on 127.0.0.1: the platform's
``AgentLink`` (media edge) offers, the phone's ``PhoneConnection`` answers.
With the offer's ``a=fingerprint`` replaced by another certificate's (what a
man in the middle of the signaling would do), the phone's DTLS handshake
fails its identity check, the phone declares the connection dead
(``dtls_failed``) and not one audio frame crosses either way. The same pair
with the offer untouched carries audio both ways, so the test can fail.
Offers with no fingerprint, or only a weak one, are refused before use.
"""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest
from aiortc import RTCCertificate
from audio_analysis import has_tone

from agent_phone.cloud.media_edge import AgentLink, CustomerLeg
from agent_phone.media.dtls import FingerprintError, check_fingerprints
from agent_phone.media.ice import ice_addresses, restrict_ice_addresses
from agent_phone.media.wav import ToneSource
from agent_phone.phone.connection import ConnectionError_, PhoneConnection

AGENT_HZ = 880.0
CUSTOMER_HZ = 440.0
FINGERPRINT = re.compile(r"^a=fingerprint:sha-256 (\S+)\r?$", re.MULTILINE)
ANY_FINGERPRINT = re.compile(r"^a=fingerprint:(\S+) (\S+)\r?\n", re.MULTILINE)


@pytest.fixture(autouse=True)
def loopback_only():
    before = ice_addresses()
    restrict_ice_addresses(["127.0.0.1"])
    yield
    restrict_ice_addresses(before)


def forge(offer: str) -> str:
    """Every fingerprint in ``offer`` replaced by another certificate's."""
    forged = {f.algorithm: f.value for f in RTCCertificate.generateCertificate().getFingerprints()}
    real = dict(ANY_FINGERPRINT.findall(offer))
    assert set(real) == set(forged) and "sha-256" in real
    for algorithm, value in real.items():
        assert forged[algorithm] != value
        offer = offer.replace(value, forged[algorithm])
    return offer


class Pair:
    """The platform's link to the phone, a customer leg bridged onto it, and the phone."""

    def __init__(self) -> None:
        self.dead: list[str] = []
        self.link = AgentLink("bob", lambda _link, reason: None)
        self.leg = CustomerLeg("call-dtls-test")
        self.phone = PhoneConnection("conn-test", lambda _c, reason: self.dead.append(reason))
        self.phone_heard: list[np.ndarray] = []
        self.customer_tone = ToneSource(CUSTOMER_HZ)
        self.agent_tone = ToneSource(AGENT_HZ)
        self.customer_heard: list[np.ndarray] = []

    async def connect(self, tamper: bool) -> None:
        offer = await self.link.create_offer()
        if tamper:
            offer = forge(offer)
        answer = await self.phone.accept_offer(offer)
        # The platform's own check of the phone passes either way: the answer is genuine.
        await self.link.accept_answer(answer, timeout=10)
        await self.customer_tone.start()
        await self.agent_tone.start()
        self.link.attach(self.leg)
        self.phone.attach(self.agent_tone, self.phone_heard.append)

    async def talk(self, seconds: float) -> None:
        """Customer audio into the bridge and agent audio out of it, for ``seconds``."""
        for _ in range(int(seconds / 0.02)):
            block = self.customer_tone.read()
            assert block is not None
            self.leg.from_customer.write(block)
            await asyncio.sleep(0.02)
            if len(self.leg.to_customer):
                heard = self.leg.to_customer.read(len(self.leg.to_customer))
                assert heard is not None
                self.customer_heard.append(heard)

    async def close(self) -> None:
        await self.phone.close()
        await self.link.close()
        await self.leg.close()


async def test_untouched_offer_carries_audio_both_ways():
    pair = Pair()
    try:
        await pair.connect(tamper=False)
        await pair.talk(2.0)
        assert pair.dead == []
        heard_by_phone = np.concatenate(pair.phone_heard)
        assert has_tone(heard_by_phone, CUSTOMER_HZ)
        assert has_tone(np.concatenate(pair.customer_heard), AGENT_HZ)
    finally:
        await pair.close()


async def test_tampered_fingerprint_in_the_offer_is_refused_by_the_phone():
    pair = Pair()
    try:
        await pair.connect(tamper=True)
        await pair.talk(2.0)
        assert pair.dead == ["dtls_failed"], pair.dead
        transport = pair.phone.pc.getTransceivers()[0].sender.transport
        assert transport.state == "failed"
        # Not one frame either way: the phone never derived SRTP keys.
        assert pair.phone.frames_received == 0 and pair.phone_heard == []
        assert pair.customer_heard == [] and len(pair.leg.to_customer) == 0
    finally:
        await pair.close()


async def offer_sdp() -> str:
    link = AgentLink("bob", lambda _link, reason: None)
    try:
        return await link.create_offer()
    finally:
        await link.close()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda sdp: ANY_FINGERPRINT.sub("", sdp), "has no DTLS fingerprint"),
        (
            lambda sdp: ANY_FINGERPRINT.sub("a=fingerprint:sha-1 AB:CD\r\n", sdp),
            "'sha-1' is not accepted",
        ),
        (
            lambda sdp: FINGERPRINT.sub("a=fingerprint:sha-256 AB:CD", sdp),
            "malformed sha-256 fingerprint",
        ),
    ],
    ids=["none", "sha-1", "malformed"],
)
async def test_offers_without_a_usable_fingerprint_are_refused(change, words):
    sdp = change(await offer_sdp())
    with pytest.raises(FingerprintError, match=words):
        check_fingerprints(sdp)
    phone = PhoneConnection("conn-test", lambda _c, reason: None)
    try:
        with pytest.raises(ConnectionError_, match=words):
            await phone.accept_offer(sdp)
        assert phone.pc.remoteDescription is None  # never applied
    finally:
        await phone.close()
