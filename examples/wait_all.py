"""Wait for all: fan out calls, collect the results in the order they complete.

Run against restate-server:  durable-futures endpoint examples.wait_all --port 9080
"""

from __future__ import annotations

import durable_futures as df

svc = df.Service("FanOut")


@svc.handler()
async def all_of(ctx: df.Context, n: int) -> list[str]:
    selector = ctx.select(*[ctx.service("Worker", "work").request_future(i) for i in range(n)])
    results = []
    while selector.remaining():
        done = await selector.select()
        assert done is not None
        results.append(await done)
    return results


@svc.handler()
def all_of_sync(ctx: df.Context, n: int) -> list[str]:
    selector = ctx.select(*[ctx.service("Worker", "work").request_future(i) for i in range(n)])
    return [f.result() for f in selector]  # iterating a selector blocks for the next one


worker = df.Service("Worker")


@worker.handler()
async def work(ctx: df.Context, i: int) -> str:
    return f"done {i}"
