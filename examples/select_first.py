"""Select the first completion: a durable timer races a call.

Run against restate-server:  durable-futures endpoint examples.select_first --port 9080
"""

from __future__ import annotations

from datetime import timedelta

import durable_futures as df

svc = df.Service("Race")


@svc.handler()
async def race(ctx: df.Context, s: str) -> str:
    sleep = ctx.after(timedelta(seconds=30))
    call = ctx.service("Echo", "echo").request_future(s)
    selector = ctx.select(sleep, call)
    if await selector.select() is sleep:
        return "sleep won"
    return f"call won with result: {await call}"


@svc.handler()
def race_sync(ctx: df.Context, s: str) -> str:
    sleep = ctx.after(timedelta(seconds=30))
    call = ctx.service("Echo", "echo").request_future(s)
    if ctx.select(sleep, call).select_blocking() is sleep:
        return "sleep won"
    return f"call won with result: {call.result()}"


echo_svc = df.Service("Echo")


@echo_svc.handler()
async def echo(ctx: df.Context, s: str) -> str:
    return s
