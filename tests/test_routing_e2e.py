"""Routing with real processes: queues, decline, the alert timeout (R12)."""

from __future__ import annotations

import time


def test_call_waits_in_queue_until_an_agent_goes_on_queue(platform, start_phone, start_caller):
    phone = start_phone(platform.url, "bob", "--auto-answer")
    phone.wait_for("signed_in")
    first = start_caller(platform.url, "--duration", "1", "--caller", "first")
    platform.wait_for("call_queued", caller="first")
    second = start_caller(platform.url, "--duration", "1", "--caller", "second")
    queued = platform.wait_for("call_queued", caller="second")
    assert queued["position"] == 2  # its place in the queue is known
    time.sleep(1.0)
    assert not platform.matching("call_routed")  # nobody is on queue: they wait
    phone.send("on_queue")
    code1, s1 = first.result(timeout=30)
    code2, s2 = second.result(timeout=30)
    assert (code1, code2) == (0, 0)
    assert s1["positions"][0] == 1 and s2["positions"][:2] == [2, 1]
    routed = [e["call_id"] for e in platform.matching("call_routed")]
    assert routed == [s1["call_id"], s2["call_id"]]  # first come, first served
    ended = platform.wait_count("call_ended", 2)
    assert {e["reason"] for e in ended} == {"customer_hangup"}


def test_longest_idle_agent_gets_the_call(platform, start_phone, start_caller):
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer")
    bob.wait_for("presence", on_queue=True)
    time.sleep(0.3)
    carol = start_phone(platform.url, "carol", "--on-queue", "--auto-answer")
    carol.wait_for("presence", on_queue=True)
    code, summary = start_caller(platform.url, "--duration", "0.5").result(timeout=30)
    assert code == 0 and summary["agent"] == "bob"
    # Bob has just finished a call: carol has been idle longer now.
    code, summary = start_caller(platform.url, "--duration", "0.5").result(timeout=30)
    assert code == 0 and summary["agent"] == "carol"


def test_declined_call_goes_to_the_next_agent_at_once(platform, start_phone, start_caller):
    bob = start_phone(platform.url, "bob", "--on-queue")
    bob.wait_for("presence", on_queue=True)
    time.sleep(0.3)
    carol = start_phone(platform.url, "carol", "--on-queue", "--auto-answer")
    carol.wait_for("presence", on_queue=True)
    caller = start_caller(platform.url, "--duration", "1")
    alert = bob.wait_for("alerting")
    bob.send("decline")
    assert bob.wait_for("ended", call_id=alert["call_id"])["reason"] == "declined"
    code, summary = caller.result(timeout=30)
    assert code == 0 and summary["agent"] == "carol"
    requeued = platform.wait_for("call_requeued", call_id=alert["call_id"])
    assert requeued["reason"] == "declined" and requeued["position"] == 1
    # Declining does not take bob off queue.
    assert not bob.matching("presence", on_queue=False)


def test_unanswered_call_moves_on_and_agent_is_not_responding(
    start_platform, start_phone, start_caller
):
    platform = start_platform(alert_timeout_s=2.0)
    bob = start_phone(platform.url, "bob", "--on-queue")
    bob.wait_for("presence", on_queue=True)
    time.sleep(0.3)
    carol = start_phone(platform.url, "carol", "--on-queue")
    carol.wait_for("presence", on_queue=True)
    caller = start_caller(platform.url, "--duration", "1")
    alert = bob.wait_for("alerting")
    # Bob neither answers nor declines: after 2 s he is set not-responding...
    presence = bob.wait_for("presence", on_queue=False, timeout=10)
    assert presence["reason"] == "not_responding"
    assert bob.wait_for("ended", call_id=alert["call_id"])["reason"] == "alert_timeout"
    # ...and the call is offered to carol, who answers it.
    carol_alert = carol.wait_for("alerting", call_id=alert["call_id"], timeout=10)
    carol.send("answer")
    code, summary = caller.result(timeout=30)
    assert code == 0 and summary["agent"] == "carol"
    assert carol_alert["delivery_ms"] >= 0
    # Bob gets no further calls until he goes on queue again.
    assert len(bob.matching("alerting")) == 1


def test_customer_hangs_up_while_alerting(platform, start_phone, start_caller):
    bob = start_phone(platform.url, "bob", "--on-queue")
    bob.wait_for("presence", on_queue=True)
    caller = start_caller(platform.url, "--wait", "1.5")
    alert = bob.wait_for("alerting")
    code, summary = caller.result(timeout=20)
    assert code == 1 and summary["answered"] is False  # the customer gave up
    assert bob.wait_for("ended", call_id=alert["call_id"])["reason"] == "customer_hangup"
    assert platform.wait_for("call_ended", call_id=alert["call_id"])["reason"] == "customer_hangup"


def test_second_phone_takes_over(platform, start_phone):
    first = start_phone(platform.url, "bob", "--on-queue")
    first.wait_for("presence", on_queue=True)
    second = start_phone(platform.url, "bob")
    second.wait_for("signed_in")
    assert first.wait_for("signed_out")["reason"] == "signed_in_elsewhere"
    assert first.wait_exit(10) == 1  # the first phone is told why and stops
