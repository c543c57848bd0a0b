"""A bad network on the agent's media path, with real processes.

The kernel here has no ``sch_netem``, so the phone process impairs its own
ICE sockets (agent_phone/media/netem.py, switched on by its environment):
5 % loss and 75 ms each way (150 ms round trip), or a cut mid-call.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from audio_analysis import has_tone, tone_snr_db
from e2e import AGENT_HZ, CUSTOMER_HZ, agent_mic_file, two_way_tone_call
from procs import PlatformProcess, _env

from agent_phone.media.wav import read_wav

IMPAIRED = "loss=0.05,delay_ms=75,jitter_ms=5,seed=1"


def records(platform: PlatformProcess) -> dict[str, dict[str, Any]]:
    request = urllib.request.Request(
        platform.admin_url + "/calls?limit=100",
        headers={"Authorization": f"Bearer {platform.admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return {r["call_id"]: r for r in json.loads(response.read())["calls"]}


def test_audio_flows_at_5_percent_loss_and_150_ms_round_trip(
    virtual_audio, platform, start_phone, start_caller, tmp_path: Path
):
    phone = start_phone(
        platform.url, "bob", "--on-queue", "--auto-answer", env=_env(AGENT_PHONE_NETEM=IMPAIRED)
    )
    phone.wait_for("presence", on_queue=True)
    call = two_way_tone_call(
        virtual_audio, start_caller, platform.url, tmp_path, duration=9, timeout=60
    )
    summary, heard_by_agent = call.summary, call.heard_by_agent
    assert call.code == 0 and summary["agent"] == "bob", summary
    call_id = summary["call_id"]

    # Audio still flows both ways, clearly enough to find each tone.
    heard_by_customer = call.heard_by_customer()
    agent_snr, _ = tone_snr_db(heard_by_agent, CUSTOMER_HZ)
    customer_snr, _ = tone_snr_db(heard_by_customer, AGENT_HZ)
    print(f"SNR at the agent's speaker {agent_snr:.1f} dB, at the customer {customer_snr:.1f} dB")
    assert has_tone(heard_by_agent, CUSTOMER_HZ, min_snr_db=15)
    assert has_tone(heard_by_customer, AGENT_HZ, min_snr_db=15)

    # The phone's quality reports show the loss and the round trip.
    phone.wait_for("ended", call_id=call_id)
    reports = phone.matching("quality", call_id=call_id)
    assert len(reports) >= 3 and reports[-1]["final"] is True
    assert not any(r["final"] for r in reports[:-1])
    final = reports[-1]
    print("phone quality:", {k: v for k, v in final.items() if k not in ("event", "t")})
    assert final["packets_received"] > 150  # ~50 packets/s for ~9 s, less under load
    assert final["packets_lost"] > 0 and 0.01 < final["fraction_lost"] < 0.15
    assert final["rtt_ms"] is not None and 120 <= final["rtt_ms"] < 400
    assert final["jitter_ms"] is not None and final["jitter_ms"] >= 0
    # The platform measured the same call from its side of the connection.
    platform_q = platform.wait_for("call_quality", call_id=call_id)
    print("platform quality:", {k: v for k, v in platform_q.items() if k not in ("event", "t")})
    assert platform_q["packets_lost"] > 0 and 0.01 < platform_q["fraction_lost"] < 0.15
    assert platform_q["rtt_ms"] is not None and 120 <= platform_q["rtt_ms"] < 400
    time.sleep(0.3)
    assert records(platform)[call_id]["quality"]["packets_lost"] == platform_q["packets_lost"]


def test_a_network_cut_mid_call_hands_the_customer_to_the_next_agent(
    platform, start_phone, start_caller, tmp_path: Path
):
    mic = agent_mic_file(tmp_path)
    control = tmp_path / "bob.netem"
    control.write_text("")  # no impairment yet
    bob = start_phone(
        platform.url,
        "bob",
        "--on-queue",
        "--auto-answer",
        "--mic-file",
        mic,
        env=_env(AGENT_PHONE_NETEM_FILE=str(control)),
    )
    bob.wait_for("presence", on_queue=True)
    time.sleep(0.3)
    carol = start_phone(platform.url, "carol", "--auto-answer", "--mic-file", mic)
    carol.wait_for("signed_in")
    # The customer stays until an agent hangs up, however long the hand-over takes.
    caller = start_caller(
        platform.url, "--record", str(tmp_path / "customer.wav"), "--duration", "0"
    )
    call_id = bob.wait_for("answered")["call_id"]
    platform.wait_for("call_answered", call_id=call_id, agent="bob")
    carol.send("on_queue")
    carol.wait_for("presence", on_queue=True)
    time.sleep(1.0)
    cut_at = time.time()
    control.write_text("cut=1\n")

    requeued = platform.wait_for("call_requeued", call_id=call_id, timeout=15)
    detection_s = requeued["t"] - cut_at
    print(f"media cut -> call requeued: {detection_s * 1000:.0f} ms")
    assert detection_s < 10.0
    assert requeued["position"] == 1 and requeued["reason"] == "connection_lost"
    closed = platform.wait_for("connection_closed", agent="bob")
    assert closed["reason"] == "heartbeat_lost"  # the signaling socket was never cut
    carol.wait_for("answered", call_id=call_id, timeout=30)
    time.sleep(1.5)  # carol and the customer talk
    carol.send("hangup")
    code, summary = caller.result(timeout=40)
    assert code == 0 and summary["call_id"] == call_id and summary["agent"] == "carol"
    assert bob.wait_for("ended", call_id=call_id)["reason"] == "connection_lost"
    platform.wait_for("call_ended", call_id=call_id)
    time.sleep(0.3)
    record = records(platform)[call_id]
    assert record["offered_to"] == ["bob", "carol"] and record["answered_by"] == "carol"
    assert record["requeue_reasons"] == ["connection_lost"]
    assert (record["end_reason"], record["ended_by"]) == ("agent_hangup", "agent")
    # The customer heard the agent before the cut and after the hand-over.
    assert has_tone(read_wav(tmp_path / "customer.wav"), AGENT_HZ)
