"""How run closures are scheduled on the event loop, on the embedded engine.

An async closure whose future the handler awaits before the closure's task has started
(``await ctx.run_async(...)``) runs inline in the handler's task, and the engine commits its
completion right away when nothing else could join the batch, so a sequential step needs no
loop turn. These tests pin what that must not change: each run sees its own copy of the
context variables, cancellation and timeouts inside a run behave as in a task of its own,
runs not awaited first still start before the handler yields, sync handlers are unaffected,
and a long sequential handler still lets the loop turn.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

import durable_futures as df

T = TypeVar("T")

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def engine(*services: df.Service, path: Path) -> df.LocalEngine:
    return df.LocalEngine(
        *services,
        path=path,
        durability="os",
        retry_policy=df.RetryPolicy(initial_interval=timedelta(milliseconds=5)),
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "engine.db"


def test_an_awaited_run_runs_in_the_handlers_task_with_its_own_context(db: Path) -> None:
    svc = df.Service("Inline")
    seen: dict[str, Any] = {}

    async def closure() -> str:
        seen["closure_task"] = asyncio.current_task()
        seen["closure_saw"] = VAR.get()
        VAR.set("closure")  # must not leak into the handler
        await asyncio.sleep(0)
        return VAR.get()

    @svc.handler()
    async def handler(ctx: df.Context) -> list[str]:
        VAR.set("handler")
        seen["handler_task"] = asyncio.current_task()
        inside = await ctx.run_async("c", closure)
        return [inside, VAR.get()]

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(handler) == ["closure", "handler"]
        assert seen["closure_saw"] == "handler"
        assert seen["closure_task"] is seen["handler_task"]

    run(body())


async def _sleep_with_timeout(seconds: float, limit: float) -> None:
    """``asyncio.timeout`` (3.11+) cancels the current task, which for an inline run is the
    handler's: the case to test. Python 3.10 has only ``wait_for``."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(limit):
            await asyncio.sleep(seconds)
    else:
        await asyncio.wait_for(asyncio.sleep(seconds), limit)


def test_a_timeout_inside_an_inline_run_ends_only_that_run(db: Path) -> None:
    svc = df.Service("Timeout")

    async def slow() -> str:
        try:
            await _sleep_with_timeout(5, 0.02)
        except (TimeoutError, asyncio.TimeoutError):
            return "timed out"
        return "finished"

    async def quick() -> str:
        await asyncio.sleep(0.01)
        return "after"

    @svc.handler()
    async def handler(ctx: df.Context) -> list[str]:
        first = await ctx.run_async("slow", slow)
        # The handler's task was not left cancelled: it goes on awaiting.
        second = await ctx.run_async("quick", quick)
        await ctx.sleep(timedelta(milliseconds=5))
        return [first, second]

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(handler) == ["timed out", "after"]

    run(body())


def test_a_failing_inline_run_is_retried_and_a_terminal_one_is_journaled(db: Path) -> None:
    svc = df.Service("Fails")
    calls = {"flaky": 0}

    async def flaky() -> int:
        calls["flaky"] += 1
        await asyncio.sleep(0)
        if calls["flaky"] < 3:
            raise ValueError("not yet")
        return calls["flaky"]

    async def terminal() -> int:
        raise df.TerminalError("no", 422)

    @svc.handler()
    async def handler(ctx: df.Context) -> list[Any]:
        out: list[Any] = [await ctx.run_async("flaky", flaky)]
        try:
            await ctx.run_async("terminal", terminal)
        except df.TerminalError as e:
            out.append([e.code, e.message])
        return out

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(handler) == [3, [422, "no"]]
        assert calls["flaky"] == 3

    run(body())


