"""The ``Conformance`` service of tests/conformance/README.md, written with the public API."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import durable_futures as df

svc = df.Service("Conformance")

#: How many run closures executed (replayed runs must not execute).
executions: list[str] = []


def _track(name: str) -> None:
    executions.append(name)


@svc.handler()
async def echo(ctx: df.Context, s: str) -> str:
    return s


@svc.handler()
async def slow_echo(ctx: df.Context, s: str) -> str:
    await ctx.sleep(timedelta(seconds=2))
    return s


def square(i: int) -> int:
    _track(f"task-{i}")
    return i * i


@svc.handler()
async def fanout(ctx: df.Context, n: int) -> int:
    futures = [ctx.run_async(f"task-{i}", square, i) for i in range(n)]
    total = 0
    for f in futures:
        total += await f
    await ctx.sleep(timedelta(milliseconds=10))
    return total


def step(i: int) -> int:
    _track(f"step-{i}")
    return i


@svc.handler()
async def sequence(ctx: df.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_async(f"step-{i}", step, i)
    return total


async def _race(ctx: df.Context, s: str, sleep: timedelta, callee: str) -> str:
    timer = ctx.after(sleep)
    call = ctx.service("Conformance", callee).request_future(s)
    first = await ctx.select(timer, call).select()
    if first is timer:
        return "sleep won"
    return f"call won with {await call}"


@svc.handler()
async def race_call(ctx: df.Context, s: str) -> str:
    return await _race(ctx, s, timedelta(seconds=30), "echo")


@svc.handler()
async def race_sleep(ctx: df.Context, s: str) -> str:
    return await _race(ctx, s, timedelta(milliseconds=100), "slow_echo")


@svc.handler()
async def gather_calls(ctx: df.Context, n: int) -> str:
    sel = ctx.select(*[ctx.service("Conformance", "echo").request_future(f"m{i}") for i in range(n)])
    results: list[str] = []
    while sel.remaining():
        f = await sel.select()
        assert f is not None
        results.append(await f)
    return ",".join(sorted(results))


@svc.handler()
async def resolver(ctx: df.Context, awakeable_id: str) -> None:
    ctx.resolve_awakeable(awakeable_id, "resolved")


@svc.handler()
async def awakeable_or_timeout(ctx: df.Context, ms: int) -> str:
    awk_id, awk = ctx.awakeable(str)
    ctx.service("Conformance", "resolver").send(awk_id)
    timer = ctx.after(timedelta(milliseconds=ms))
    first = await ctx.select(awk, timer).select()
    if first is timer:
        return "timeout"
    return f"awakeable: {await awk}"


def explode() -> str:
    _track("explode")
    raise df.TerminalError("boom", 500)


@svc.handler()
async def run_terminal_failure(ctx: df.Context, s: str) -> str:
    try:
        await ctx.run_async("explode", explode)
    except df.TerminalError as e:
        return f"caught: {e.message}"
    return "no error"


async def _after(name: str, ms: int, value: str) -> str:
    _track(name)
    await asyncio.sleep(ms / 1000)
    return value


@svc.handler()
async def completion_order(ctx: df.Context, s: str) -> str:
    sel = ctx.select(
        ctx.run_async("slow", _after, "slow", 300, "a"),
        ctx.run_async("fast", _after, "fast", 100, "b"),
        ctx.run_async("mid", _after, "mid", 200, "c"),
    )
    out: list[str] = []
    async for f in sel:
        out.append(await f)
    return ",".join(out)


# ---- the ConformanceWf workflow ---------------------------------------------------------------

wf = df.Workflow("ConformanceWf")


@wf.main()
async def run(ctx: df.WorkflowContext, ms: int) -> str:
    ctx.set("status", "waiting")
    approval = ctx.promise("approval", str).value()
    timer = ctx.after(timedelta(milliseconds=ms))
    first = await ctx.select(approval, timer).select()
    if first is timer:
        ctx.set("status", "timed out")
        return "timed out"
    try:
        decision = await approval
    except df.TerminalError as e:
        ctx.set("status", "rejected")
        return f"rejected: {e.message}"
    ctx.set("status", decision)
    return f"decided: {decision}"


@wf.handler()
async def approve(ctx: df.WorkflowSharedContext, d: str) -> str:
    await ctx.promise("approval", str).resolve(d)
    return "ok"


@wf.handler()
async def deny(ctx: df.WorkflowSharedContext, m: str) -> str:
    await ctx.promise("approval", str).reject(m, 500)
    return "ok"


@wf.handler()
async def status(ctx: df.WorkflowSharedContext) -> str:
    return await ctx.get("status", str) or "unknown"


@wf.handler()
async def peek(ctx: df.WorkflowSharedContext) -> str:
    return str(await ctx.promise("approval", str).peek())
