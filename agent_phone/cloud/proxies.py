"""Who a client is when the platform sits behind a reverse proxy.

Behind a proxy or load balancer every socket comes from the proxy, so the
sign-in lockout (lockout.py), the logs and the admin API's refusals would
all see one address. The proxy says whom it serves in ``X-Forwarded-For``,
but anyone can send that header: it is believed only from the addresses in
``trusted_proxies`` (docs/administration.md), the way nginx's realip module
(``set_real_ip_from``, ``real_ip_recursive on``) and uvicorn's
``--forwarded-allow-ips`` do it:

- a socket from an address that is not trusted is that address, whatever
  headers it sends;
- from a trusted proxy, the header is read from the right (each proxy
  appends the address it was connected from) past every trusted proxy; the
  first address that is not trusted is the client. What a client wrote into
  the header itself lies further left and is never reached.

aiohttp-remotes was looked at and not taken: its strict mode refuses
clients whose own proxy (a corporate one) adds a hop, and direct
connections such as a load balancer's health check; its relaxed modes
believe the header from any peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from aiohttp import hdrs, web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: More hops than this in X-Forwarded-For are not walked (a header stuffed
#: with trusted addresses costs a bounded amount of work).
MAX_HOPS = 16


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed; empty: none."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n.strip(), strict=False) for n in networks
        )

    def __repr__(self) -> str:
        return f"<TrustedProxies {', '.join(map(str, self.networks)) or 'none'}>"

    def trusts(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in n for n in self.networks)

    def of(self, request: web.BaseRequest) -> str | None:
        """The client's address for an HTTP request or WebSocket."""
        return self.client(request.remote, request.headers.getall(hdrs.X_FORWARDED_FOR, []))

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client's address: ``peer`` (the socket's), or when that is a
        trusted proxy, the right-most address in ``forwarded_for`` (the
        ``X-Forwarded-For`` header values, in order) that is not a trusted
        proxy. A header that ends in trusted proxies only, or in something
        that is not an address, gives the left-most trusted address reached."""
        if not self.networks or peer is None or not self.trusts(peer):
            return peer
        hops = [h.strip() for value in forwarded_for for h in value.split(",")]
        client = peer
        for hop in reversed(hops[-MAX_HOPS:]):
            if _ip(hop) is None:
                break
            client = hop
            if not self.trusts(hop):
                break
        return client


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])  # without an IPv6 zone
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