def test_runs_not_awaited_first_start_before_the_handler_yields(db: Path) -> None:
    svc = df.Service("Eager")
    started: list[str] = []

    def closure(name: str) -> Any:
        async def go() -> str:
            started.append(name)
            await asyncio.sleep(0.005)
            return name

        return go

    @svc.handler()
    async def handler(ctx: df.Context) -> list[Any]:
        a = ctx.run_async("a", closure("a"))
        b = ctx.run_async("b", closure("b"))
        await asyncio.sleep(0)  # not a durable await: the loop turns once
        before = list(started)
        return [before, await b, await a]

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(handler) == [["a", "b"], "b", "a"]

    run(body())


def test_async_closures_from_a_sync_handler(db: Path) -> None:
    svc = df.Service("SyncHandler")

    async def double(i: int) -> int:
        await asyncio.sleep(0)
        return 2 * i

    @svc.handler()
    def handler(ctx: df.Context, n: int) -> list[int]:
        futures = [ctx.run_async(f"d{i}", double, i) for i in range(n)]
        return [f.result() for f in futures] + [ctx.run_async("last", double, n).result()]

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(handler, 5) == [0, 2, 4, 6, 8, 10]

    run(body())


def test_a_long_sequential_handler_still_lets_the_loop_turn(db: Path) -> None:
    """Steps that never yield would keep the loop from everything else (other requests,
    timers); the engine stops committing inline after a short budget, so the loop turns."""
    svc = df.Service("Fair")
    turns = [0]
    marks: list[int] = []

    async def step(i: int) -> int:
        if i in (0, 399):
            marks.append(turns[0])
        return i

    @svc.handler()
    async def handler(ctx: df.Context) -> int:
        total = 0
        for i in range(400):
            total += await ctx.run_async(f"s{i}", step, i)
        return total

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0)
            turns[0] += 1

    async def body() -> None:
        async with engine(svc, path=db) as e:
            t = asyncio.create_task(ticker())
            try:
                assert await e.invoke(handler) == sum(range(400))
            finally:
                t.cancel()
        # 400 steps, each with a SQLite commit, take longer than the inline budget.
        first, last = marks
        assert last > first, marks

    run(body())


# ---- plain functions: on threads, without holding up the loop --------------------------------


def test_a_plain_function_runs_on_a_thread_with_its_own_context(db: Path) -> None:
    import threading

    svc = df.Service("Plain")
    seen: list[tuple[str, bool]] = []

    def step(i: int) -> int:
        seen.append((VAR.get(), threading.current_thread() is threading.main_thread()))
        VAR.set(f"changed by {i}")  # stays in the run's copy
        return i

    @svc.handler()
    async def handler(ctx: df.Context, n: int) -> list[str]:
        out = []
        for i in range(n):
            VAR.set(f"handler {i}")
            await ctx.run_async(f"s{i}", step, i)
            out.append(VAR.get())
        return out

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(handler, 3) == ["handler 0", "handler 1", "handler 2"]
        assert seen == [("handler 0", False), ("handler 1", False), ("handler 2", False)]

    run(body())


