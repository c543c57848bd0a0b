"""Hold, DTMF and the customer's waiting tone, end to end with the real programs.

The platform, the headless phone and the caller run as processes on
loopback. The agent's microphone is a WAV file of an 880 Hz tone and the
customer sends 440 Hz; the caller records what the customer hears and
reports, in its summary, the DTMF digits, the waiting tone and the hold
music it recognised (agent_phone.media.tones). Each assertion on a stretch of
a recording is also checked independently here (FFT, tests/audio_analysis.py),
placing event times in the recording by the caller's ``heard_from`` and the
phone's and platform's event times, with margins for the jitter buffers.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import numpy as np
from audio_analysis import has_tone, rms, tone_snr_db
from e2e import AGENT_HZ, CUSTOMER_HZ, agent_mic_file, audio_through_files, start_tone_caller

from agent_phone.media.tones import HOLD_NOTES_HZ, WAITING_HZ
from agent_phone.media.wav import read_wav

RATE = 48000


def stretch(samples: np.ndarray, origin: float, start: float, end: float) -> np.ndarray:
    """The samples heard between Unix times ``start`` and ``end``, the recording
    having started at ``origin``; at least 0.5 s long, or the test is wrong."""
    a, b = int((start - origin) * RATE), int((end - origin) * RATE)
    assert 0 <= a and b - a >= RATE // 2 and b <= len(samples), (a, b, len(samples))
    return samples[a:b]


def hold_music_heard(x: np.ndarray) -> bool:
    return has_tone(x, 392.0) and has_tone(x, 330.0)


def dominates(x: np.ndarray, freq: float, other: float, margin_db: float = 30.0) -> bool:
    """``freq`` is heard and ``other`` at least ``margin_db`` below it (or absent)."""
    wanted, _ = tone_snr_db(x, freq)
    unwanted, _ = tone_snr_db(x, other)
    return has_tone(x, freq) and wanted - unwanted >= margin_db


def test_hold_cuts_both_ways_and_dtmf_reaches_the_customer(
    platform, start_phone, start_caller, tmp_path: Path
):
    phone = start_phone(
        platform.url, "bob", "--on-queue", "--auto-answer", *audio_through_files(tmp_path)
    )
    phone.wait_for("presence", on_queue=True)
    caller = start_tone_caller(start_caller, platform.url, tmp_path / "customer.wav", 0)
    answered = phone.wait_for("answered", timeout=30)
    call_id = answered["call_id"]
    time.sleep(2.0)

    phone.send("hold")
    held = phone.wait_for("held", on=True, call_id=call_id)
    assert platform.wait_for("call_held", call_id=call_id, on=True)["agent"] == "bob"
    time.sleep(1.2)
    # DTMF on a held call and a second hold are refused by the platform.
    mark = phone.mark()
    phone.send("dtmf", digits="7")
    refused = phone.wait_for("error", since=mark, code="wrong_state")
    assert refused["call_id"] == call_id and "hold" in refused["message"]
    mark = phone.mark()
    phone.send("hold")
    assert "already on hold" in phone.wait_for("error", since=mark, code="wrong_state")["message"]
    time.sleep(1.3)

    phone.send("unhold")
    unheld = phone.wait_for("held", on=False, call_id=call_id)
    time.sleep(2.0)
    phone.send("dtmf", digits="159#")
    sent = phone.wait_for("dtmf", digits="159#")
    dtmf = platform.wait_for("dtmf", call_id=call_id)
    assert dtmf["digits"] == "159#" and dtmf["agent"] == "bob"
    time.sleep(1.5)
    phone.send("hangup")
    code, summary = caller.result(timeout=20)
    assert phone.quit() == 0

    assert code == 0 and summary["agent"] == "bob" and summary["ended_by"] == "agent", summary
    # What the caller recognised: the digits in order, only once (the "7"
    # sent while held was never played), and the hold music.
    assert summary["dtmf_heard"] == "159#", summary
    assert summary["hold_tone_s"] >= 1.5, summary
    assert [e["on"] for e in platform.matching("call_held", call_id=call_id)] == [True, False]
    # The phone's call model: each change once, in the order of the call's
    # life, each with the whole call (the refused DTMF and hold changed nothing).
    changes = phone.matching("call", call_id=call_id)
    assert [(e["previous"], e["state"]) for e in changes] == [
        (None, "alerting"),
        ("alerting", "connected"),
        ("connected", "held"),
        ("held", "connected"),
        ("connected", "ended"),
    ], changes
    assert all(e["direction"] == "inbound" and e["queue"] == "support" for e in changes)
    assert changes[-1]["reason"] == "agent_hangup" and changes[-1]["answered"]
    assert changes[-1]["duration_s"] >= held["t"] - answered["t"]

    customer = read_wav(tmp_path / "customer.wav")
    origin = summary["heard_from"]
    before = stretch(customer, origin, answered["t"] + 0.8, held["t"] - 0.1)
    during = stretch(customer, origin, held["t"] + 0.6, unheld["t"] - 0.1)
    after = stretch(customer, origin, unheld["t"] + 0.6, sent["t"] - 0.1)
    assert dominates(before, AGENT_HZ, 392.0) and not hold_music_heard(before)
    # Held: the hold music, and not the agent's microphone.
    assert hold_music_heard(during)
    assert not has_tone(during, AGENT_HZ), tone_snr_db(during, AGENT_HZ)
    assert dominates(during, 392.0, AGENT_HZ)
    # Off hold: the agent again, and the music gone.
    assert dominates(after, AGENT_HZ, 392.0) and not hold_music_heard(after)
    assert not has_tone(before, WAITING_HZ) and not has_tone(after, WAITING_HZ)

    # The agent's speaker: the customer before and after, silence while held.
    # Found by its content (the phone's file has no clock to place events by):
    # the one long silent stretch lasts as long as the hold did.
    agent = read_wav(tmp_path / "agent.wav")
    block = RATE // 10
    quiet = [rms(agent[i : i + block]) < 30 for i in range(0, len(agent) - block, block)]
    start, length = longest_run(quiet)
    held_for = unheld["t"] - held["t"]
    assert held_for - 0.6 <= length / 10 <= held_for + 0.6, (length, held_for)
    silent = agent[(start + 2) * block : (start + length - 2) * block]
    assert not has_tone(silent, CUSTOMER_HZ) and not any(has_tone(silent, f) for f in HOLD_NOTES_HZ)
    before_hold = agent[max(0, start - 15) * block : (start - 2) * block]
    after_hold = agent[(start + length + 3) * block : (start + length + 15) * block]
    assert dominates(before_hold, CUSTOMER_HZ, 392.0) and dominates(after_hold, CUSTOMER_HZ, 392.0)


def longest_run(flags: list[bool]) -> tuple[int, int]:
    """(start, length) of the longest run of True."""
    best, start = (0, 0), None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            best = max(best, (start, i - start), key=lambda r: r[1])
            start = None
    return best


def test_waiting_customer_hears_the_waiting_tone_until_an_agent_connects(
    platform, start_phone, start_caller, tmp_path: Path
):
    caller = start_caller(
        platform.url,
        "--record",
        str(tmp_path / "customer.wav"),
        "--duration",
        "3",
        "--wait",
        "40",
    )
    platform.wait_for("call_queued", timeout=20)
    time.sleep(3.0)  # nobody is on queue
    phone = start_phone(
        platform.url, "carol", "--on-queue", "--auto-answer", "--mic-file", agent_mic_file(tmp_path)
    )
    answered = phone.wait_for("answered", timeout=30)
    code, summary = caller.result(timeout=30)
    assert code == 0 and summary["agent"] == "carol", summary

    assert summary["waiting_tone_s"] >= 1.0, summary  # 0.4 s in each second waited
    timeline = summary["heard_timeline"]
    assert WAITING_HZ in timeline[:3], timeline
    assert WAITING_HZ not in timeline[-2:] and AGENT_HZ in timeline[-2:], timeline

    customer = read_wav(tmp_path / "customer.wav")
    origin = summary["heard_from"]
    waiting = stretch(customer, origin, origin + 0.1, answered["t"] - 0.3)
    assert dominates(waiting, WAITING_HZ, AGENT_HZ)
    talking = stretch(customer, origin, answered["t"] + 0.6, origin + len(customer) / RATE - 0.2)
    assert dominates(talking, AGENT_HZ, WAITING_HZ)


def test_a_requeued_customer_hears_the_waiting_tone_again(
    platform, start_phone, start_caller, tmp_path: Path
):
    mic = agent_mic_file(tmp_path)
    bob = start_phone(platform.url, "bob", "--on-queue", "--auto-answer", "--mic-file", mic)
    bob.wait_for("presence", on_queue=True)
    caller = start_caller(
        platform.url, "--record", str(tmp_path / "customer.wav"), "--duration", "0", "--wait", "60"
    )
    first = bob.wait_for("answered", timeout=30)
    time.sleep(1.5)
    killed_at = time.time()
    bob.proc.kill()  # the agent's phone dies mid-call
    requeued = platform.wait_for("call_requeued", call_id=first["call_id"], timeout=15)
    time.sleep(2.5)
    carol = start_phone(platform.url, "carol", "--on-queue", "--auto-answer", "--mic-file", mic)
    second = carol.wait_for("answered", timeout=30)
    assert second["call_id"] == first["call_id"]
    time.sleep(2.0)
    carol.send("hangup")
    code, summary = caller.result(timeout=20)
    assert code == 0 and summary["agent"] == "carol" and summary["ended_by"] == "agent", summary
    assert summary["requeued"] == 1  # the caller was told it went back to the queue

    customer = read_wav(tmp_path / "customer.wav")
    origin = summary["heard_from"]
    with_bob = stretch(customer, origin, first["t"] + 0.6, killed_at - 0.1)
    back_in_queue = stretch(customer, origin, requeued["t"] + 0.3, second["t"] - 0.3)
    with_carol = stretch(customer, origin, second["t"] + 0.6, second["t"] + 1.8)
    assert dominates(with_bob, AGENT_HZ, WAITING_HZ)
    assert dominates(back_in_queue, WAITING_HZ, AGENT_HZ)
    assert dominates(with_carol, AGENT_HZ, WAITING_HZ)
    assert summary["waiting_tone_s"] >= 0.8, summary


def test_a_call_hung_up_on_hold_leaves_the_kept_connection_unheld(
    platform, start_phone, start_caller, tmp_path: Path
):
    """Calls held over a persistent connection must not get stuck: the next
    call over the same connection carries audio both ways, un-held."""
    phone = start_phone(
        platform.url, "bob", "--on-queue", "--auto-answer", *audio_through_files(tmp_path)
    )
    phone.wait_for("presence", on_queue=True)
    first = start_tone_caller(start_caller, platform.url, None, 0)
    one = phone.wait_for("answered", timeout=30)["call_id"]
    phone.send("hold")
    phone.wait_for("held", on=True, call_id=one)
    time.sleep(1.5)
    phone.send("hangup")  # while held
    code, summary = first.result(timeout=20)
    assert code == 0 and summary["ended_by"] == "agent" and summary["hold_tone_s"] >= 0.8

    mark = phone.mark()
    second = start_tone_caller(start_caller, platform.url, tmp_path / "second.wav", 3)
    alert = phone.wait_for("alerting", since=mark, timeout=30)
    assert alert["over_persistent_connection"] is True  # the same connection (R3)
    code, summary = second.result(timeout=30)
    assert code == 0 and summary["hold_tone_s"] == 0, summary
    assert not phone.matching("held", call_id=alert["call_id"])
    heard = read_wav(tmp_path / "second.wav")
    assert dominates(heard[-2 * RATE :], AGENT_HZ, 392.0)  # the agent, not the music
    assert phone.quit() == 0
    # ...and the agent hears the second customer: the speaker file ends with them.
    agent = read_wav(tmp_path / "agent.wav")
    assert dominates(agent[-2 * RATE :], CUSTOMER_HZ, 392.0)


class RawAgent:
    """A hand-driven agent socket: sends anything, reads every reply."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def request(self, payload: dict, kind: str, timeout: float = 10.0) -> dict:
        await self.ws.send_str(json.dumps(payload))
        deadline = time.monotonic() + timeout
        while True:
            frame = await asyncio.wait_for(self.ws.receive(), deadline - time.monotonic())
            assert frame.type is aiohttp.WSMsgType.TEXT, frame
            message = json.loads(frame.data)
            if message["type"] == kind:
                return message


