"""Signaling over TLS, end to end with the real programs on loopback.

The platform serves wss:// with ``--dev-tls`` (or a certificate from its
configuration); the headless phone and the caller verify it with ``--ca``,
and refuse a certificate they cannot verify, and a plain ws:// URL to a
host that is not loopback, with one clear line and exit 1.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from e2e import AGENT_HZ, CUSTOMER_HZ, agent_mic_file, start_tone_caller, write_config
from procs import JsonLinesProcess, PlatformProcess
from test_call_e2e import hears_only

from agent_phone.cloud.tls import format_fingerprint, make_dev_certificate
from agent_phone.media.wav import read_wav
from agent_phone.tls import InsecureUrlError, check_platform_url, is_loopback_host

#: Never contacted: the clients must refuse before connecting. A TCP connect
#: to it would hang until the kernel gives up (~2 min of SYN retries) or
#: aiohttp's 5 min default: far past the bounds below, which allow for slow
#: start-ups on a loaded machine.
FAR_HOST = "10.255.255.1"


def sha256_of(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return format_fingerprint(cert.fingerprint(hashes.SHA256()))


def stderr_of(p: JsonLinesProcess) -> str:
    """Its stderr, also once the process helper has closed it."""
    return p.stderr_path.read_text(errors="replace")


def no_traceback(*procs: JsonLinesProcess) -> None:
    for p in procs:
        assert "Traceback" not in stderr_of(p), stderr_of(p)


@pytest.fixture
def tls_platform(start_platform, tmp_path: Path):
    return start_platform(extra=("--dev-tls", str(tmp_path / "tls")))


async def test_a_call_over_wss_with_the_dev_certificate(
    tls_platform, start_phone, start_caller, tmp_path: Path
):
    platform = tls_platform
    cert = tmp_path / "tls" / "cert.pem"
    assert platform.url.startswith("wss://127.0.0.1:")
    assert platform.admin_url.startswith("https://127.0.0.1:")
    # The fingerprint it announces is the certificate's, on stderr and in ready.
    assert platform.tls_cert == str(cert)
    assert platform.tls_fingerprint == sha256_of(cert)
    assert platform.tls_fingerprint in platform.stderr()

    phone = start_phone(  # --ca cert.pem, taken from the platform's ready event
        platform.url, "bob", "--on-queue", "--auto-answer", "--mic-file", agent_mic_file(tmp_path)
    )
    phone.wait_for("presence", on_queue=True)
    assert "--ca" in phone.args
    caller = start_tone_caller(start_caller, platform.url, tmp_path / "customer.wav", 3)
    code, summary = caller.result(timeout=40)
    assert code == 0, summary
    assert summary["answered"] is True and summary["agent"] == "bob"
    # The agent's tone crossed to the customer (signaling over TLS, media DTLS-SRTP).
    assert hears_only(read_wav(tmp_path / "customer.wav"), AGENT_HZ, CUSTOMER_HZ)
    assert phone.wait_for("ended", call_id=summary["call_id"])["reason"] == "customer_hangup"

    # The admin API is served over the same TLS, and only over it.
    context = ssl.create_default_context(cafile=str(cert))
    headers = {"Authorization": f"Bearer {platform.admin_token}"}
    async with aiohttp.ClientSession() as s:
        async with s.get(platform.admin_url + "/settings", headers=headers, ssl=context) as r:
            assert r.status == 200 and (await r.json())["persistent_timeout_s"] == 600
        plain = platform.admin_url.replace("https://", "http://") + "/settings"
        with pytest.raises(aiohttp.ClientError):
            async with s.get(plain, headers=headers) as r:
                await r.read()
    assert phone.quit() == 0
    no_traceback(phone, platform)


def test_a_certificate_the_clients_cannot_verify_is_refused(
    tls_platform, start_phone, start_caller, tmp_path: Path
):
    platform = tls_platform
    other = make_dev_certificate(tmp_path / "other")  # a different self-signed certificate
    for ca in (str(other.cert_file), None):  # the wrong CA; none (the system's store)
        phone = start_phone(platform.url, "bob", "--on-queue", ca=ca)
        error = phone.wait_for("error", timeout=20)
        assert error["code"] == "sign_in"
        assert "the platform's certificate is not trusted" in error["message"], error
        assert phone.wait_exit(10) == 1

        caller = start_caller(platform.url, "--wait", "5", ca=ca)
        code, summary = caller.result(timeout=30)
        assert code == 1 and summary["answered"] is False
        assert summary["error"].startswith("the platform's certificate is not trusted: ")
        lines = [line for line in stderr_of(caller).splitlines() if line.strip()]
        assert lines == [f"agent-phone-caller: {summary['error']}"], lines
        no_traceback(phone, caller)
    # Nothing got past the handshake.
    assert not platform.matching("agent_signed_in")
    assert not platform.matching("call_queued")
    assert not platform.matching("trunk_refused")


def test_plain_ws_to_a_host_that_is_not_loopback_is_refused_before_connecting(
    start_phone, start_caller
):
    url = f"ws://{FAR_HOST}:8765/ws"
    started = time.monotonic()
    phone = start_phone(url, "bob", "--on-queue")
    caller = start_caller(url, "--wait", "60", trunk_token="x" * 24)
    error = phone.wait_for("error", timeout=50)
    assert phone.wait_exit(10) == 1
    code, summary = caller.result(timeout=50)
    # A TCP connect to FAR_HOST would still be hanging: both refused at once.
    assert time.monotonic() - started < 60
    for message in (error["message"], summary["error"]):
        assert f"refusing plain ws:// to {FAR_HOST}" in message and "wss://" in message
    assert code == 1 and summary["answered"] is False
    assert summary["wait_s"] < 2  # from the caller's start of the call to its end
    no_traceback(phone, caller)


def test_the_platform_refuses_plain_ws_on_an_address_that_is_not_loopback(tmp_path: Path):
    platform = JsonLinesProcess(
        ["agent_phone.cloud", "--host", "0.0.0.0", "--port", "0"], log_dir=tmp_path
    )
    try:
        assert platform.wait_exit(20) == 2
        stderr = platform.stderr()
    finally:
        platform.stop()
    assert "refusing to serve plain ws:// on 0.0.0.0" in stderr and "--dev-tls" in stderr
    assert "Traceback" not in stderr
    assert not [e for e in platform.events if e.get("event") == "ready"]


def test_the_certificate_from_the_configuration_relative_to_it(start_phone, tmp_path: Path):
    dev = make_dev_certificate(tmp_path / "certs")
    config = write_config(tmp_path / "platform.toml", alert_timeout_s=12)
    config.write_text(
        config.read_text() + '[tls]\ncert_file = "certs/cert.pem"\nkey_file = "certs/key.pem"\n'
    )
    served = PlatformProcess(config, log_dir=tmp_path)
    try:
        assert served.url.startswith("wss://")
        assert served.tls_fingerprint == dev.fingerprint == sha256_of(dev.cert_file)
        phone = start_phone(served.url, "carol", ca=str(dev.cert_file))
        assert phone.wait_for("signed_in")["agent"] == "carol"
        assert phone.quit() == 0
    finally:
        served.stop()


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("ws://127.0.0.1:8765/ws", True),
        ("ws://127.0.0.53:8765/ws", True),
        ("ws://localhost:8765/ws", True),
        ("ws://[::1]:8765/ws", True),
        ("wss://platform.example.com/ws", True),
        ("wss://10.1.2.3:8765/ws", True),
        ("ws://10.1.2.3:8765/ws", False),
        ("ws://platform.example.com/ws", False),
        ("ws://127.0.0.1.example.com/ws", False),
        ("http://127.0.0.1:8765/ws", False),
        ("127.0.0.1:8765", False),
    ],
)
def test_which_platform_urls_the_clients_accept(url: str, ok: bool):
    if ok:
        check_platform_url(url)
    else:
        with pytest.raises(InsecureUrlError):
            check_platform_url(url)
    assert is_loopback_host("::1") and not is_loopback_host("0.0.0.0")
