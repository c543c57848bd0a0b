"""One real customer call, end to end, with the real programs on loopback.

The platform, the headless phone and the caller run as processes. Audio is
real both ways: the caller sends a 440 Hz tone, the agent's microphone (the
virtual sound card, through PortAudio) carries 880 Hz, and each side's
received audio is analysed for the other's frequency.
"""

from __future__ import annotations

import time
from pathlib import Path

from audio_analysis import has_tone, tone_snr_db
from e2e import AGENT_HZ, CUSTOMER_HZ, audio_through_files, start_tone_caller, two_way_tone_call

from agent_phone.media.wav import read_wav


def hears_only(samples, freq: float, other: float) -> bool:
    """``freq`` is there, and ``other`` (an echo, crossed wires) is not.

    Opus leaves faint harmonics of a pure tone (880 Hz under 440 Hz ~90 dB
    down), so "not there" means at least 30 dB below the tone heard.
    """
    wanted, _ = tone_snr_db(samples, freq)
    unwanted, _ = tone_snr_db(samples, other)
    return has_tone(samples, freq) and wanted - unwanted >= 30.0


def test_call_carries_audio_both_ways_through_real_devices(
    virtual_audio, platform, start_phone, start_caller, tmp_path: Path
):
    phone = start_phone(platform.url, "bob", "--on-queue", "--auto-answer")
    phone.wait_for("presence", on_queue=True)
    call = two_way_tone_call(
        virtual_audio, start_caller, platform.url, tmp_path, duration=4, timeout=40
    )
    summary = call.summary

    assert call.code == 0, summary
    assert summary["answered"] is True and summary["agent"] == "bob"
    assert summary["ended_by"] == "customer"
    call_id = summary["call_id"]

    # The agent heard the customer's tone through the real speaker stream...
    assert hears_only(call.heard_by_agent, CUSTOMER_HZ, AGENT_HZ), "agent did not hear the customer"
    # ...and the customer heard the agent's microphone.
    heard_by_customer = call.heard_by_customer()
    assert hears_only(heard_by_customer, AGENT_HZ, CUSTOMER_HZ), "customer did not hear the agent"

    # All three sides agree on how it ended.
    assert phone.wait_for("ended", call_id=call_id)["reason"] == "customer_hangup"
    assert platform.wait_for("call_ended", call_id=call_id)["reason"] == "customer_hangup"
    assert platform.wait_for("call_delivered", call_id=call_id)["agent"] == "bob"
    assert phone.quit() == 0


def test_agent_hangs_up(platform, start_phone, start_caller, tmp_path: Path):
    phone = start_phone(platform.url, "carol", "--on-queue", *audio_through_files(tmp_path))
    phone.wait_for("presence", on_queue=True)
    caller = start_tone_caller(
        start_caller, platform.url, tmp_path / "customer.wav", 0, "--caller", "Dana"
    )
    alert = phone.wait_for("alerting")
    assert alert["caller"] == "Dana" and alert["queue"] == "support"
    assert alert["over_persistent_connection"] is False  # the first call sets it up (R1)
    phone.send("answer")
    phone.wait_for("answered", call_id=alert["call_id"])
    platform.wait_for("call_answered", call_id=alert["call_id"])
    # Let audio flow for a while, then the agent hangs up.
    time.sleep(2.5)
    phone.send("hangup")
    code, summary = caller.result(timeout=20)
    assert code == 0
    assert summary["ended_by"] == "agent" and summary["reason"] == "agent_hangup"
    assert phone.wait_for("ended", call_id=alert["call_id"])["reason"] == "agent_hangup"
    assert platform.wait_for("call_ended", call_id=alert["call_id"])["reason"] == "agent_hangup"
    assert hears_only(read_wav(tmp_path / "customer.wav"), AGENT_HZ, CUSTOMER_HZ)
    assert phone.quit() == 0
    # The speaker file is written when the phone closes.
    assert hears_only(read_wav(tmp_path / "agent.wav"), CUSTOMER_HZ, AGENT_HZ)
