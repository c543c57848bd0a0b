"""Session tokens, resume after a dropped WebSocket, and refusals logged,
with the real platform, headless phones and callers on loopback.

The WebSocket drop is real: the phone reaches the platform through a TCP
proxy (tests/tcp_proxy.py) that the test severs and restores, while the
call's media (ICE on 127.0.0.1) goes straight between the phone and the
platform's media edge, untouched.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from audio_analysis import has_tone
from e2e import (
    AGENT_HZ,
    CUSTOMER_HZ,
    agent_voice_on_sound_card,
    audio_through_files,
    start_tone_caller,
)
from procs import JsonLinesProcess
from tcp_proxy import TcpProxy
from test_bad_input import RawClient, blocking, sign_in

from agent_phone.media.ice import ice_addresses, restrict_ice_addresses
from agent_phone.media.wav import read_wav
from agent_phone.phone.connection import PhoneConnection


def proxied(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://127.0.0.1:{proxy.port}{parts.path}"


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def tone_seconds(samples: np.ndarray, freq: float, window_s: float = 0.1) -> float:
    """How many seconds of ``samples`` carry the tone, in ``window_s`` windows."""
    n = int(48000 * window_s)
    windows = [samples[i : i + n] for i in range(0, len(samples) - n + 1, n)]
    return sum(window_s for w in windows if has_tone(w, freq))


def everything_logged(process: JsonLinesProcess) -> str:
    """All a process printed: its stdout lines and its log (stderr)."""
    return "\n".join(process.lines) + "\n" + process.stderr_path.read_text(errors="replace")


class Raw:
    """A raw WebSocket peer of the platform (a hand-driven phone)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session: aiohttp.ClientSession | None = None
        self.client: RawClient | None = None

    async def __aenter__(self) -> RawClient:
        self.session = aiohttp.ClientSession()
        ws = await self.session.ws_connect(self.url)
        self.client = RawClient(ws)
        return self.client

    async def __aexit__(self, *_exc: object) -> None:
        assert self.client is not None and self.session is not None
        await self.client.close()
        await self.client.ws.close()
        await self.session.close()


# --- tokens ----------------------------------------------------------------------


def test_the_phone_refreshes_its_token_and_keeps_its_session(
    start_platform, start_phone, start_caller
):
    platform = start_platform(token_lifetime_s=2.0)
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer")
    bob.wait_for("presence", on_queue=True)
    signed_in_at = bob.wait_for("signed_in")["t"]
    # Refreshed at 60 % of each lifetime: four refreshes cover more than two
    # lifetimes, after which an unrefreshed session would have ended.
    refreshed = bob.wait_count("session_refreshed", 4, timeout=20)
    assert len(refreshed) >= 4, bob.events[-10:]
    assert all(0 < e["expires_in_s"] <= 2.0 for e in refreshed)
    assert refreshed[3]["t"] - signed_in_at > 4.0
    assert len(platform.matching("session_refreshed", agent="bob")) >= 4
    assert not bob.matching("signed_out") and not platform.matching("token_expired")
    assert not platform.matching("agent_signed_out")
    # Still the same session, still taking calls.
    code, summary = start_caller(platform.url, "--duration", "0.5").result(timeout=40)
    assert code == 0 and summary["agent"] == "bob"
    assert len(platform.matching("agent_signed_in", agent="bob")) == 1


async def test_expired_revoked_and_unknown_tokens_are_refused(start_platform):
    platform = await blocking(start_platform, token_lifetime_s=3.0)
    async with Raw(platform.url) as first:
        await first.send(sign_in("bob"))
        signed_in = await first.receive("signed_in")
        token = signed_in["session_token"]
        assert len(token) >= 40 and signed_in["token_expires_in_s"] == 3.0
        assert signed_in["resume_grace_s"] == 30.0
        await first.send({"type": "refresh_session"})
        refreshed = await first.receive("session_refreshed")
        new_token = refreshed["session_token"]
        assert new_token != token

        async with Raw(platform.url) as other:
            # The refreshed-away token is revoked; a made-up one is unknown.
            e = await other.error_for(
                {"type": "resume_session", "version": 1, "session_token": token}
            )
            assert e["code"] == "invalid_token" and e["in_reply_to"] == "resume_session"
            e = await other.error_for(
                {"type": "resume_session", "version": 1, "session_token": "x" * 43}
            )
            assert e["code"] == "invalid_token"
            # The live token takes the session over, even from an open socket
            # (the phone saw the drop before the platform did).
            await other.send({"type": "resume_session", "version": 1, "session_token": new_token})
            resumed = await other.receive("session_resumed")
            assert resumed["agent"] == "bob" and resumed["on_queue"] is False
            assert resumed["connection"] is None and resumed["call"] is None
            frame = await first.next_frame()
            assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await other.send({"type": "set_presence", "on_queue": True})
            assert (await other.receive("presence"))["on_queue"] is True
            # Not refreshed again: the session ends when the token runs out
            # (no call is up), and the token then counts as expired.
            assert (await other.receive("signed_out", timeout=10))["reason"] == "token_expired"

    async with Raw(platform.url) as late:
        e = await late.error_for(
            {"type": "resume_session", "version": 1, "session_token": new_token}
        )
        assert e["code"] == "token_expired"
    resumed_ev = platform.wait_for("session_resumed", agent="bob")
    assert resumed_ev["took_over_open_socket"] is True
    platform.wait_for("token_expired", agent="bob")
    platform.stop()
    logged = everything_logged(platform)
    assert token not in logged and new_token not in logged


