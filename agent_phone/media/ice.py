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
