"""Parallel tasks: start side effects and a call without awaiting them, then collect.

Run against restate-server:  durable-futures endpoint examples.parallel_tasks --port 9080
"""

from __future__ import annotations

import asyncio
from typing import Any

import durable_futures as df

svc = df.Service("Orders")


async def fetch_user(user_id: int) -> dict[str, Any]:
    await asyncio.sleep(0.05)  # stands for an HTTP request
    return {"id": user_id, "name": f"user-{user_id}"}


def fetch_orders(user_id: int) -> list[int]:
    return [user_id * 100 + i for i in range(3)]  # a blocking call runs on a thread pool


@svc.handler()
async def overview(ctx: df.Context, user_id: int) -> dict[str, Any]:
    user = ctx.run_async("fetch-user", fetch_user, user_id)  # starts now
    orders = ctx.run_async("fetch-orders", fetch_orders, user_id)  # concurrently
    metrics = ctx.service("Analytics", "calculate_metrics").request_future(user_id)
    return {"user": await user, "orders": await orders, "metrics": await metrics}


@svc.handler()
def overview_sync(ctx: df.Context, user_id: int) -> dict[str, Any]:
    """The same in a sync handler: it runs on a worker thread and result() blocks."""
    user = ctx.run_async("fetch-user", fetch_user, user_id)
    orders = ctx.run_async("fetch-orders", fetch_orders, user_id)
    metrics = ctx.service("Analytics", "calculate_metrics").request_future(user_id)
    return {"user": user.result(), "orders": orders.result(), "metrics": metrics.result()}


analytics = df.Service("Analytics")


@analytics.handler()
async def calculate_metrics(ctx: df.Context, user_id: int) -> dict[str, int]:
    return {"user_id": user_id, "orders_last_30_days": 3}
