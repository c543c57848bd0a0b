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

import re

import pytest
from aiortc import RTCCertificate
from audio_analysis import has_tone
from media_peers import AgentSide, Customer, talk

from agent_phone.cloud.media_edge import AgentLink, CustomerLeg
from agent_phone.cloud.media_paths import Bridge
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
    """A customer calling into a leg, the platform's link to the phone, and the
    phone, with the leg bridged onto the link once the link is up."""

    def __init__(self) -> None:
        self.agent = AgentSide()
        self.leg = CustomerLeg("call-dtls-test")
        self.customer = Customer(ToneSource(CUSTOMER_HZ))

    async def connect(self, tamper: bool) -> None:
        await self.customer.call(self.leg)
        await self.agent.connect(forge if tamper else lambda sdp: sdp)
        # The platform's own check of the phone passes either way: the answer is genuine.
        self.bridge = Bridge(self.leg, self.agent.link)
        agent_tone = ToneSource(AGENT_HZ)
        await agent_tone.start()
        await self.customer.track.source.start()  # type: ignore[union-attr]
        self.agent.phone.attach(agent_tone)

    async def close(self) -> None:
        await self.agent.close()
        await self.leg.close()
        await self.customer.close()


async def test_untouched_offer_carries_audio_both_ways():
    pair = Pair()
    try:
        await pair.connect(tamper=False)
        await talk(2.0)
        assert pair.agent.dead == []
        assert pair.agent.heard is not None
        assert has_tone(pair.agent.heard.decoded(), CUSTOMER_HZ)
        assert has_tone(pair.customer.heard.decoded(), AGENT_HZ)
    finally:
        await pair.close()


async def test_tampered_fingerprint_in_the_offer_is_refused_by_the_phone():
    pair = Pair()
    try:
        await pair.connect(tamper=True)
        await talk(2.0)
        assert pair.agent.dead == ["dtls_failed"], pair.agent.dead
        transport = pair.agent.phone.pc.getTransceivers()[0].sender.transport
        assert transport.state == "failed"
        # Not one packet either way: the phone never derived SRTP keys.
        assert pair.agent.phone.packets_received == 0
        assert pair.agent.heard is not None and pair.agent.heard.packets == []
        assert not has_tone(pair.customer.heard.decoded(), AGENT_HZ)
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
