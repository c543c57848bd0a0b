"""The protocol codec: one definition, validated on receipt, both sides."""

from __future__ import annotations

import pytest

from agent_phone import protocol as p


def roundtrip_agent(message: p.Message) -> p.Message:
    return p.decode_from_agent(p.encode(message))


@pytest.mark.parametrize(
    "message",
    [
        p.SignIn(version=1, user="bob", password="pw", persistent=False),
        p.SetPresence(on_queue=True),
        p.ConnectionAnswer(connection_id="c", sdp="v=0"),
        p.AnswerCall(call_id="x"),
        p.DeclineCall(call_id="x"),
        p.Hangup(call_id="x", requeue=True),
        p.SetPersistent(on=False),
        p.EndConnection(),
        p.SignOut(),
    ],
)
def test_phone_messages_survive_the_wire(message):
    assert roundtrip_agent(message) == message


@pytest.mark.parametrize(
    "message",
    [
        p.SignedIn(
            version=1,
            agent="bob",
            permissions=[],
            queues=["support"],
            alert_timeout_s=12,
            persistent_timeout_s=600,
        ),
        p.ConnectionOffer(connection_id="c", sdp="v=0", reason="sign_in"),
        p.ConnectionState(connection_id="c", state="active", reason="call", expires_at=1.5),
        p.CallOffered(
            call_id="x",
            caller="Dana",
            queue="support",
            connection_id="c",
            over_persistent_connection=True,
            alert_timeout_s=12,
            delivery_ms=1.2,
        ),
        p.CallEnded(call_id="x", reason="agent_hangup"),
        p.Error(code="invalid", message="no"),
    ],
)
def test_platform_messages_survive_the_wire(message):
    assert p.decode_to_agent(p.encode(message)) == message


def test_caller_messages_survive_the_wire():
    place = p.PlaceCall(version=1, queue="support", caller="Dana", sdp="v=0")
    assert p.decode_from_caller(p.encode(place)) == place
    accepted = p.CallAccepted(call_id="x", sdp="v=0", position=2)
    assert p.decode_to_caller(p.encode(accepted)) == accepted


def test_type_tag_is_the_wire_name():
    assert p.encode(p.AnswerCall(call_id="x")) == '{"type":"answer_call","call_id":"x"}'


def test_unknown_fields_are_ignored_for_forward_compatibility():
    assert p.decode_from_agent('{"type":"answer_call","call_id":"x","new":1}') == p.AnswerCall(
        call_id="x"
    )


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        ("{", "malformed", "JSON"),
        (b"\xff\xfe", "malformed", "JSON"),
        ("[]", "invalid", "object"),
        ('{"call_id":"x"}', "invalid", "type"),
        ('{"type":"teleport"}', "unknown_type", "teleport"),
        ('{"type":3}', "invalid", "type"),
        ('{"type":"answer_call"}', "invalid", "call_id"),
        ('{"type":"answer_call","call_id":7}', "invalid", "call_id"),
        ('{"type":"set_presence","on_queue":"yes"}', "invalid", "on_queue"),
        ("x" * (p.MAX_MESSAGE_BYTES + 1), "too_large", "limit"),
    ],
)
def test_bad_messages_are_named(data, code, words):
    with pytest.raises(p.ProtocolError) as caught:
        p.decode_from_agent(data)
    assert caught.value.code == code
    assert words in caught.value.message


def test_a_platform_message_is_not_accepted_from_a_phone():
    with pytest.raises(p.ProtocolError) as caught:
        p.decode_from_agent(p.encode(p.CallEnded(call_id="x", reason="r")))
    assert caught.value.code == "unknown_type"


def test_messages_are_immutable():
    message = p.AnswerCall(call_id="x")
    with pytest.raises(AttributeError):
        message.call_id = "y"  # type: ignore[misc]
