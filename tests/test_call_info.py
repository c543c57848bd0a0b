"""The phone's call model (agent_phone.phone.call): a call's life changes in
one method, which refuses what a call's life does not allow and tells its
listener once per change; and the agent's own DTMF keys mixed quietly into
what their speaker plays, clipped, bounded."""

from __future__ import annotations

import numpy as np
from audio_analysis import has_tone

from agent_phone.media.tones import DTMF_FREQUENCIES, dtmf_samples
from agent_phone.phone.call import (
    KEY_FEEDBACK_DBM0,
    KEY_FEEDBACK_MAX_SAMPLES,
    Call,
    CallState,
    Direction,
)


def _call(changes: list[tuple[str, str, str]] | None = None) -> Call:
    def listener(call: Call, old: CallState, reason: str) -> None:
        assert changes is not None
        changes.append((old.value, call.state.value, reason))

    return Call(
        "call-1",
        Direction.INBOUND,
        "Dana",
        queue="support",
        connection_id="conn-1",
        listener=listener if changes is not None else None,
    )


def test_a_new_call_is_alerting_with_no_key_feedback() -> None:
    call = _call()
    assert call.state is CallState.ALERTING and not call.held and not call.answered
    assert call.key_feedback.size == 0 and call.key_feedback.dtype == np.int16


def test_each_change_is_told_once_and_a_repeat_is_not_a_change() -> None:
    changes: list[tuple[str, str, str]] = []
    call = _call(changes)
    call.mark_answered()
    assert call.phase == "answering" and call.state is CallState.ALERTING
    assert call.set_state(CallState.CONNECTED, "connected")
    assert not call.set_state(CallState.CONNECTED, "connected again")
    assert call.set_state(CallState.HELD, "held") and call.held and call.phase == "held"
    assert call.set_state(CallState.CONNECTED, "resumed")
    assert call.set_state(CallState.ENDED, "customer_hangup")
    assert changes == [
        ("alerting", "connected", "connected"),
        ("connected", "held", "held"),
        ("held", "connected", "resumed"),
        ("connected", "ended", "customer_hangup"),
    ]
    assert call.ended and call.end_reason == "customer_hangup" and call.talk_s >= 0


def test_changes_a_calls_life_does_not_allow_are_refused_and_not_told() -> None:
    changes: list[tuple[str, str, str]] = []
    call = _call(changes)
    # An alerting call cannot be held, nor start ringing at the far end.
    assert not call.set_state(CallState.HELD, "late hold")
    assert not call.set_state(CallState.RINGING, "confused")
    assert call.set_state(CallState.ENDED, "declined")
    # Nothing comes back from the end.
    for state in CallState:
        assert not call.set_state(state, "after the end")
    assert changes == [("alerting", "ended", "declined")]
    assert call.end_reason == "declined" and not call.answered and call.talk_s == 0.0


def test_an_outbound_call_dials_rings_and_connects() -> None:
    call = Call("call-2", Direction.OUTBOUND, "+15550100", state=CallState.DIALING)
    assert call.phase == "dialing" and not call.has_media
    assert call.set_state(CallState.RINGING, "ringing")
    assert call.set_state(CallState.CONNECTED, "answered")
    assert call.has_media and call.connected_at > 0


def test_key_feedback_is_dropped_when_the_call_leaves_connected() -> None:
    call = _call()
    call.set_state(CallState.CONNECTED, "connected")
    call.add_key_feedback("123")
    assert call.key_feedback.size
    call.set_state(CallState.HELD, "held")
    assert call.key_feedback.size == 0


def test_key_feedback_is_mixed_into_the_speaker_stretch_by_stretch() -> None:
    call = _call()
    call.add_key_feedback("5")
    tones = dtmf_samples("5", level_dbm0=KEY_FEEDBACK_DBM0)
    assert np.array_equal(call.key_feedback, tones)

    silence = np.zeros(960, np.int16)
    first = call.mix_key_feedback(silence)
    assert np.array_equal(first, tones[:960]) and first.dtype == np.int16
    assert call.key_feedback.size == tones.size - 960
    rest = np.concatenate([call.mix_key_feedback(silence) for _ in range(tones.size // 960 + 1)])
    assert call.key_feedback.size == 0
    heard = np.concatenate([first, rest])
    assert all(has_tone(heard, f) for f in DTMF_FREQUENCIES["5"])
    # Once played out, the speaker gets the received audio unchanged.
    voice = np.full(960, 1234, np.int16)
    assert np.array_equal(call.mix_key_feedback(voice), voice)


def test_mixing_clips_instead_of_wrapping_around() -> None:
    call = _call()
    call.add_key_feedback("1")
    loud = np.full(call.key_feedback.size, 32767, np.int16)
    feedback = call.key_feedback.astype(np.int32)
    mixed = call.mix_key_feedback(loud)
    assert mixed.min() >= 32767 + feedback.min()  # no wrap to negative values
    assert mixed.max() == 32767


def test_key_feedback_waiting_is_bounded() -> None:
    call = _call()
    for _ in range(1000):  # each add queues 10 keys; 10 s of tones takes far fewer
        if call.key_feedback.size >= KEY_FEEDBACK_MAX_SAMPLES:
            break
        call.add_key_feedback("1234567890")
    full = call.key_feedback.size
    assert full >= KEY_FEEDBACK_MAX_SAMPLES
    call.add_key_feedback("#")
    assert call.key_feedback.size == full
