"""The C ABI (rust/ffi) driven through cffi in ABI mode, against the recorded conformance
vectors (tests/conformance/README.md): the ``Conformance`` service and the ``ConformanceWf``
workflow.

The library is loaded with ``ffi.dlopen`` from ``target/debug`` (built by a session fixture
when it is missing or older than the Rust sources) and declared with ``ffi.cdef`` from the
committed cffi header. Every code the library returns is mapped to the same exception
classes as the PyO3 facade (``durable_futures.errors``). What the VM writes is read with the
compiled core's decoder (``durable_futures._core.decode_frames``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cffi  # type: ignore[import-untyped, unused-ignore]
import pytest

from durable_futures import _core, errors

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "conformance" / "vectors"
CFFI_HEADER = ROOT / "rust" / "ffi" / "include" / "durable_futures_cffi.h"
SOURCES = [ROOT / "rust" / "ffi" / "src", ROOT / "rust" / "core" / "src"]


# ---- loading the library ----------------------------------------------------------------


def _library_path() -> Path:
    override = os.environ.get("DURABLE_FUTURES_FFI_LIB")
    if override:
        return Path(override)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    name = {
        "darwin": "libdurable_futures_ffi.dylib",
        "win32": "durable_futures_ffi.dll",
    }.get(sys.platform, "libdurable_futures_ffi.so")
    return target / "debug" / name


def _stale(lib: Path) -> bool:
    if not lib.exists():
        return True
    built = lib.stat().st_mtime
    return any(p.stat().st_mtime > built for d in SOURCES for p in d.rglob("*.rs"))


@dataclass
class Api:
    ffi: cffi.FFI
    lib: Any


@pytest.fixture(scope="session")
def api() -> Api:
    path = _library_path()
    if "DURABLE_FUTURES_FFI_LIB" not in os.environ and _stale(path):
        subprocess.run(
            ["cargo", "build", "--quiet", "-p", "durable-futures-ffi"],
            cwd=ROOT,
            check=True,
        )
    ffi = cffi.FFI()
    ffi.cdef(CFFI_HEADER.read_text())
    return Api(ffi, ffi.dlopen(str(path)))


# ---- a thin Python wrapper over the C ABI ----------------------------------------------


class Vm:
    """One VM, freed by ``ffi.gc`` when the wrapper goes away."""

    def __init__(self, api: Api, content_type: str) -> None:
        self.ffi, self.lib = api.ffi, api.lib
        out = self.ffi.new("DfVm **")
        code = self.lib.df_vm_new(self.slice(content_type.encode()), out)
        if code:
            raise self._thread_error(code)
        self.ptr = self.ffi.gc(out[0], self.lib.df_vm_free)

    # -- plumbing --

    def slice(self, data: bytes) -> dict[str, Any]:
        """A ``DfSlice`` initializer borrowing ``data`` (kept alive by the dict)."""
        if not data:
            return {"ptr": self.ffi.NULL, "len": 0}
        return {"ptr": self.ffi.from_buffer("uint8_t[]", data), "len": len(data)}

    def owned(self, ctype: str, destructor: Callable[[Any], None]) -> Any:
        """A zeroed out-struct whose contents are released by ``destructor`` on collection
        (or at once with ``ffi.release``)."""
        return self.ffi.gc(self.ffi.new(ctype), destructor)

    def bytes_of(self, buf: Any) -> bytes:
        if buf.ptr == self.ffi.NULL:
            return b""
        return bytes(self.ffi.buffer(buf.ptr, buf.len))

    def _message(self, fetch: Callable[[Any], object]) -> str:
        buf = self.owned("DfBuffer *", self.lib.df_buffer_free)
        fetch(buf)
        message = self.bytes_of(buf).decode()
        self.ffi.release(buf)
        return message

    def _thread_error(self, code: int) -> errors.DurableError:
        return errors.error_for_code(
            code, self._message(self.lib.df_last_error_message)
        )

    def check(self, code: int) -> None:
        if code:
            message = self._message(lambda b: self.lib.df_vm_last_error(self.ptr, b))
            raise errors.error_for_code(code, message)

    # -- the VM --

    def feed(self, data: bytes, rng: random.Random | None = None) -> None:
        at = 0
        while at < len(data):
            n = rng.randint(1, 64) if rng else len(data)
            self.check(
                self.lib.df_vm_notify_input(self.ptr, self.slice(data[at : at + n]))
            )
            at += n

    def close_input(self) -> None:
        self.check(self.lib.df_vm_notify_input_closed(self.ptr))

    def ready(self) -> bool:
        out = self.ffi.new("bool *")
        self.check(self.lib.df_vm_is_ready_to_execute(self.ptr, out))
        return bool(out[0])

    def take_output(self) -> bytes:
        buf = self.owned("DfBuffer *", self.lib.df_buffer_free)
        self.check(self.lib.df_vm_take_output(self.ptr, buf))
        data = self.bytes_of(buf)
        self.ffi.release(buf)
        return data

    def last_error(self) -> tuple[int, str]:
        codes: list[int] = []
        message = self._message(
            lambda b: codes.append(self.lib.df_vm_last_error(self.ptr, b))
        )
        return codes[0], message


class Suspended(Exception):
    """The attempt suspended: unwinds the handler."""


@dataclass
class Ctx:
    """Just enough of a handler context to run the ``Conformance`` and ``ConformanceWf``
    handlers synchronously."""

    vm: Vm
    executed: list[str] = field(default_factory=list)
    key: str = ""

    @property
    def lib(self) -> Any:
        return self.vm.lib

    def _handle(self, fn: Callable[..., int], *args: Any) -> int:
        out = self.vm.ffi.new("DfHandle *")
        self.vm.check(fn(self.vm.ptr, *args, out))
        return int(out[0])

    def input(self) -> Any:
        inp = self.vm.owned("DfInput *", self.lib.df_input_free)
        self.vm.check(self.lib.df_vm_sys_input(self.vm.ptr, inp))
        assert self.vm.bytes_of(inp.invocation_id).startswith(b"inv_")
        self.key = self.vm.bytes_of(inp.key).decode()
        # Handlers without input (status, peek) get an empty body.
        body = self.vm.bytes_of(inp.input)
        self.vm.ffi.release(inp)
        return json.loads(body) if body else None

    def run(self, name: str, fn: Callable[[], Any]) -> int:
        ffi = self.vm.ffi
        handle, replayed = ffi.new("DfHandle *"), ffi.new("bool *")
        self.vm.check(
            self.lib.df_vm_sys_run(
                self.vm.ptr, self.vm.slice(name.encode()), handle, replayed
            )
        )
        h = int(handle[0])
        if replayed[0]:
            return h
        self.executed.append(name)
        try:
            result = json.dumps(fn()).encode()
        except errors.TerminalError as e:
            failure = ffi.new("DfFailure *")
            message = e.message.encode()
            keep = self.vm.slice(message)
            failure.code, failure.message = e.code, keep
            self.vm.check(
                self.lib.df_vm_propose_run_terminal_failure(self.vm.ptr, h, failure)
            )
        else:
            self.vm.check(
                self.lib.df_vm_propose_run_success(
                    self.vm.ptr, h, self.vm.slice(result)
                )
            )
        return h

    def sleep(self, ms: int, name: str = "") -> int:
        wake = int(time.time() * 1000) + ms
        return self._handle(
            self.lib.df_vm_sys_sleep, self.vm.slice(name.encode()), wake
        )

    def call(self, service: str, handler: str, arg: Any) -> int:
        ffi = self.vm.ffi
        target = ffi.new("DfTarget *")
        keep = [self.vm.slice(service.encode()), self.vm.slice(handler.encode())]
        target.service, target.handler = keep
        inv, res = ffi.new("DfHandle *"), ffi.new("DfHandle *")
        param = self.vm.slice(json.dumps(arg).encode())
        self.vm.check(
            self.lib.df_vm_sys_call(
                self.vm.ptr, target, param, self.vm.slice(b""), inv, res
            )
        )
        return int(res[0])

    def set_state(self, key: str, value: Any) -> None:
        self.vm.check(
            self.lib.df_vm_sys_state_set(
                self.vm.ptr,
                self.vm.slice(key.encode()),
                self.vm.slice(json.dumps(value).encode()),
            )
        )

    def get_state(self, key: str) -> int:
        return self._handle(self.lib.df_vm_sys_state_get, self.vm.slice(key.encode()))

    def get_promise(self, key: str) -> int:
        return self._handle(self.lib.df_vm_sys_get_promise, self.vm.slice(key.encode()))

    def peek_promise(self, key: str) -> int:
        return self._handle(
            self.lib.df_vm_sys_peek_promise, self.vm.slice(key.encode())
        )

    def resolve_promise(self, key: str, value: Any) -> int:
        return self._handle(
            self.lib.df_vm_sys_complete_promise_success,
            self.vm.slice(key.encode()),
            self.vm.slice(json.dumps(value).encode()),
        )

    def reject_promise(self, key: str, message: str, code: int = 500) -> int:
        failure = self.vm.ffi.new("DfFailure *")
        keep = self.vm.slice(message.encode())
        failure.code, failure.message = code, keep
        return self._handle(
            self.lib.df_vm_sys_complete_promise_failure,
            self.vm.slice(key.encode()),
            failure,
        )

    def _wait(self, fn: Callable[..., int], h: int) -> Any:
        out = self.vm.ffi.new("DfAwaitResult *")
        self.vm.check(fn(self.vm.ptr, h, out))
        if out.kind == self.lib.DF_AWAIT_KIND_SUSPENDED:
            raise Suspended()
        if out.kind == self.lib.DF_AWAIT_KIND_CANCELLED:
            raise errors.TerminalError("cancelled", errors.CANCELLED)
        # The whole request is fed and runs finish eagerly: nothing can be pending.
        assert out.kind != self.lib.DF_AWAIT_KIND_PENDING
        return out

    def value(self, h: int) -> Any:
        """The JSON value of the completed leaf ``h``; raises ``TerminalError`` for a
        failure."""
        val = self.vm.owned("DfValue *", self.lib.df_value_free)
        self.vm.check(self.lib.df_vm_take_notification(self.vm.ptr, h, val))
        kind, payload, code = val.kind, self.vm.bytes_of(val.bytes), val.failure_code
        self.vm.ffi.release(val)
        if kind == self.lib.DF_VALUE_KIND_FAILURE:
            raise errors.TerminalError(payload.decode(), code)
        if kind == self.lib.DF_VALUE_KIND_VOID:
            return None
        assert kind == self.lib.DF_VALUE_KIND_VALUE, kind
        return json.loads(payload)

    def wait(self, h: int) -> Any:
        self._wait(self.lib.df_vm_do_await, h)
        return self.value(h)

    def select(self, handles: list[int]) -> Iterator[int]:
        """Yields ``handles`` in completion order (a selector's ``remaining()`` loop)."""
        ffi = self.vm.ffi
        children = ffi.new("DfHandle[]", handles)
        sel = self._handle(self.lib.df_vm_selector, children, len(handles))
        while True:
            out = self._wait(self.lib.df_vm_select_next, sel)
            if out.kind == self.lib.DF_AWAIT_KIND_EXHAUSTED:
                break
            assert out.kind == self.lib.DF_AWAIT_KIND_SELECTED
            yield int(out.handle)
        self.vm.check(self.lib.df_vm_release(self.vm.ptr, sel))


# ---- the Conformance handlers -----------------------------------------------------------

Handler = Callable[[Ctx, Any], Any]


def race_call(ctx: Ctx, s: str) -> str:
    sleep = ctx.sleep(30_000)
    call = ctx.call("Conformance", "echo", s)
    winner = next(ctx.select([sleep, call]))
    if winner == sleep:
        return "sleep won"
    return f"call won with {ctx.value(call)}"


def completion_order(ctx: Ctx, _: str) -> str:
    def after(seconds: float, value: str) -> Callable[[], str]:
        def run() -> str:
            time.sleep(seconds)
            return value

        return run

    runs = [
        ctx.run("slow", after(0.3, "a")),
        ctx.run("fast", after(0.1, "b")),
        ctx.run("mid", after(0.2, "c")),
    ]
    return ",".join(ctx.value(h) for h in ctx.select(runs))


def run_terminal_failure(ctx: Ctx, _: str) -> str:
    def explode() -> None:
        raise errors.TerminalError("boom", 500)

    h = ctx.run("explode", explode)
    try:
        ctx.wait(h)
    except errors.TerminalError as e:
        return f"caught: {e.message}"
    return "not caught"


def returning(value: int) -> Callable[[], int]:
    return lambda: value


def sequence(ctx: Ctx, n: int, prefix: str = "step") -> int:
    total = 0
    for i in range(n):
        total += ctx.wait(ctx.run(f"{prefix}-{i}", returning(i)))
    return total


def fanout(ctx: Ctx, n: int, prefix: str = "task") -> int:
    handles = [ctx.run(f"{prefix}-{i}", returning(i * i)) for i in range(n)]
    total: int = sum(ctx.wait(h) for h in handles)
    ctx.wait(ctx.sleep(10))
    return total


# ---- the ConformanceWf handlers ---------------------------------------------------------


def wf_run(
    ctx: Ctx, ms: int, promise: str = "approval", write_first: bool = True
) -> str:
    if write_first:
        ctx.set_state("status", "waiting")
    approval = ctx.get_promise(promise)
    timer = ctx.sleep(ms)
    if next(ctx.select([approval, timer])) == timer:
        status = result = "timed out"
    else:
        try:
            status = ctx.value(approval)
            result = f"decided: {status}"
        except errors.TerminalError as e:
            status, result = "rejected", f"rejected: {e.message}"
    ctx.set_state("status", status)
    return result


def wf_approve(ctx: Ctx, d: str) -> str:
    ctx.wait(ctx.resolve_promise("approval", d))
    return "ok"


def wf_deny(ctx: Ctx, m: str) -> str:
    ctx.wait(ctx.reject_promise("approval", m))
    return "ok"


def wf_status(ctx: Ctx, _: None) -> str:
    status = ctx.wait(ctx.get_state("status"))
    return "unknown" if status is None else str(status)


def wf_peek(ctx: Ctx, _: None) -> str:
    # str() of what the promise holds: "None" while it is not completed.
    return str(ctx.wait(ctx.peek_promise("approval")))


WORKFLOW_HANDLERS: dict[str, Handler] = {
    "workflow-approve-k1": wf_run,
    "workflow-approve-k1-approve": wf_approve,
    "workflow-approve-k1-peek": wf_peek,
    "workflow-approve-k1-status": wf_status,
    "workflow-timeout-k2": wf_run,
}

HANDLERS: dict[str, Handler] = {
    "race-call": race_call,
    "completion-order": completion_order,
    "run-terminal-failure": run_terminal_failure,
    "sequence-5": sequence,
    "fanout-3": fanout,
    **WORKFLOW_HANDLERS,
}


# ---- driving one attempt ----------------------------------------------------------------


def frames(data: bytes) -> list[_core.Message]:
    return _core.decode_frames(data)


@dataclass
class Attempt:
    output: list[_core.Message]
    executed: list[str]
    error: Exception | None = None
    key: str = ""

    @property
    def types(self) -> list[str]:
        return [m.type_name for m in self.output]

    def result(self) -> Any:
        """The JSON value of the OutputCommand."""
        [output] = [m for m in self.output if m.type_name == "OutputCommand"]
        assert output.value is not None, output
        return json.loads(output.value)

    def error_message(self) -> _core.Message:
        [error] = [m for m in self.output if m.type_name == "Error"]
        return error


def vector(name: str) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((VECTORS / name / "vector.json").read_text())
    return meta


def drive(
    api: Api,
    name: str,
    attempt: int,
    handler: Handler,
    rng: random.Random | None = None,
) -> Attempt:
    meta = vector(name)["attempts"][attempt]
    vm = Vm(api, meta["content_type"])
    vm.feed((VECTORS / name / meta["req"]).read_bytes(), rng)
    vm.close_input()
    assert vm.ready()
    ctx = Ctx(vm)
    error: Exception | None = None
    try:
        result = handler(ctx, ctx.input())
        # Writing the output is a command too: a journal that recorded another one here is
        # a mismatch like any other.
        vm.check(
            vm.lib.df_vm_sys_write_output_success(
                vm.ptr, vm.slice(json.dumps(result).encode())
            )
        )
        vm.check(vm.lib.df_vm_sys_end(vm.ptr))
    except Suspended:
        pass
    except errors.DurableError as e:
        error = e
    return Attempt(frames(vm.take_output()), ctx.executed, error, ctx.key)


def recorded_types(name: str, attempt: int) -> list[str]:
    """The frames the reference SDK answered to attempt ``attempt`` of ``name``."""
    meta = vector(name)["attempts"][attempt]
    return [m.type_name for m in frames((VECTORS / name / meta["resp"]).read_bytes())]


# ---- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_last_attempt_replays_to_output_and_end(api: Api, name: str, seed: int) -> None:
    last = len(vector(name)["attempts"]) - 1
    attempt = drive(api, name, last, HANDLERS[name], random.Random(seed))
    assert attempt.error is None
    assert attempt.types[-2:] == ["OutputCommand", "End"]
    # A full replay answers Output + End; the workflow writes its final status
    # first, and the status vector (one attempt) reads the state.
    assert attempt.types == recorded_types(name, last)
    assert attempt.result() == vector(name)["output"]
    assert attempt.key == vector(name).get("key", "")
    assert attempt.executed == [], "a replayed run executed its closure"


def test_completion_order_comes_from_the_journal(api: Api) -> None:
    # The runs would finish a, b, c if executed in order; the journal says b, c, a.
    attempt = drive(api, "completion-order", 1, completion_order, random.Random(7))
    assert attempt.result() == "b,c,a"
    assert attempt.executed == []


class OneByte(random.Random):
    def randint(self, a: int, b: int) -> int:
        return 1


@pytest.mark.parametrize("name", ["race-call", *sorted(WORKFLOW_HANDLERS)])
def test_one_byte_chunks(api: Api, name: str) -> None:
    for k in range(len(vector(name)["attempts"])):
        whole = drive(api, name, k, HANDLERS[name])
        attempt = drive(api, name, k, HANDLERS[name], OneByte())
        assert attempt.error is None and whole.error is None
        assert attempt.types == whole.types
        assert [m.value for m in attempt.output] == [m.value for m in whole.output]
    assert attempt.result() == vector(name)["output"]


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_first_attempt_is_accepted(api: Api, name: str) -> None:
    attempt = drive(api, name, 0, HANDLERS[name], random.Random(0))
    assert attempt.error is None
    assert "Error" not in attempt.types
    assert attempt.types[-1] in ("Suspension", "End")


@pytest.mark.parametrize("name", sorted(WORKFLOW_HANDLERS))
def test_workflow_first_attempt_writes_what_the_reference_wrote(
    api: Api, name: str
) -> None:
    # run: status "waiting", the promise and the timer, then a suspension on both;
    # approve / peek: the promise command, then a suspension.
    attempt = drive(api, name, 0, HANDLERS[name], random.Random(0))
    assert attempt.error is None
    assert attempt.types == recorded_types(name, 0)


def test_first_attempt_executes_runs_eagerly(api: Api) -> None:
    attempt = drive(api, "fanout-3", 0, fanout)
    assert attempt.executed == ["task-0", "task-1", "task-2"]
    # Each run starts (and, in this synchronous driver, finishes) when it is created; the
    # protocol V6 runtime must acknowledge the proposals, so awaiting task-0 suspends.
    assert attempt.types == ["RunCommand", "ProposeRunCompletion"] * 3 + ["Suspension"]


MUTATIONS: list[tuple[str, Handler, int]] = [
    ("fanout-3", lambda ctx, n: fanout(ctx, n, prefix="job"), 1),
    ("sequence-5", lambda ctx, n: sequence(ctx, n, prefix="stage"), 1),
    ("race-call", lambda ctx, s: ctx.call("Conformance", "echo", s), 1),
    (
        "completion-order",
        lambda ctx, s: [ctx.run(n, lambda: "x") for n in ("fast", "slow")],
        1,
    ),
    ("workflow-approve-k1", lambda ctx, ms: wf_run(ctx, ms, promise="decision"), 2),
    ("workflow-timeout-k2", lambda ctx, ms: wf_run(ctx, ms, write_first=False), 1),
    ("workflow-approve-k1-approve", wf_peek, 1),
    ("workflow-approve-k1-approve", lambda ctx, d: "ok", 1),
    ("workflow-approve-k1-peek", lambda ctx, _: wf_deny(ctx, "no"), 1),
]


@pytest.mark.parametrize(
    ("name", "handler", "index"), MUTATIONS, ids=[m[0] for m in MUTATIONS]
)
def test_mutated_handler_is_a_journal_mismatch(
    api: Api, name: str, handler: Handler, index: int
) -> None:
    last = len(vector(name)["attempts"]) - 1
    attempt = drive(api, name, last, handler)
    assert isinstance(attempt.error, errors.JournalMismatchError)
    assert attempt.error.code == 570
    assert f"command index {index}" in attempt.error.message
    assert attempt.executed == []
    assert attempt.types == ["Error"]
    err = attempt.error_message()
    assert err.code == 570
    assert err.related_command_index == index


@pytest.mark.parametrize(
    ("name", "handler", "recorded", "attempted"),
    [
        (
            "workflow-approve-k1",
            lambda ctx, ms: wf_run(ctx, ms, promise="decision"),
            'get promise "approval"',
            'get promise "decision"',
        ),
        (
            "workflow-approve-k1-peek",
            lambda ctx, _: wf_deny(ctx, "no"),
            'peek promise "approval"',
            'reject promise "approval"',
        ),
    ],
    ids=["run-renamed-promise", "peek-rejects"],
)
def test_workflow_mismatch_names_both_commands(
    api: Api, name: str, handler: Handler, recorded: str, attempted: str
) -> None:
    last = len(vector(name)["attempts"]) - 1
    attempt = drive(api, name, last, handler, OneByte())
    assert isinstance(attempt.error, errors.JournalMismatchError)
    assert recorded in attempt.error.message and attempted in attempt.error.message


def test_mismatch_poisons_the_vm(api: Api) -> None:
    vm = Vm(api, vector("fanout-3")["attempts"][-1]["content_type"])
    vm.feed((VECTORS / "fanout-3" / "attempt-0004.req.bin").read_bytes())
    vm.close_input()
    ctx = Ctx(vm)
    ctx.input()
    with pytest.raises(errors.JournalMismatchError) as first:
        ctx.run("job-0", lambda: 0)
    # Every later call returns the error that closed the VM.
    with pytest.raises(errors.JournalMismatchError) as later:
        ctx.run("task-0", lambda: 0)
    assert later.value.message == first.value.message
    assert vm.last_error() == (570, first.value.message)


# ---- error codes and exception classes -----------------------------------------------------


def test_unsupported_content_type_is_415(api: Api) -> None:
    with pytest.raises(errors.UnsupportedProtocolError) as e:
        Vm(api, "application/json")
    assert e.value.code == 415
    assert "application/json" in e.value.message


def test_bad_frame_is_a_protocol_error(api: Api) -> None:
    vm = Vm(api, "application/vnd.restate.invocation.v6")
    with pytest.raises(errors.ProtocolError) as e:
        vm.feed(
            b"\x04\x00\x00\x00\x00\x00\x00\x00"
        )  # an InputCommand before StartMessage
    assert e.value.code == 571
    with pytest.raises(errors.ProtocolError):
        vm.ready()
    assert "Error" in [m.type_name for m in frames(vm.take_output())]


def test_truncated_stream_is_a_protocol_error(api: Api) -> None:
    vm = Vm(api, "application/vnd.restate.invocation.v6")
    vm.feed((VECTORS / "race-call" / "attempt-0001.req.bin").read_bytes()[:-3])
    with pytest.raises(errors.ProtocolError):
        vm.close_input()


def test_bad_arguments_are_400(api: Api) -> None:
    vm = Vm(api, "application/vnd.restate.invocation.v6")
    vm.feed((VECTORS / "race-call" / "attempt-0001.req.bin").read_bytes())
    vm.close_input()
    ctx = Ctx(vm)
    ctx.input()
    with pytest.raises(errors.BadRequestError) as e:
        ctx.value(12345)
    assert e.value.code == 400 and "unknown handle" in e.value.message
    assert isinstance(e.value, ValueError)
    # NULL out-pointer, NULL pointer with a length, invalid UTF-8.
    with pytest.raises(errors.BadRequestError, match="out is NULL"):
        vm.check(vm.lib.df_vm_sys_sleep(vm.ptr, vm.slice(b""), 0, vm.ffi.NULL))
    bogus = {"ptr": vm.ffi.NULL, "len": 3}
    with pytest.raises(errors.BadRequestError, match="NULL pointer with length 3"):
        ctx._handle(vm.lib.df_vm_sys_sleep, bogus, 0)
    with pytest.raises(errors.BadRequestError, match="not UTF-8"):
        ctx._handle(vm.lib.df_vm_sys_sleep, vm.slice(b"\xff"), 0)
    with pytest.raises(errors.BadRequestError, match="combinator kind"):
        ctx._handle(vm.lib.df_vm_combinator, 99, vm.ffi.new("DfHandle[]", [0]), 1)
    # A bad argument does not close the VM: the handler goes on.
    assert race_call(ctx, "hi") == "call won with hi"


def test_calls_after_end_are_closed_errors(api: Api) -> None:
    vm = Vm(api, "application/vnd.restate.invocation.v6")
    vm.feed((VECTORS / "race-call" / "attempt-0001.req.bin").read_bytes())
    vm.close_input()
    ctx = Ctx(vm)
    race_call(ctx, ctx.input())
    vm.check(vm.lib.df_vm_sys_write_output_success(vm.ptr, vm.slice(b'"x"')))
    vm.check(vm.lib.df_vm_sys_end(vm.ptr))
    with pytest.raises(errors.ClosedError) as e:
        ctx.sleep(1)
    assert e.value.code == 598


def test_suspension_then_closed(api: Api) -> None:
    attempt = drive(api, "race-call", 0, race_call)
    assert attempt.types[-1] == "Suspension"
    assert attempt.error is None


def test_null_vm_is_400_with_thread_error(api: Api) -> None:
    ffi, lib = api.ffi, api.lib
    assert lib.df_vm_sys_end(ffi.NULL) == 400
    buf = ffi.new("DfBuffer *")
    assert lib.df_last_error_message(buf) == 400
    assert bytes(ffi.buffer(buf.ptr, buf.len)) == b"vm is NULL"
    lib.df_buffer_free(buf)
    lib.df_buffer_free(buf)  # released buffers are reset: a second free is harmless
    assert buf.ptr == ffi.NULL
    lib.df_buffer_free(ffi.NULL)
    lib.df_vm_free(ffi.NULL)
    lib.df_input_free(ffi.NULL)
    lib.df_value_free(ffi.NULL)


def test_notify_error_uses_the_hosts_code(api: Api) -> None:
    vm = Vm(api, "application/vnd.restate.invocation.v6")
    vm.feed((VECTORS / "race-call" / "attempt-0001.req.bin").read_bytes())
    vm.close_input()
    Ctx(vm).input()
    vm.check(vm.lib.df_vm_notify_error(vm.ptr, 503, vm.slice(b"flaky"), vm.slice(b"")))
    [error] = frames(vm.take_output())
    assert error.type_name == "Error" and error.code == 503
    with pytest.raises(errors.DurableError) as e:
        Ctx(vm).sleep(1)
    assert type(e.value) is errors.DurableError and e.value.code == 503


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, "BadRequestError"),
        (409, "TerminalError"),
        (415, "UnsupportedProtocolError"),
        (500, "InternalError"),
        (570, "JournalMismatchError"),
        (571, "ProtocolError"),
        (573, "UnsupportedFeatureError"),
        (598, "ClosedError"),
        (599, "SuspendedError"),
        (503, "DurableError"),
    ],
)
def test_error_for_code(code: int, cls: str) -> None:
    e = errors.error_for_code(code, "m")
    assert type(e) is getattr(errors, cls)
    assert isinstance(e, errors.DurableError)
    assert e.code == code and e.message == "m"


def test_header_codes_match_python_codes(api: Api) -> None:
    lib = api.lib
    assert lib.DF_CODE_OK == 0
    assert lib.DF_CODE_BAD_REQUEST == errors.BAD_REQUEST
    assert lib.DF_CODE_CANCELLED == errors.CANCELLED
    assert lib.DF_CODE_UNSUPPORTED_MEDIA_TYPE == errors.UNSUPPORTED_MEDIA_TYPE
    assert lib.DF_CODE_INTERNAL == errors.INTERNAL
    assert lib.DF_CODE_JOURNAL_MISMATCH == errors.JOURNAL_MISMATCH
    assert lib.DF_CODE_PROTOCOL_VIOLATION == errors.PROTOCOL_VIOLATION
    assert lib.DF_CODE_UNSUPPORTED_FEATURE == errors.UNSUPPORTED_FEATURE
    assert lib.DF_CODE_CLOSED == errors.CLOSED
    assert lib.DF_CODE_SUSPENDED == errors.SUSPENDED


def test_terminal_error_cancellation() -> None:
    e = errors.TerminalError("stop", errors.CANCELLED)
    assert e.is_cancellation and str(e) == "[409] stop"
    assert errors.TerminalError("boom").code == 500
