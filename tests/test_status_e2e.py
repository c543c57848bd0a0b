"""Agent statuses with reasons, through the real platform and headless
phones: only an ``available`` agent is routed calls, every change is
recorded, and the platform sets ``not_responding`` itself (R12)."""

from __future__ import annotations

import time


def test_a_status_with_a_reason_keeps_calls_away_until_available(
    platform, start_phone, start_caller
):
    bob = start_phone(platform.url, "bob", "--auto-answer")
    first = bob.wait_for("status", cause="sign_in")
    assert (first["status"], first["reason"]) == ("away", "")

    bob.send("status", status="break", reason="coffee")
    on_break = bob.wait_for("status", status="break")
    assert on_break["reason"] == "coffee" and on_break["cause"] == "requested"
    assert on_break["since"] >= first["since"]
    # Reasons come from the configuration; statuses from the list.
    bob.send("status", status="break", reason="nap")
    refused = bob.wait_for("error", where=lambda e: "nap" in e["message"])
    assert "coffee" in refused["message"]  # it says which reasons there are
    bob.send("status", status="lunch")
    bob.wait_for("error", where=lambda e: "'lunch' is not a status" in e["message"])
    bob.send("status", status="not_responding")  # only the platform sets it
    bob.wait_for("error", where=lambda e: "'not_responding' is not a status" in e["message"])

    # A customer waits while bob is on break...
    caller = start_caller(platform.url, "--duration", "0.5", "--wait", "30")
    queued = platform.wait_for("call_queued")
    time.sleep(1.0)
    assert not platform.matching("call_routed")
    # ...and reaches him once he is available.
    bob.send("status", status="available")
    assert bob.wait_for("presence", on_queue=True)["reason"] == "requested"
    code, summary = caller.result(timeout=30)
    assert code == 0 and summary["agent"] == "bob" and summary["call_id"] == queued["call_id"]

    # Every change, recorded by the platform for reporting.
    changes = platform.matching("status_changed", agent="bob")
    assert [(c["status"], c["reason"]) for c in changes] == [
        ("away", ""),
        ("break", "coffee"),
        ("available", ""),
    ]
    assert bob.quit() == 0
    offline = platform.wait_for("status_changed", agent="bob", status="offline")
    assert offline["cause"] == "requested"
    # ...and kept, newest first, for reports (GET /admin/statuses).
    page = platform.admin_get("/statuses?agent=bob&limit=3")
    kept = [(c["status"], c["reason"], c["cause"]) for c in page["statuses"]]
    assert kept == [
        ("offline", "", "requested"),
        ("available", "", "requested"),
        ("break", "coffee", "requested"),
    ]
    assert page["statuses"][1]["at"] == changes[-1]["t"]
    assert page["next_before"] == page["statuses"][-1]["at"]  # a full page: more before


def test_the_platform_sets_not_responding_when_a_call_is_not_answered(
    start_platform, start_phone, start_caller
):
    platform = start_platform(alert_timeout_s=1.0)
    carol = start_phone(platform.url, "carol", "--on-queue")  # no auto answer
    carol.wait_for("status", status="available")
    caller = start_caller(platform.url, "--duration", "0.5", "--wait", "3")
    carol.wait_for("call", state="alerting")
    not_responding = carol.wait_for("status", status="not_responding", timeout=10)
    assert not_responding["cause"] == "not_responding"
    assert carol.wait_for("presence", on_queue=False)["reason"] == "not_responding"
    caller.result(timeout=20)
    carol.send("status", status="meal", reason="lunch")
    assert carol.wait_for("status", status="meal")["reason"] == "lunch"