async def test_a_token_expired_on_a_dropped_session_is_refused_with_its_code(start_platform):
    """The session outlives its token only while a call is up; a resume with a
    token past its expiry is ``token_expired``."""
    platform = await blocking(start_platform, token_lifetime_s=1.0, resume_grace_s=20)
    async with Raw(platform.url) as raw:
        await raw.send(sign_in("carol"))
        token = (await raw.receive("signed_in"))["session_token"]
    await blocking(platform.wait_for, "agent_detached", agent="carol")
    await asyncio.sleep(1.3)
    async with Raw(platform.url) as again:
        e = await again.error_for({"type": "resume_session", "version": 1, "session_token": token})
        assert e["code"] == "token_expired" and "expired" in e["message"]
        assert (await blocking(platform.wait_for, "agent_signed_out", agent="carol"))[
            "reason"
        ] == "token_expired"


# --- resume across a severed WebSocket during a call --------------------------------


def test_a_call_survives_a_severed_websocket_and_the_phone_resumes(
    virtual_audio, platform, start_phone, start_caller, tmp_path: Path
):
    with TcpProxy(port_of(platform.url)) as proxy:
        bob = start_phone(proxied(platform.url, proxy), "bob", "--on-queue", "--auto-answer")
        bob.wait_for("presence", on_queue=True)
        # What the agent's speaker plays is recorded in real time (silence included).
        with agent_voice_on_sound_card(virtual_audio) as agent:
            # 60 s: longer than the test, so it is the agent who hangs up.
            caller = start_tone_caller(start_caller, platform.url, tmp_path / "customer.wav", 60)
            answered = bob.wait_for("answered", timeout=30)
            call_id = answered["call_id"]
            delivered = platform.wait_for("call_delivered", call_id=call_id)
            time.sleep(2.0)

            mark = bob.mark()
            proxy.sever()
            severed_at = time.time()
            assert proxy.cut >= 1
            detached = platform.wait_for("agent_detached", agent="bob", timeout=10)
            assert detached["call_id"] == call_id
            bob.wait_for("resuming", since=mark, timeout=10)
            time.sleep(2.0)
            proxy.restore()
            restored_at = time.time()

            resumed = bob.wait_for("resumed", since=mark, timeout=15)
            assert resumed["call_id"] == call_id and resumed["call_state"] == "connected"
            assert resumed["connection_id"] == delivered["connection_id"]
            assert resumed["connection_state"] == "active" and resumed["on_queue"] is True
            assert resumed["away_s"] >= 1.5
            back = platform.wait_for("session_resumed", agent="bob")
            assert back["call_id"] == call_id and back["away_s"] >= 1.5
            # The phone's indicator model is the platform's: this connection, in a call.
            shown = [e for e in bob.events[mark:] if e["event"] == "connection"] or [
                e for e in bob.events[:mark] if e["event"] == "connection"
            ]
            assert shown[-1]["state"] == "active" and shown[-1]["in_call"] is True
            assert shown[-1]["connection_id"] == delivered["connection_id"]
            time.sleep(2.0)  # talk on after the resume
            bob.send("hangup")
            code, summary = caller.result(timeout=30)

    assert code == 0, summary
    assert summary["ended_by"] == "agent" and summary["reason"] == "agent_hangup"
    assert bob.wait_for("ended", call_id=call_id)["reason"] == "agent_hangup"
    # Never ended, never re-queued, never signed out in between.
    assert [e["reason"] for e in platform.wait_count("call_ended", 1)] == ["agent_hangup"]
    assert not platform.matching("call_requeued") and not platform.matching("agent_signed_out")
    assert not bob.matching("signed_out") and not bob.matching("resume_failed")
    assert [e["reason"] for e in bob.matching("ended")] == ["agent_hangup"]
    # Media went on through the cut: while the WebSocket was severed the
    # agent's speaker kept playing the customer's tone.
    speaker_t0 = agent.started_at
    cut = agent.heard[
        int((severed_at - speaker_t0 + 0.2) * 48000) : int((restored_at - speaker_t0) * 48000)
    ]
    assert len(cut) > 1.5 * 48000
    # On this shared 2-core machine the speaker underruns now and then, cut or
    # no cut, so the check is that the tone reached the speaker in both halves
    # of the cut (a stalled call plays silence throughout).
    half = len(cut) // 2
    during = [tone_seconds(cut[:half], CUSTOMER_HZ), tone_seconds(cut[half:], CUSTOMER_HZ)]
    assert min(during) >= 0.1 and sum(during) >= 0.3, f"silence during the cut: {during}"
    # And the customer heard the agent after the resume, to the end of the call.
    heard = read_wav(tmp_path / "customer.wav")
    assert tone_seconds(heard[-int(1.5 * 48000) :], AGENT_HZ) >= 0.5
    # After the call, the connection is kept (R2) on both sides, as one.
    kept = platform.wait_for(
        "connection_kept", agent="bob", connection_id=delivered["connection_id"]
    )
    assert kept
    assert (
        bob.wait_for("connection", state="active", reason="call_ended")["connection_id"]
        == (delivered["connection_id"])
    )
    assert bob.quit() == 0


