"""The workload of tests/test_crash_recovery.py, run in a child process that gets SIGKILLed.

    python tests/crash_worker.py DB EXECUTIONS RESULTS INCARNATION JOBS STAGGER_MS

Opens a ``LocalEngine`` on DB (``durability="fsync"``), submits JOBS invocations of
``Crash/job`` with idempotency keys ``job-{i}`` (job ``i`` delayed by ``i * STAGGER_MS`` so
the work spreads over the kills; a restart resubmits the same keys, which finds the
invocations already stored), prints ``ready``, waits for every result, prints ``done``.

A job fans out concurrent runs, calls another handler, sleeps on a short durable timer and
waits for an awakeable that a third handler resolves. Every execution of a run closure
appends ``INCARNATION INVOCATION_ID RUN_NAME`` to EXECUTIONS, and every result that reaches
this process appends ``INCARNATION i INVOCATION_ID JSON`` to RESULTS: one ``write`` of a
whole line with ``O_APPEND``, then ``fsync``, so both logs survive the SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

# Runnable as a script from anywhere: the package is installed; the tests are not needed.
import durable_futures as df

FAN_OUT = 4

svc = df.Service("Crash")

_executions_fd = -1
_results_fd = -1
_incarnation = -1
_lock = threading.Lock()


def _append(fd: int, line: str) -> None:
    data = line.encode()
    with _lock:
        assert os.write(fd, data) == len(data)
        os.fsync(fd)


def work(invocation_id: str, name: str, value: int) -> int:
    """A run closure: logs its execution durably, takes a few ms, returns ``value``."""
    _append(_executions_fd, f"{_incarnation} {invocation_id} {name}\n")
    time.sleep(random.uniform(0.001, 0.008))
    return value


def expected(i: int) -> dict[str, Any]:
    fan = [10 * i + k for k in range(FAN_OUT)]
    return {
        "i": i,
        "fan": fan,
        "square": i * i,
        "awk": 3 * i,
        "total": sum(fan) + i * i + 3 * i,
    }


@svc.handler()
async def job(ctx: df.Context, i: int) -> dict[str, Any]:
    me = ctx.invocation_id
    fan = [ctx.run_async(f"fan-{k}", work, me, f"fan-{k}", 10 * i + k) for k in range(FAN_OUT)]
    values = [await f for f in fan]
    squared = await ctx.service(square).request(i)
    await ctx.sleep(timedelta(milliseconds=20 + (7 * i) % 31))
    awk_id, awk = ctx.awakeable(int)
    ctx.service(resolve).send({"id": awk_id, "value": 3 * i})
    resolved = await awk
    total = await ctx.run("total", work, me, "total", sum(values) + squared + resolved)
    return {"i": i, "fan": values, "square": squared, "awk": resolved, "total": total}


@svc.handler()
async def square(ctx: df.Context, i: int) -> int:
    return await ctx.run("square", work, ctx.invocation_id, "square", i * i)


@svc.handler()
async def resolve(ctx: df.Context, req: dict[str, Any]) -> None:
    value = await ctx.run("resolve", work, ctx.invocation_id, "resolve", req["value"])
    ctx.resolve_awakeable(req["id"], value)


async def main(db: Path, jobs: int, stagger_ms: int) -> None:
    async with df.LocalEngine(
        svc,
        path=db,
        durability="fsync",
        retry_policy=df.RetryPolicy(
            initial_interval=timedelta(milliseconds=10), max_interval=timedelta(milliseconds=200)
        ),
    ) as engine:
        ids = [
            engine.send(
                job, i, idempotency_key=f"job-{i}", delay=timedelta(milliseconds=i * stagger_ms)
            )
            for i in range(jobs)
        ]
        print("ready", flush=True)

        async def wait(i: int, inv: str) -> None:
            result = await engine.result(inv)
            _append(_results_fd, f"{_incarnation} {i} {inv} {json.dumps(result)}\n")

        await asyncio.gather(*(wait(i, inv) for i, inv in enumerate(ids)))
        if engine.last_error is not None:
            raise SystemExit(f"storage error: {engine.last_error}")
    print("done", flush=True)


if __name__ == "__main__":
    db_arg, executions, results, incarnation, jobs_arg, stagger = sys.argv[1:7]
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    _executions_fd = os.open(executions, flags, 0o644)
    _results_fd = os.open(results, flags, 0o644)
    _incarnation = int(incarnation)
    asyncio.run(main(Path(db_arg), int(jobs_arg), int(stagger)))
