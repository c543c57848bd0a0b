"""Outbound calls: the agent dials a customer's number, through the real
platform, a headless phone and an answering caller (``--answer``), with a
tone each way checked by FFT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audio_analysis import has_tone, make_tone

from agent_phone.media.wav import read_wav, write_wav

AGENT_HZ = 880.0
CUSTOMER_HZ = 440.0
NUMBER = "+15550100"


def test_an_outbound_call_rides_the_kept_connection_heard_both_ways(
    start_platform, start_phone, start_caller, tmp_path: Path
):
    platform = start_platform(persistent_timeout_s=60.0)
    mic = tmp_path / "agent.wav"
    write_wav(mic, make_tone(AGENT_HZ, 1.0))
    heard_by_agent = tmp_path / "agent-heard.wav"
    # alice holds acceptOffQueue: her connection is up from sign-in (R5).
    alice = start_phone(
        platform.url, "alice", "--mic-file", str(mic), "--speaker-file", str(heard_by_agent)
    )
    before = platform.wait_for("connection_kept", agent="alice")
    customer = start_caller(
        platform.url,
        "--answer",
        NUMBER,
        "--tone",
        f"{CUSTOMER_HZ:g}",
        "--record",
        str(tmp_path / "customer-heard.wav"),
        "--duration",
        "2.5",
        "--wait",
        "30",
    )
    platform.wait_for("number_awaiting", number=NUMBER)

    alice.send("dial", number=NUMBER)
    dialing = alice.wait_for("call", state="dialing")
    call_id = dialing["call_id"]
    assert dialing["direction"] == "outbound" and dialing["peer"] == NUMBER
    code, summary = customer.result(timeout=40)
    assert code == 0, summary
    assert summary["answered"] and summary["agent"] == "alice" and summary["call_id"] == call_id
    assert summary["ended_by"] == "customer" and summary["talk_s"] >= 2.4
    ended = alice.wait_for("call", call_id=call_id, state="ended")
    assert ended["reason"] == "customer_hangup" and ended["duration_s"] > 2.0
    states = [e["state"] for e in alice.matching("call", call_id=call_id)]
    assert states == ["dialing", "ringing", "connected", "ended"]

    # Over the kept connection: one message, no new offer/answer (R3), and
    # the connection's timeout starts again from the call's end (R11).
    ringing = platform.wait_for("call_ringing", call_id=call_id)
    assert ringing["over_persistent_connection"] is True
    assert ringing["connection_id"] == before["connection_id"]
    assert len(platform.matching("connection_offered", agent="alice")) == 1
    after = platform.wait_count("connection_kept", 2, agent="alice")[-1]
    assert after["connection_id"] == before["connection_id"]
    assert after["expires_at"] - before["expires_at"] >= 2.4
    assert (
        alice.wait_for("connection", state="active", reason="call_ended")["expires_at"]
        == (after["expires_at"])
    )

    # Each side heard the other.
    assert alice.quit() == 0  # (the speaker file is complete once the phone is closed)
    assert has_tone(read_wav(tmp_path / "customer-heard.wav"), AGENT_HZ)
    assert has_tone(read_wav(heard_by_agent), CUSTOMER_HZ)

    # The record: outbound, alice's, the number called.
    platform.wait_for("call_ended", call_id=call_id)
    record = platform.call_records()[call_id]
    assert record["direction"] == "outbound" and record["caller"] == NUMBER
    assert record["answered_by"] == "alice" and record["queue"] == ""
    assert record["over_persistent_connection"] is True
    assert (record["end_reason"], record["ended_by"]) == ("customer_hangup", "customer")


def test_dialing_sets_a_connection_up_first_and_an_unknown_number_is_refused(
    platform, start_phone, start_caller
):
    # bob has no connection until he needs one (R6): dialing sets it up (R1).
    bob = start_phone(platform.url, "bob")
    bob.wait_for("connection", state="inactive")

    bob.send("dial", number="+15550199")  # nobody awaits calls to it
    refused = bob.wait_for("call", state="ended")
    assert refused["reason"] == "unknown_number" and refused["previous"] == "dialing"
    error = bob.wait_for("error", call_id=refused["call_id"])
    assert "+15550199" in error["message"]
    bob.send("dial", number="not a number")
    assert (
        "not a phone number"
        in bob.wait_for("error", where=lambda e: "dial" in e["message"])["message"]
    )

    customer = start_caller(platform.url, "--answer", NUMBER, "--duration", "0", "--wait", "30")
    platform.wait_for("number_awaiting", number=NUMBER)
    # A second trunk cannot take the same number.
    code, taken = start_caller(platform.url, "--answer", NUMBER, "--wait", "5").result(30)
    assert code == 1 and "number_taken" in taken["error"]

    bob.send("dial", number=NUMBER)
    connected = bob.wait_for("call", state="connected", timeout=30)
    ringing = platform.wait_for("call_ringing", call_id=connected["call_id"])
    assert ringing["over_persistent_connection"] is False
    assert platform.wait_for("connection_offered", agent="bob")["reason"] == "call"
    bob.send("hangup")  # the agent hangs up
    code, summary = customer.result(timeout=30)
    assert code == 0 and summary["ended_by"] == "agent" and summary["agent"] == "bob"
    ended = bob.wait_for("call", call_id=connected["call_id"], state="ended")
    assert ended["reason"] == "agent_hangup"
    # The connection set up for it is kept, as after any call (R2).
    assert bob.wait_for("connection", state="active", reason="call_ended")


def test_an_outbound_call_declined_unanswered_or_cancelled_ends_with_its_reason(
    start_platform, start_phone, start_caller
):
    platform = start_platform(ring_timeout_s=1.5)
    alice = start_phone(platform.url, "alice")
    alice.wait_for("connection", state="active")

    def dial(*customer: str) -> tuple[dict, Any]:
        mark = alice.mark()
        seen = len(platform.matching("number_awaiting"))
        caller = start_caller(platform.url, "--answer", NUMBER, "--wait", "20", *customer)
        platform.wait_count("number_awaiting", seen + 1)
        alice.send("dial", number=NUMBER)
        return alice.wait_for("call", state="ringing", since=mark), caller

    # The customer declines.
    ringing, caller = dial("--decline")
    ended = alice.wait_for("call", call_id=ringing["call_id"], state="ended")
    assert (ended["previous"], ended["reason"]) == ("ringing", "declined")
    code, summary = caller.result(timeout=20)
    assert code == 1 and summary["reason"] == "declined" and not summary["answered"]

    # Nobody answers within the ring timeout (the customer would take 10 s).
    ringing, caller = dial("--ring", "10")
    ended = alice.wait_for("call", call_id=ringing["call_id"], state="ended", timeout=10)
    assert ended["reason"] == "no_answer"
    code, summary = caller.result(timeout=20)
    assert code == 1 and summary["reason"] == "no_answer" and summary["ended_by"] == "platform"

    # The agent hangs up while it rings.
    ringing, caller = dial("--ring", "10")
    alice.send("hangup")
    ended = alice.wait_for("call", call_id=ringing["call_id"], state="ended")
    assert ended["reason"] == "agent_hangup"
    code, summary = caller.result(timeout=20)
    assert code == 1 and summary["ended_by"] == "agent" and not summary["answered"]

    # None of it touched the kept connection, and each call has its record.
    assert len(platform.matching("connection_offered", agent="alice")) == 1
    assert not platform.matching("connection_closed", agent="alice")
    ends = [(e["reason"], e["direction"]) for e in platform.wait_count("call_ended", 3)]
    assert ends == [
        ("declined", "outbound"),
        ("no_answer", "outbound"),
        ("agent_hangup", "outbound"),
    ]
