"""The platform's TLS: serving ``wss://`` (and the admin API over https) from
a certificate and key, and a throwaway certificate for development.

``agent-phone-platform --dev-tls [DIR]`` calls ``make_dev_certificate``: a
self-signed certificate for 127.0.0.1, ::1 and localhost, valid for two days,
with an EC P-256 key, written as ``cert.pem`` and ``key.pem`` (mode 0600).
Clients trust it by passing that ``cert.pem`` as ``--ca``. The client side
(verification, the loopback rule for plain ``ws://``) is agent_phone/tls.py.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEV_VALIDITY = datetime.timedelta(days=2)


class TlsError(ValueError):
    """The certificate or key cannot be used; the message says which and why."""


@dataclass(frozen=True)
class DevCertificate:
    cert_file: Path
    key_file: Path
    fingerprint: str


def fingerprint_of(cert_file: Path) -> str:
    """SHA-256 of the (first) certificate in ``cert_file``, as AA:BB:..."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the certificate {cert_file}: {exc}") from None
    return format_fingerprint(cert.fingerprint(hashes.SHA256()))


def format_fingerprint(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except FileNotFoundError as exc:
        raise TlsError(f"no such file: {exc.filename}") from None
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"cannot use the certificate {cert_file} with the key {key_file}: {exc}"
        ) from None
    return context


def make_dev_certificate(directory: Path, now: datetime.datetime | None = None) -> DevCertificate:
    """A fresh self-signed certificate and key in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent-phone development platform")])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + DEV_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "cert.pem"
    key_file = directory / "key.pem"
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key is readable by its owner only, from the moment it exists.
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    os.chmod(key_file, 0o600)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return DevCertificate(
        cert_file=cert_file,
        key_file=key_file,
        fingerprint=format_fingerprint(cert.fingerprint(hashes.SHA256())),
    )
