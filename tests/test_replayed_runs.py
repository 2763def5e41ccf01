"""A run whose result is in the journal is not executed again, not even late.

A replayed run wrongly started anyway would not show at once: a plain function
goes to a thread pool and a coroutine to a task, which begin only once the handler yields
to the event loop, and the invocation may well have finished by then. So these tests count
executions only after the invocation finished, the engine was closed, every other task of
its event loop ended and every closure already handed to the run thread pool returned.

The handler runs a step, sleeps, then runs another step. The first step is replayed after a
restart (a second engine on the same file), or, with ``always_replay``, on every attempt
after the first. Replayed closures would do their side effect after a short pause, as real
ones do.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

import durable_futures as df
from durable_futures._runs import _WORKERS
from durable_futures.local import VirtualClock

from .frames import frames

T = TypeVar("T")


def join_run_threads(timeout: float = 5.0) -> None:
    """Returns once every closure submitted to the run threads so far has returned."""
    if not _WORKERS.wait_idle(timeout):
        raise AssertionError(f"run closures still busy after {timeout} s")


def run_and_drain(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    """Runs ``coro`` in a fresh event loop, then lets every other task of that loop finish
    (a closure started as a task of its own outlives the engine that started it)."""

    async def main() -> T:
        result = await asyncio.wait_for(coro, timeout)
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=5)
        return result

    return asyncio.run(main())


def make_service(kind: str, executions: Counter[str]) -> tuple[df.Service, Any]:
    svc = df.Service(f"Replayed_{kind}")

    # The side effect lands after a short pause, as a request to another system would.
    def plain(name: str) -> str:
        time.sleep(0.02)
        executions[name] += 1
        return f"{name} done"

    async def coroutine(name: str) -> str:
        await asyncio.sleep(0.02)
        executions[name] += 1
        return f"{name} done"

    step: Callable[[str], Any] = plain if kind == "plain" else coroutine

    @svc.handler()
    async def job(ctx: df.Context) -> list[str]:
        first = await ctx.run("journaled", step, "journaled")
        await ctx.sleep(timedelta(hours=1))
        # A fresh run after the replayed one: the handler yields while it executes, which
        # is when a wrongly restarted replayed closure would get going.
        second = await ctx.run("fresh", step, "fresh")
        return [first, second]

    return svc, job


def sleep_journaled(e: df.LocalEngine, inv_id: str) -> bool:
    return any(frames(f)[0].type_name == "SleepCommand" for f in e.journal(inv_id))


KINDS = ["plain", "coroutine"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_journaled_before_a_restart_is_not_executed_after_it(
    tmp_path: Path, kind: str
) -> None:
    executions: Counter[str] = Counter()
    svc, job = make_service(kind, executions)
    db = tmp_path / "engine.db"

    async def before_restart() -> str:
        # The wall clock: the hour-long sleep is still running when the engine closes.
        async with df.LocalEngine(svc, path=db, durability="os") as e:
            inv_id = e.send(job)
            deadline = time.monotonic() + 10
            while not sleep_journaled(e, inv_id):
                assert time.monotonic() < deadline, "the handler never reached its sleep"
                await asyncio.sleep(0.005)
            return inv_id

    async def after_restart(inv_id: str) -> Any:
        # A virtual clock: the rest of the sleep is skipped.
        async with df.LocalEngine(svc, path=db, durability="os", clock=VirtualClock()) as e:
            return await e.result(inv_id)

    inv_id = run_and_drain(before_restart())
    join_run_threads()
    assert executions == {"journaled": 1}
    assert run_and_drain(after_restart(inv_id)) == ["journaled done", "fresh done"]
    join_run_threads()
    assert executions == {"journaled": 1, "fresh": 1}


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_replayed_by_every_later_attempt_is_executed_once(tmp_path: Path, kind: str) -> None:
    executions: Counter[str] = Counter()
    svc, job = make_service(kind, executions)

    async def body() -> Any:
        async with df.LocalEngine(
            svc,
            path=tmp_path / "engine.db",
            durability="os",
            clock=VirtualClock(),
            always_replay=True,
            retry_policy=df.RetryPolicy(max_attempts=10, on_max_attempts="kill"),
        ) as e:
            return await e.invoke(job)

    assert run_and_drain(body()) == ["journaled done", "fresh done"]
    join_run_threads()
    assert executions == {"journaled": 1, "fresh": 1}
