"""A bad network on the agent's media path, with real processes.

The kernel here has no ``sch_netem``, so the phone process impairs its own
ICE sockets (agent_phone/media/netem.py, switched on by its environment):
30 ms of jitter and 1 % loss each way, or a cut mid-call.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from audio_analysis import has_tone, speech_heard, speech_level_db
from e2e import AGENT_HZ, agent_mic_file
from procs import child_env

from agent_phone.media.wav import read_wav
from agent_phone.resources import resources_dir

RATE = 48_000

#: Ordinary Wi-Fi: 30 ms of jitter (uniform, so packets reorder) and 1 % loss
#: each way on the phone's sockets, on top of 30 ms each way.
JITTERY = "delay_ms=30,jitter_ms=30,loss=0.01,seed=3"
TALK_S = 9.0


def looped_from(source: np.ndarray, seconds: float, length: int) -> np.ndarray:
    """``length`` samples of ``source`` looped, from ``seconds`` into the loop."""
    start = int(round(seconds * RATE)) % source.size
    return np.resize(np.roll(source, -start), length)


def test_speech_survives_30_ms_of_jitter_both_ways_at_its_level(
    platform, start_phone, start_caller, tmp_path: Path
):
    """Speech both ways through the real programs, the agent's network
    jittery and lossy. What each side's speaker played (written on its own
    clock) holds at least 98 % of the other side's speech at its level, and
    the phone's reports and the call's record say what the jitter buffer did."""
    sounds = resources_dir() / "sounds"
    customer_voice, agent_voice = sounds / "customer.wav", sounds / "agent.wav"
    phone = start_phone(
        platform.url,
        "bob",
        "--on-queue",
        "--auto-answer",
        "--mic-file",
        str(agent_voice),
        "--speaker-file",
        str(tmp_path / "agent-heard.wav"),
        env=child_env(AGENT_PHONE_NETEM=JITTERY),
    )
    phone.wait_for("presence", on_queue=True)
    caller = start_caller(
        platform.url,
        "--play",
        str(customer_voice),
        "--record",
        str(tmp_path / "customer-heard.wav"),
        "--duration",
        f"{TALK_S:g}",
    )
    code, summary = caller.result(timeout=60)
    assert code == 0 and summary["agent"] == "bob", summary
    call_id = summary["call_id"]
    clock = phone.wait_for("audio_clock", call_id=call_id)
    phone.wait_for("ended", call_id=call_id)
    final = phone.wait_for("quality", call_id=call_id, final=True)
    assert phone.quit() == 0

    # Customer -> agent: the agent's speaker, from 0.5 s into the call to
    # 0.7 s before its end, against what the customer said meanwhile.
    heard = read_wav(tmp_path / "agent-heard.wav")
    assert clock["speaker_file_offset_s"] == 0.0
    skip, end = int(0.5 * RATE), int((TALK_S - 0.7) * RATE)
    said = looped_from(
        read_wav(customer_voice), clock["speaker_started_at"] - summary["play_started_at"], end
    )
    # (What was said last is heard a little later: the network and the buffer.)
    heard = heard[skip : end + RATE // 2]
    to_agent = speech_heard(said[skip:end], heard)
    to_agent_db = speech_level_db(said[skip:end], heard)
    # Agent -> customer: the customer's recording, from 0.5 s after the
    # agent's microphone started.
    recorded = read_wav(tmp_path / "customer-heard.wav")
    first = int((clock["mic_started_at"] - summary["record_started_at"] + 0.5) * RATE)
    length = int((TALK_S - 1.5) * RATE)
    agent_said = looped_from(read_wav(agent_voice), 0.5, length)
    recorded = recorded[first : first + length + RATE // 2]
    to_customer = speech_heard(agent_said, recorded)
    to_customer_db = speech_level_db(agent_said, recorded)
    print(
        f"speech heard: by the agent {to_agent:.3f} ({to_agent_db:+.2f} dB),"
        f" by the customer {to_customer:.3f} ({to_customer_db:+.2f} dB)"
    )
    assert to_agent >= 0.98 and to_customer >= 0.95
    assert abs(to_agent_db) <= 1.0 and abs(to_customer_db) <= 1.0

    # What the phone's jitter buffer did: it aimed above the jitter, rebuilt
    # lost frames from FEC, and the agent heard the call as such.
    print("phone quality:", {k: v for k, v in final.items() if k not in ("event", "t")})
    assert final["packets_received"] > 300
    assert final["jitter_ms"] is not None and final["jitter_ms"] >= 5
    assert final["jitter_buffer_target_delay_ms"] >= 40
    assert final["fec_recovered_samples"] > 0 or final["packets_lost"] == 0
    assert final["concealed_ratio"] < 0.02 and final["grade"] in ("good", "fair")
    assert final["rtt_ms"] is not None and 20 <= final["rtt_ms"] < 400
    # The call's record keeps what the agent heard, as the phone reported it.
    platform.wait_for("call_heard", call_id=call_id)
    record = platform.call_records()[call_id]
    for name in ("concealed_samples", "fec_recovered_samples", "jitter_buffer_target_delay_ms"):
        assert record["heard_by_agent"][name] == final[name]
    assert record["quality"]["packets_received"] > 300  # and what the platform measured


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
        env=child_env(AGENT_PHONE_NETEM_FILE=str(control)),
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
    assert summary["requeued"] == 1
    assert bob.wait_for("ended", call_id=call_id)["reason"] == "connection_lost"
    platform.wait_for("call_ended", call_id=call_id)
    time.sleep(0.3)
    record = platform.call_records()[call_id]
    assert record["offered_to"] == ["bob", "carol"] and record["answered_by"] == "carol"
    assert record["requeue_reasons"] == ["connection_lost"]
    assert (record["end_reason"], record["ended_by"]) == ("agent_hangup", "agent")
    # The customer heard the agent before the cut and after the hand-over.
    assert has_tone(read_wav(tmp_path / "customer.wav"), AGENT_HZ)
