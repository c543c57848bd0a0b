"""The persistent connection, rule by rule (shared/DESIGN.md R2-R11, R13),
with the real platform, headless phones and callers on loopback."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from audio_analysis import has_tone, make_tone

from agent_phone.media.wav import read_wav, write_wav

AGENT_HZ = 880.0


@pytest.fixture
def mic(tmp_path: Path) -> str:
    path = tmp_path / "mic.wav"
    write_wav(path, make_tone(AGENT_HZ, 1.0))
    return str(path)


def call(start_caller, url: str, *extra: str, duration: str = "0.6") -> dict:
    code, summary = start_caller(url, "--duration", duration, *extra).result(timeout=40)
    assert code == 0, summary
    return summary


def test_r2_r3_calls_ride_one_connection(platform, start_phone, start_caller, mic, tmp_path):
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer", "--mic-file", mic)
    bob.wait_for("presence", on_queue=True)
    calls = [call(start_caller, platform.url) for _ in range(4)]
    last = call(start_caller, platform.url, "--record", str(tmp_path / "last.wav"), duration="2")
    calls.append(last)

    offered = platform.matching("connection_offered", agent="bob")
    assert len(offered) == 1  # one offer/answer for five calls (R3)
    delivered = [platform.wait_for("call_delivered", call_id=c["call_id"]) for c in calls]
    assert {d["connection_id"] for d in delivered} == {offered[0]["connection_id"]}
    assert len({d["dtls_transport"] for d in delivered}) == 1  # one DTLS handshake
    assert all(d["dtls_transport"].endswith("/connected") for d in delivered)
    assert [d["over_persistent_connection"] for d in delivered] == [False] + [True] * 4
    alerts = bob.matching("alerting")
    assert [a["over_persistent_connection"] for a in alerts] == [False] + [True] * 4
    # Kept after each call (R2), and the last call still carries audio.
    assert len(platform.wait_count("connection_kept", 5, agent="bob")) == 5
    assert not platform.matching("connection_closed", agent="bob")
    assert has_tone(read_wav(tmp_path / "last.wav"), AGENT_HZ)
    assert (
        bob.wait_for("connection", state="active", reason="call_ended")["expires_at"] > time.time()
    )


def test_r5_r6_activation_with_and_without_permission(platform, start_phone, start_caller):
    alice = start_phone(platform.url, "alice")  # holds acceptOffQueue
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer")
    # R5: alice's connection is set up at sign-in, before any call.
    assert alice.wait_for("connection", state="active")["reason"] == "sign_in"
    assert platform.wait_for("connection_offered", agent="alice")["reason"] == "sign_in"
    # R6: bob has none until his first on-queue call, whose connection is kept.
    bob.wait_for("presence", on_queue=True)
    time.sleep(0.5)
    assert not platform.matching("connection_offered", agent="bob")
    assert [e["state"] for e in bob.matching("connection")] == ["inactive"]
    call(start_caller, platform.url)
    assert bob.wait_for("connection", state="active", reason="call_ended")["in_call"] is False
    states = [e["state"] for e in bob.matching("connection")]
    assert states[:3] == ["inactive", "connecting", "active"]


def test_r7_r8_timeout_then_fresh_then_reused(start_platform, start_phone, start_caller):
    platform = start_platform(persistent_timeout_s=2.0)
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer")
    bob.wait_for("presence", on_queue=True)
    call(start_caller, platform.url)
    kept = platform.wait_for("connection_kept", agent="bob")
    assert 1.5 < kept["expires_at"] - kept["t"] < 2.5
    closed = platform.wait_for("connection_closed", agent="bob", timeout=10)
    assert closed["reason"] == "timeout"
    assert 1.8 < closed["t"] - kept["t"] < 4.0
    assert bob.wait_for("connection", state="inactive", reason="timeout")
    # R8: the next call sets a connection up again; the one after reuses it.
    second = call(start_caller, platform.url)
    third = call(start_caller, platform.url)
    d2 = platform.wait_for("call_delivered", call_id=second["call_id"])
    d3 = platform.wait_for("call_delivered", call_id=third["call_id"])
    assert d2["over_persistent_connection"] is False and d3["over_persistent_connection"] is True
    assert d2["connection_id"] == d3["connection_id"] != closed["connection_id"]
    assert len(platform.matching("connection_offered", agent="bob")) == 2


def test_r9_end_connection_idle_and_during_a_call(platform, start_phone, start_caller):
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer")
    bob.wait_for("presence", on_queue=True)
    call(start_caller, platform.url)
    bob.wait_for("connection", state="active", reason="call_ended")
    bob.send("end_connection")  # idle: ends now
    assert platform.wait_for("connection_closed", agent="bob")["reason"] == "stopped_by_agent"
    bob.wait_for("connection", state="inactive", reason="stopped_by_agent")

    # During a call: the call goes on; the connection ends with it.
    mark = bob.mark()
    caller = start_caller(platform.url, "--duration", "3")
    answered = bob.wait_for("answered", since=mark)
    bob.send("end_connection")
    bob.wait_for("connection", reason="closing_after_call", since=mark)
    code, summary = caller.result(timeout=30)
    assert code == 0 and summary["ended_by"] == "customer" and summary["talk_s"] >= 2.9
    assert bob.wait_for("ended", call_id=answered["call_id"])["reason"] == "customer_hangup"
    closes = [e["reason"] for e in platform.wait_count("connection_closed", 2, agent="bob")]
    assert closes == ["stopped_by_agent", "stopped_by_agent"]
    # The next call is like the first (R1), and its connection is kept again.
    third = call(start_caller, platform.url)
    assert (
        platform.wait_for("call_delivered", call_id=third["call_id"])["over_persistent_connection"]
        is False
    )
    platform.wait_for("connection_kept", where=lambda e: e["t"] > time.time() - 5)


def test_r10_setting_off_during_a_call_waits_for_the_call(platform, start_phone, start_caller):
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer")
    bob.wait_for("presence", on_queue=True)
    caller = start_caller(platform.url, "--duration", "3")
    answered = bob.wait_for("answered")
    bob.send("persistent", on=False)
    assert bob.wait_for("connection", reason="closing_after_call")["state"] == "active"
    code, summary = caller.result(timeout=30)
    assert code == 0 and summary["talk_s"] >= 2.9  # never dropped
    assert bob.wait_for("ended", call_id=answered["call_id"])["reason"] == "customer_hangup"
    assert platform.wait_for("connection_closed", agent="bob")["reason"] == "persistent_off"
    bob.wait_for("connection", state="off")
    # With the setting off, each call's connection closes with the call.
    second = call(start_caller, platform.url)
    platform.wait_for("call_ended", call_id=second["call_id"])
    closes = platform.wait_count("connection_closed", 2, agent="bob")
    assert [c["reason"] for c in closes] == ["persistent_off", "persistent_off"]
    assert not platform.matching("connection_kept", agent="bob", where=None)[1:]
    # Turned back on: the next call's connection is kept.
    bob.send("persistent", on=True)
    third = call(start_caller, platform.url)
    kept = platform.wait_for(
        "connection_kept", agent="bob", where=lambda e: e["t"] > closes[-1]["t"]
    )
    assert (
        kept["connection_id"]
        == platform.wait_for("call_delivered", call_id=third["call_id"])["connection_id"]
    )


def test_r11_sign_out_closes_the_kept_connection(platform, start_phone):
    alice = start_phone(platform.url, "alice")
    alice.wait_for("connection", state="active")
    assert alice.quit() == 0
    assert platform.wait_for("connection_closed", agent="alice")["reason"] == "requested"
    assert platform.wait_for("agent_signed_out", agent="alice")["reason"] == "requested"


def test_r13_second_phone_closes_the_first_ones_connection(platform, start_phone):
    first = start_phone(platform.url, "alice")
    first_conn = first.wait_for("connection", state="active")["connection_id"]
    second = start_phone(platform.url, "alice")
    assert first.wait_for("signed_out")["reason"] == "signed_in_elsewhere"
    closed = platform.wait_for("connection_closed", connection_id=first_conn)
    assert closed["reason"] == "signed_in_elsewhere"
    # The second phone gets its own connection at sign-in (R5).
    assert second.wait_for("connection", state="active")["connection_id"] != first_conn


@pytest.mark.parametrize("how", ["kill", "hang"])
def test_a_dead_phone_is_noticed_within_seconds(platform, start_phone, how):
    alice = start_phone(platform.url, "alice")
    alice.wait_for("connection", state="active")
    stopped_at = time.time()
    os.kill(alice.proc.pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
    try:
        closed = platform.wait_for("connection_closed", agent="alice", timeout=12)
        assert closed["t"] - stopped_at < 10.0  # not at the 600 s timeout
    finally:
        if how == "hang":
            os.kill(alice.proc.pid, signal.SIGKILL)


def test_a_call_delivered_over_a_dead_connection_is_not_lost(platform, start_phone, start_caller):
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer")
    bob.wait_for("presence", on_queue=True)
    call(start_caller, platform.url)  # bob now holds a kept connection
    bob.wait_for("connection", state="active", reason="call_ended")
    carol = start_phone(platform.url, "carol", "--on-queue", "--auto-answer")
    carol.wait_for("presence", on_queue=True)
    # Bob's phone hangs (its network is gone); the platform does not know yet,
    # and bob has been idle longest, so the next call goes to him.
    os.kill(bob.proc.pid, signal.SIGSTOP)
    try:
        code, summary = start_caller(platform.url, "--duration", "0.5").result(timeout=40)
    finally:
        os.kill(bob.proc.pid, signal.SIGKILL)
    assert code == 0 and summary["agent"] == "carol"
    routed = [e["agent"] for e in platform.matching("call_routed", call_id=summary["call_id"])]
    assert routed == ["bob", "carol"]
    requeued = platform.wait_for("call_requeued", call_id=summary["call_id"])
    assert requeued["reason"] in ("connection_lost", "heartbeat_lost")


def test_after_a_platform_restart_the_phone_comes_back_and_calls_flow(
    start_platform, start_phone, start_caller
):
    with socket.socket() as probe:  # a port to restart the platform on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    platform = start_platform(port=port)
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer", "--reconnect", "10")
    bob.wait_for("presence", on_queue=True)
    call(start_caller, platform.url)
    bob.wait_for("connection", state="active", reason="call_ended")
    platform.proc.kill()
    killed_at = time.time()
    left = bob.wait_for("connection", where=lambda e: e["state"] != "active", timeout=12)
    assert left["t"] - killed_at < 10.0  # the indicator leaves green at once
    bob.wait_for("reconnecting")
    platform.stop()
    restarted = start_platform(port=port)
    mark = bob.mark()
    bob.wait_for("signed_in", since=mark, timeout=30)
    bob.wait_for("presence", on_queue=True, since=mark)  # presence restored
    summary = call(start_caller, restarted.url)
    delivered = restarted.wait_for("call_delivered", call_id=summary["call_id"])
    assert delivered["agent"] == "bob"
    assert delivered["over_persistent_connection"] is False  # a fresh connection (R8)


def test_the_phone_notices_a_dead_platform(start_platform, start_phone):
    platform = start_platform()
    alice = start_phone(platform.url, "alice")
    alice.wait_for("connection", state="active")
    killed_at = time.time()
    platform.proc.kill()
    left_green = alice.wait_for("connection", where=lambda e: e["state"] != "active", timeout=12)
    assert left_green["t"] - killed_at < 10.0
    assert alice.wait_exit(15) == 1  # no platform: the headless phone says so and stops
