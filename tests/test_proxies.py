"""Whose address the platform counts behind a reverse proxy
(agent_phone/cloud/proxies.py): X-Forwarded-For is believed only from a
trusted proxy, and read from the right, so what a client writes into it
never decides its own address. End to end: tests/test_lockout.py."""

from __future__ import annotations

import pytest
from e2e import write_config

from agent_phone.cloud.config import ConfigError, load_config
from agent_phone.cloud.proxies import MAX_HOPS, TrustedProxies

PROXIES = TrustedProxies(["10.0.0.5", "10.1.0.0/16", "2001:db8::/64"])


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        # Not from a proxy: the socket's address, whatever the header says.
        ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),
        ("198.51.100.7", [], "198.51.100.7"),
        # From the proxy: the client it names.
        ("10.0.0.5", ["203.0.113.1"], "203.0.113.1"),
        # The client's own forged entries lie left of what the proxy appended.
        ("10.0.0.5", ["1.2.3.4, 5.6.7.8, 203.0.113.1"], "203.0.113.1"),
        # Two proxies (the header may arrive as two header lines).
        ("10.0.0.5", ["1.2.3.4, 203.0.113.1", "10.1.4.4"], "203.0.113.1"),
        ("2001:db8::9", ["203.0.113.1, 10.0.0.5"], "203.0.113.1"),
        # The proxy's own health check, no header: the proxy.
        ("10.0.0.5", [], "10.0.0.5"),
        # Nothing but proxies, or junk where an address should be: the
        # left-most trusted address reached, never the junk.
        ("10.0.0.5", ["10.1.0.1"], "10.1.0.1"),
        ("10.0.0.5", ["203.0.113.1, not-an-address"], "10.0.0.5"),
        ("10.0.0.5", ["not-an-address, 10.1.0.1"], "10.1.0.1"),
        ("10.0.0.5", [" 203.0.113.1 "], "203.0.113.1"),
        ("::ffff:10.0.0.5", ["203.0.113.1"], "203.0.113.1"),
    ],
)
def test_the_client_is_the_right_most_untrusted_address(peer, header, client):
    assert PROXIES.client(peer, header) == client


def test_without_trusted_proxies_the_header_is_ignored():
    nobody = TrustedProxies()
    assert nobody.client("10.0.0.5", ["203.0.113.1"]) == "10.0.0.5"
    assert nobody.client(None, ["203.0.113.1"]) is None


def test_a_header_stuffed_with_proxies_is_walked_only_so_far():
    stuffed = ", ".join(["203.0.113.1"] + ["10.1.0.1"] * (MAX_HOPS + 100))
    assert PROXIES.client("10.0.0.5", [stuffed]) == "10.1.0.1"


def test_trusted_proxies_are_configured_as_addresses_or_networks(tmp_path):
    assert load_config(write_config(tmp_path / "a.toml")).trusted_proxies == ()
    config = load_config(
        write_config(tmp_path / "b.toml", trusted_proxies=["10.0.0.5", "fd00::/8"])
    )
    assert config.trusted_proxies == ("10.0.0.5", "fd00::/8")
    for bad in ("10.0.0.5", ["proxy.example.com"], [5]):
        with pytest.raises(ConfigError, match="trusted_proxies"):
            load_config(write_config(tmp_path / "c.toml", trusted_proxies=bad))
