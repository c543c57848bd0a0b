"""The phone's record of its current call (agent_phone.phone.call): the agent's
own DTMF keys mixed quietly into what their speaker plays, clipped, bounded."""

from __future__ import annotations

import numpy as np
from audio_analysis import has_tone

from agent_phone.media.tones import DTMF_FREQUENCIES, dtmf_samples
from agent_phone.phone.call import (
    KEY_FEEDBACK_DBM0,
    KEY_FEEDBACK_MAX_SAMPLES,
    CallInfo,
    CallState,
)


def _call() -> CallInfo:
    return CallInfo("call-1", "Dana", "support", "conn-1", False, 12.0)


def test_a_new_call_is_alerting_with_no_key_feedback() -> None:
    call = _call()
    assert call.state is CallState.ALERTING and not call.held
    assert call.key_feedback.size == 0 and call.key_feedback.dtype == np.int16


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
