"""The public API driven in process through ``df.asgi_app``.

Each test hands the app a journal built by hand (tests/journal.py): ``StartMessage`` +
``InputCommand`` + recorded commands and notifications (replay), or just the first two with
the input closed (processing: the handler runs, emits commands, and suspends or ends), or a
bidi ``Session`` that answers the handler's commands while it runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional, TypedDict

import pytest

import durable_futures as df
from durable_futures._core import Failure, Message

from .asgi_client import call
from .frames import Frame, error_of, frames, output_value
from .journal import (
    CANCEL,
    V6,
    V7,
    Journal,
    Session,
    call_cmd,
    get_lazy_state_cmd,
    notification,
    of_type,
    one_way_call_cmd,
    output_failure,
    proposals,
    run_cmd,
    run_in_thread,
    signal,
    sleep_cmd,
)

svc = df.Service("Facade")
cart = df.VirtualObject("Cart")

#: Side effects of run closures, in the order they happened (runs append from any thread).
events: list[str] = []


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    events.clear()


def invoke(handler: str, body: bytes, *, service: str = "Facade", ct: str = V6) -> list[Frame]:
    """One request/response invocation attempt; the frames the app wrote."""
    resp = run_in_thread(
        call(APP, f"/invoke/{service}/{handler}", body, headers=[("content-type", ct)], timeout=10),
        timeout=15,
    )
    assert resp.status == 200
    assert resp.headers["content-type"] == ct
    return frames(resp.body)


def ended_with(fs: list[Frame]) -> Any:
    """The JSON output of an invocation that ended (OutputCommand + End, no error)."""
    assert error_of(fs) is None, error_of(fs)
    assert [f.type_name for f in fs][-2:] == ["OutputCommand", "End"], [f.type_name for f in fs]
    out = output_value(fs)
    assert out is not None, output_failure(fs)
    return json.loads(out)


def suspended(fs: list[Frame]) -> None:
    assert error_of(fs) is None, error_of(fs)
    assert fs and fs[-1].type_name == "Suspension", [f.type_name for f in fs]
    assert not of_type(fs, "OutputCommand")


def js(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":")).encode()


# ---- runs: eager start, contextvars, argument forwarding ----------------------------------------


def sync_effect(tag: str) -> str:
    events.append(f"sync:{tag}")
    return tag


async def async_effect(tag: str) -> str:
    events.append(f"async:{tag}")
    return tag


async def _until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        await asyncio.sleep(0.001)


@svc.handler()
async def eager(ctx: df.Context, _: str) -> list[str]:
    a = ctx.run_async("sync", sync_effect, "a")
    b = ctx.run_async("async", async_effect, "b")
    # Neither future is awaited: both closures must run anyway.
    await _until(lambda: len(events) >= 2)
    events.append("first await")
    return [await a, await b]


def test_runs_start_before_they_are_awaited() -> None:
    fs = invoke("eager", Journal().body())
    assert sorted(events[:2]) == ["async:b", "sync:a"]
    assert events[2] == "first await"
    assert [f.name for f in of_type(fs, "RunCommand")] == ["sync", "async"]
    assert proposals(fs) == {1: ("value", b'"a"'), 2: ("value", b'"b"')}
    suspended(fs)


@pytest.mark.parametrize("ct", [V6, V7])
def test_eager_runs_complete_live_in_a_bidi_session(ct: str) -> None:
    async def scenario() -> list[Frame]:
        s = Session(APP, "/invoke/Facade/eager", ct)
        s.begin()
        s.send(Journal().body())
        fs = await s.wait_for(lambda fs: len(of_type(fs, "ProposeRunCompletion")) == 2)
        for f in of_type(fs, "ProposeRunCompletion"):
            assert f.flags == (0x8000 if ct == V7 else 0)  # REQUESTED_ACK from V7 on
        # The runtime journals the proposals and echoes them: as notifications up to V6, as
        # acks of the cached proposals from V7 on (in reverse order here).
        for cid, (_, payload) in sorted(proposals(fs).items(), reverse=True):
            ack = Message("ProposeRunCompletionAck", completion_id=cid).encode()
            s.send(ack if ct == V7 else notification("RunCompletion", cid, payload))
        await s.wait_for(lambda fs: bool(of_type(fs, "End")))
        return await s.finish()

    fs = run_in_thread(scenario())
    assert ended_with(fs) == ["a", "b"]
    assert events[2] == "first await"


REQUEST = contextvars.ContextVar("REQUEST", default="unset")


def read_var() -> str:
    return REQUEST.get()


async def read_var_async() -> str:
    return REQUEST.get()


@svc.handler()
async def ctxvars(ctx: df.Context, s: str) -> list[str]:
    REQUEST.set(s)
    a = ctx.run_async("sync", read_var)
    b = ctx.run_async("async", read_var_async)
    return [await a, await b]


@svc.handler()
def ctxvars_sync(ctx: df.Context, s: str) -> list[str]:
    REQUEST.set(s)
    a = ctx.run_async("sync", read_var)
    b = ctx.run_async("async", read_var_async)
    return [a.result(), b.result()]


@pytest.mark.parametrize("handler", ["ctxvars", "ctxvars_sync"])
def test_runs_see_the_handlers_context_variables(handler: str) -> None:
    fs = invoke(handler, Journal(b'"req-42"').body())
    assert proposals(fs) == {1: ("value", b'"req-42"'), 2: ("value", b'"req-42"')}
    suspended(fs)


def combine(a: int, b: int, *rest: int, sep: str = "-", **extra: Any) -> str:
    return sep.join(map(str, [a, b, *rest])) + "|" + ",".join(f"{k}={v}" for k, v in sorted(extra.items()))


async def combine_async(a: int, b: int, *rest: int, sep: str = "-", **extra: Any) -> str:
    return combine(a, b, *rest, sep=sep, **extra)


@svc.handler()
async def forwarding(ctx: df.Context, _: str) -> None:
    opts = df.RunOptions(max_attempts=3, initial_interval=timedelta(milliseconds=1))
    futs = [
        ctx.run_async("positional", combine, 1, 2),
        ctx.run_async("everything", combine, 1, 2, 3, 4, sep="+", x=9, y="z"),
        ctx.run_async("with-options", combine, 5, 6, sep="/", options=opts, k=1),
        ctx.run_async("async", combine_async, 7, 8, 9, options=opts, sep=":"),
        ctx.run_async_with(opts, "typed-options", combine, 10, 11, sep="*", z=0),
    ]
    for f in futs:
        await f


def test_run_async_forwards_args_and_kwargs_but_not_options() -> None:
    fs = invoke("forwarding", Journal().body())
    assert proposals(fs) == {
        1: ("value", b'"1-2|"'),
        2: ("value", b'"1+2+3+4|x=9,y=z"'),
        3: ("value", b'"5/6|k=1"'),
        4: ("value", b'"7:8:9|"'),
        5: ("value", b'"10*11|z=0"'),
    }
    suspended(fs)


# ---- runs: replay, terminal and retryable failures ----------------------------------------------


@svc.handler()
async def replayed_run(ctx: df.Context, _: str) -> str:
    return await ctx.run_async("effect", sync_effect, "fresh")


def test_a_replayed_run_is_not_executed() -> None:
    body = Journal().add(run_cmd(1, "effect"), notification("RunCompletion", 1, b'"journaled"')).body()
    assert ended_with(invoke("replayed_run", body)) == "journaled"
    assert events == []


def teapot() -> str:
    events.append("teapot")
    raise df.TerminalError("short and stout", 418)


@svc.handler()
async def terminal_run(ctx: df.Context, catch: bool) -> str:
    fut = ctx.run_async("teapot", teapot)
    if not catch:
        return await fut
    try:
        await fut
    except df.TerminalError as e:
        return f"{type(e).__name__} {e.code} {e.message}"
    return "no error"


def test_a_run_raising_terminal_error_is_journaled_as_a_failure() -> None:
    fs = invoke("terminal_run", Journal(b"true").body())
    assert events == ["teapot"]
    assert proposals(fs) == {1: ("failure", (418, "short and stout"))}
    assert error_of(fs) is None
    suspended(fs)


@pytest.mark.parametrize("catch", [True, False])
def test_awaiting_a_failed_run_raises_terminal_error(catch: bool) -> None:
    body = (
        Journal(js(catch))
        .add(run_cmd(1, "teapot"), notification("RunCompletion", 1, err=(418, "short and stout")))
        .body()
    )
    fs = invoke("terminal_run", body)
    assert events == []
    if catch:
        assert ended_with(fs) == "TerminalError 418 short and stout"
    else:
        assert output_failure(fs) == (418, "short and stout")
        assert fs[-1].type_name == "End"


def flaky() -> str:
    events.append("flaky")
    raise ValueError("not today")


@svc.handler()
async def retryable_run(ctx: df.Context, max_attempts: int | None) -> str:
    opts = None if max_attempts is None else df.RunOptions(max_attempts=max_attempts)
    try:
        return await ctx.run_async("flaky", flaky, options=opts)
    except df.TerminalError as e:
        return f"terminal {e.code}: {e.message}"


def test_a_run_failing_its_last_attempt_becomes_a_terminal_failure() -> None:
    fs = invoke("retryable_run", Journal(b"1").body())
    assert events == ["flaky"]
    assert error_of(fs) is None
    (kind, (code, message)), = proposals(fs).values()
    assert kind == "failure" and code == 500
    assert "ValueError" in message and "not today" in message
    suspended(fs)
    # The runtime journals the failure; the next attempt replays it into the handler.
    body = Journal(b"1").add(run_cmd(1, "flaky"), notification("RunCompletion", 1, err=(code, message))).body()
    assert ended_with(invoke("retryable_run", body)) == f"terminal 500: {message}"
    assert events == ["flaky"]


def test_a_run_failing_without_options_fails_the_attempt() -> None:
    fs = invoke("retryable_run", Journal(b"null").body())
    assert events == ["flaky"]
    assert not of_type(fs, "ProposeRunCompletion")
    assert fs[-1].type_name == "Error"
    err = fs[-1]
    assert err.code == 500
    assert "ValueError: not today" in err.message
    assert "flaky" in err.stacktrace
    assert err.related_command_index == 1  # the run (the input is command 0)
    assert err.related_command_name == "flaky"
    assert err.related_command_type == Message("RunCommand").type


def slow_flaky() -> str:
    events.append("slow_flaky")
    time.sleep(0.005)
    raise ValueError("still not today")


RETRY_OPTIONS = {
    "attempts": df.RunOptions(max_attempts=3, initial_interval=timedelta(milliseconds=7)),
    "factor": df.RunOptions(max_attempts=3, initial_interval=timedelta(milliseconds=7), factor=3.0),
    "max_interval": df.RunOptions(initial_interval=timedelta(milliseconds=7), max_interval=timedelta(milliseconds=10)),
    "max_duration": df.RunOptions(max_duration=timedelta(milliseconds=1)),
    "defaults": df.RunOptions(max_attempts=3),
}


@svc.handler()
async def retry_policy(ctx: df.Context, case: str) -> str:
    return await ctx.run_async("slow_flaky", slow_flaky, options=RETRY_OPTIONS[case])


@pytest.mark.parametrize(
    ("case", "retry_count", "expected"),
    [
        ("attempts", 0, 7),
        ("attempts", 1, 14),
        ("attempts", 2, "terminal"),
        ("factor", 1, 21),
        ("factor", 2, "terminal"),
        ("max_interval", 1, 10),
        ("max_interval", 5, 10),
        ("max_duration", 0, "terminal"),
        ("defaults", 0, 50),
        ("defaults", 1, 100),
        ("defaults", 2, "terminal"),
    ],
)
def test_run_options_drive_the_retry_policy(case: str, retry_count: int, expected: int | str) -> None:
    """The attempt count comes from ``StartMessage.retry_count_since_last_stored_entry`` (the
    run command is in the journal from the attempt that first failed)."""
    body = Journal(js(case), retry_count=retry_count).add(run_cmd(1, "slow_flaky")).body()
    fs = invoke("retry_policy", body)
    assert events == ["slow_flaky"]
    if expected == "terminal":
        assert error_of(fs) is None
        assert proposals(fs) == {1: ("failure", (500, "ValueError: still not today"))}
        suspended(fs)
    else:
        assert not of_type(fs, "ProposeRunCompletion")
        err = fs[-1]
        assert err.type_name == "Error" and err.code == 500 and err.next_retry_delay == expected


@svc.handler()
async def sugar(ctx: df.Context, _: str) -> list[Any]:
    ran = await ctx.run("effect", sync_effect, "fresh")
    await ctx.sleep(timedelta(seconds=5), name="nap")
    called = await ctx.service("Other", "h").request(ran)
    return [ran, called]


def test_run_sleep_and_request_shorthands() -> None:
    fs = invoke("sugar", Journal().body())
    assert proposals(fs) == {1: ("value", b'"fresh"')}
    suspended(fs)
    j = Journal().add(
        run_cmd(1, "effect"),
        notification("RunCompletion", 1, b'"journaled"'),
        sleep_cmd(2, name="nap"),
        notification("SleepCompletion", 2, void=True),
        call_cmd("Other", "h", b'"journaled"', 3, 4),
        notification("CallCompletion", 4, b"[1]"),
    )
    assert ended_with(invoke("sugar", j.body())) == ["journaled", [1]]
    assert events == ["sync:fresh"]  # only the first attempt executed the run


# ---- sync handlers -------------------------------------------------------------------------------


def step(i: int) -> int:
    events.append(f"step-{i}")
    return i * 10


@svc.handler()
def sync_sum(ctx: df.Context, n: int) -> int:
    futs = [ctx.run_async(f"step-{i}", step, i) for i in range(n)]
    assert threading.current_thread() is not threading.main_thread()
    return sum(f.result() for f in futs)


def test_sync_handler_result_blocks_and_replays() -> None:
    j = Journal(b"3")
    j.add(*(run_cmd(i + 1, f"step-{i}") for i in range(3)))
    j.add(*(notification("RunCompletion", i + 1, js(i * 10)) for i in (2, 0, 1)))
    assert ended_with(invoke("sync_sum", j.body())) == 30
    assert events == []


def test_sync_handler_runs_execute_then_the_attempt_suspends() -> None:
    fs = invoke("sync_sum", Journal(b"3").body())
    assert sorted(events) == ["step-0", "step-1", "step-2"]
    assert proposals(fs) == {1: ("value", b"0"), 2: ("value", b"10"), 3: ("value", b"20")}
    suspended(fs)


def test_sync_handler_in_a_bidi_session_blocks_until_notified() -> None:
    async def scenario() -> list[Frame]:
        s = Session(APP, "/invoke/Facade/sync_sum")
        s.begin()
        s.send(Journal(b"2").body())
        fs = await s.wait_for(lambda fs: len(of_type(fs, "ProposeRunCompletion")) == 2)
        for cid, (_, payload) in sorted(proposals(fs).items(), reverse=True):
            s.send(notification("RunCompletion", cid, payload))
        await s.wait_for(lambda fs: bool(of_type(fs, "End")))
        return await s.finish()

    assert ended_with(run_in_thread(scenario())) == 10


@svc.handler()
def sync_select(ctx: df.Context, style: str) -> list[str]:
    _, a = ctx.awakeable(str)
    _, b = ctx.awakeable(str)
    _, c = ctx.awakeable(str)
    sel = ctx.select(a, b, c)
    if style == "iter":
        return [f.result() for f in sel]
    out = []
    while (f := sel.select_blocking()) is not None:
        out.append(f.result())
    assert not sel.remaining()
    return out


@pytest.mark.parametrize("style", ["select_blocking", "iter"])
def test_sync_handler_selects_in_journal_order(style: str) -> None:
    j = Journal(js(style)).add(signal(19, b'"c"'), signal(17, b'"a"'), signal(18, b'"b"'))
    assert ended_with(invoke("sync_select", j.body())) == ["c", "a", "b"]


@svc.handler()
async def blocking_on_loop(ctx: df.Context, what: str) -> str:
    timer = ctx.after(timedelta(hours=1))
    other = ctx.after(timedelta(hours=2))
    blocking: dict[str, Callable[[], Any]] = {
        "future": timer.result,
        "combinator": ctx.all_completed(timer, other).result,
        "select_blocking": ctx.select(timer, other).select_blocking,
        "iter": lambda: list(ctx.select(timer, other)),
    }
    try:
        blocking[what]()
    except RuntimeError as e:
        return str(e)
    return "did not raise"


@pytest.mark.parametrize("what", ["future", "combinator", "select_blocking", "iter"])
def test_blocking_calls_from_an_async_handler_raise_runtime_error(what: str) -> None:
    message = ended_with(invoke("blocking_on_loop", Journal(js(what)).body()))
    assert "event loop" in message and "await" in message


# ---- completed futures ---------------------------------------------------------------------------


def dict_effect() -> dict[str, Any]:
    events.append("dict_effect")
    return {}


@svc.handler()
async def await_twice(ctx: df.Context, _: str) -> dict[str, Any]:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ticks > 0
    run = ctx.run_async("r", dict_effect)
    failed = ctx.run_async("f", dict_effect)
    timer = ctx.after(timedelta(seconds=1))
    before = ticks
    v1 = await run
    v2 = await run
    errors = []
    for _ in range(2):
        try:
            await failed
        except df.TerminalError as e:
            errors.append(e)
    t1 = await timer
    t2 = await timer
    after = ticks
    task.cancel()
    return {
        "value": v1,
        "same_object": v1 is v2,
        "same_error": errors[0] is errors[1],
        "error": errors[0].message,
        "timer": [t1, t2],
        "done": [run.done(), failed.done(), timer.done()],
        "loop_ran": after - before,
    }


def test_awaiting_a_completed_future_twice_neither_changes_nor_yields() -> None:
    j = Journal().add(
        run_cmd(1, "r"),
        run_cmd(2, "f"),
        sleep_cmd(3),
        notification("RunCompletion", 1, b'{"k":[1,2]}'),
        notification("RunCompletion", 2, err=(500, "nope")),
        notification("SleepCompletion", 3, void=True),
    )
    assert ended_with(invoke("await_twice", j.body())) == {
        "value": {"k": [1, 2]},
        "same_object": True,
        "same_error": True,
        "error": "nope",
        "timer": [None, None],
        "done": [True, True, True],
        "loop_ran": 0,
    }
    assert events == []


# ---- selector ------------------------------------------------------------------------------------

ORDER_NOTIFICATIONS = {
    "timer": notification("SleepCompletion", 1, void=True),
    "call": notification("CallCompletion", 3, b'"called"'),
    "run": notification("RunCompletion", 4, b'"ran"'),
    "awakeable": signal(17, b'"woken"'),
}


@svc.handler()
async def select_order(ctx: df.Context, style: str) -> dict[str, Any]:
    timer = ctx.after(timedelta(hours=1))
    call_ = ctx.service("Other", "handler").request_future("x")
    run = ctx.run_async("r", sync_effect, "executed")
    _, awk = ctx.awakeable(str)
    named: list[tuple[df.DurableFuture[Any], str]] = [
        (timer, "timer"),
        (call_, "call"),
        (run, "run"),
        (awk, "awakeable"),
    ]

    def name(f: df.DurableFuture[Any] | None) -> str:
        return next(n for g, n in named if g is f)

    sel = ctx.select(timer, call_, run, awk)
    order: list[str] = []
    remaining: list[int] = []
    if style == "async for":
        async for f in sel:
            order.append(name(f))
    else:
        while sel.remaining():
            remaining.append(len(sel))
            f = await sel.select()
            assert f is not None and f.done()
            order.append(name(f))
    return {
        "order": order,
        "remaining": remaining,
        "after": [sel.remaining(), len(sel), await sel.select(), await sel.select()],
        "values": [await timer, await call_, await run, await awk],
    }


ORDERS = [
    ["timer", "call", "run", "awakeable"],
    ["awakeable", "run", "call", "timer"],
    ["run", "timer", "awakeable", "call"],
    ["call", "awakeable", "timer", "run"],
]


@pytest.mark.parametrize("style", ["remaining", "async for"])
@pytest.mark.parametrize("order", ORDERS, ids="-".join)
def test_the_selector_follows_the_journal_order(order: list[str], style: str) -> None:
    j = Journal(js(style)).add(sleep_cmd(1), call_cmd("Other", "handler", b'"x"', 2, 3), run_cmd(4, "r"))
    j.add(*(ORDER_NOTIFICATIONS[n] for n in order))
    out = ended_with(invoke("select_order", j.body()))
    assert out["order"] == order
    assert out["remaining"] == ([4, 3, 2, 1] if style == "remaining" else [])
    assert out["after"] == [False, 0, None, None]
    assert out["values"] == [None, "called", "ran", "woken"]
    assert events == []


def test_the_selector_follows_the_arrival_order_live() -> None:
    async def scenario() -> list[Frame]:
        s = Session(APP, "/invoke/Facade/select_order")
        s.begin()
        s.send(Journal(b'"remaining"').body())
        fs = await s.wait_for(lambda fs: bool(of_type(fs, "ProposeRunCompletion")))
        assert [f.type_name for f in fs[:3]] == ["SleepCommand", "CallCommand", "RunCommand"]
        for n in ["awakeable", "timer", "run", "call"]:
            s.send(ORDER_NOTIFICATIONS[n])
            await asyncio.sleep(0.01)  # let the handler see each one alone
        await s.wait_for(lambda fs: bool(of_type(fs, "End")))
        return await s.finish()

    out = ended_with(run_in_thread(scenario()))
    assert out["order"] == ["awakeable", "timer", "run", "call"]
    assert events == ["sync:executed"]


@svc.handler()
async def cancellable(ctx: df.Context, how: str) -> int:
    timer = ctx.after(timedelta(days=1))
    _, awk = ctx.awakeable()
    if how == "uncaught":
        await timer
        return 0
    try:
        if how == "select":
            await ctx.select(timer, awk).select()
        elif how == "await":
            await timer
        elif how == "combinator":
            await ctx.all_completed(timer, awk)
    except df.TerminalError as e:
        assert e.is_cancellation
        return e.code
    return 0


@pytest.mark.parametrize("how", ["select", "await", "combinator"])
def test_cancellation_raises_terminal_error_409(how: str) -> None:
    body = Journal(js(how)).add(sleep_cmd(1), CANCEL).body()
    assert ended_with(invoke("cancellable", body)) == 409


def test_uncaught_cancellation_fails_the_invocation_with_409() -> None:
    fs = invoke("cancellable", Journal(b'"uncaught"').add(sleep_cmd(1), CANCEL).body())
    assert output_failure(fs) == (409, "cancelled")
    assert fs[-1].type_name == "End"


def test_cancellation_while_selecting_live() -> None:
    async def scenario() -> list[Frame]:
        s = Session(APP, "/invoke/Facade/cancellable")
        s.begin()
        s.send(Journal(b'"select"').body())
        await s.wait_for(lambda fs: bool(of_type(fs, "SleepCommand")))
        await asyncio.sleep(0.01)
        s.send(CANCEL)
        await s.wait_for(lambda fs: bool(of_type(fs, "End")))
        return await s.finish()

    assert ended_with(run_in_thread(scenario())) == 409


@svc.handler()
async def cancel_call(ctx: df.Context, _: str) -> str:
    return await ctx.service("Other", "slow").request_future(1)


def test_cancellation_propagates_to_a_call_in_flight() -> None:
    body = (
        Journal()
        .add(call_cmd("Other", "slow", b"1", 1, 2))
        .add(notification("CallInvocationIdCompletion", 1, invocation_id="inv_child"), CANCEL)
        .body()
    )
    fs = invoke("cancel_call", body)
    (sig,) = of_type(fs, "SendSignalCommand")
    assert sig.target_invocation_id == "inv_child" and sig.signal_id == 1
    assert output_failure(fs) == (409, "cancelled")


@svc.handler()
def cancellable_sync(ctx: df.Context, _: str) -> int:
    timer = ctx.after(timedelta(days=1))
    try:
        ctx.select(timer).select_blocking()
    except df.TerminalError as e:
        return e.code
    return 0


def test_cancellation_raises_from_a_blocking_select() -> None:
    assert ended_with(invoke("cancellable_sync", Journal().add(sleep_cmd(1), CANCEL).body())) == 409


# ---- combinators ---------------------------------------------------------------------------------

Futs = tuple[df.DurableFuture[Any], df.DurableFuture[Any], df.DurableFuture[Any]]


async def outcome(f: df.DurableFuture[Any]) -> list[Any]:
    try:
        return ["ok", await f]
    except df.TerminalError as e:
        return ["err", e.message]


def which(f: Any, futs: Futs) -> str:
    return "abc"[[g is f for g in futs].index(True)]


async def c_all_completed(ctx: df.Context, f: Futs) -> Any:
    done = await ctx.all_completed(*f)
    assert all(g.done() for g in done)
    return [await outcome(g) for g in done]


async def c_first_completed(ctx: df.Context, f: Futs) -> Any:
    winner = await ctx.first_completed(*f)
    return [which(winner, f), await outcome(winner)]


async def c_first_succeeded(ctx: df.Context, f: Futs) -> Any:
    return await outcome(ctx.first_succeeded(*f))


async def c_all_succeeded(ctx: df.Context, f: Futs) -> Any:
    return await outcome(ctx.all_succeeded(*f))


async def c_race_all_vs_one(ctx: df.Context, f: Futs) -> Any:
    both = ctx.all_succeeded(f[0], f[1])
    winner = await ctx.first_completed(both, f[2])
    return ["both" if winner is both else which(winner, f), await outcome(winner)]


async def c_all_of_first(ctx: df.Context, f: Futs) -> Any:
    return await outcome(ctx.all_succeeded(ctx.first_succeeded(f[0], f[1]), f[2]))


async def c_completed_of_first(ctx: df.Context, f: Futs) -> Any:
    inner = ctx.first_completed(f[0], f[1])
    done = await ctx.all_completed(inner, f[2])
    return [which(await inner, f), await outcome(done[1])]


async def c_select_combinators(ctx: df.Context, f: Futs) -> Any:
    both = ctx.all_succeeded(f[0], f[1])
    out = []
    async for g in ctx.select(both, f[2]):
        out.append(["both" if g is both else which(g, f), await outcome(g)])
    return out


A, B, C = 17, 18, 19
OK = {A: signal(A, b'"A"'), B: signal(B, b'"B"'), C: signal(C, b'"C"')}
ERR = {A: signal(A, err=(500, "a failed")), B: signal(B, err=(500, "b failed")), C: signal(C, err=(500, "c failed"))}

COMBINATOR_CASES: dict[str, tuple[Callable[[df.Context, Futs], Awaitable[Any]], list[bytes], Any]] = {
    "all_completed": (c_all_completed, [ERR[B], OK[A], OK[C]], [["ok", "A"], ["err", "b failed"], ["ok", "C"]]),
    "first_completed": (c_first_completed, [OK[C], OK[A]], ["c", ["ok", "C"]]),
    "first_completed_failure": (c_first_completed, [ERR[B], OK[A]], ["b", ["err", "b failed"]]),
    "first_succeeded_skips_failures": (c_first_succeeded, [ERR[A], OK[C], OK[B]], ["ok", "C"]),
    "first_succeeded_all_fail": (c_first_succeeded, [ERR[B], ERR[C], ERR[A]], ["err", "a failed"]),
    "all_succeeded_in_argument_order": (c_all_succeeded, [OK[C], OK[A], OK[B]], ["ok", ["A", "B", "C"]]),
    "all_succeeded_first_failure": (c_all_succeeded, [OK[C], ERR[B], ERR[A]], ["err", "b failed"]),
    "nested_inner_wins": (c_race_all_vs_one, [OK[A], OK[B], OK[C]], ["both", ["ok", ["A", "B"]]]),
    "nested_outer_wins": (c_race_all_vs_one, [OK[A], OK[C], OK[B]], ["c", ["ok", "C"]]),
    "nested_inner_fails_first": (c_race_all_vs_one, [ERR[B], OK[C]], ["both", ["err", "b failed"]]),
    "nested_all_of_first": (c_all_of_first, [ERR[A], OK[C], OK[B]], ["ok", ["B", "C"]]),
    "nested_all_of_first_fails": (c_all_of_first, [ERR[A], ERR[B], OK[C]], ["err", "b failed"]),
    "nested_completed_of_first": (c_completed_of_first, [OK[B], ERR[C]], ["b", ["err", "c failed"]]),
    "select_over_combinators": (
        c_select_combinators,
        [OK[B], OK[C], OK[A]],
        [["c", ["ok", "C"]], ["both", ["ok", ["A", "B"]]]],
    ),
}


@svc.handler()
async def combinators(ctx: df.Context, case: str) -> Any:
    futs = tuple(ctx.awakeable(str)[1] for _ in range(3))
    return await COMBINATOR_CASES[case][0](ctx, futs)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", list(COMBINATOR_CASES))
def test_combinators(case: str) -> None:
    _, notifications, expected = COMBINATOR_CASES[case]
    body = Journal(js(case)).add(*notifications).body()
    assert ended_with(invoke("combinators", body)) == expected


@pytest.mark.parametrize("case", ["all_completed", "all_succeeded_in_argument_order", "nested_inner_wins"])
def test_an_unresolved_combinator_suspends(case: str) -> None:
    _, notifications, _ = COMBINATOR_CASES[case]
    body = Journal(js(case)).add(*notifications[:1]).body()
    fs = invoke("combinators", body)
    suspended(fs)
    assert fs[-1].waiting_signals  # V6 suspension: the awaited signal ids (with cancel, 1)


@svc.handler()
def combinators_sync(ctx: df.Context, case: str) -> Any:
    a, b, c = (ctx.awakeable(str)[1] for _ in range(3))
    if case == "all_succeeded":
        return ctx.all_succeeded(a, b, c).result()
    if case == "first_completed":
        return "abc"[[a, b, c].index(ctx.first_completed(a, b, c).result())]
    if case == "first_succeeded":
        return ctx.first_succeeded(a, b, c).result()
    try:
        ctx.all_succeeded(a, b, c).result()
    except df.TerminalError as e:
        return e.message
    return "no error"


@pytest.mark.parametrize(
    ("case", "notifications", "expected"),
    [
        ("all_succeeded", [OK[C], OK[B], OK[A]], ["A", "B", "C"]),
        ("first_completed", [OK[B], OK[A]], "b"),
        ("first_succeeded", [ERR[A], OK[C]], "C"),
        ("all_succeeded_failure", [OK[A], ERR[C]], "c failed"),
    ],
)
def test_combinators_in_sync_handlers(case: str, notifications: list[bytes], expected: Any) -> None:
    body = Journal(js(case)).add(*notifications).body()
    assert ended_with(invoke("combinators_sync", body)) == expected


@svc.handler()
async def empty_combinators(ctx: df.Context, which_: str) -> Any:
    if which_ == "select":
        sel = ctx.select()
        return [sel.remaining(), await sel.select()]
    try:
        return await getattr(ctx, which_)()
    except ValueError as e:
        return f"{type(e).__name__}: {e}"


@pytest.mark.parametrize(
    ("which_", "expected"),
    [
        ("select", [False, None]),
        ("all_completed", []),
        ("all_succeeded", []),
        ("first_completed", "BadRequestError: [400] first-completed over no futures would never complete"),
        ("first_succeeded", "BadRequestError: [400] first_succeeded() over no futures has no value to return"),
    ],
)
def test_combinators_over_no_futures(which_: str, expected: Any) -> None:
    assert ended_with(invoke("empty_combinators", Journal(js(which_)).body())) == expected


# ---- refusing asyncio primitives -----------------------------------------------------------------


async def _nothing() -> None:
    return None


@svc.handler()
async def refuse(ctx: df.Context, case: list[str]) -> str:
    combinator, primitive = case
    timer = ctx.after(timedelta(seconds=1))
    loop = asyncio.get_running_loop()
    made: Any
    if primitive == "sleep coroutine":
        made = asyncio.sleep(1)
    elif primitive == "coroutine":
        made = _nothing()
    elif primitive == "ensure_future":
        made = asyncio.ensure_future(asyncio.sleep(1))
    elif primitive == "gather":
        made = asyncio.gather(asyncio.sleep(1))
    elif primitive == "loop future":
        made = loop.create_future()
    else:
        made = 42
    try:
        fn = getattr(ctx, combinator)
        fn(timer, made)
    except TypeError as e:
        return str(e)
    finally:
        if asyncio.iscoroutine(made):
            made.close()
        elif isinstance(made, asyncio.Future):
            made.cancel()
            try:
                await made
            except asyncio.CancelledError:
                pass
    return "accepted"


REFUSED = ["sleep coroutine", "coroutine", "ensure_future", "gather", "loop future"]


@pytest.mark.parametrize("primitive", REFUSED)
@pytest.mark.parametrize("combinator", ["select", "all_completed", "first_completed", "first_succeeded", "all_succeeded"])
def test_asyncio_primitives_are_refused_with_an_explanation(combinator: str, primitive: str) -> None:
    message = ended_with(invoke("refuse", Journal(js([combinator, primitive])).body()))
    assert message.startswith(f"{combinator}() takes durable futures only")
    assert "depends on timing" in message
    assert "ctx.run_async" in message


def test_non_futures_are_refused() -> None:
    message = ended_with(invoke("refuse", Journal(js(["select", "int"])).body()))
    assert message == "select() takes durable futures, not int"


_LEAKED: list[df.DurableFuture[Any]] = []


@svc.handler()
async def foreign_future(ctx: df.Context, phase: str) -> str:
    if phase == "leak":
        _LEAKED.append(ctx.after(timedelta(seconds=1)))
        await _LEAKED[-1]
        return "unreachable"
    try:
        ctx.select(ctx.after(timedelta(seconds=1)), _LEAKED[-1])
    except ValueError as e:
        return str(e)
    return "accepted"


def test_a_future_of_another_invocation_is_refused() -> None:
    suspended(invoke("foreign_future", Journal(b'"leak"').body()))
    assert ended_with(invoke("foreign_future", Journal(b'"use"').body())) == (
        "select(): the futures belong to another invocation"
    )


# ---- serde from type hints -----------------------------------------------------------------------


@dataclass
class Item:
    sku: str
    qty: int


@dataclass
class Order:
    id: int
    items: list[Item]
    note: str | None = None


class Point(TypedDict):
    x: int
    y: int


SERDE_CASES: list[tuple[str, Any, bytes, Any]] = [
    ("dataclass_nested", Order, b'{"id":1,"items":[{"sku":"a","qty":2}],"note":null}', Order(1, [Item("a", 2)])),
    ("dataclass_with_optional", Order, b'{"id":2,"items":[],"note":"hi"}', Order(2, [], "hi")),
    ("typeddict", Point, b'{"x":1,"y":2}', {"x": 1, "y": 2}),
    ("list_of_int", list[int], b"[1,2,3]", [1, 2, 3]),
    ("dict_of_dataclass", dict[str, Item], b'{"a":{"sku":"s","qty":1}}', {"a": Item("s", 1)}),
    ("optional_none", Optional[int], b"null", None),  # noqa: UP045 - typing.Optional on purpose
    ("optional_value", Optional[int], b"5", 5),  # noqa: UP045
    ("union_none", int | None, b"null", None),
    ("union_value", int | None, b"6", 6),
    ("optional_dataclass", Item | None, b'{"sku":"o","qty":9}', Item("o", 9)),
    ("float", float, b"2.5", 2.5),
    ("str", str, b'"text"', "text"),
    ("bytes", bytes, b"\x00\xffraw{not json", b"\x00\xffraw{not json"),
]

#: What each typed handler received, to check the decoded Python types.
received: dict[str, Any] = {}


def _typed_handler(name: str, tp: Any) -> None:
    async def handler(ctx: df.Context, value: Any) -> Any:
        received[name] = value
        return value

    handler.__annotations__ = {"ctx": df.Context, "value": tp, "return": tp}
    handler.__name__ = name
    svc.handler(f"typed_{name}")(handler)


for _name, _tp, _, _ in SERDE_CASES:
    _typed_handler(_name, _tp)


@pytest.mark.parametrize(("name", "tp", "payload", "expected"), SERDE_CASES, ids=[c[0] for c in SERDE_CASES])
def test_inputs_and_outputs_follow_the_type_hints(name: str, tp: Any, payload: bytes, expected: Any) -> None:
    fs = invoke(f"typed_{name}", Journal(payload).body())
    assert error_of(fs) is None and fs[-1].type_name == "End"
    assert received[name] == expected
    assert type(received[name]) is type(expected)
    if isinstance(expected, Order):
        assert all(type(i) is Item for i in received[name].items)
    if isinstance(expected, dict) and expected and isinstance(next(iter(expected.values())), Item):
        assert all(type(v) is Item for v in received[name].values())
    out = output_value(fs)
    if tp is bytes:
        assert out == payload
    else:
        assert out is not None and json.loads(out) == json.loads(payload)


def make_item() -> Item:
    events.append("make_item")
    return Item("fresh", 0)


async def make_item_async() -> Item:
    events.append("make_item_async")
    return Item("fresh", 0)


@svc.handler()
async def typed_results(ctx: df.Context, _: str) -> list[str]:
    a = await ctx.run_async("sync", make_item)
    b = await ctx.run_async("async", make_item_async)
    _, awk = ctx.awakeable(Item)
    c = await awk
    return [f"{type(x).__name__}({x.sku},{x.qty})" for x in (a, b, c)]


def test_run_and_awakeable_results_are_decoded_from_type_hints() -> None:
    j = Journal().add(run_cmd(1, "sync"), run_cmd(2, "async"))
    j.add(notification("RunCompletion", 1, b'{"sku":"x","qty":1}'), notification("RunCompletion", 2, b'{"sku":"y","qty":2}'))
    j.add(signal(17, b'{"sku":"z","qty":3}'))
    assert ended_with(invoke("typed_results", j.body())) == ["Item(x,1)", "Item(y,2)", "Item(z,3)"]
    assert events == []


@svc.handler()
def typed_sync(ctx: df.Context, order: Order) -> int:
    return sum(i.qty for i in order.items)


@pytest.mark.parametrize(
    ("handler", "payload"),
    [
        ("typed_str", b"42"),
        ("typed_list_of_int", b'["a"]'),
        ("typed_list_of_int", b"{"),
        ("typed_dataclass_nested", b"[1]"),
        ("typed_dataclass_nested", b'{"id":1,"items":[{"sku":"a"}]}'),
        ("typed_typeddict", b"[]"),
        ("typed_optional_value", b'"x"'),
        ("typed_union_value", b'"x"'),
        ("typed_optional_dataclass", b"[]"),
        ("typed_float", b"true"),
        ("typed_str", b"\xff\xfe"),
        ("typed_sync", b'{"items":"none"}'),
    ],
)
def test_input_that_does_not_decode_fails_terminally_with_400(handler: str, payload: bytes) -> None:
    fs = invoke(handler, Journal(payload).body())
    assert error_of(fs) is None, "a bad input must not be retried"
    failure_ = output_failure(fs)
    assert failure_ is not None
    code, message = failure_
    assert code == 400
    assert "cannot decode" in message
    assert fs[-1].type_name == "End"


# ---- calls, sends, awakeables, state -------------------------------------------------------------


@svc.handler()
async def echo(ctx: df.Context, s: str) -> str:
    return s


@svc.handler()
async def calls(ctx: df.Context, what: str) -> Any:
    if what == "request_future":
        return await ctx.service("Other", "handler").request_future({"a": [1, "b"]})
    if what == "invocation_id":
        fut = ctx.service("Other", "handler").request_future({"a": [1, "b"]})
        first = await fut.invocation_id()
        assert fut.invocation_id() is fut.invocation_id()
        assert await fut.invocation_id() == first  # asking again is fine
        return first
    if what == "typed":
        return await ctx.service(echo).request("hello")
    if what == "object":
        return await ctx.object("Cart", "user-1", "add").request_future(3)
    if what == "send_object":
        ctx.object("Cart", "user-2", "add").send(4)
        return None
    if what == "send_delay":
        return await ctx.service("Other", "later").send("x", delay=timedelta(seconds=30)).invocation_id()
    if what == "send_now":
        return await ctx.service("Other", "now").send("y").invocation_id()
    if what == "plain_function":
        try:
            ctx.service(sync_effect)
        except TypeError as e:
            return str(e)
    raise df.TerminalError(f"unknown case {what}", 400)


def test_request_future_emits_a_call_with_a_json_parameter() -> None:
    fs = invoke("calls", Journal(b'"request_future"').body())
    (cmd,) = of_type(fs, "CallCommand")
    assert (cmd.service, cmd.handler, cmd.parameter) == ("Other", "handler", b'{"a":[1,"b"]}')
    assert (cmd.invocation_id_notification_idx, cmd.completion_id) == (1, 2)
    assert cmd.key == ""  # no key for a plain service
    suspended(fs)


def test_invocation_id_resolves_from_its_notification() -> None:
    body = (
        Journal(b'"invocation_id"')
        .add(call_cmd("Other", "handler", b'{"a":[1,"b"]}', 1, 2))
        .add(notification("CallInvocationIdCompletion", 1, invocation_id="inv_callee"))
        .body()
    )
    assert ended_with(invoke("calls", body)) == "inv_callee"


def test_request_result_comes_from_the_call_completion() -> None:
    body = (
        Journal(b'"request_future"')
        .add(call_cmd("Other", "handler", b'{"a":[1,"b"]}', 1, 2))
        .add(notification("CallCompletion", 2, b'{"answer":42}'))
        .body()
    )
    assert ended_with(invoke("calls", body)) == {"answer": 42}


def test_a_typed_client_targets_the_handler() -> None:
    fs = invoke("calls", Journal(b'"typed"').body())
    (cmd,) = of_type(fs, "CallCommand")
    assert (cmd.service, cmd.handler, cmd.parameter) == ("Facade", "echo", b'"hello"')


def test_a_client_for_an_unregistered_function_is_refused() -> None:
    message = ended_with(invoke("calls", Journal(b'"plain_function"').body()))
    assert message.startswith("ctx.service(fn) takes a handler registered with @svc.handler()")


def test_an_object_client_sets_the_key() -> None:
    fs = invoke("calls", Journal(b'"object"').body())
    d = of_type(fs, "CallCommand")[0]
    assert (d.service, d.handler, d.parameter, d.key) == ("Cart", "add", b"3", "user-1")
    fs = invoke("calls", Journal(b'"send_object"').body())
    d = of_type(fs, "OneWayCallCommand")[0]
    assert (d.service, d.handler, d.parameter, d.key) == ("Cart", "add", b"4", "user-2")
    assert ended_with(fs) is None


def test_send_with_delay_sets_the_invoke_time() -> None:
    before = int(time.time() * 1000)
    fs = invoke("calls", Journal(b'"send_delay"').body())
    after = int(time.time() * 1000)
    d = of_type(fs, "OneWayCallCommand")[0]
    assert (d.service, d.handler, d.parameter, d.invocation_id_notification_idx) == (
        "Other",
        "later",
        b'"x"',
        1,
    )
    assert before + 30_000 <= d.invoke_time <= after + 30_000
    suspended(fs)
    fs = invoke("calls", Journal(b'"send_now"').body())
    assert of_type(fs, "OneWayCallCommand")[0].invoke_time == 0  # not set: now


def test_a_send_invocation_id_resolves_on_replay() -> None:
    body = (
        Journal(b'"send_now"')
        .add(one_way_call_cmd("Other", "now", b'"y"', 1))
        .add(notification("CallInvocationIdCompletion", 1, invocation_id="inv_sent"))
        .body()
    )
    assert ended_with(invoke("calls", body)) == "inv_sent"


AWAKEABLE_ID = "sign_16iHYzWxTjecDEJZ4H6vgrVGkeMkbP_8eAAAAEQ"


@svc.handler()
async def complete_awakeables(ctx: df.Context, ids: list[str]) -> str:
    ctx.resolve_awakeable(ids[0], {"v": 1})
    ctx.reject_awakeable(ids[1], "no thanks", 451)
    return "done"


def test_resolve_and_reject_awakeable_emit_completions() -> None:
    fs = invoke("complete_awakeables", Journal(js([AWAKEABLE_ID, AWAKEABLE_ID])).body())
    assert ended_with(fs) == "done"
    resolve, reject = of_type(fs, "CompleteAwakeableCommand")
    assert resolve.awakeable_id == AWAKEABLE_ID
    assert resolve.value == b'{"v":1}' and resolve.failure is None
    assert reject.awakeable_id == AWAKEABLE_ID
    assert reject.value is None and reject.failure == Failure(451, "no thanks")


def test_a_malformed_awakeable_id_is_a_terminal_400() -> None:
    # Retrying cannot fix an id: the handler fails terminally instead of being retried.
    fs = invoke("complete_awakeables", Journal(js(["not-an-awakeable", AWAKEABLE_ID])).body())
    assert error_of(fs) is None
    failure = output_failure(fs)
    assert failure is not None and failure[0] == 400 and "not-an-awakeable" in failure[1]
    assert fs[-1].type_name == "End" and not of_type(fs, "CompleteAwakeableCommand")


@svc.handler()
async def awakeable_ids(ctx: df.Context, _: str) -> list[str]:
    return [ctx.awakeable()[0], ctx.awakeable()[0]]


def test_awakeable_ids_derive_from_the_invocation() -> None:
    a, b = ended_with(invoke("awakeable_ids", Journal().body()))
    assert a.startswith("sign_1") and b.startswith("sign_1") and a != b


@cart.handler()
async def state(ctx: df.ObjectContext, _: str) -> dict[str, Any]:
    before = await ctx.get("count", int)
    missing = await ctx.get("missing")
    ctx.set("count", (before or 0) + 1)
    ctx.clear("old")
    keys = await ctx.state_keys()
    after = await ctx.get("count", int)
    ctx.clear_all()
    gone = await ctx.get("count")
    return {"key": ctx.key, "before": before, "missing": missing, "keys": keys, "after": after, "gone": gone}


def test_object_state_get_set_clear() -> None:
    body = Journal(key="user-1", state={"count": b"41", "old": b'"x"'}, partial_state=False).body()
    fs = invoke("state", body, service="Cart")
    assert ended_with(fs) == {
        "key": "user-1",
        "before": 41,
        "missing": None,
        "keys": ["count"],
        "after": 42,
        "gone": None,
    }
    assert [f.type_name for f in fs] == [
        "GetEagerStateCommand",
        "GetEagerStateCommand",
        "SetStateCommand",
        "ClearStateCommand",
        "GetEagerStateKeysCommand",
        "GetEagerStateCommand",
        "ClearAllStateCommand",
        "GetEagerStateCommand",
        "OutputCommand",
        "End",
    ]
    set_ = of_type(fs, "SetStateCommand")[0]
    assert set_.state_key == b"count" and set_.value == b"42"
    assert of_type(fs, "ClearStateCommand")[0].state_key == b"old"


@cart.handler(kind="shared")
async def peek(ctx: df.ObjectContext, _: str) -> int | None:
    return await ctx.get("count", int)


def test_partial_state_reads_lazily() -> None:
    fs = invoke("peek", Journal(key="k").body(), service="Cart")
    (get,) = of_type(fs, "GetLazyStateCommand")
    assert get.state_key == b"count"
    suspended(fs)
    body = Journal(key="k").add(get_lazy_state_cmd("count", 1), notification("GetLazyStateCompletion", 1, b"7")).body()
    assert ended_with(invoke("peek", body, service="Cart")) == 7


@svc.handler()
async def about(ctx: df.Context, _: str) -> dict[str, Any]:
    return {"id": ctx.invocation_id, "replaying": ctx.is_replaying(), "random": ctx.random.random()}


def test_context_exposes_the_invocation() -> None:
    first = ended_with(invoke("about", Journal(seed=99).body()))
    second = ended_with(invoke("about", Journal(seed=99).body(), ct=V7))
    assert first["id"].startswith("inv_")
    assert first["replaying"] is False
    assert first["random"] == second["random"]  # seeded from the StartMessage


APP = df.asgi_app(svc, cart)


def never_runs() -> int:
    raise AssertionError("a run whose result is in the journal must not execute")


@svc.handler()
async def replayed_results(ctx: df.Context, _: str) -> list[Any]:
    value = ctx.run_async("value", never_runs)
    failure = ctx.run_async("failure", never_runs)
    empty = ctx.run_async("empty", never_runs)
    out: list[Any] = [await value]
    try:
        await failure
    except df.TerminalError as e:
        out.append([e.code, e.message])
    out.append(await empty)
    out.append(await value)  # a second await gives the same value
    return out


@pytest.mark.parametrize("ct", [V6, V7])
def test_replayed_run_results_of_every_kind_come_back_from_the_journal(ct: str) -> None:
    """A value, a terminal failure and an empty value, each replayed (the journal holds them,
    completed in another order than the runs were started)."""
    body = (
        Journal()
        .add(
            run_cmd(1, "value"),
            run_cmd(2, "failure"),
            run_cmd(3, "empty"),
            notification("RunCompletion", 3, b""),
            notification("RunCompletion", 2, err=(409, "taken")),
            notification("RunCompletion", 1, b"7"),
        )
        .body()
    )
    fs = invoke("replayed_results", body, ct=ct)
    assert ended_with(fs) == [7, [409, "taken"], None, 7]
    assert not of_type(fs, "RunCommand") and not proposals(fs)
