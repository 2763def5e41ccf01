"""durable_futures.testing.explore: the completions of concurrently pending runs and timers,
and the starts of new invocations (callees, sends), delivered in every order (few) or in orders drawn from a seed (many), reproducibly; the
``durable(explore=N)`` marker; the virtual clock's manual mode."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

import durable_futures as df
from durable_futures.errors import NotReadyError
from durable_futures.local import VirtualClock
from durable_futures.testing import (
    DEFAULT_EXPLORE_RUNS,
    ExplorationFailure,
    engine_for,
    explore,
    run,
)
from examples.order_bug import checkout, checkout_fixed, shop

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {"reservation": "reservation-o-1", "receipt": "receipt-o-1"}


async def buying(engine: df.LocalEngine) -> None:
    assert await engine.invoke(checkout, "o-1") == EXPECTED


async def buying_fixed(engine: df.LocalEngine) -> None:
    assert await engine.invoke(checkout_fixed, "o-1") == EXPECTED


def _failure(**kwargs: object) -> ExplorationFailure:
    with pytest.raises(ExplorationFailure) as info:
        run(explore(buying, shop, **kwargs))  # type: ignore[arg-type]
    return info.value


# ---- the example's bug ---------------------------------------------------------------------


@pytest.mark.parametrize("always_replay", [False, True])
def test_a_plain_test_of_the_buggy_handler_passes(always_replay: bool) -> None:
    async def scenario() -> None:
        async with engine_for(shop, always_replay=always_replay) as engine:
            await buying(engine)

    run(scenario())


def test_explore_finds_the_bug_with_the_default_runs() -> None:
    failure = _failure()
    assert failure.seed == 0
    assert failure.run < DEFAULT_EXPLORE_RUNS
    assert failure.order == [
        "run charge_card (Shop/checkout)",
        "run reserve_stock (Shop/checkout)",
    ]
    assert isinstance(failure.__cause__, AssertionError)
    message = str(failure)
    assert "seed=0" in message
    assert "1. run charge_card (Shop/checkout)" in message
    assert f"schedule={failure.schedule!r}" in message


def test_the_same_seed_reproduces_the_same_failure() -> None:
    first = _failure(seed=7)
    again = _failure(seed=7)
    assert (again.run, again.order, again.schedule) == (first.run, first.order, first.schedule)


def test_the_schedule_replays_the_failing_run_alone() -> None:
    failure = _failure(seed=3)
    replayed = _failure(schedule=failure.schedule)
    assert replayed.run == 0
    assert replayed.order == failure.order


@pytest.mark.parametrize("seed", range(5))
def test_every_seed_finds_the_bug(seed: int) -> None:
    assert _failure(seed=seed).run <= 1  # two orders: the second run at the latest


def test_a_correct_handler_passes_every_order() -> None:
    result = run(explore(buying_fixed, shop))
    assert result.exhaustive
    assert result.runs == 2
    assert sorted(result.orders) == [
        ["run charge_card (Shop/checkout_fixed)", "run reserve_stock (Shop/checkout_fixed)"],
        ["run reserve_stock (Shop/checkout_fixed)", "run charge_card (Shop/checkout_fixed)"],
    ]


# ---- what is explored ----------------------------------------------------------------------

fan = df.Service("Fan")


def step_a() -> str:
    return "a"


def step_b() -> str:
    return "b"


async def step_c() -> str:
    return "c"


@fan.handler()
async def fan_out(ctx: df.Context) -> str:
    futures = [
        ctx.run_async("a", step_a),  # plain functions run on threads
        ctx.run_async("b", step_b),
        ctx.run_async("c", step_c),
    ]
    seen = ""
    async for f in ctx.select(*futures):
        seen += await f
    return seen


@fan.handler()
async def deadline(ctx: df.Context) -> str:
    timer = ctx.after(timedelta(seconds=10))
    work = ctx.run_async("work", step_a)
    return "timer" if await ctx.select(timer, work).select() is timer else "work"


@fan.handler()
async def remote(ctx: df.Context) -> str:
    return await ctx.run("remote-step", step_b)


@fan.handler()
async def call_and_run(ctx: df.Context) -> str:
    call = ctx.service(remote).request_future(None)
    local = ctx.run_async("local", step_c)
    return "call" if await ctx.select(call, local).select() is call else "run"


def _outcomes(handler: object, runs: int = DEFAULT_EXPLORE_RUNS) -> tuple[list[object], object]:
    outcomes: list[object] = []

    async def test(engine: df.LocalEngine) -> None:
        outcomes.append(await engine.invoke(handler))

    return outcomes, run(explore(test, fan, runs=runs))


def test_three_runs_complete_in_all_six_orders() -> None:
    outcomes, result = _outcomes(fan_out)
    assert sorted(outcomes) == sorted(["abc", "acb", "bac", "bca", "cab", "cba"])
    assert result.exhaustive and result.runs == 6  # type: ignore[attr-defined]


def test_more_orders_than_runs_are_sampled_without_repeating() -> None:
    outcomes, result = _outcomes(fan_out, runs=4)
    assert len(set(outcomes)) == 4
    assert not result.exhaustive  # type: ignore[attr-defined]


def test_a_timer_may_fire_before_a_run_completes() -> None:
    async def plain() -> str:
        async with engine_for(fan, always_replay=True) as engine:
            return await engine.invoke(deadline)  # type: ignore[no-any-return]

    assert run(plain()) == "work"  # virtual time stands still while the run executes
    outcomes, result = _outcomes(deadline)
    assert sorted(outcomes) == ["timer", "work"]  # type: ignore[type-var]
    assert result.exhaustive  # type: ignore[attr-defined]


def test_a_call_may_complete_before_or_after_a_run() -> None:
    outcomes, result = _outcomes(call_and_run)
    assert set(outcomes) == {"call", "run"}
    assert result.exhaustive  # type: ignore[attr-defined]
    # The callee starts before or after the run completes; once started, its own run and
    # the caller's complete in either order.
    assert sorted(result.orders) == [  # type: ignore[attr-defined]
        ["attempt Fan/remote", "run step_b (Fan/remote)", "run step_c (Fan/call_and_run)"],
        ["attempt Fan/remote", "run step_c (Fan/call_and_run)"],
        ["run step_c (Fan/call_and_run)"],
    ]


# ---- calls, promises: the start of an attempt is a choice too ------------------------------

race = df.Service("Race")


@race.handler()
async def pong(ctx: df.Context) -> str:
    return "pong"  # no runs, no timers: it completes as soon as it starts


async def local_step() -> str:
    return "local"


@race.handler()
async def call_or_run(ctx: df.Context) -> dict[str, str]:
    call = ctx.service(pong).request_future(None)
    local = ctx.run_async("local", local_step)
    done = []
    async for future in ctx.select(call, local):
        done.append(await future)
    first, second = done  # assumes the run completed first
    return {"local": first, "call": second}


async def racing(engine: df.LocalEngine) -> None:
    assert await engine.invoke(call_or_run) == {"local": "local", "call": "pong"}


@pytest.mark.parametrize("always_replay", [False, True])
def test_a_plain_test_of_a_call_racing_a_run_passes(always_replay: bool) -> None:
    async def scenario() -> None:
        async with engine_for(race, always_replay=always_replay) as engine:
            await racing(engine)

    run(scenario())


def _race_failure(**kwargs: object) -> ExplorationFailure:
    with pytest.raises(ExplorationFailure) as info:
        run(explore(racing, race, **kwargs))  # type: ignore[arg-type]
    return info.value


def test_explore_starts_a_callee_without_runs_after_a_run_or_before() -> None:
    failure = _race_failure()
    assert failure.run < DEFAULT_EXPLORE_RUNS
    assert failure.order == ["attempt Race/pong", "run local_step (Race/call_or_run)"]
    assert "1. attempt Race/pong" in str(failure)
    again = _race_failure()
    assert (again.run, again.order, again.schedule) == (failure.run, failure.order, failure.schedule)
    replayed = _race_failure(schedule=failure.schedule)
    assert (replayed.run, replayed.order) == (0, failure.order)


review = df.Workflow("Review")


async def check() -> str:
    return "checked"


@review.main()
async def submit(ctx: df.WorkflowContext, key: str) -> list[str]:
    verdict = ctx.promise("verdict", str).value()
    if key.startswith("self-"):
        ctx.workflow(approve, key).send("approved")  # the shared handler resolves it
    checked = ctx.run_async("check", check)
    done = []
    async for future in ctx.select(verdict, checked):
        done.append(await future)
    return done


@review.handler()
async def approve(ctx: df.WorkflowSharedContext, verdict: str) -> str:
    await ctx.promise("verdict", str).resolve(verdict)
    return "ok"


def test_a_promise_resolved_by_a_shared_handler_the_workflow_sends() -> None:
    outcomes: list[list[str]] = []

    async def test(engine: df.LocalEngine) -> None:
        outcomes.append(await engine.invoke(submit, "self-1", key="self-1"))

    result = run(explore(test, review))
    assert result.exhaustive
    assert sorted(outcomes) == [["approved", "checked"], ["checked", "approved"]]
    assert sorted(result.orders) == [
        ["attempt Review/approve", "run check (Review/self-1/submit)"],
        ["run check (Review/self-1/submit)"],
    ]
    again = run(explore(test, review))
    assert again.orders == result.orders  # the same seed, the same orders


def test_a_promise_resolved_by_a_shared_handler_the_test_sends() -> None:
    outcomes: list[list[str]] = []

    async def test(engine: df.LocalEngine) -> None:
        run_id = engine.send(submit, "w-1", key="w-1")
        assert await engine.invoke(approve, "approved", key="w-1") == "ok"
        outcomes.append(await engine.result(run_id))

    result = run(explore(test, review))
    assert result.exhaustive
    assert {tuple(o) for o in outcomes} == {("approved", "checked"), ("checked", "approved")}
    assert all(o[0].startswith("attempt Review/") for o in result.orders)


def test_explore_rejects_no_runs() -> None:
    with pytest.raises(ValueError, match="runs"):
        run(explore(buying, shop, runs=0))


# ---- the marker ----------------------------------------------------------------------------


def test_the_marker_explores_a_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        addopts = --strict-markers
        filterwarnings = error
        """
    )
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n")
    pytester.makepyfile(
        """
        import pytest

        from examples.order_bug import checkout, checkout_fixed, shop

        EXPECTED = {"reservation": "reservation-o-1", "receipt": "receipt-o-1"}


        @pytest.mark.durable(explore=64, services=[shop])
        async def test_checkout(durable_engine):
            assert await durable_engine.invoke(checkout, "o-1") == EXPECTED


        @pytest.mark.durable(explore=64, services=[shop], seed=5)
        async def test_checkout_fixed(durable_engine, tmp_path):
            assert tmp_path.exists()  # other fixtures work as usual
            assert await durable_engine.invoke(checkout_fixed, "o-1") == EXPECTED


        def test_durable_engine_needs_the_marker(durable_engine):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ExplorationFailure: run * of explore(seed=0) failed*",
            "*1. run charge_card (Shop/checkout)*",
        ]
    )


# ---- the virtual clock ---------------------------------------------------------------------

clocked = df.Service("Clocked")


@clocked.handler()
async def nap(ctx: df.Context) -> str:
    await ctx.sleep(timedelta(seconds=10))
    return "rested"


@clocked.handler()
async def wait_or_give_up(ctx: df.Context) -> str:
    awk_id, fut = ctx.awakeable(str)
    await ctx.run("publish", _publish, awk_id)
    timeout = ctx.after(timedelta(hours=1))
    if await ctx.select(fut, timeout).select() is timeout:
        return "gave up"
    return await fut


_published: list[str] = []


def _publish(awk_id: str) -> None:
    _published.append(awk_id)


async def _until(condition: object, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_the_automatic_clock_skips_to_a_deadline() -> None:
    async def scenario() -> None:
        async with engine_for(clocked) as engine:
            assert await engine.invoke(nap) == "rested"
            # Nothing else moves: the deadline fires before the test could resolve.
            assert await engine.invoke(wait_or_give_up) == "gave up"

    run(scenario())


def test_the_manual_clock_moves_only_when_advanced() -> None:
    clock = VirtualClock(manual=True)
    start = clock()

    async def scenario() -> None:
        async with engine_for(clocked, virtual_clock=clock) as engine:
            inv = engine.send(nap)
            await asyncio.sleep(0.2)
            with pytest.raises(NotReadyError):
                await engine.output(inv)
            assert clock() == start
            clock.advance(timedelta(seconds=9))
            await asyncio.sleep(0.2)
            with pytest.raises(NotReadyError):
                await engine.output(inv)
            clock.advance(timedelta(seconds=1))
            assert await engine.result(inv) == "rested"
            assert clock() == start + 10_000

    run(scenario())


@pytest.mark.parametrize("always_replay", [False, True])
def test_with_the_manual_clock_an_awakeable_beats_its_deadline(always_replay: bool) -> None:
    _published.clear()

    async def scenario() -> None:
        clock = VirtualClock(manual=True)
        async with engine_for(clocked, virtual_clock=clock, always_replay=always_replay) as engine:
            inv = engine.send(wait_or_give_up)
            await _until(lambda: _published)
            await asyncio.sleep(0.1)
            engine.resolve_awakeable(_published[-1], "resolved")
            assert await engine.result(inv) == "resolved"

            _published.clear()
            inv = engine.send(wait_or_give_up)
            await _until(lambda: _published)
            clock.advance(timedelta(hours=1))
            assert await engine.result(inv) == "gave up"

    run(scenario())
