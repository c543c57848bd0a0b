"""Durable state with real processes: a platform killed mid-call and started
again on the same database loses no call record, no admin setting and no
agent's timeout; a phone killed mid-call costs the customer nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from audio_analysis import make_tone
from procs import JsonLinesProcess, PlatformProcess

from agent_phone.media.wav import write_wav

ADMIN_TOKEN = "admin-token-for-the-storage-tests"


@pytest.fixture
def mic(tmp_path: Path) -> str:
    path = tmp_path / "mic.wav"
    write_wav(path, make_tone(880.0, 1.0))
    return str(path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def admin(platform: PlatformProcess, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        platform.admin_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {platform.admin_token or ADMIN_TOKEN}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def records(platform: PlatformProcess) -> dict[str, dict[str, Any]]:
    page = admin(platform, "GET", "/calls?limit=100")
    return {r["call_id"]: r for r in page["calls"]}


def test_a_platform_killed_mid_call_restarts_with_nothing_lost(
    start_platform, start_phone, start_caller, mic, tmp_path
):
    port = free_port()
    first = start_platform(port=port, admin_token=ADMIN_TOKEN, alert_timeout_s=4.0)
    database = tmp_path / "platform0.sqlite3"  # the default: next to the config file
    assert first.wait_for("ready")["database"] == str(database)
    admin(first, "PUT", "/settings", {"persistent_timeout_s": 300})
    admin(first, "PUT", "/agents/bob", {"persistent_timeout_s": 120})

    bob = start_phone(first.url, "bob", "--auto-answer", "--mic-file", mic, "--reconnect", "10")
    carol = start_phone(first.url, "carol", "--on-queue")
    bob.wait_for("signed_in")
    carol.wait_for("presence", on_queue=True)

    # Declined by carol, then abandoned by the customer.
    declined = start_caller(first.url, "--wait", "2.5", "--caller", "declined")
    carol.wait_for("alerting", caller="declined")
    carol.send("decline")
    code, s_declined = declined.result(timeout=30)
    assert code == 1
    carol.send("off_queue")
    carol.wait_for("presence", on_queue=False)
    # Abandoned in the queue: nobody on queue.
    code, s_abandoned = start_caller(first.url, "--wait", "1", "--caller", "abandoned").result(30)
    assert code == 1
    # Answered by bob, ended by the customer.
    bob.send("on_queue")
    bob.wait_for("presence", on_queue=True)
    code, s_answered = start_caller(first.url, "--duration", "1", "--caller", "answered").result(30)
    assert code == 0 and s_answered["agent"] == "bob"
    # In progress when the platform dies.
    start_caller(first.url, "--duration", "60", "--caller", "midcall")
    mid = bob.wait_for("answered", where=lambda e: e["call_id"] != s_answered["call_id"])
    first.wait_for("call_answered", call_id=mid["call_id"])
    time.sleep(0.5)
    first.proc.kill()
    first.wait_exit(10)

    mark = bob.mark()
    second = PlatformProcess(
        tmp_path / "platform0.toml", log_dir=tmp_path, port=port, extra=("--db", str(database))
    )
    try:
        closed = second.wait_for("calls_closed")
        assert closed["call_ids"] == [mid["call_id"]] and closed["reason"] == "platform_restart"
        assert second.wait_for("ready")["persistent_timeout_s"] == 300

        kept = records(second)
        assert set(kept) >= {
            s_declined["call_id"],
            s_abandoned["call_id"],
            s_answered["call_id"],
            mid["call_id"],
        }
        assert all(r["ended_at"] for r in kept.values())  # none left open
        d = kept[s_declined["call_id"]]
        assert d["offered_to"] == ["carol"] and d["requeue_reasons"] == ["declined"]
        assert d["queued_count"] == 2 and d["answered_by"] is None
        assert (d["end_reason"], d["ended_by"]) == ("customer_hangup", "customer")
        a = kept[s_abandoned["call_id"]]
        assert a["offered_to"] == [] and a["answered_by"] is None
        assert a["ended_by"] == "customer"
        ok = kept[s_answered["call_id"]]
        assert ok["answered_by"] == "bob" and ok["offered_to"] == ["bob"]
        assert ok["over_persistent_connection"] is False and ok["delivery_ms"] > 0
        assert ok["end_reason"] == "customer_hangup" and ok["answered_at"] > ok["created_at"]
        assert ok["quality"]["packets_received"] > 20  # the platform's own getStats
        m = kept[mid["call_id"]]
        assert m["answered_by"] == "bob" and m["caller"] == "midcall"
        assert (m["end_reason"], m["ended_by"]) == ("platform_restart", "platform")

        settings = admin(second, "GET", "/settings")
        assert settings["persistent_timeout_s"] == 300
        assert settings["agents"]["bob"]["persistent_timeout_s"] == 120
        assert settings["agents"]["carol"]["persistent_timeout_s"] == 300

        # Bob's phone comes back by itself, on queue as before.
        bob.wait_for("signed_in", since=mark, timeout=40)
        bob.wait_for("presence", on_queue=True, since=mark)
        code, s_after = start_caller(second.url, "--duration", "0.5").result(timeout=40)
        assert code == 0 and s_after["agent"] == "bob"
        kept_conn = second.wait_for("connection_kept", agent="bob")
        assert 118 < kept_conn["expires_at"] - kept_conn["t"] < 122  # bob's own timeout
        second.wait_for("call_ended", call_id=s_after["call_id"])
        time.sleep(0.3)
        assert records(second)[s_after["call_id"]]["answered_by"] == "bob"
    finally:
        second.stop()


def test_a_second_platform_on_the_same_database_is_refused(platform, tmp_path):
    database = platform.wait_for("ready")["database"]
    other = JsonLinesProcess(
        ["agent_phone.cloud", "--port", "0", "--db", database], log_dir=tmp_path
    )
    assert other.wait_exit(20) == 2
    assert "in use by another platform" in other.stderr()
    other.stop()


def test_a_phone_killed_mid_call_hands_the_customer_to_the_next_agent(
    platform, start_phone, start_caller, mic
):
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer", "--mic-file", mic)
    bob.wait_for("presence", on_queue=True)
    time.sleep(0.3)
    carol = start_phone(platform.url, "carol", "--auto-answer", "--mic-file", mic)
    carol.wait_for("signed_in")
    caller = start_caller(platform.url, "--duration", "0")  # until an agent hangs up
    answered = bob.wait_for("answered")
    call_id = answered["call_id"]
    platform.wait_for("call_answered", call_id=call_id, agent="bob")
    carol.send("on_queue")  # carol is free now; bob is busy
    carol.wait_for("presence", on_queue=True)
    time.sleep(0.5)
    killed_at = time.time()
    os.kill(bob.proc.pid, signal.SIGKILL)

    requeued = platform.wait_for("call_requeued", call_id=call_id, timeout=15)
    detection_s = requeued["t"] - killed_at
    assert detection_s < 10.0
    assert requeued["position"] == 1  # back at the head of the queue
    carol.wait_for("answered", call_id=call_id, timeout=30)
    carol.send("hangup")
    code, summary = caller.result(timeout=40)
    assert code == 0 and summary["call_id"] == call_id and summary["agent"] == "carol"
    platform.wait_for("call_ended", call_id=call_id)
    time.sleep(0.3)
    record = records(platform)[call_id]
    assert record["offered_to"] == ["bob", "carol"] and record["answered_by"] == "carol"
    assert record["queued_count"] == 2 and record["requeue_reasons"] == [requeued["reason"]]
    assert (record["end_reason"], record["ended_by"]) == ("agent_hangup", "agent")
    print(f"phone SIGKILL -> call requeued: {detection_s * 1000:.0f} ms")