def test_a_refused_resume_falls_back_to_a_fresh_sign_in(platform, start_phone):
    with TcpProxy(port_of(platform.url)) as proxy:
        bob = start_phone(proxied(platform.url, proxy), "bob", "--on-queue", "--reconnect", "3")
        bob.wait_for("presence", on_queue=True)
        mark = bob.mark()
        proxy.sever()
        platform.wait_for("agent_detached", agent="bob", timeout=10)
        # Meanwhile bob signs in elsewhere: the kept session (and its token) end.
        asyncio.run(_sign_in_and_leave(platform.url, "bob"))
        platform.wait_for("agent_signed_out", agent="bob", reason="signed_in_elsewhere")
        proxy.restore()
        failed = bob.wait_for("resume_failed", since=mark, timeout=15)
        assert failed["code"] == "invalid_token"
        bob.wait_for("reconnecting", since=mark)
        assert len(bob.wait_count("signed_in", 2, timeout=20)) == 2
        # Presence restored by the fresh sign-in, as after losing the platform.
        assert len(bob.wait_count("presence", 2, on_queue=True, timeout=10)) == 2
        assert not bob.matching("resumed")
    assert bob.quit() == 0


async def _sign_in_and_leave(url: str, user: str) -> None:
    async with Raw(url) as raw:
        await raw.send(sign_in(user))
        await raw.receive("signed_in")
        await raw.send({"type": "sign_out"})
        await raw.receive("signed_out")


# --- the grace period runs out ----------------------------------------------------------


async def test_grace_expiry_ends_the_session_and_requeues_its_call(
    start_platform, start_phone, start_caller
):
    """A phone whose WebSocket is gone but whose media lives on (an in-process
    phone connection keeps its heartbeat) is signed out when the grace period
    ends, and its customer goes to the next agent."""
    platform = await blocking(start_platform, resume_grace_s=2.0)
    before = ice_addresses()
    restrict_ice_addresses(["127.0.0.1"])
    connection: PhoneConnection | None = None
    try:
        async with Raw(platform.url) as raw:
            await raw.send(sign_in("bob"))
            await raw.receive("signed_in")
            await raw.send({"type": "set_presence", "on_queue": True})
            await raw.receive("presence")
            caller = start_caller(platform.url, "--duration", "12")
            offer = await raw.receive("connection_offer", timeout=20)
            connection = PhoneConnection(offer["connection_id"], lambda _c, _r: None)
            sdp = await connection.accept_offer(offer["sdp"])
            await raw.send(
                {"type": "connection_answer", "connection_id": offer["connection_id"], "sdp": sdp}
            )
            offered = await raw.receive("call_offered", timeout=20)
            await raw.send({"type": "answer_call", "call_id": offered["call_id"]})
            await raw.receive("call_connected")
            call_id = offered["call_id"]
        # The socket is closed; the media connection lives on.
        detached = await blocking(platform.wait_for, "agent_detached", agent="bob")
        assert detached["call_id"] == call_id and detached["grace_s"] == 2.0
        carol = start_phone(platform.url, "carol", "--on-queue", "--auto-answer")
        expired = await blocking(platform.wait_for, "resume_grace_expired", agent="bob", timeout=10)
        assert expired["call_id"] == call_id
        assert 1.8 <= expired["t"] - detached["t"] < 6.0
        requeued = await blocking(platform.wait_for, "call_requeued", call_id=call_id)
        assert requeued["reason"] == "connection_lost" and requeued["agent"] == "bob"
        signed_out = await blocking(platform.wait_for, "agent_signed_out", agent="bob")
        assert signed_out["reason"] == "connection_lost"
        assert platform.wait_for("connection_closed", agent="bob")["reason"] == "connection_lost"
        # The customer is not lost: carol takes the call.
        await blocking(carol.wait_for, "answered", call_id=call_id, timeout=20)
        code, summary = await blocking(caller.result, timeout=40)
        assert code == 0 and summary["agent"] == "carol"
        ended = await blocking(platform.wait_count, "call_ended", 1)
        assert [e["reason"] for e in ended] == ["customer_hangup"]
    finally:
        if connection is not None:
            await connection.close()
        restrict_ice_addresses(before)