async def test_hold_and_dtmf_are_refused_on_someone_elses_call_or_in_the_wrong_state(
    platform, start_phone, start_caller, tmp_path: Path
):
    bob = start_phone(platform.url, "bob", "--on-queue", "--mic-file", agent_mic_file(tmp_path))
    await asyncio.to_thread(bob.wait_for, "presence", on_queue=True)
    caller = start_caller(platform.url, "--duration", "2", "--wait", "30")
    alert = await asyncio.to_thread(bob.wait_for, "alerting", timeout=30)
    call_id = alert["call_id"]

    # Ringing, not connected: the platform refuses, the phone says why.
    bob.send("hold")
    error = await asyncio.to_thread(bob.wait_for, "error", code="wrong_state")
    assert error["call_id"] == call_id and "alerting" in error["message"]
    mark = bob.mark()
    bob.send("dtmf", digits="12x")  # refused by the phone before it is sent
    error = await asyncio.to_thread(bob.wait_for, "error", since=mark)
    assert error["code"] == "command" and "0-9, *, #, A-D" in error["message"]

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(platform.url) as ws:
            carol = RawAgent(ws)
            signed = {"type": "sign_in", "version": 1, "user": "carol", "password": "demo"}
            await carol.request(signed, "signed_in")
            for kind in ("hold_call", "unhold_call"):
                e = await carol.request({"type": kind, "call_id": call_id}, "error")
                assert e["code"] == "not_your_call" and e["call_id"] == call_id, e
            dtmf = {"type": "send_dtmf", "call_id": call_id, "digits": "1"}
            e = await carol.request(dtmf, "error")
            assert e["code"] == "not_your_call", e
            e = await carol.request({"type": "hold_call", "call_id": "call-nope"}, "error")
            assert e["code"] == "unknown_call", e
            for digits in ("", "12x", "1" * 33, "#" * 40):
                e = await carol.request({**dtmf, "digits": digits}, "error")
                assert e["code"] == "invalid" and "digits" in e["message"], e
                assert e["in_reply_to"] == "send_dtmf"

    # Nothing changed for bob's call: he answers and it carries on.
    bob.send("answer")
    await asyncio.to_thread(bob.wait_for, "answered", call_id=call_id)
    code, summary = await asyncio.to_thread(caller.result, 20)
    assert code == 0 and summary["agent"] == "bob" and summary["talk_s"] >= 1.5, summary
    assert not platform.matching("call_held") and not platform.matching("dtmf")
