"""The compiled core's protocol view for Python (``_core.Message``, ``decode_frames``), the
VM's last error, the engine's records, and the constants the boundary shares."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import durable_futures as df
from durable_futures import _attempt, _core
from durable_futures._core import Failure, Message
from durable_futures.errors import ProtocolError

from .journal import V6, Journal, run_cmd

#: One message of every type, with the fields that type carries.
EVERY_TYPE: list[tuple[str, dict[str, Any]]] = [
    (
        "Start",
        {
            "id": b"0123456789abcdef",
            "debug_id": "inv_x",
            "known_entries": 3,
            "state_map": [(b"k", b"v")],
            "partial_state": True,
            "key": "obj",
            "retry_count": 2,
            "duration_since_last_stored_entry": 40,
            "random_seed": 99,
            "idempotency_key": "idem",
        },
    ),
    ("Suspension", {"waiting_completions": [1, 2], "waiting_signals": [1], "waiting_named_signals": ["s"]}),
    (
        "Error",
        {
            "code": 570,
            "message": "m",
            "stacktrace": "t",
            "related_command_index": 1,
            "related_command_name": "step",
            "related_command_type": Message("RunCommand").type,
            "next_retry_delay": 5,
            "behavior": 1,
        },
    ),
    ("End", {}),
    ("CommandAck", {"command_index": 4}),
    ("ProposeRunCompletion", {"completion_id": 1, "value": b"1"}),
    ("ProposeRunCompletion", {"completion_id": 1, "failure": Failure(500, "x", [("a", "b")])}),
    ("ProposeRunCompletionAck", {"completion_id": 1}),
    ("InputCommand", {"headers": [("h", "v")], "value": b'"in"', "name": "n"}),
    ("OutputCommand", {"value": b'"out"'}),
    ("OutputCommand", {"failure": Failure(418, "teapot")}),
    ("GetLazyStateCommand", {"state_key": b"k", "completion_id": 1}),
    ("SetStateCommand", {"state_key": b"k", "value": b"1"}),
    ("ClearStateCommand", {"state_key": b"k"}),
    ("ClearAllStateCommand", {}),
    ("GetLazyStateKeysCommand", {"completion_id": 2}),
    ("GetEagerStateCommand", {"state_key": b"k", "value": b"1"}),
    ("GetEagerStateCommand", {"state_key": b"k", "void": True}),
    ("GetEagerStateKeysCommand", {"state_keys": [b"a", b"b"]}),
    ("GetPromiseCommand", {"promise_key": "p", "completion_id": 1}),
    ("PeekPromiseCommand", {"promise_key": "p", "completion_id": 1}),
    ("CompletePromiseCommand", {"promise_key": "p", "value": b"1", "completion_id": 2}),
    ("SleepCommand", {"wake_up_time": 1234, "completion_id": 1, "name": "nap"}),
    (
        "CallCommand",
        {
            "service": "S",
            "handler": "h",
            "parameter": b"1",
            "headers": [("x", "y")],
            "key": "k",
            "idempotency_key": "i",
            "invocation_id_notification_idx": 1,
            "completion_id": 2,
        },
    ),
    (
        "OneWayCallCommand",
        {
            "service": "S",
            "handler": "h",
            "parameter": b"1",
            "invoke_time": 99,
            "invocation_id_notification_idx": 3,
        },
    ),
    ("SendSignalCommand", {"target_invocation_id": "inv_a", "signal_id": 1, "void": True}),
    ("SendSignalCommand", {"target_invocation_id": "inv_a", "signal_name": "go", "value": b"1"}),
    ("RunCommand", {"completion_id": 1, "name": "step"}),
    ("AttachInvocationCommand", {"target_invocation_id": "inv_a", "completion_id": 1}),
    (
        "GetInvocationOutputCommand",
        {"service": "S", "handler": "h", "key": "k", "idempotency_key": "i", "completion_id": 1},
    ),
    ("GetInvocationOutputCommand", {"service": "W", "key": "k", "completion_id": 1}),
    ("CompleteAwakeableCommand", {"awakeable_id": "sign_1", "failure": Failure(451, "no")}),
    ("RunCompletion", {"completion_id": 1, "value": b"1"}),
    ("SleepCompletion", {"completion_id": 1, "void": True}),
    ("CallInvocationIdCompletion", {"completion_id": 1, "invocation_id": "inv_b"}),
    ("GetLazyStateKeysCompletion", {"completion_id": 1, "state_keys": [b"a"]}),
    ("CallCompletion", {"completion_id": 2, "failure": Failure(500, "boom")}),
    ("Signal", {"signal_id": 17, "value": b"1"}),
    ("Signal", {"signal_name": "go", "void": True}),
]


@pytest.mark.parametrize(("ty", "fields"), EVERY_TYPE, ids=[t for t, _ in EVERY_TYPE])
def test_every_message_type_round_trips(ty: str, fields: dict[str, Any]) -> None:
    m = Message(ty, **fields)
    (back,) = _core.decode_frames(m.encode())
    assert back.type_name == ty and back.type == m.type
    for name, value in fields.items():
        assert getattr(back, name) == value, name
    assert back.encode() == m.encode()
    assert ty in repr(back)


def test_kinds_and_names() -> None:
    assert Message("RunCommand").kind == "command"
    assert Message("RunCompletion").kind == "notification"
    assert Message("Signal").kind == "notification"
    assert Message("End").kind == "control"
    assert Message(Message("RunCommand").type).type_name == "RunCommand"
    (custom,) = _core.decode_frames(_core.encode_frame(0xFC01, b"opaque"))
    assert (custom.kind, custom.type_name, custom.value) == ("custom", "0xFC01", b"opaque")
    with pytest.raises(ValueError, match="unknown message type"):
        Message("NoSuchCommand")
    with pytest.raises(ValueError, match="unknown message type"):
        Message(0x0300)


def test_messages_refuse_fields_that_contradict() -> None:
    with pytest.raises(ValueError, match="not both"):
        Message("OutputCommand", value=b"1", failure=Failure(1, "x")).encode()
    with pytest.raises(ValueError, match="one of void"):
        Message("RunCompletion", completion_id=1).encode()
    with pytest.raises(ValueError, match="one of completion_id"):
        Message("RunCompletion", completion_id=1, signal_id=2, void=True).encode()
    with pytest.raises(ValueError, match="needs a value or a failure"):
        Message("CompleteAwakeableCommand", awakeable_id="a").encode()


def test_bad_bytes_are_protocol_errors() -> None:
    frame = Message("RunCommand", completion_id=1).encode()
    with pytest.raises(ProtocolError):
        _core.decode_frames(frame[:-1])
    with pytest.raises(ProtocolError):
        _core.decode_frames(_core.encode_frame(0x0300, b""))
    with pytest.raises(ValueError, match="one frame, not 2"):
        _core.decode_frame(frame + frame)


def test_the_boundary_constants_come_from_the_core() -> None:
    outcomes = [_attempt.READY, _attempt.CANCELLED_CODE, _attempt.PENDING]
    outcomes += [_attempt.SUSPENDED, _attempt.EXHAUSTED]
    assert outcomes == [
        _core.OUTCOME_READY,
        _core.OUTCOME_CANCELLED,
        _core.OUTCOME_PENDING,
        _core.OUTCOME_SUSPENDED,
        _core.OUTCOME_EXHAUSTED,
    ]
    assert len(set(outcomes)) == 5
    kinds = [_attempt.VOID, _attempt.VALUE, _attempt.FAILURE]
    kinds += [_attempt.INVOCATION_ID, _attempt.STATE_KEYS]
    assert len(set(kinds)) == 5 and _attempt.VALUE == _core.KIND_VALUE


def test_sys_input_and_last_error() -> None:
    vm = _core.Vm(V6)
    vm.notify_input(Journal(b'"hi"', key="k").add(run_cmd(1, "step")).body())
    vm.notify_input_closed()
    start = vm.sys_input()
    assert (start.key, start.input, start.random_seed) == ("k", b'"hi"', 7)
    assert start.invocation_id.startswith("inv_")
    assert vm.last_error() is None
    with pytest.raises(df.JournalMismatchError):
        vm.sys_run("other")
    error = vm.last_error()
    assert error is not None and error.code == 570
    assert error.related_command_index == 1
    assert error.related_command_type == "RunCommand"
    assert error.related_command_name == "step"
    (written,) = _core.decode_frames(vm.take_output())
    assert (written.type_name, written.code, written.message) == ("Error", 570, error.message)


def test_the_engine_hands_out_typed_records() -> None:
    engine = _core.Engine(None, "os")
    inv_id, existing = engine.submit("Svc", "h", "", b'"x"', None, 0, 1)
    assert not existing
    assert engine.invocation(inv_id) is None  # not committed yet
    assert engine.commit(1) == []
    row = engine.invocation(inv_id, 1)
    assert row is not None
    assert row == (inv_id, "Svc", "h", "", "ready", 0, 1, None, 0, 1, None, None, None, 1, None)
    assert (row.id, row.status, row.failed_attempts, row.created_at_ms) == (inv_id, "ready", 0, 1)
    assert (row.journal_size, row.completion_result, row.last_failure) == (1, None, None)
    assert engine.list_invocations(10, 1) == [row]
    assert engine.journal_len(inv_id) == 1
    request = engine.attempt_request(inv_id)
    attempt = engine.next_attempt(1)
    assert attempt is not None and (attempt.id, attempt.service, attempt.handler) == (inv_id, "Svc", "h")
    assert attempt.request == request.body and attempt.content_type == request.content_type
    assert request.entries == 1
    start, given = _core.decode_frames(request.body)
    assert (start.debug_id, start.known_entries, given.type_name) == (inv_id, 1, "InputCommand")

    vm = _core.Vm(attempt.content_type)
    vm.notify_input(attempt.request)
    vm.notify_input_closed()
    vm.sys_input()
    vm.sys_write_output_success(b'"y"')
    vm.sys_end()
    engine.on_output(inv_id, attempt.token, vm.take_output(), 2)
    (effect,) = engine.commit(2)
    assert isinstance(effect, _core.Completed)
    assert (effect.id, effect.outcome) == (inv_id, (True, b'"y"'))
    assert engine.journal_len(inv_id) == len(engine.journal(inv_id)) > 1
    assert engine.invocation(inv_id).status == "completed"  # type: ignore[union-attr]
    with pytest.raises(df.DurableError) as e:
        engine.attempt_request("inv_" + "0" * 32)
    assert e.value.code == 404


def test_an_unknown_commit_effect_is_an_error_not_skipped() -> None:
    engine = df.LocalEngine()

    async def go() -> None:
        async with engine:
            with pytest.raises(TypeError, match="unknown effect"):
                engine._apply(object())  # type: ignore[arg-type]

    asyncio.run(go())