# --- refusals are logged ------------------------------------------------------------------


async def test_refusals_are_logged_without_secrets(platform, start_phone, start_caller):
    carol = start_phone(platform.url, "carol", "--on-queue", "--auto-answer")
    await blocking(carol.wait_for, "presence", on_queue=True)
    caller = start_caller(platform.url, "--duration", "4")
    carols_call = (await blocking(carol.wait_for, "answered"))["call_id"]
    async with Raw(platform.url) as raw:
        e = await raw.error_for({"type": "hangup", "call_id": carols_call})
        assert e["code"] == "not_signed_in"
        await raw.send(sign_in("bob"))
        token = (await raw.receive("signed_in"))["session_token"]
        for kind in ("answer_call", "hangup"):
            e = await raw.error_for({"type": kind, "call_id": carols_call})
            assert e["code"] == "not_your_call"
        e = await raw.error_for({"type": "connection_answer", "connection_id": "c-x", "sdp": "v=0"})
        assert e["code"] == "unknown_connection"
        e = await raw.error_for({"type": "resume_session", "version": 1, "session_token": token})
        assert e["code"] == "already_signed_in"
    code, summary = await blocking(caller.result, timeout=30)
    assert code == 0 and summary["agent"] == "carol"  # carol's call untouched

    refused = platform.matching("refused")
    seen = [(r["peer"], r["agent"], r["type"], r["code"], r["call_id"]) for r in refused]
    assert seen == [
        ("unknown", None, "hangup", "not_signed_in", None),
        ("agent", "bob", "answer_call", "not_your_call", carols_call),
        ("agent", "bob", "hangup", "not_your_call", carols_call),
        ("agent", "bob", "connection_answer", "unknown_connection", None),
        ("agent", "bob", "resume_session", "already_signed_in", None),
    ]
    platform.stop()
    logged = everything_logged(platform)
    assert token not in logged and '"demo"' not in logged


def test_a_call_ended_while_cut_off_is_ended_at_the_phone_on_resume(
    platform, start_phone, start_caller, tmp_path: Path
):
    """The customer hangs up while the phone's WebSocket is down: the
    ``call_ended`` is never delivered, and the resume's snapshot ends the call
    at the phone, whose indicator then shows the kept connection as the
    platform has it."""
    with TcpProxy(port_of(platform.url)) as proxy:
        bob = start_phone(
            proxied(platform.url, proxy),
            "bob",
            "--on-queue",
            "--auto-answer",
            *audio_through_files(tmp_path),
        )
        bob.wait_for("presence", on_queue=True)
        caller = start_caller(platform.url, "--duration", "60")
        call_id = bob.wait_for("answered", timeout=30)["call_id"]
        delivered = platform.wait_for("call_delivered", call_id=call_id)
        mark = bob.mark()
        proxy.sever()
        platform.wait_for("agent_detached", agent="bob", timeout=10)
        caller.proc.terminate()  # the customer hangs up (SIGTERM: a clean hang-up)
        code, summary = caller.result(timeout=20)
        assert summary["answered"] is True
        ended = platform.wait_for("call_ended", call_id=call_id)
        assert ended["reason"] == "customer_hangup"
        kept = platform.wait_for("connection_kept", connection_id=delivered["connection_id"])
        assert not bob.matching("ended")  # the phone has not heard of it yet
        proxy.restore()
        resumed = bob.wait_for("resumed", since=mark, timeout=15)
        assert resumed["call_id"] is None and resumed["call_state"] is None
        assert resumed["connection_id"] == delivered["connection_id"]
        assert resumed["connection_state"] == "active"
        assert bob.wait_for("ended", call_id=call_id)["reason"] == "ended_while_disconnected"
        shown = bob.wait_for("connection", since=mark, reason="resumed")
        assert shown["state"] == "active" and shown["in_call"] is False
        assert shown["connection_id"] == delivered["connection_id"]
        assert shown["expires_at"] == kept["expires_at"]
        # And the next call rides that same kept connection (R3).
        mark = bob.mark()
        code, summary = start_caller(platform.url, "--duration", "0.5").result(timeout=40)
        assert code == 0 and summary["agent"] == "bob"
        assert bob.wait_for("alerting", since=mark)["over_persistent_connection"] is True
    assert not platform.matching("agent_signed_out")
