"""Functional tests of ``df.LocalEngine``: the embedded engine on a temporary SQLite file.

Every test builds its own services (so counters and hooks are per test), opens the engine
on a file in ``tmp_path`` (``durability="os"`` unless fsync matters) and drives it with
``asyncio.run``. Restarts close the engine and open a new one on the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

import durable_futures as df
from durable_futures.errors import (
    BadRequestError,
    InvocationStateError,
    StorageError,
    UnknownInvocationError,
)
from durable_futures.local import VirtualClock

from .frames import frames
from .stored import invocation_stored

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    """Runs a test body in a fresh event loop, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(pred: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def engine(
    *services: df.Service,
    path: Path,
    max_attempts: int | None = None,
    retry_initial: timedelta = timedelta(milliseconds=10),
    retry_factor: float = 2.0,
    retry_max: timedelta = timedelta(milliseconds=100),
    **kw: Any,
) -> df.LocalEngine:
    """An engine for these tests: fast retries; with ``max_attempts`` the invocation is
    killed (fails with its last error) after that many attempts."""
    kw.setdefault("durability", "os")
    kw.setdefault(
        "retry_policy",
        df.RetryPolicy(
            initial_interval=retry_initial,
            factor=retry_factor,
            max_interval=retry_max,
            max_attempts=max_attempts,
            on_max_attempts="kill",
        ),
    )
    return df.LocalEngine(*services, path=path, **kw)


def journal_types(e: df.LocalEngine, inv_id: str) -> list[str]:
    return [frames(f)[0].type_name for f in e.journal(inv_id)]


def run_names(e: df.LocalEngine, inv_id: str) -> list[str]:
    out = []
    for raw in e.journal(inv_id):
        f = frames(raw)[0]
        if f.type_name == "RunCommand":
            out.append(f.name)
    return out


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "engine.db"


# ---- runs, calls, timers --------------------------------------------------------------------


def test_parallel_runs_and_calls(db: Path) -> None:
    svc = df.Service("Par")
    executed: Counter[str] = Counter()

    async def slow_square(i: int) -> int:
        executed[f"sq-{i}"] += 1
        await asyncio.sleep(0.01 * (5 - i % 5))  # finish out of order
        return i * i

    def blocking_cube(i: int) -> int:
        executed[f"cube-{i}"] += 1
        time.sleep(0.005)
        return i**3

    @svc.handler()
    async def fan(ctx: df.Context, n: int) -> dict[str, Any]:
        squares = [ctx.run_async(f"sq-{i}", slow_square, i) for i in range(n)]
        cubes = [ctx.run_async(f"cube-{i}", blocking_cube, i) for i in range(n)]
        calls = [ctx.service(double).request_future(i) for i in range(n)]
        return {
            "squares": [await f for f in squares],
            "cubes": [await f for f in cubes],
            "doubles": [await f for f in calls],
        }

    @svc.handler()
    async def double(ctx: df.Context, i: int) -> int:
        return 2 * i

    async def body() -> None:
        async with engine(svc, path=db) as e:
            started = time.monotonic()
            results = await asyncio.gather(*(e.invoke(fan, 10) for _ in range(5)))
            elapsed = time.monotonic() - started
            for r in results:
                assert r == {
                    "squares": [i * i for i in range(10)],
                    "cubes": [i**3 for i in range(10)],
                    "doubles": [2 * i for i in range(10)],
                }
            # 5 invocations x 10 runs of up to 50 ms each: concurrent, not one after another.
            assert elapsed < 2.0, elapsed
            assert set(executed.values()) == {5}
            # 5 parents + 50 children.
            assert len(e.invocations(limit=100)) == 55

    run(body())


def test_virtual_clock_skips_a_day_long_sleep(db: Path) -> None:
    svc = df.Service("Sleepy")

    @svc.handler()
    async def nap(ctx: df.Context, days: int) -> str:
        await ctx.sleep(timedelta(days=days))
        await ctx.sleep(timedelta(hours=1), name="second")
        return "rested"

    @svc.handler()
    def nap_sync(ctx: df.Context, days: int) -> str:
        ctx.after(timedelta(days=days)).result()
        return "rested too"

    async def body() -> None:
        clock = VirtualClock()
        start = clock.now_ms
        async with engine(svc, path=db, clock=clock) as e:
            t0 = time.monotonic()
            assert await e.invoke(nap, 1) == "rested"
            assert await e.invoke(nap_sync, 2) == "rested too"
            assert time.monotonic() - t0 < 5
            # Time moved only by jumps to the timers: 1 day + 1 hour, then 2 days.
            assert clock.now_ms - start == (24 + 1 + 48) * 3600 * 1000

    run(body())


def test_virtual_clock_orders_delayed_sends_and_timers(db: Path) -> None:
    svc = df.Service("Plan")
    marks: list[tuple[str, int]] = []
    clock = VirtualClock()

    @svc.handler()
    async def plan(ctx: df.Context) -> str:
        ctx.service(mark).send("in two hours", delay=timedelta(hours=2))
        ctx.service(mark).send("in one hour", delay=timedelta(hours=1))
        await ctx.sleep(timedelta(hours=3))
        return "planned"

    @svc.handler()
    async def mark(ctx: df.Context, what: str) -> None:
        marks.append((what, clock.now_ms))

    async def body() -> None:
        start = clock.now_ms
        async with engine(svc, path=db, clock=clock) as e:
            assert await e.invoke(plan) == "planned"
            assert clock.now_ms - start == 3 * 3600 * 1000
            hour = 3600 * 1000
            assert marks == [("in one hour", start + hour), ("in two hours", start + 2 * hour)]

    run(body())


def test_virtual_clock_waits_for_a_busy_sync_handler(db: Path) -> None:
    """Time stands still while a sync handler computes on its thread: another invocation's
    one-hour timer must not fire (and move the clock) before the handler's ten seconds."""
    svc = df.Service("Busy")
    done: list[str] = []

    @svc.handler()
    async def hour(ctx: df.Context) -> None:
        await ctx.sleep(timedelta(hours=1))
        done.append("hour")

    @svc.handler()
    def busy(ctx: df.Context) -> None:
        time.sleep(0.3)  # work that is not durable: the clock must wait for it
        ctx.after(timedelta(seconds=10)).result()
        done.append("busy")

    async def body() -> None:
        async with engine(svc, path=db, clock=VirtualClock()) as e:
            ids = [e.send(hour), e.send(busy)]
            for i in ids:
                await e.result(i)
        assert done == ["busy", "hour"]

    run(body())


def test_real_timers_fire_in_order(db: Path) -> None:
    svc = df.Service("Timers")

    @svc.handler()
    async def race(ctx: df.Context) -> list[str]:
        slow = ctx.after(timedelta(milliseconds=150))
        fast = ctx.after(timedelta(milliseconds=30))
        order = []
        async for f in ctx.select(slow, fast):
            order.append("slow" if f is slow else "fast")
        return order

    async def body() -> None:
        async with engine(svc, path=db) as e:
            t0 = time.monotonic()
            assert await e.invoke(race) == ["fast", "slow"]
            assert time.monotonic() - t0 >= 0.14

    run(body())


def test_a_send_with_a_zero_delay_is_not_postponed(db: Path) -> None:
    """A delay computed as "until the deadline" may come out as zero: the call then runs at
    once, like an undelayed send, while a real delay waits exactly that long."""
    svc = df.Service("ZeroDelay")
    ran_at: dict[str, int] = {}
    clock = VirtualClock()

    @svc.handler()
    async def schedule(ctx: df.Context) -> list[str]:
        handles = [
            ctx.service(mark).send("zero", delay=timedelta(0)),
            ctx.service(mark).send("one second", delay=timedelta(seconds=1)),
        ]
        return [await h.invocation_id() for h in handles]

    @svc.handler()
    async def mark(ctx: df.Context, what: str) -> None:
        ran_at[what] = clock.now_ms

    async def body() -> None:
        start = clock.now_ms
        async with engine(svc, path=db, clock=clock) as e:
            for inv_id in await e.invoke(schedule):
                await e.result(inv_id)
        # The virtual clock stands still while anything can run: a zero delay moves nothing.
        assert ran_at == {"zero": start, "one second": start + 1000}

    run(body())


# ---- awakeables ----------------------------------------------------------------------------


def test_awakeable_resolved_by_another_handler(db: Path) -> None:
    svc = df.Service("Awk")

    @svc.handler()
    async def wait_for_peer(ctx: df.Context, value: str) -> str:
        awk_id, fut = ctx.awakeable(str)
        ctx.service(resolver).send({"id": awk_id, "value": value})
        return f"got {await fut}"

    @svc.handler()
    async def resolver(ctx: df.Context, req: dict[str, str]) -> None:
        await ctx.sleep(timedelta(milliseconds=10))
        ctx.resolve_awakeable(req["id"], req["value"].upper())

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(wait_for_peer, "hello") == "got HELLO"

    run(body())


def test_awakeable_resolved_and_rejected_through_the_engine(db: Path) -> None:
    svc = df.Service("Ext")
    published: dict[str, str] = {}

    @svc.handler()
    async def wait(ctx: df.Context, name: str) -> str:
        awk_id, fut = ctx.awakeable(int)
        published[name] = awk_id  # not durable; replays publish the same id again
        try:
            return f"value {await fut}"
        except df.TerminalError as e:
            return f"rejected {e.code} {e.message}"

    async def body() -> None:
        async with engine(svc, path=db, clock=VirtualClock()) as e:
            ok = e.send(wait, "ok")
            bad = e.send(wait, "bad")
            await until(lambda: len(published) == 2, what="awakeable ids")
            e.resolve_awakeable(published["ok"], 42)
            e.reject_awakeable(published["bad"], "nope", code=418)
            assert await e.result(ok) == "value 42"
            assert await e.result(bad) == "rejected 418 nope"
            # A completed invocation's awakeable, and garbage, are clear errors.
            with pytest.raises(BadRequestError, match="not running"):
                e.resolve_awakeable(published["ok"], 1)
            with pytest.raises(BadRequestError, match="not an awakeable id"):
                e.resolve_awakeable("sign_garbage", 1)

    run(body())


def test_a_handler_rejecting_an_awakeable_fails_it_with_500_by_default(db: Path) -> None:
    svc = df.Service("Decline")

    @svc.handler()
    async def ask(ctx: df.Context) -> str:
        awk_id, answer = ctx.awakeable(str)
        ctx.service(decline).send(awk_id)
        try:
            return f"accepted {await answer}"
        except df.TerminalError as e:
            return f"declined {e.code} {e.message}"

    @svc.handler()
    async def decline(ctx: df.Context, awk_id: str) -> None:
        ctx.reject_awakeable(awk_id, "not today")

    async def body() -> None:
        async with engine(svc, path=db, clock=VirtualClock()) as e:
            assert await e.invoke(ask) == "declined 500 not today"

    run(body())


# ---- selectors -------------------------------------------------------------------------------


def test_selector_order_is_stable_across_restarts(db: Path) -> None:
    svc = df.Service("Sel")
    seen: list[list[str]] = []
    executions: Counter[str] = Counter()

    async def step(name: str, delay: float) -> str:
        executions[name] += 1
        await asyncio.sleep(delay)
        return name

    @svc.handler()
    async def order(ctx: df.Context) -> list[str]:
        futs = [
            ctx.run_async("c", step, "c", 0.06),
            ctx.run_async("a", step, "a", 0.0),
            ctx.run_async("b", step, "b", 0.03),
        ]
        out = []
        async for f in ctx.select(*futs):
            out.append(await f)
        seen.append(out)
        await ctx.sleep(timedelta(milliseconds=300))
        # After the restart the selector replays from the journal: same order.
        again = []
        async for f in ctx.select(*futs):
            again.append(await f)
        assert again == out
        return out

    async def phase1() -> str:
        async with engine(svc, path=db) as e:
            inv = e.send(order)
            await until(lambda: "SleepCommand" in journal_types(e, inv), what="the sleep")
            return inv

    async def phase2(inv: str) -> list[str]:
        async with engine(svc, path=db) as e:
            return await e.result(inv)  # type: ignore[no-any-return]

    inv = run(phase1())
    assert seen == [["a", "b", "c"]]
    result = run(phase2(inv))
    assert result == ["a", "b", "c"]
    assert seen == [["a", "b", "c"], ["a", "b", "c"]]
    assert executions == {"a": 1, "b": 1, "c": 1}


def test_a_combinator_is_done_once_decided(db: Path) -> None:
    """``done()`` of a combinator tells whether it is decided, which for first_completed is
    as soon as one child completes, with the other still pending."""
    svc = df.Service("Decided")

    @svc.handler()
    async def race(ctx: df.Context) -> dict[str, bool]:
        short = ctx.after(timedelta(minutes=1))
        long = ctx.after(timedelta(hours=1))
        first = ctx.first_completed(short, long)
        both = ctx.all_completed(short, long)
        # Nothing has fired yet: the virtual clock stands still while the handler runs.
        before = first.done()
        await first
        return {
            "before": before,
            "first": first.done(),
            "both": both.done(),
            "long": long.done(),
        }

    async def body() -> None:
        async with engine(svc, path=db, clock=VirtualClock(), max_attempts=2) as e:
            assert await e.invoke(race) == {
                "before": False,
                "first": True,
                "both": False,
                "long": False,
            }

    run(body())


# ---- retries ---------------------------------------------------------------------------------


def test_failed_attempts_are_retried_with_backoff(db: Path) -> None:
    svc = df.Service("Flaky")
    attempts: list[float] = []
    steps: Counter[str] = Counter()

    def once() -> str:
        steps["once"] += 1
        return "done"

    @svc.handler()
    async def flaky(ctx: df.Context) -> str:
        first = await ctx.run("once", once)
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            raise RuntimeError(f"transient failure {len(attempts)}")
        return f"{first} after {len(attempts)} attempts"

    async def body() -> None:
        async with engine(
            svc,
            path=db,
            retry_initial=timedelta(milliseconds=40),
            retry_factor=2.0,
            retry_max=timedelta(seconds=1),
        ) as e:
            assert await e.invoke(flaky) == "done after 3 attempts"
        # Backoff: 40 ms, then 80 ms.
        assert attempts[1] - attempts[0] >= 0.035
        assert attempts[2] - attempts[1] >= 0.075
        # The journaled run ran once; the retries replayed it.
        assert steps == {"once": 1}

    run(body())


def test_max_attempts_gives_up_with_the_last_error(db: Path) -> None:
    svc = df.Service("Hopeless")
    calls: list[int] = []

    @svc.handler()
    async def broken(ctx: df.Context) -> None:
        calls.append(1)
        raise ValueError("always broken")

    async def body() -> None:
        async with engine(svc, path=db, max_attempts=3) as e:
            with pytest.raises(df.TerminalError) as info:
                await e.invoke(broken)
            # Killed after its third attempt: the caller gets the last failure as it was.
            assert (info.value.code, info.value.message) == (500, "ValueError: always broken")
            assert len(calls) == 3

    run(body())


def test_run_retries_with_run_options(db: Path) -> None:
    svc = df.Service("RunRetry")
    tries: Counter[str] = Counter()

    def flaky_step() -> int:
        tries["flaky"] += 1
        if tries["flaky"] < 3:
            raise ConnectionError("try again")
        return 7

    def doomed_step() -> int:
        tries["doomed"] += 1
        raise ConnectionError("down for good")

    opts = df.RunOptions(max_attempts=3, initial_interval=timedelta(milliseconds=5))

    @svc.handler()
    async def steps(ctx: df.Context) -> dict[str, Any]:
        value = await ctx.run_async_with(opts, "flaky", flaky_step)
        try:
            await ctx.run_async_with(opts, "doomed", doomed_step)
            doomed = "succeeded?"
        except df.TerminalError as e:
            doomed = e.message
        return {"flaky": value, "doomed": doomed}

    async def body() -> None:
        async with engine(svc, path=db) as e:
            result = await e.invoke(steps)
        assert result["flaky"] == 7
        assert "down for good" in result["doomed"]
        assert tries == {"flaky": 3, "doomed": 3}

    run(body())


def test_is_replaying_only_while_re_executing_journaled_steps(db: Path) -> None:
    """A handler silencing its logs with ``ctx.is_replaying()`` must see True exactly while
    a retry re-executes what the journal already holds, and False once it runs new code."""
    svc = df.Service("Replaying")
    seen: list[tuple[str, bool]] = []

    @svc.handler()
    async def fails_once(ctx: df.Context) -> str:
        seen.append(("start", ctx.is_replaying()))
        await ctx.run("step", lambda: "done")
        seen.append(("after the step", ctx.is_replaying()))
        if len(seen) == 2:
            raise RuntimeError("transient")  # the retry replays the journaled step
        return "ok"

    async def body() -> None:
        async with engine(svc, path=db, clock=VirtualClock(), max_attempts=3) as e:
            assert await e.invoke(fails_once) == "ok"

    run(body())
    assert seen == [
        ("start", False),
        ("after the step", False),
        ("start", True),
        ("after the step", False),
    ]


# ---- terminal errors, unknown handlers ------------------------------------------------------


def test_terminal_error_is_the_result_and_is_not_retried(db: Path) -> None:
    svc = df.Service("Term")
    calls: list[int] = []

    @svc.handler()
    async def refuse(ctx: df.Context, why: str) -> str:
        calls.append(1)
        raise df.TerminalError(f"refused: {why}", 422)

    @svc.handler()
    async def caller(ctx: df.Context) -> str:
        try:
            await ctx.service(refuse).request("by call")
        except df.TerminalError as e:
            return f"{e.code}: {e.message}"
        return "no error?"

    async def body() -> None:
        async with engine(svc, path=db) as e:
            with pytest.raises(df.TerminalError) as info:
                await e.invoke(refuse, "direct")
            assert (info.value.code, info.value.message) == (422, "refused: direct")
            assert await e.invoke(caller) == "422: refused: by call"
            assert len(calls) == 2

    run(body())


def test_unknown_handler_is_a_bad_request_and_others_are_unaffected(db: Path) -> None:
    svc = df.Service("Known")

    @svc.handler()
    async def echo(ctx: df.Context, s: str) -> str:
        return s

    async def body() -> None:
        async with engine(svc, path=db) as e:
            with pytest.raises(BadRequestError, match="no handler Known/missing"):
                await e.invoke("Known/missing", 1)
            with pytest.raises(BadRequestError, match="no handler Nope/echo"):
                e.send("Nope", handler="echo")
            with pytest.raises(UnknownInvocationError):
                await e.result("inv_1doesnotexist00000000000000000")
            assert await e.invoke(echo, "still fine") == "still fine"

    run(body())


def test_malformed_input_fails_that_invocation_terminally(db: Path) -> None:
    svc = df.Service("Input")
    calls: list[int] = []

    @svc.handler()
    async def add_one(ctx: df.Context, n: int) -> int:
        calls.append(n)
        return n + 1

    async def body() -> None:
        async with engine(svc, path=db) as e:
            _, ok, value = await e.invoke_raw("Input", "add_one", b"{bad")
            assert not ok and isinstance(value, tuple)
            assert value[0] == 400 and "cannot decode" in value[1]
            with pytest.raises(df.TerminalError, match="expected int"):
                await e.invoke(add_one, "not a number")
            assert await e.invoke(add_one, 41) == 42
            assert calls == [41]

    run(body())


def test_a_call_to_an_unknown_handler_fails_terminally(db: Path) -> None:
    svc = df.Service("Caller")

    @svc.handler()
    async def call_missing(ctx: df.Context) -> str:
        try:
            await ctx.service("Missing", "nothing").request(1)
        except df.TerminalError as e:
            return f"{e.code}: {e.message}"
        return "no error?"

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(call_missing) == "404: no handler Missing/nothing in this engine"

    run(body())


# ---- idempotency -----------------------------------------------------------------------------


def test_idempotency_key_same_invocation_and_result(db: Path) -> None:
    svc = df.Service("Idem")
    executions: list[int] = []
    release = threading.Event()

    async def slow(n: int) -> int:
        executions.append(n)
        while not release.is_set():
            await asyncio.sleep(0.005)
        return n * 10

    @svc.handler()
    async def work(ctx: df.Context, n: int) -> int:
        return await ctx.run("slow", slow, n)

    async def body() -> None:
        async with engine(svc, path=db) as e:
            # While the first is still running, repeats attach to it.
            first = asyncio.ensure_future(e.invoke(work, 1, idempotency_key="k1"))
            await until(lambda: executions == [1], what="the first execution")
            second = asyncio.ensure_future(e.invoke(work, 2, idempotency_key="k1"))
            sent = e.send(work, 3, idempotency_key="k1")
            other = e.send(work, 4, idempotency_key="k2")
            await asyncio.sleep(0.05)
            assert not first.done() and not second.done()
            release.set()
            assert await first == 10
            assert await second == 10
            assert await e.result(sent) == 10
            assert await e.result(other) == 40
            # After completion: the stored result, nothing runs again.
            assert await e.invoke(work, 5, idempotency_key="k1") == 10
            assert e.send(work, 6, idempotency_key="k1") == sent
            assert sorted(executions) == [1, 4]
        # Across a restart too.
        async with engine(svc, path=db) as e:
            assert e.send(work, 7, idempotency_key="k1") == sent
            assert await e.invoke(work, 8, idempotency_key="k2") == 40
            assert sorted(executions) == [1, 4]

    run(body())


def test_sends_with_one_idempotency_key_from_a_handler_run_once(db: Path) -> None:
    svc = df.Service("Checkout")
    charged: list[int] = []

    @svc.handler()
    async def charge(ctx: df.Context, amount: int) -> int:
        charged.append(amount)
        return amount

    @svc.handler()
    async def checkout(ctx: df.Context) -> list[str]:
        handles = [
            ctx.service(charge).send(10, idempotency_key="order-1"),
            ctx.service(charge).send(10, idempotency_key="order-1"),  # a repeated request
            ctx.service(charge).send(20, idempotency_key="order-2"),
        ]
        return [await h.invocation_id() for h in handles]

    async def body() -> None:
        async with engine(svc, path=db, clock=VirtualClock()) as e:
            first, repeated, other = await e.invoke(checkout)
            assert first == repeated != other
            assert [await e.result(i) for i in (first, other)] == [10, 20]
        assert sorted(charged) == [10, 20]

    run(body())


# ---- cancellation ------------------------------------------------------------------------------


def test_cancellation_is_a_terminal_error_409(db: Path) -> None:
    svc = df.Service("Cancel")
    started: set[str] = set()

    @svc.handler()
    async def patient(ctx: df.Context, name: str) -> str:
        started.add(name)
        try:
            await ctx.sleep(timedelta(hours=1))
        except df.TerminalError as e:
            assert e.is_cancellation
            # Cleanup after cancellation still runs durably.
            cleaned = await ctx.run("cleanup", lambda: "cleaned")
            return f"{e.code} {cleaned}"
        return "woke up?"

    @svc.handler()
    async def stubborn(ctx: df.Context) -> str:
        started.add("stubborn")
        await ctx.sleep(timedelta(hours=1))
        return "woke up?"

    async def body() -> None:
        async with engine(svc, path=db) as e:
            a = e.send(patient, "a")
            b = e.send(stubborn)
            c = e.send(patient, "c")
            await until(lambda: started == {"a", "c", "stubborn"}, what="handlers to start")
            e.cancel(a)
            e.cancel(b)
            assert await e.result(a) == "409 cleaned"
            with pytest.raises(df.TerminalError) as info:
                await e.result(b)
            assert info.value.code == 409
            # c is unaffected: still waiting in its open attempt.
            assert [r.status for r in e.invocations() if r.id == c] == ["running"]
            with pytest.raises(UnknownInvocationError):
                e.cancel("inv_1doesnotexist00000000000000000")
            with pytest.raises(InvocationStateError):
                e.cancel(a)  # completed already
            e.cancel(c)
            assert await e.result(c) == "409 cleaned"

    run(body())


def test_cancelling_a_suspended_invocation(db: Path) -> None:
    svc = df.Service("CancelIdle")

    @svc.handler()
    async def nap(ctx: df.Context) -> str:
        try:
            await ctx.sleep(timedelta(hours=1))
        except df.TerminalError as e:
            return f"cancelled {e.code}"
        return "woke up?"

    @svc.handler()
    def nap_sync(ctx: df.Context) -> str:
        try:
            ctx.after(timedelta(hours=1)).result()
        except df.TerminalError as e:
            return f"cancelled {e.code}"
        return "woke up?"

    async def body() -> None:
        async with engine(svc, path=db, inactivity_timeout=timedelta(milliseconds=20)) as e:
            ids = [e.send(nap), e.send(nap_sync)]
            await until(
                lambda: {r[4] for r in e.invocations() if r[0] in ids} == {"suspended"},
                what="both to suspend",
            )
            for inv in ids:
                e.cancel(inv)
            assert [await e.result(inv) for inv in ids] == ["cancelled 409"] * 2

    run(body())


def test_a_handler_cancels_another_invocation(db: Path) -> None:
    svc = df.Service("Supervisor")

    @svc.handler()
    async def worker(ctx: df.Context, ready_id: str) -> str:
        _, never = ctx.awakeable()
        ctx.resolve_awakeable(ready_id, None)
        try:
            await never
        except df.TerminalError as e:
            return f"stopped {e.code}"
        return "resolved?"

    @svc.handler()
    async def supervise(ctx: df.Context) -> str:
        ready_id, ready = ctx.awakeable()
        worker_id = await ctx.service(worker).send(ready_id).invocation_id()
        await ready  # the worker is waiting now
        ctx.cancel_invocation(worker_id)
        return worker_id

    async def body() -> None:
        async with engine(svc, path=db, max_attempts=2) as e:
            worker_id = await e.invoke(supervise)
            assert await e.result(worker_id) == "stopped 409"

    run(body())


# ---- virtual objects -------------------------------------------------------------------------


def test_virtual_object_state_persists_across_restarts(db: Path) -> None:
    counter = df.VirtualObject("Counter")

    @counter.handler()
    async def add(ctx: df.ObjectContext, n: int) -> int:
        value = (await ctx.get("count", int)) or 0
        ctx.set("count", value + n)
        return value + n

    @counter.handler()
    async def reset(ctx: df.ObjectContext) -> list[str]:
        keys = await ctx.state_keys()
        ctx.clear_all()
        return keys

    async def body() -> None:
        async with engine(counter, path=db) as e:
            assert await e.invoke(add, 2, key="x") == 2
            assert await e.invoke(add, 3, key="x") == 5
            assert await e.invoke(add, 10, key="y") == 10
            with pytest.raises(BadRequestError, match="a key is required"):
                await e.invoke(add, 1)
        async with engine(counter, path=db) as e:
            assert await e.invoke(add, 1, key="x") == 6
            assert await e.invoke(reset, key="x") == ["count"]
            assert await e.invoke(add, 1, key="x") == 1
            assert await e.invoke(add, 0, key="y") == 10

    run(body())


def test_virtual_object_invocations_on_one_key_are_serialized(db: Path) -> None:
    counter = df.VirtualObject("Serial")
    active: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    published: dict[str, str] = {}
    started: list[int] = []

    @counter.handler()
    async def slow_add(ctx: df.ObjectContext, n: int) -> int:
        started.append(n)
        active[ctx.key] += 1
        peak[ctx.key] = max(peak[ctx.key], active[ctx.key])
        try:
            value = (await ctx.get("count", int)) or 0
            await ctx.sleep(timedelta(milliseconds=5))  # read-modify-write across an await
            ctx.set("count", value + n)
            return value + n
        finally:
            active[ctx.key] -= 1

    @counter.handler()
    async def block(ctx: df.ObjectContext) -> str:
        awk_id, fut = ctx.awakeable(str)
        published[ctx.key] = awk_id
        return await fut

    async def body() -> None:
        async with engine(counter, path=db) as e:
            results = await asyncio.gather(*(e.invoke(slow_add, 1, key="k") for _ in range(8)))
            assert sorted(results) == list(range(1, 9))  # no lost update
            assert peak["k"] == 1

            # A blocked invocation holds its key; other keys go on.
            blocked = e.send(block, key="k")
            await until(lambda: "k" in published, what="the blocking handler")
            queued = e.send(slow_add, 100, key="k")
            assert await e.invoke(slow_add, 5, key="other") == 5
            await asyncio.sleep(0.05)
            assert 100 not in started, "it waits for the key"
            e.resolve_awakeable(published["k"], "unblocked")
            assert await e.result(blocked) == "unblocked"
            assert await e.result(queued) == 108

    run(body())


def test_shared_handlers_run_alongside_the_exclusive_one(db: Path) -> None:
    job = df.VirtualObject("Job")
    published: dict[str, str] = {}

    @job.handler()
    async def work(ctx: df.ObjectContext) -> str:
        ctx.set("status", "running")
        awk_id, fut = ctx.awakeable(str)
        await ctx.run("publish", lambda: published.__setitem__("work", awk_id))
        result = await fut
        ctx.set("status", "done")
        return result

    @job.handler(kind="shared")
    async def status(ctx: df.ObjectSharedContext) -> str | None:
        return await ctx.get("status", str)

    @job.handler(kind="shared")
    async def watch(ctx: df.ObjectSharedContext) -> str:
        awk_id, fut = ctx.awakeable(str)
        await ctx.run("publish", lambda: published.__setitem__("watch", awk_id))
        return await fut

    @job.handler(kind="shared")
    async def sneaky(ctx: df.ObjectSharedContext) -> None:
        # What a shared handler's context does not offer, sent anyway: the engine refuses.
        ctx._attempt.sys_state_set("status", b'"hacked"')

    async def phase1() -> tuple[str, str]:
        async with engine(job, path=db, inactivity_timeout=timedelta(milliseconds=50)) as e:
            running = e.send(work, key="k")
            await until(lambda: "work" in published, what="the exclusive handler")
            # The exclusive handler holds the key; shared ones do not wait for it.
            assert await asyncio.wait_for(e.invoke(status, key="k"), 5) == "running"
            watching = e.send(watch, key="k")
            await until(lambda: "watch" in published, what="the shared waiter")
            await until(
                lambda: {r[4] for r in e.invocations() if r[0] in (running, watching)}
                == {"suspended"},
                what="both to suspend",
            )
            return running, watching

    async def phase2(running: str, watching: str) -> None:
        async with engine(job, path=db, max_attempts=1) as e:
            e.resolve_awakeable(published["work"], "finished")
            assert await asyncio.wait_for(e.result(running), 5) == "finished"
            assert await e.invoke(status, key="k") == "done"
            with pytest.raises(df.TerminalError, match="a shared handler cannot change"):
                await e.invoke(sneaky, key="k")
            assert await e.invoke(status, key="k") == "done"
            e.resolve_awakeable(published["watch"], "seen")
            assert await e.result(watching) == "seen"

    ids = run(phase1())
    run(phase2(*ids))


# ---- sync handlers ----------------------------------------------------------------------------


def test_sync_handlers(db: Path) -> None:
    svc = df.Service("Sync")
    published: dict[str, str] = {}

    @svc.handler()
    def compute(ctx: df.Context, n: int) -> dict[str, Any]:
        def plus(i: int) -> int:
            return i + n

        runs = [ctx.run_async(f"r{i}", plus, i) for i in range(5)]
        call = ctx.service(helper).request_future(n)
        timer = ctx.after(timedelta(milliseconds=20))
        awk_id, awk = ctx.awakeable(str)
        published["sync"] = awk_id
        timer.result()
        return {
            "runs": [r.result() for r in runs],
            "call": call.result(),
            "awk": awk.result(),
        }

    @svc.handler()
    async def helper(ctx: df.Context, n: int) -> int:
        return -n

    async def body() -> None:
        async with engine(svc, path=db) as e:
            inv = e.send(compute, 10)
            await until(lambda: "sync" in published, what="the awakeable")
            e.resolve_awakeable(published["sync"], "from outside")
            assert await e.result(inv) == {
                "runs": [10, 11, 12, 13, 14],
                "call": -10,
                "awk": "from outside",
            }

    run(body())


def test_closing_the_engine_releases_a_blocked_sync_handler(db: Path) -> None:
    svc = df.Service("SyncBlocked")
    started = threading.Event()
    finished = threading.Event()

    @svc.handler()
    def waits_forever(ctx: df.Context) -> str:
        started.set()
        try:
            _, awk = ctx.awakeable(str)
            return awk.result()
        finally:
            finished.set()

    async def body() -> None:
        async with engine(svc, path=db) as e:
            e.send(waits_forever)
            await until(started.is_set, what="the sync handler")
        # The worker thread must not stay blocked after close (it would hang interpreter exit).
        await until(finished.is_set, timeout=5, what="the worker thread to unwind")

    run(body())


def test_idle_attempts_suspend_and_resume_on_their_next_notification(db: Path) -> None:
    svc = df.Service("Idle")
    published: dict[str, str] = {}
    executions: Counter[str] = Counter()

    @svc.handler()
    async def waits(ctx: df.Context) -> str:
        first = await ctx.run("first", lambda: executions.update(["first"]) or "first")
        awk_id, fut = ctx.awakeable(str)
        published["id"] = awk_id
        return f"{first} then {await fut}"

    async def body() -> None:
        async with engine(svc, path=db, inactivity_timeout=timedelta(milliseconds=40)) as e:
            inv = e.send(waits)
            await until(lambda: "id" in published, what="the awakeable")
            await until(
                lambda: [r[4] for r in e.invocations() if r[0] == inv] == ["suspended"],
                what="the idle attempt to suspend",
            )
            e.resolve_awakeable(published["id"], "woken")
            assert await e.result(inv) == "first then woken"
            assert executions == {"first": 1}

    run(body())


# ---- restarts ---------------------------------------------------------------------------------


def test_restart_resumes_a_sleeping_invocation_without_rerunning_journaled_runs(
    db: Path,
) -> None:
    svc = df.Service("Resume")
    executions: Counter[str] = Counter()

    def side_effect(name: str) -> str:
        executions[name] += 1
        return name.upper()

    @svc.handler()
    async def long_job(ctx: df.Context) -> list[str]:
        first = [await ctx.run(f"before-{i}", side_effect, f"before-{i}") for i in range(3)]
        await ctx.sleep(timedelta(milliseconds=400))
        last = await ctx.run("after", side_effect, "after")
        return [*first, last]

    async def phase1() -> str:
        async with engine(svc, path=db, durability="fsync") as e:
            inv = e.send(long_job)
            await until(lambda: "SleepCommand" in journal_types(e, inv), what="the sleep")
            return inv

    async def phase2(inv: str) -> Any:
        async with engine(svc, path=db, durability="fsync") as e:
            t0 = time.monotonic()
            result = await e.result(inv)
            return result, time.monotonic() - t0

    inv = run(phase1())
    assert executions == {"before-0": 1, "before-1": 1, "before-2": 1}
    time.sleep(0.5)  # the timer falls due while the engine is down
    result, waited = run(phase2(inv))
    assert result == ["BEFORE-0", "BEFORE-1", "BEFORE-2", "AFTER"]
    assert waited < 0.3, "a timer due while down fires at once"
    assert executions == {"before-0": 1, "before-1": 1, "before-2": 1, "after": 1}


def test_restart_mid_sleep_resumes_and_waits_for_the_rest(db: Path) -> None:
    svc = df.Service("Resume2")
    executions: Counter[str] = Counter()

    @svc.handler()
    async def job(ctx: df.Context) -> str:
        a = await ctx.run("a", lambda: executions.update(["a"]) or "a")
        await ctx.sleep(timedelta(milliseconds=500))
        b = await ctx.run("b", lambda: executions.update(["b"]) or "b")
        return a + b

    async def phase1() -> tuple[str, str]:
        async with engine(svc, path=db) as e:
            inv = e.send(job)
            done = e.send(job, idempotency_key="other")
            await until(lambda: "SleepCommand" in journal_types(e, inv), what="the sleep")
            return inv, done

    async def phase2(inv: str, other: str) -> Any:
        async with engine(svc, path=db) as e:
            t0 = time.monotonic()
            assert await e.result(inv) == "ab"
            assert await e.result(other) == "ab"
            return time.monotonic() - t0

    inv, other = run(phase1())
    waited = run(phase2(inv, other))
    assert 0.1 < waited < 1.5, "resumed, and waited for the rest of the sleep"
    assert executions == {"a": 2, "b": 2}  # two invocations, each run once


def test_a_handler_missing_after_restart_waits_for_its_return(db: Path) -> None:
    old = df.Service("Old")
    keep = df.Service("Keep")

    @old.handler()
    async def going_away(ctx: df.Context) -> str:
        await ctx.sleep(timedelta(milliseconds=100))
        return "back again"

    @keep.handler()
    async def staying(ctx: df.Context) -> str:
        await ctx.sleep(timedelta(milliseconds=100))
        return "still here"

    async def phase1() -> tuple[str, str]:
        async with engine(old, keep, path=db) as e:
            a = e.send(going_away)
            b = e.send(staying)
            await until(
                lambda: "SleepCommand" in journal_types(e, a)
                and "SleepCommand" in journal_types(e, b),
                what="both sleeps",
            )
            return a, b

    async def phase2(a: str, b: str) -> None:
        # Old is gone: a fresh call is refused, a journaled invocation is kept and retried
        # (its journal must not be thrown away); the other invocation is unaffected.
        async with engine(keep, path=db) as e:
            with pytest.raises(BadRequestError):
                e.send("Old/going_away")
            assert await e.result(b) == "still here"
            await until(
                lambda: any(r[0] == a and r[5] >= 2 for r in e.invocations()), what="retries"
            )
            assert [r.status for r in e.invocations() if r.id == a] in (
                ["backing-off"],
                ["running"],
                ["ready"],
            )

    async def phase3(a: str) -> None:
        async with engine(old, keep, path=db) as e:
            assert await e.result(a) == "back again"

    a, b = run(phase1())
    run(phase2(a, b))
    run(phase3(a))


def test_a_fresh_invocation_of_a_missing_handler_fails_with_404(db: Path) -> None:
    old = df.Service("Gone")

    @old.handler()
    async def soon_gone(ctx: df.Context) -> str:
        return "ran"

    async def phase1() -> str:
        async with engine(old, path=db) as e:
            return e.send(soon_gone, delay=timedelta(hours=1))

    async def phase2(inv: str) -> None:
        async with engine(path=db, clock=VirtualClock(start_ms=int(time.time() * 1000))) as e:
            with pytest.raises(df.TerminalError) as info:
                await e.result(inv)
            assert info.value.code == 404
            assert info.value.message == "no handler Gone/soon_gone in this engine"

    run(phase2(run(phase1())))


# ---- always_replay ----------------------------------------------------------------------------


def test_always_replay_runs_a_deterministic_handler(db: Path) -> None:
    svc = df.Service("Replay")
    executions: Counter[str] = Counter()
    attempts: list[int] = []
    draws: list[int] = []

    def step(name: str) -> str:
        executions[name] += 1
        return name

    @svc.handler()
    async def det(ctx: df.Context, n: int) -> list[Any]:
        attempts.append(1)
        out: list[Any] = [await ctx.run("one", step, "one")]
        out += await ctx.all_succeeded(*(ctx.run_async(f"p{i}", step, f"p{i}") for i in range(n)))
        await ctx.sleep(timedelta(minutes=5))
        out.append(await ctx.service(echo).request("call"))
        draws.append(ctx.random.randint(0, 10**9))  # seeded per invocation: same on replays
        out.append(draws[-1])
        return out

    @svc.handler()
    async def echo(ctx: df.Context, s: str) -> str:
        return s

    async def body() -> None:
        async with engine(svc, path=db, always_replay=True, clock=VirtualClock(), max_attempts=5) as e:
            result = await e.invoke(det, 3)
        assert result == ["one", "p0", "p1", "p2", "call", draws[0]]
        assert len(set(draws)) == 1
        # Every new entry ended the attempt: many attempts, but each run executed once.
        assert len(attempts) >= 4
        assert set(executions.values()) == {1}

    run(body())


def test_always_replay_catches_non_determinism(db: Path) -> None:
    svc = df.Service("NonDet")
    counter = iter(range(1000))

    @svc.handler()
    async def nondet(ctx: df.Context) -> str:
        # The run's name changes on every execution: the replay does not match the journal.
        await ctx.run(f"step-{next(counter)}", lambda: 1)
        await ctx.run("second", lambda: 2)
        return "unreachable"

    @svc.handler()
    async def fine(ctx: df.Context) -> str:
        await ctx.run("x", lambda: 1)
        await ctx.run("y", lambda: 2)
        return "fine"

    async def body() -> None:
        async with engine(svc, path=db, always_replay=True, max_attempts=3) as e:
            # Retried (this engine does not fail on the first mismatch), then killed: the
            # caller gets the mismatch as its own class, not wrapped in a TerminalError.
            with pytest.raises(df.JournalMismatchError) as info:
                await e.invoke(nondet)
            assert "journal mismatch" in info.value.message
            assert info.value.command_index == 1
            assert await e.invoke(fine) == "fine"

    run(body())


# ---- write failures (full disk simulated with max_db_bytes) --------------------------------------


def test_a_full_disk_is_a_storage_error_and_loses_nothing_acknowledged(db: Path) -> None:
    svc = df.Service("Disk")
    executions: Counter[str] = Counter()
    blob_size = 2 << 20  # far more than the cap below

    def step(name: str) -> str:
        executions[name] += 1
        return name

    def make_blob() -> str:
        executions["blob"] += 1
        return "x" * blob_size

    @svc.handler()
    async def small(ctx: df.Context, i: int) -> int:
        await ctx.run(f"step-{i}", step, f"step-{i}")
        await ctx.sleep(timedelta(milliseconds=10))
        return i * 2

    @svc.handler()
    async def big(ctx: df.Context) -> int:
        await ctx.run("before", step, "before")
        blob = await ctx.run("blob", make_blob)
        return len(blob)

    @svc.handler()
    async def echo(ctx: df.Context, s: str) -> int:
        return len(s)

    async def phase1() -> tuple[str, list[str]]:
        async with engine(svc, path=db, max_db_bytes=256 * 1024) as e:
            assert await e.invoke(small, 1) == 2  # acknowledged before the disk fills up
            big_id = e.send(big)
            await until(lambda: e.last_error is not None, what="a storage error")
            err = e.last_error
            assert isinstance(err, StorageError)
            assert str(db) in str(err) and "the disk is full" in str(err)
            # A submission that cannot be saved is refused, not left hanging.
            with pytest.raises(StorageError, match="was not saved"):
                await e.invoke(echo, "y" * blob_size)
            # Others are submitted while the big one keeps failing.
            others = [e.send(small, i) for i in range(2, 6)]
            await asyncio.sleep(0.3)
            statuses = {r[0]: r[4] for r in e.invocations(limit=100)}
            assert statuses[big_id] != "completed"
            assert executions["before"] == 1
            assert executions["blob"] >= 2, "retried, since its completion was never saved"
            # Attempts the engine gave up on after a failed commit were stopped, not leaked.
            # A task that just finished leaves the set in a done-callback a loop turn later,
            # so only unfinished ones count (a loaded machine can be a few turns behind).
            live = [t for t in e._tasks if not t.done()]
            assert len(live) <= 1 + len(others), live
            return big_id, others

    async def phase2(big_id: str, others: list[str]) -> None:
        # More room: everything completes, and what was acknowledged is still there.
        async with engine(svc, path=db) as e:
            assert await e.result(big_id) == blob_size
            assert [await e.result(i) for i in others] == [4, 6, 8, 10]
            assert e.last_error is None
            journal_names = run_names(e, big_id)
            assert journal_names == ["before", "blob"]
        async with engine(svc, path=db) as e:
            ids = [r[0] for r in e.invocations(limit=100) if r[2] == "small"]
            results = sorted([await e.result(i) for i in ids])
            assert results == [2, 4, 6, 8, 10]

    big_id, others = run(phase1())
    run(phase2(big_id, others))
    # Runs journaled before the disk filled up never ran again. (Runs whose completions
    # shared a failed commit with the blob did: their completion was not saved.)
    assert executions["step-1"] == 1 and executions["before"] == 1
    assert all(executions[f"step-{i}"] >= 1 for i in range(2, 6))
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


def test_a_caller_attached_by_idempotency_key_gets_the_result_after_a_restart(db: Path) -> None:
    """Two handlers call the same callee with one idempotency key: the second is attached
    to the first call's invocation. The engine restarts before the callee finishes; both
    callers still get its result."""
    svc = df.Service("Attach")
    published: list[str] = []

    @svc.handler()
    async def parent(ctx: df.Context, name: str) -> str:
        got = await ctx.service(child).request("x", idempotency_key="same")
        return f"{name}:{got}"

    @svc.handler()
    async def child(ctx: df.Context, s: str) -> str:
        awk_id, fut = ctx.awakeable(str)
        await ctx.run("publish", lambda: published.append(awk_id))
        return await fut

    async def phase1() -> list[str]:
        async with engine(svc, path=db) as e:
            parents = [e.send(parent, "a"), e.send(parent, "b")]
            await until(
                lambda: bool(published)
                and all("CallInvocationIdCompletion" in journal_types(e, p) for p in parents),
                what="both calls and the callee's awakeable",
            )
            assert len([r for r in e.invocations() if r[2] == "child"]) == 1
            return parents

    async def phase2(parents: list[str]) -> None:
        async with engine(svc, path=db) as e:
            e.resolve_awakeable(published[0], "done")
            results = [await asyncio.wait_for(e.result(p), 10) for p in parents]
            assert results == ["a:done", "b:done"]

    parents = run(phase1())
    run(phase2(parents))


def test_flush_confirms_submissions_or_reports_that_they_were_lost(db: Path) -> None:
    svc = df.Service("Flush")

    @svc.handler()
    async def echo(ctx: df.Context, s: str) -> int:
        return len(s)

    @svc.handler()
    async def wait(ctx: df.Context) -> Any:
        awk_id, fut = ctx.awakeable(Any)
        await ctx.run("publish", lambda: awakeables.append(awk_id))
        return await fut

    awakeables: list[str] = []

    async def body() -> None:
        async with engine(svc, path=db, max_db_bytes=256 * 1024) as e:
            await e.flush()  # nothing pending: at once
            inv_id = e.send(echo, "small")
            await e.flush()
            assert invocation_stored(db, inv_id)
            lost = e.send(echo, "x" * (2 << 20))
            with pytest.raises(StorageError, match="the disk is full"):
                await e.flush()
            assert not invocation_stored(db, lost)
            waiting = e.send(wait)
            await until(lambda: bool(awakeables), what="the awakeable")
            e.resolve_awakeable(awakeables[0], "y" * (2 << 20))
            with pytest.raises(StorageError):
                await e.flush()
            e.resolve_awakeable(awakeables[0], "done")  # the lost one can be sent again
            await e.flush()
            assert await e.result(waiting) == "done"
            assert await e.result(inv_id) == 5

    run(body())


@pytest.mark.parametrize("always_replay", [False, True], ids=["live", "always_replay"])
def test_the_examples_run_on_the_local_engine(db: Path, always_replay: bool) -> None:
    from examples import parallel_tasks, select_first, wait_all

    services = [
        parallel_tasks.svc,
        parallel_tasks.analytics,
        select_first.svc,
        select_first.echo_svc,
        wait_all.svc,
        wait_all.worker,
    ]
    overview = {
        "user": {"id": 7, "name": "user-7"},
        "orders": [700, 701, 702],
        "metrics": {"user_id": 7, "orders_last_30_days": 3},
    }

    async def body() -> None:
        async with engine(
            *services, path=db, clock=VirtualClock(), always_replay=always_replay, max_attempts=3
        ) as e:
            for h in (parallel_tasks.overview, parallel_tasks.overview_sync):
                assert await e.invoke(h, 7) == overview
            for h in (select_first.race, select_first.race_sync):
                assert await e.invoke(h, "hi") == "call won with result: hi"
            for h in (wait_all.all_of, wait_all.all_of_sync):
                assert sorted(await e.invoke(h, 4)) == [f"done {i}" for i in range(4)]

    run(body())


# ---- damaged and foreign files -----------------------------------------------------------------


def test_a_corrupt_file_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    data = bytes((i * 7919) % 251 for i in range(16384))
    path.write_bytes(data)

    async def body() -> None:
        e = df.LocalEngine(path=path, durability="os")
        with pytest.raises(StorageError) as info:
            await e.start()
        assert str(path) in str(info.value)
        assert "not a database or is damaged" in str(info.value)
        with pytest.raises(RuntimeError, match="not started"):
            e.send("X/y")

    run(body())
    assert path.read_bytes() == data, "the file was modified"


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    svc = df.Service("Fine")

    @svc.handler()
    async def ok(ctx: df.Context) -> str:
        return "ok"

    async def body() -> None:
        with pytest.raises(StorageError) as info:
            async with df.LocalEngine(svc, path=path, durability="os"):
                pass
        assert str(path) in str(info.value)
        assert "not a durable-futures database" in str(info.value)
        # Another engine on a proper file is unaffected.
        async with df.LocalEngine(svc, path=tmp_path / "good.db", durability="os") as e:
            assert await e.invoke(ok) == "ok"

    run(body())
    assert path.read_bytes() == before


def test_a_missing_directory_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "x.db"

    async def body() -> None:
        with pytest.raises(StorageError, match=str(path)):
            await df.LocalEngine(path=path).start()

    run(body())


# ---- in memory ---------------------------------------------------------------------------------


def test_in_memory_engine(db: Path) -> None:
    svc = df.Service("Mem")

    @svc.handler()
    async def hello(ctx: df.Context, name: str) -> str:
        return f"hello {await ctx.run('greet', lambda: name)}"

    async def body() -> None:
        async with df.LocalEngine(svc) as e:
            inv = e.send(hello, "mem")
            assert await e.result(inv) == "hello mem"
            types = journal_types(e, inv)
            assert types[0] == "InputCommand" and "OutputCommand" in types and "RunCompletion" in types

    run(body())
