"""The connection-state model: every transition of the indicator, from facts.

These drive the model with the facts it is built to take (the setting,
sign-in and sign-out, the platform's connection_state reports, the phone's
own WebRTC stack) and record the whole history it emits.
"""

from __future__ import annotations

import pytest

from agent_phone.phone.connection_state import ConnectionStateModel, ConnectionStatus, Indicator
from agent_phone.protocol import ConnectionState

OFF, INACTIVE, CONNECTING, ACTIVE = (
    Indicator.OFF,
    Indicator.INACTIVE,
    Indicator.CONNECTING,
    Indicator.ACTIVE,
)


def report(state: str, reason: str, *, in_call=False, expires_at=None, conn="c1", kept=True):
    return ConnectionState(
        connection_id=conn,
        state=state,
        reason=reason,
        kept=kept,
        in_call=in_call,
        expires_at=expires_at,
    )


@pytest.fixture
def model():
    m = ConnectionStateModel(persistent=True)
    m.history: list[ConnectionStatus] = []  # type: ignore[attr-defined]
    m.subscribe(m.history.append)  # type: ignore[attr-defined]
    return m


def states(m) -> list[tuple[Indicator, str]]:
    return [(s.state, s.reason) for s in m.history]


def test_a_day_with_the_persistent_connection(model):
    model.signed_in()
    model.platform_reported(report("connecting", "call"))
    model.platform_reported(report("active", "call", in_call=True))
    model.platform_reported(report("active", "call_ended", expires_at=1000.0))
    model.platform_reported(report("active", "call", in_call=True))  # R3: next call
    model.platform_reported(report("active", "call_ended", expires_at=2000.0))
    model.platform_reported(report("closed", "timeout"))  # R7
    model.signed_out("requested")
    assert states(model) == [
        (INACTIVE, "signed_in"),
        (CONNECTING, "call"),
        (ACTIVE, "call"),
        (ACTIVE, "call_ended"),
        (ACTIVE, "call"),
        (ACTIVE, "call_ended"),
        (INACTIVE, "timeout"),
        (OFF, "requested"),
    ]
    # While idle the model knows when the platform will time it out...
    assert model.history[3].expires_at == 1000.0 and not model.history[3].in_call
    # ...and while in a call there is no deadline.
    assert model.history[4].in_call and model.history[4].expires_at is None


def test_off_when_signed_out_whatever_is_reported(model):
    model.platform_reported(report("active", "call"))
    assert model.history == [] and model.status.state is OFF


def test_setting_off_while_idle_and_during_a_call(model):
    model.signed_in()
    model.platform_reported(report("active", "sign_in", expires_at=5.0))
    model.setting_changed(False)
    assert states(model)[-1] == (OFF, "setting_off")
    model.setting_changed(True)
    assert states(model)[-1] == (INACTIVE, "setting_on")
    model.platform_reported(report("active", "call", in_call=True))
    model.setting_changed(False)  # R10: the call goes on, and the model says so
    assert states(model)[-1] == (ACTIVE, "closing_after_call")
    model.platform_reported(report("active", "closing_after_call", in_call=True, kept=False))
    model.platform_reported(report("closed", "persistent_off"))
    assert states(model)[-2:] == [(ACTIVE, "closing_after_call"), (OFF, "persistent_off")]


def test_a_connection_for_one_call_is_not_a_persistent_one():
    m = ConnectionStateModel(persistent=False)
    seen: list[ConnectionStatus] = []
    m.subscribe(seen.append)
    m.signed_in()
    m.platform_reported(report("connecting", "call", kept=False))
    m.platform_reported(report("active", "call", in_call=True, kept=False))
    m.platform_reported(report("closed", "persistent_off"))
    assert [(s.state, s.reason) for s in seen] == [(OFF, "signed_in")]


def test_end_connection_during_a_call(model):
    model.signed_in()
    model.platform_reported(report("active", "call", in_call=True))
    model.platform_reported(report("active", "closing_after_call", in_call=True))
    model.platform_reported(report("closed", "stopped_by_agent"))  # R9
    assert states(model)[-2:] == [(ACTIVE, "closing_after_call"), (INACTIVE, "stopped_by_agent")]


def test_the_phone_notices_a_dead_connection_itself(model):
    model.signed_in()
    model.platform_reported(report("active", "sign_in", conn="c1"))
    model.connection_lost("c0", "heartbeat_lost")  # another, older connection: ignored
    assert states(model)[-1] == (ACTIVE, "sign_in")
    model.connection_lost("c1", "heartbeat_lost")
    assert states(model)[-1] == (INACTIVE, "heartbeat_lost")
    model.platform_reported(report("connecting", "call", conn="c2"))  # the next call: fresh
    assert states(model)[-1] == (CONNECTING, "call")


def test_each_change_is_emitted_once(model):
    model.signed_in()
    model.signed_in()
    model.platform_reported(report("active", "sign_in"))
    model.platform_reported(report("active", "sign_in"))
    assert len(model.history) == 2
