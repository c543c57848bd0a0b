"""Keep ICE on the addresses the configuration names.

aioice gathers host candidates on every interface's address except
127.0.0.1 and offers no option to restrict them (aioice.ice.get_host_addresses,
https://github.com/aiortc/aioice/blob/main/src/aioice/ice.py). Janus solves the
same need with ``ice_enforce_list``; we do it by replacing that one lookup, so
a run configured for 127.0.0.1 (the default for the demo, the tests and the
benchmarks) never sends media anywhere else. Together with
``RTCConfiguration(iceServers=[])`` (no STUN server: aiortc otherwise uses a
public one) nothing leaves the named addresses.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

import aioice.ice
from aiortc import RTCIceCandidate, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

logger = logging.getLogger(__name__)

DEFAULT_ICE_ADDRESSES = ("127.0.0.1",)

_original = aioice.ice.get_host_addresses
_allowed: tuple[str, ...] | None = None


def _restricted(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _allowed is not None
    out = []
    for address in _allowed:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(address)
    return out


def restrict_ice_addresses(addresses: Sequence[str] | None = DEFAULT_ICE_ADDRESSES) -> None:
    """Gather ICE host candidates only on ``addresses`` (None: every interface).

    Process-wide, because aioice reads one module-level function; a process
    runs one platform, one phone or one caller, each with one configuration.
    """
    global _allowed
    if addresses is None:
        _allowed = None
        aioice.ice.get_host_addresses = _original
        logger.info("ICE host candidates: every interface")
        return
    checked = tuple(str(ipaddress.ip_address(a)) for a in addresses)
    if not checked:
        raise ValueError("at least one ICE address is needed")
    _allowed = checked
    aioice.ice.get_host_addresses = _restricted
    logger.info("ICE host candidates restricted to %s", ", ".join(checked))


def ice_addresses() -> tuple[str, ...] | None:
    """The addresses ICE is restricted to now (None: unrestricted)."""
    return _allowed


# --- trickle ICE: candidates that come after the offer or answer -------------------

#: Candidates one peer may trickle into one connection; more is a flood.
MAX_REMOTE_CANDIDATES = 32
_CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})


class CandidateError(ValueError):
    """A trickled candidate that is refused (its message says why)."""


def parse_candidate(
    candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
) -> RTCIceCandidate:
    """The ``candidate`` string of an ``RTCIceCandidateInit`` (``candidate:``
    and the attribute's value, RFC 8839) as aiortc's candidate, or
    CandidateError."""
    if sdp_mid is None and sdp_mline_index is None:
        raise CandidateError("a candidate names its media section: sdp_mid or sdp_mline_index")
    text = candidate.strip()
    if text.startswith("a="):
        text = text[2:]
    if not text.startswith("candidate:"):
        raise CandidateError(f"not a candidate line: {candidate[:80]!r}")
    try:
        # (aiortc's parser asserts on a short line: any exception is a refusal)
        parsed = candidate_from_sdp(text[len("candidate:") :])
    except Exception:
        raise CandidateError(f"malformed candidate {candidate[:80]!r}") from None
    try:
        ipaddress.ip_address(parsed.ip)
    except ValueError:
        # An mDNS name (RFC 8839 5.1 ".local") would need a multicast lookup.
        raise CandidateError(
            f"candidate address {parsed.ip[:64]!r} is not an IP address (names are not resolved)"
        ) from None
    if parsed.protocol.lower() not in ("udp", "tcp") or not 0 < parsed.port < 65536:
        raise CandidateError(f"unusable candidate {candidate[:80]!r}: protocol or port")
    if parsed.type not in _CANDIDATE_TYPES or parsed.component not in (1, 2):
        raise CandidateError(f"unusable candidate {candidate[:80]!r}: type or component")
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = sdp_mline_index
    return parsed


class RemoteCandidates:
    """The candidates a peer trickles into one of our peer connections
    (RFC 8838): each added as it comes (or, come before the offer or answer
    they belong to has been applied, once it has: ``flush``), the end of them
    once, and a bounded number (``MAX_REMOTE_CANDIDATES``)."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self._pc = pc
        self.count = 0
        self.ended = False
        self._pending: list[RTCIceCandidate | None] = []

    async def add(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        """Add one (an empty ``candidate``: the end of them); CandidateError
        for one that is malformed, late or one too many."""
        if self.ended:
            raise CandidateError("the candidates already ended (an empty candidate came)")
        parsed: RTCIceCandidate | None = None
        if candidate == "":
            self.ended = True
        elif self.count >= MAX_REMOTE_CANDIDATES:
            raise CandidateError(f"too many candidates: at most {MAX_REMOTE_CANDIDATES}")
        else:
            parsed = parse_candidate(candidate, sdp_mid, sdp_mline_index)
            self.count += 1
        if self._pc.remoteDescription is None:
            self._pending.append(parsed)
        else:
            await self._pc.addIceCandidate(parsed)

    async def flush(self) -> None:
        """The remote description is set: add what came before it."""
        pending, self._pending = self._pending, []
        for candidate in pending:
            await self._pc.addIceCandidate(candidate)


def split_candidates(sdp: str) -> tuple[str, list[tuple[str, str | None, int]]]:
    """``sdp`` without its candidates (and end-of-candidates), and the
    candidates as ``ice_candidate`` carries them: (``candidate:...``, the
    m-section's mid, its index). For a client that trickles (RFC 8838)."""
    lines = sdp.splitlines()
    kept: list[str] = []
    found: list[tuple[str, int]] = []
    mids: dict[int, str] = {}
    index = -1
    for line in lines:
        if line.startswith("m="):
            index += 1
        if line.startswith("a=mid:") and index >= 0:
            mids[index] = line[len("a=mid:") :]
        if line.startswith("a=candidate:") and index >= 0:
            found.append((line[2:], index))
        elif line != "a=end-of-candidates":
            kept.append(line)
    candidates = [(text, mids.get(i), i) for text, i in found]
    return "\r\n".join(kept) + "\r\n", candidates
