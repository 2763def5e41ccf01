"""Retry backoffs and durable timers, checked to the millisecond on a virtual clock.

A :class:`~durable_futures.local.VirtualClock` stands still while anything runs and jumps
straight to the next due timer or retry when everything waits, so the time at which an
attempt starts, or a handler wakes up, is exactly the delay the engine chose: these tests
assert equality, never wall-clock durations.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import durable_futures as df
from durable_futures.local import VirtualClock
from durable_futures.testing import run

from .frames import frames

START_MS = 1_700_000_000_000
MINUTE = 60_000
HOUR = 60 * MINUTE

#: initial 100 ms, ×3 per failure, at most 1 s: the delays between six attempts.
BACKOFF = {
    "initial": timedelta(milliseconds=100),
    "factor": 3.0,
    "max": timedelta(seconds=1),
}
EXPECTED_DELAYS = [100, 300, 900, 1000, 1000]


def gaps(times: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_failed_attempts_are_retried_after_exactly_the_backoff(tmp_path: Path) -> None:
    svc = df.Service("Backoff")
    clock = VirtualClock(START_MS)
    attempts: list[int] = []

    @svc.handler()
    async def flaky(ctx: df.Context) -> int:
        attempts.append(clock.now_ms)
        if len(attempts) < 6:
            raise RuntimeError(f"transient failure {len(attempts)}")
        return len(attempts)

    async def body() -> int:
        async with df.LocalEngine(
            svc,
            path=tmp_path / "engine.db",
            durability="os",
            clock=clock,
            retry_policy=df.RetryPolicy(
                initial_interval=BACKOFF["initial"],
                factor=BACKOFF["factor"],
                max_interval=BACKOFF["max"],
            ),
        ) as e:
            return await e.invoke(flaky)  # type: ignore[no-any-return]

    assert run(body()) == 6
    assert attempts[0] == START_MS
    assert gaps(attempts) == EXPECTED_DELAYS


def test_a_failing_run_is_retried_after_exactly_its_run_options_backoff(tmp_path: Path) -> None:
    svc = df.Service("RunBackoff")
    clock = VirtualClock(START_MS)
    tries: list[int] = []

    def flaky_step() -> str:
        tries.append(clock.now_ms)
        if len(tries) < 6:
            raise ConnectionError(f"try {len(tries)} failed")
        return "reached"

    options = df.RunOptions(
        max_attempts=10,
        initial_interval=BACKOFF["initial"],
        factor=BACKOFF["factor"],
        max_interval=BACKOFF["max"],
    )

    @svc.handler()
    async def step(ctx: df.Context) -> str:
        return await ctx.run_async_with(options, "flaky", flaky_step)

    async def body() -> str:
        # The engine's own backoff for failed attempts is far off the run's, so a retry at
        # the wrong policy shows.
        async with df.LocalEngine(
            svc,
            path=tmp_path / "engine.db",
            durability="os",
            clock=clock,
            retry_policy=df.RetryPolicy(
                initial_interval=timedelta(seconds=7), max_interval=timedelta(seconds=7)
            ),
        ) as e:
            return await e.invoke(step)  # type: ignore[no-any-return]

    assert run(body()) == "reached"
    assert gaps(tries) == EXPECTED_DELAYS


# ---- timers across a restart -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("down_for", "wakes_at"),
    [
        # Restarted 20 minutes into an hour-long sleep: it wakes at its original deadline,
        # not an hour after the restart.
        pytest.param(20 * MINUTE, HOUR, id="restarted_before_the_deadline"),
        # Down for two hours: the deadline passed meanwhile, so it wakes as soon as the
        # engine is back, without the clock moving.
        pytest.param(2 * HOUR, 2 * HOUR, id="deadline_passed_while_down"),
    ],
)
def test_a_timer_keeps_its_deadline_across_a_restart(
    tmp_path: Path, down_for: int, wakes_at: int
) -> None:
    svc = df.Service("Nap")
    db = tmp_path / "engine.db"
    # The clock the handler's run reads: the first engine's, then the second one's.
    current: list[Callable[[], int]] = [lambda: START_MS]

    def now() -> int:
        return current[0]()

    @svc.handler()
    async def nap(ctx: df.Context) -> int:
        await ctx.sleep(timedelta(hours=1))
        return await ctx.run("woke", now)

    async def before_restart() -> str:
        # A clock that does not move: the sleep is still pending when the engine closes.
        async with df.LocalEngine(svc, path=db, durability="os", clock=current[0]) as e:
            inv_id = e.send(nap)
            deadline = time.monotonic() + 10
            while not any(frames(f)[0].type_name == "SleepCommand" for f in e.journal(inv_id)):
                assert time.monotonic() < deadline, "the handler never reached its sleep"
                await asyncio.sleep(0.005)
            return inv_id

    async def after_restart(inv_id: str, clock: VirtualClock) -> Any:
        async with df.LocalEngine(svc, path=db, durability="os", clock=clock) as e:
            return await e.result(inv_id)

    inv_id = run(before_restart())
    clock = VirtualClock(START_MS + down_for)
    current[0] = clock
    assert run(after_restart(inv_id, clock), timeout=10) == START_MS + wakes_at
    assert clock.now_ms == START_MS + wakes_at


# ---- moving the clock by hand ------------------------------------------------------------------


def test_advancing_the_clock_moves_time_by_exactly_the_duration(tmp_path: Path) -> None:
    """A test simulating time passing between invocations: what runs next reads the advanced
    time, and its timers count from there."""
    svc = df.Service("Later")
    clock = VirtualClock(START_MS)
    times: list[int] = []

    @svc.handler()
    async def nap(ctx: df.Context) -> None:
        times.append(clock.now_ms)
        await ctx.sleep(timedelta(hours=1))
        times.append(clock.now_ms)

    clock.advance(timedelta(minutes=90, milliseconds=250))
    assert clock() == START_MS + 90 * MINUTE + 250
    clock.advance(timedelta(seconds=2))
    assert clock() == START_MS + 90 * MINUTE + 2250

    async def body() -> None:
        async with df.LocalEngine(
            svc, path=tmp_path / "engine.db", durability="os", clock=clock
        ) as e:
            await e.invoke(nap)

    run(body())
    started = START_MS + 90 * MINUTE + 2250
    assert times == [started, started + HOUR]
