"""The headless phone as a program: its commands, its exits, and what it
opens (the microphone only during a call)."""

from __future__ import annotations

import signal
import time

from procs import PhoneProcess


def _phone_streams(virtual_audio, phone: PhoneProcess, kind: str) -> int:
    """PulseAudio streams the phone process holds (source-outputs: microphone)."""
    listing = virtual_audio.pactl("list", kind)
    return listing.count(f'application.process.id = "{phone.proc.pid}"')


def test_microphone_is_open_only_during_a_call(virtual_audio, platform, start_phone, start_caller):
    bob = start_phone(platform.url, "bob", "--on-queue")
    bob.wait_for("presence", on_queue=True)
    caller = start_caller(platform.url, "--duration", "0")
    alert = bob.wait_for("alerting")
    assert _phone_streams(virtual_audio, bob, "source-outputs") == 0  # alerting: still closed
    bob.send("answer")
    bob.wait_for("hearing", call_id=alert["call_id"])
    assert _phone_streams(virtual_audio, bob, "source-outputs") == 1
    assert _phone_streams(virtual_audio, bob, "sink-inputs") == 1
    bob.send("hangup")
    bob.wait_for("ended", call_id=alert["call_id"])
    assert caller.result(timeout=20)[0] == 0
    bob.wait_for("connection", state="active", reason="call_ended")  # kept...
    deadline = time.monotonic() + 5
    while _phone_streams(virtual_audio, bob, "source-outputs") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _phone_streams(virtual_audio, bob, "source-outputs") == 0  # ...with the mic closed
    assert _phone_streams(virtual_audio, bob, "sink-inputs") == 0


def test_bad_commands_are_answered_and_change_nothing(platform, start_phone):
    bob = start_phone(platform.url, "bob")
    bob.wait_for("signed_in")
    bob.send_raw("{not json")
    assert "not JSON" in bob.wait_for("error")["message"]
    mark = bob.mark()
    bob.send_raw('{"cmd": "teleport"}')
    assert "unknown command" in bob.wait_for("error", since=mark)["message"]
    mark = bob.mark()
    bob.send("answer")
    assert "no call" in bob.wait_for("error", since=mark)["message"]
    mark = bob.mark()
    bob.send("mute", on="yes")
    assert bob.wait_for("error", since=mark)["code"] == "command"
    # The call-control commands check their arguments, and want a call.
    for command, fields, words in [
        ("transfer", {"agent": "carol", "queue": "support"}, "name one target"),
        ("transfer", {"agent": 7}, "name one target"),
        ("transfer", {"agent": "carol", "consult": "yes"}, '"consult" must be true or false'),
        ("transfer", {"agent": "carol"}, "there is no call"),
        ("conference", {}, "name one party"),
        ("complete_transfer", {}, "there is no call"),
        ("leave_conference", {}, "there is no call"),
        ("wrap_up", {}, '"code" must be one of the wrap-up codes'),
        ("wrap_up", {"code": "resolved"}, "no after-call work"),
        ("dial", {"agent": "carol", "number": "+15550100"}, '"agent" must be'),
    ]:
        mark = bob.mark()
        bob.send(command, **fields)
        assert words in bob.wait_for("error", since=mark)["message"], (command, fields)
    mark = bob.mark()
    bob.send_raw('{"cmd": "on_queue", "pad": "' + "x" * 5000 + '"}')
    assert "longer than" in bob.wait_for("error", since=mark)["message"]
    bob.send("on_queue")
    bob.wait_for("presence", on_queue=True)
    assert bob.quit() == 0


def test_end_of_input_and_sigterm_exit_cleanly(platform, start_phone):
    bob = start_phone(platform.url, "bob")
    bob.wait_for("signed_in")
    assert bob.proc.stdin is not None
    bob.proc.stdin.close()  # end of stdin
    assert bob.wait_exit(15) == 0
    assert platform.wait_for("agent_signed_out", agent="bob")["reason"] == "requested"

    carol = start_phone(platform.url, "carol")
    carol.wait_for("signed_in")
    carol.proc.send_signal(signal.SIGTERM)
    assert carol.wait_exit(15) == 0
    assert platform.wait_for("agent_signed_out", agent="carol")["reason"] == "requested"


def test_a_call_until_the_agent_hangs_up_outlasts_the_callers_wait(
    platform, start_phone, start_caller
):
    """``--duration 0`` talks until the agent hangs up: ``--wait`` bounds only
    the wait for an agent, not the call (it used to end the call too)."""
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer")
    bob.wait_for("presence", on_queue=True)
    caller = start_caller(platform.url, "--duration", "0", "--wait", "2")
    call_id = bob.wait_for("answered")["call_id"]
    time.sleep(3.5)  # beyond the caller's --wait
    assert caller.proc.poll() is None, "the call ended before the agent hung up"
    bob.send("hangup")
    bob.wait_for("ended", call_id=call_id)
    code, summary = caller.result(timeout=20)
    assert code == 0 and summary["answered"] is True
    assert summary["ended_by"] == "agent" and summary["talk_s"] >= 3.0
