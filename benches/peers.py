"""The same Conformance handlers written with restate-sdk (the peer we compare against).

Only the handlers the replay benchmarks use; the logic mirrors tests/conformance_service.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import restate

svc = restate.Service("Conformance")


def square(i: int) -> int:
    return i * i


def step(i: int) -> int:
    return i


@svc.handler()
async def fanout(ctx: restate.Context, n: int) -> int:
    futures = [ctx.run_typed(f"task-{i}", square, restate.RunOptions(), i) for i in range(n)]
    total = 0
    for f in futures:
        total += await f
    await ctx.sleep(timedelta(milliseconds=10))
    return total


@svc.handler()
async def sequence(ctx: restate.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_typed(f"step-{i}", step, restate.RunOptions(), i)
    return total


def app() -> Any:
    return restate.app(services=[svc])


# The same handlers written restate-sdk's fastest way: ``ctx.run_typed(name, action)`` with a
# closure over the argument and no per-call ``RunOptions``.
fast = restate.Service("Conformance")


@fast.handler("fanout")
async def fast_fanout(ctx: restate.Context, n: int) -> int:
    futures = [ctx.run_typed(f"task-{i}", lambda i=i: square(i)) for i in range(n)]
    total = 0
    for f in futures:
        total += await f
    await ctx.sleep(timedelta(milliseconds=10))
    return total


@fast.handler("sequence")
async def fast_sequence(ctx: restate.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_typed(f"step-{i}", lambda i=i: step(i))
    return total


def fast_app() -> Any:
    return restate.app(services=[fast])


fanout_svc = restate.Service("FanOutTheirs")


@fanout_svc.handler()
async def fan(ctx: restate.Context, n: int) -> int:
    futures = [ctx.run_typed(f"task-{i}", square, restate.RunOptions(), i) for i in range(n)]
    total = 0
    for f in futures:
        total += await f
    return total


def fanout_app() -> Any:
    return restate.app(services=[fanout_svc])