def test_a_blocked_plain_function_does_not_delay_another_invocation(db: Path) -> None:
    """One invocation's closure blocks its thread until another invocation has gone
    through 20 sequential steps (each one durable): if the blocked closure held up the
    loop or the commits, the second invocation could never finish and this would time
    out."""
    import threading

    svc = df.Service("Blocking")
    release = threading.Event()

    def wait_for_release() -> str:
        if not release.wait(timeout=20):
            raise TimeoutError("never released")
        return "released"

    def step(i: int) -> int:
        return i

    @svc.handler()
    async def blocked(ctx: df.Context) -> str:
        return await ctx.run_async("wait", wait_for_release)

    @svc.handler()
    async def busy(ctx: df.Context, n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx.run_async(f"s{i}", step, i)
        return total

    async def body() -> None:
        async with engine(svc, path=db) as e:
            first = e.send(blocked)
            assert await e.invoke(busy, 20) == sum(range(20))
            assert not release.is_set()
            release.set()
            assert await e.result(first) == "released"

    run(body())


def test_invocations_start_in_the_order_they_arrived(db: Path) -> None:
    """With a limit of 2 attempts in flight, 8 invocations submitted at once start in
    submission order as slots free up, and all complete."""
    svc = df.Service("Order")
    started: list[int] = []

    def step(i: int) -> int:
        return i

    @svc.handler()
    async def handler(ctx: df.Context, i: int) -> int:
        if not ctx.is_replaying():
            started.append(i)
        a = await ctx.run_async("a", step, i)
        return await ctx.run_async("b", step, a)

    async def body() -> None:
        async with df.LocalEngine(svc, path=db, durability="os", max_attempts_in_flight=2) as e:
            ids = [e.send(handler, i) for i in range(8)]
            assert [await e.result(i) for i in ids] == list(range(8))
        assert started == list(range(8))

    run(body())


def test_at_the_limit_a_waiting_attempt_makes_room_for_its_callee(db: Path) -> None:
    """With one attempt in flight, a caller waiting for its callee must give up its slot
    (it suspends) so that the callee can run; then it resumes with the answer."""
    svc = df.Service("Room")

    @svc.handler()
    async def callee(ctx: df.Context, s: str) -> str:
        return s.upper()

    @svc.handler()
    async def caller(ctx: df.Context, s: str) -> str:
        return await ctx.service(callee).request(s)

    async def body() -> None:
        async with df.LocalEngine(svc, path=db, durability="os", max_attempts_in_flight=1) as e:
            assert await e.invoke(caller, "up") == "UP"

    run(body())


def test_a_bad_limit_is_refused(db: Path) -> None:
    with pytest.raises(ValueError, match="max_attempts_in_flight"):
        df.LocalEngine(path=db, max_attempts_in_flight=0)


def test_cancelling_an_invocation_does_not_wait_for_its_plain_function(db: Path) -> None:
    """A thread cannot be interrupted: the invocation ends as cancelled at once, and what
    the closure returns later is dropped."""
    import threading

    svc = df.Service("CancelPlain")
    entered, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def slow() -> str:
        entered.set()
        release.wait(timeout=20)
        finished.append("done")
        return "late"

    @svc.handler()
    async def handler(ctx: df.Context) -> str:
        return await ctx.run_async("slow", slow)

    async def body() -> None:
        async with engine(svc, path=db) as e:
            inv = e.send(handler)
            while not entered.is_set():
                await asyncio.sleep(0.001)
            e.cancel(inv)
            with pytest.raises(df.TerminalError) as err:
                await e.result(inv)
            assert err.value.code == 409
            assert finished == []
            release.set()
            for _ in range(200):
                if finished:
                    break
                await asyncio.sleep(0.005)
            assert finished == ["done"]
            journal = b"".join(e.journal(inv))
            assert b"late" not in journal

    run(body())


def test_a_plain_function_returning_an_awaitable_is_awaited(db: Path) -> None:
    svc = df.Service("ReturnsAwaitable")

    async def later(i: int) -> int:
        await asyncio.sleep(0)
        return i * 10

    def make(i: int) -> Any:
        return later(i)

    @svc.handler()
    async def handler(ctx: df.Context, i: int) -> int:
        return int(await ctx.run_async("make", make, i))

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(handler, 4) == 40

    run(body())


def test_making_room_never_closes_an_attempt_before_its_request_arrived(
    db: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On a loop slow to feed new attempts their request, the engine is idle (nothing to
    write, no run executing) while invocations wait for a slot: making room must suspend
    attempts that wait for news, not close the input of one whose StartMessage has not
    arrived (that fails it with 571, and a burst on a loaded machine then churns)."""
    import logging

    from durable_futures.local import engine as local_engine

    monkeypatch.setattr(local_engine, "_MAKE_ROOM_IDLE", 0.001)
    run_attempt = local_engine.LocalEngine._run_attempt

    async def slow_to_start(self: Any, *args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0.02)
        await run_attempt(self, *args, **kwargs)

    monkeypatch.setattr(local_engine.LocalEngine, "_run_attempt", slow_to_start)
    svc = df.Service("SlowToStart")

    @svc.handler()
    async def one(ctx: df.Context, i: int) -> int:
        return i

    async def body() -> None:
        async with df.LocalEngine(svc, path=db, durability="os", max_attempts_in_flight=2) as e:
            assert await asyncio.gather(*(e.invoke(one, i) for i in range(20))) == list(range(20))

    with caplog.at_level(logging.WARNING, logger="durable_futures"):
        run(body())
    assert [r.getMessage() for r in caplog.records if "failed" in r.getMessage()] == []


# ---- waiting for a plain function right in the handler ------------------------------------------


def test_bells_keep_a_ring_time_out_and_ring_others_first() -> None:
    """The hand-off primitive under ``wait_here`` and the loop's wait for threads."""
    import threading

    from durable_futures._core import Bell

    bell = Bell()
    bell.ring()
    assert bell.wait(0.0) is True  # rung before the wait: kept
    assert bell.wait(0.01, spin=0.001) is False  # nobody rings: the timeout ends it
    others = [Bell(), Bell()]
    assert bell.wait(0.0, ring=others) is False
    assert all(o.wait(0.0) for o in others)  # rung by the wait above
    Bell.ring_all(others)
    assert all(o.wait(0.0) for o in others)
    with pytest.raises(ValueError):
        bell.wait(-1.0)

    ponged = Bell()

    def pong() -> None:
        ponged.wait(5.0, ring=bell)  # rings ``bell`` once the GIL is released

    t = threading.Thread(target=pong)
    t.start()
    assert bell.wait(5.0, spin=0.0001) is True
    ponged.ring()
    t.join(5)
    assert not t.is_alive()


def test_plain_functions_slower_and_faster_than_the_handlers_wait(db: Path) -> None:
    """A handler awaiting the only plain function on a thread waits for it right there,
    but only briefly (a couple of milliseconds): slower closures finish through the loop.
    Alternating both, with the thread's late ring of a bell the handler stopped waiting on,
    every result still arrives, in order, and each closure runs once."""
    import time

    svc = df.Service("WaitHere")
    calls: list[int] = []

    def step(i: int) -> int:
        calls.append(i)
        if i % 3 == 1:
            time.sleep(0.004)  # longer than the handler waits in place
        elif i % 3 == 2:
            # About as long as the handler waits: the thread may finish as it gives up.
            time.sleep(0.002)
        return i * 10

    @svc.handler()
    async def handler(ctx: df.Context, n: int) -> list[int]:
        return [await ctx.run_async(f"s{i}", step, i) for i in range(n)]

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(handler, 30) == [i * 10 for i in range(30)]
        assert calls == list(range(30))

    run(body())


def test_a_handler_waiting_for_its_plain_function_lets_a_due_timer_fire(db: Path) -> None:
    """While one invocation's handler waits for its plain function (blocked on an event
    that only the other invocation's timer leads to), the other invocation's durable
    timer still fires and its handler finishes: the wait in place never outlasts the
    loop's next timer, nor a couple of milliseconds."""
    import threading

    svc = df.Service("WaitTimer")
    after_timer = threading.Event()

    def blocked() -> str:
        if not after_timer.wait(timeout=20):
            raise TimeoutError("the timer never fired")
        return "unblocked"

    @svc.handler()
    async def waits(ctx: df.Context) -> str:
        return await ctx.run_async("blocked", blocked)

    @svc.handler()
    async def sleeps(ctx: df.Context) -> str:
        await ctx.sleep(timedelta(milliseconds=30))
        await ctx.run_async("mark", after_timer.set)
        return "slept"

    async def body() -> None:
        async with engine(svc, path=db) as e:
            sleeper = e.send(sleeps)
            first = e.send(waits)
            assert await e.result(sleeper) == "slept"
            assert await e.result(first) == "unblocked"

    run(body())


def test_more_plain_functions_than_threads_all_run(db: Path) -> None:
    """A fan-out larger than the pool (32 threads): closures queue for a thread and every
    one runs once; at some moment many run at the same time."""
    import threading
    import time

    from durable_futures._runs import _WORKERS

    svc = df.Service("Pool")
    lock = threading.Lock()
    running = [0, 0]  # now, most at once
    ran: list[int] = []

    def step(i: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
            ran.append(i)
        return i

    @svc.handler()
    async def fan_out(ctx: df.Context, n: int) -> int:
        futures = [ctx.run_async(f"s{i}", step, i) for i in range(n)]
        return sum([await f for f in futures])

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(fan_out, 200) == sum(range(200))
        assert sorted(ran) == list(range(200))
        assert running[1] > 1
        assert _WORKERS.wait_idle(10)

    run(body())


@pytest.mark.parametrize("closure", ["plain", "coroutine"])
def test_a_finished_attempt_is_freed_without_the_cycle_collector(db: Path, closure: str) -> None:
    """An attempt and its runs do not keep each other alive once it is over: a burst of
    invocations leaves no garbage for the cycle collector, whose full passes over every
    live object are what such garbage makes more frequent."""
    import gc
    import weakref

    svc = df.Service("Freed")
    attempts: list[weakref.ref[Any]] = []

    def step(i: int) -> int:
        return i

    async def astep(i: int) -> int:
        return i

    @svc.handler()
    async def steps(ctx: df.Context, i: int) -> int:
        attempts.append(weakref.ref(ctx._attempt))  # type: ignore[attr-defined]
        fn = step if closure == "plain" else astep
        a = await ctx.run_async("a", fn, i)
        return await ctx.run_async("b", fn, a + 1)

    async def body() -> None:
        async with engine(svc, path=db) as e:
            gc.collect()
            gc.disable()
            try:
                assert await asyncio.gather(*(e.invoke(steps, i) for i in range(20))) == [
                    i + 1 for i in range(20)
                ]
                await asyncio.sleep(0.01)  # the attempts' last callbacks
                alive = [r for r in attempts if r() is not None]
            finally:
                gc.enable()
        assert len(attempts) == 20
        assert alive == []

    run(body())


def test_plain_functions_that_block_all_get_a_thread(db: Path) -> None:
    """Closures queued behind busy threads are not held up by closures that block: as long
    as the pool has room, each gets a thread. Here 32 closures (the pool's size) wait for
    each other at a barrier: they only get past it if all 32 run at the same time."""
    import threading

    from durable_futures._runs import _WORKERS

    svc = df.Service("Blocking")
    barrier = threading.Barrier(32)

    def meet(i: int) -> int:
        barrier.wait(timeout=20)
        return i

    @svc.handler()
    async def fan_out(ctx: df.Context, n: int) -> int:
        futures = [ctx.run_async(f"m{i}", meet, i) for i in range(n)]
        return sum([await f for f in futures])

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(fan_out, 64) == sum(range(64))
        assert _WORKERS.wait_idle(10)

    run(body(), timeout=60)


def test_a_burst_of_quick_plain_functions_runs_on_few_threads(db: Path) -> None:
    """Quick closures submitted together queue for the threads already busy instead of
    each waking a thread of its own (which would then fight the others for the GIL)."""
    import threading

    from durable_futures._runs import _WORKERS

    svc = df.Service("Quick")
    threads: set[int] = set()

    def quick(i: int) -> int:
        threads.add(threading.get_ident())
        return i

    @svc.handler()
    async def fan_out(ctx: df.Context, n: int) -> int:
        futures = [ctx.run_async(f"q{i}", quick, i) for i in range(n)]
        return sum([await f for f in futures])

    async def body() -> None:
        async with engine(svc, path=db) as e:
            assert await e.invoke(fan_out, 500) == sum(range(500))
        assert _WORKERS.wait_idle(10)

    run(body())
    # Two threads run the queue; a closure that happens to be preempted for a while counts
    # as stuck and brings in another, hence the slack.
    assert len(threads) <= 8, len(threads)
