"""A handler with an order-dependent bug: it collects the results of two concurrent runs in
the order they complete, then unpacks them as if the reservation, which is fast, always
finished before the payment, which is slow. A plain test passes;
``durable_futures.testing.explore`` delivers the completions in the other order too and
fails. ``checkout_fixed`` awaits each future for its own value and passes every order.

Run against restate-server:  durable-futures endpoint examples.order_bug --port 9080
"""

from __future__ import annotations

import asyncio

import durable_futures as df

shop = df.Service("Shop")


async def reserve_stock(order: str) -> str:
    return f"reservation-{order}"


async def charge_card(order: str) -> str:
    await asyncio.sleep(0.05)  # a payment provider takes a while
    return f"receipt-{order}"


@shop.handler()
async def checkout(ctx: df.Context, order: str) -> dict[str, str]:
    reservation = ctx.run_async("reserve", reserve_stock, order)
    payment = ctx.run_async("charge", charge_card, order)
    done = []
    async for future in ctx.select(reservation, payment):
        done.append(await future)
    reserved, receipt = done  # bug: assumes the reservation completed first
    return {"reservation": reserved, "receipt": receipt}


@shop.handler()
async def checkout_fixed(ctx: df.Context, order: str) -> dict[str, str]:
    reservation = ctx.run_async("reserve", reserve_stock, order)
    payment = ctx.run_async("charge", charge_card, order)
    return {"reservation": await reservation, "receipt": await payment}
