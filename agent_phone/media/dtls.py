"""The DTLS fingerprints a session description must carry before we use it.

Media is DTLS-SRTP: the keys that encrypt the audio come from a DTLS
handshake whose peer certificate is checked against the ``a=fingerprint``
signaled in the SDP (over the TLS-protected signaling). aiortc 1.16 does
that check itself (``RTCDtlsTransport._validate_peer_identity`` in
aiortc/rtcdtlstransport.py: every fingerprint with a known algorithm must
match, and at least one must be known; otherwise the transport goes to
``failed`` and no SRTP keys exist), and tests/test_dtls.py proves it for the
phone. What aiortc does not do is refuse a description with no fingerprint
(it asserts deep inside a background task, leaving the connection hanging)
or with only a weak one, so ``check_fingerprints`` does, before the
description is applied.
"""

from __future__ import annotations

import re

from aiortc.sdp import SessionDescription

#: Algorithms accepted (RFC 8122 names); sha-256 is required.
STRONG = frozenset({"sha-256", "sha-384", "sha-512"})
_HEX_PAIRS = {"sha-256": 32, "sha-384": 48, "sha-512": 64}
_VALUE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})*$")


class FingerprintError(ValueError):
    """The description's DTLS fingerprints are missing, weak or malformed."""


def check_fingerprints(sdp: str) -> None:
    """Raise FingerprintError unless every media section has a well-formed
    sha-256 fingerprint and no fingerprint with a weaker algorithm."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises whatever the text trips it on
        raise FingerprintError(f"unreadable SDP: {exc}") from None
    if not description.media:
        raise FingerprintError("the SDP has no media section")
    for index, media in enumerate(description.media):
        where = f"media section {index} ({media.kind})"
        fingerprints = media.dtls.fingerprints if media.dtls is not None else []
        if not fingerprints:
            raise FingerprintError(f"{where} has no DTLS fingerprint")
        algorithms = set()
        for fingerprint in fingerprints:
            algorithm = fingerprint.algorithm.lower()
            if algorithm not in STRONG:
                raise FingerprintError(
                    f"{where}: DTLS fingerprint algorithm {fingerprint.algorithm!r} "
                    "is not accepted (sha-256 is required)"
                )
            value = fingerprint.value
            if not _VALUE.match(value) or value.count(":") + 1 != _HEX_PAIRS[algorithm]:
                raise FingerprintError(f"{where}: malformed {algorithm} fingerprint")
            algorithms.add(algorithm)
        if "sha-256" not in algorithms:
            raise FingerprintError(f"{where} has no sha-256 DTLS fingerprint")
