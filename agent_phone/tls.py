"""How the phone and the caller reach the platform safely: one place for both.

- ``check_platform_url``: ``wss://`` anywhere; plain ``ws://`` only to a
  loopback host (127.0.0.0/8, ::1, ``localhost``), checked before anything
  is sent, so a mistyped URL never carries a password in clear text.
- ``client_ssl_context``: verifies the platform's certificate against the
  system trust store, or against ``--ca FILE`` when given (a private CA, or
  the certificate ``agent-phone-platform --dev-tls`` printed), host name
  included.
- ``untrusted_message``: the one line a person reads when verification fails.

The platform's side (serving TLS, the development certificate) is in
``agent_phone/cloud/tls.py``; what is protected and how is in docs/security.md.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from urllib.parse import urlsplit


class InsecureUrlError(ValueError):
    """A platform URL the clients refuse to use; the message says why."""


class CaFileError(ValueError):
    """The ``--ca`` file cannot be used; the message names it."""


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name ``localhost`` (never resolved:
    looking a name up would already be contacting the network)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_platform_url(url: str) -> None:
    """Raise InsecureUrlError unless ``url`` is ``wss://...`` or a loopback ``ws://...``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        raise InsecureUrlError(f"not a usable platform URL: {url!r} ({exc})") from None
    if parts.scheme not in ("ws", "wss") or not host:
        raise InsecureUrlError(f"the platform URL must be wss://HOST:PORT/ws, not {url!r}")
    if parts.scheme == "ws" and not is_loopback_host(host):
        raise InsecureUrlError(
            f"refusing plain ws:// to {host}: it is not a loopback address, so the "
            "sign-in and calls would cross the network unencrypted; use wss://"
        )


def client_ssl_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Verification against the system trust store, or only ``ca_file`` when given."""
    if ca_file is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    else:
        # Only the given CA: a private platform is not vouched for by public CAs,
        # and public CAs should not vouch for it. PROTOCOL_TLS_CLIENT verifies
        # the certificate and the host name.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except FileNotFoundError:
            raise CaFileError(f"no such CA file: {ca_file}") from None
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            raise CaFileError(f"cannot use {ca_file} as a CA file: {reason}") from None
    return context


def check_ca_file(ca_file: Path | None) -> None:
    """Raise CaFileError now (at start-up) if ``ca_file`` is unusable."""
    if ca_file is not None:
        client_ssl_context(ca_file)


def untrusted_message(exc: BaseException) -> str:
    """One line for a certificate that failed verification."""
    cert_error = getattr(exc, "certificate_error", exc)
    detail = getattr(cert_error, "verify_message", None) or str(cert_error)
    return f"the platform's certificate is not trusted: {detail}"
