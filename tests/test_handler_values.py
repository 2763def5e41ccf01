"""``ctx.uuid()`` and ``ctx.time()``: the same values on every replay of an invocation; and
``LocalEngine.result`` typed from the handler, like ``invoke``."""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta

import durable_futures as df
from durable_futures.local import VirtualClock
from durable_futures.testing import engine_for, run

svc = df.Service("Helpers")
SEEN: dict[str, list[tuple[str, str, float]]] = {}


@svc.handler()
async def stamp(ctx: df.Context) -> dict[str, object]:
    first, second = ctx.uuid(), ctx.uuid()
    started = await ctx.time()
    SEEN.setdefault(ctx.invocation_id, []).append((str(first), str(second), started))
    await ctx.sleep(timedelta(hours=1))
    ended = await ctx.time("end")
    return {"ids": [str(first), str(second)], "started": started, "ended": ended}


@svc.handler()
def stamp_sync(ctx: df.Context) -> list[object]:
    return [str(ctx.uuid()), ctx.time().result()]


def test_uuid_and_time_are_the_same_on_every_replay() -> None:
    async def body() -> None:
        clock = VirtualClock(1_700_000_000_000)
        async with engine_for(svc, always_replay=True, virtual_clock=clock) as e:
            out = await e.invoke(stamp)
            again = await e.invoke(stamp)
        ids = out["ids"]
        assert all(uuid.UUID(i).version == 4 for i in ids) and ids[0] != ids[1]
        assert out["started"] == 1_700_000_000.0  # the engine's clock, journaled
        assert out["ended"] == out["started"] + 3600  # read after the hour's sleep
        # Every execution of the invocation (always_replay: one per new journal entry) saw
        # the same UUIDs and the same start time; another invocation gets other UUIDs.
        (executions,) = [v for v in SEEN.values() if v[0][0] == ids[0]]
        assert len(executions) >= 3, executions
        assert set(executions) == {(ids[0], ids[1], out["started"])}
        assert again["ids"] != ids

    run(body())


def test_sync_handlers_get_them_too() -> None:
    async def body() -> None:
        async with engine_for(svc, always_replay=True) as e:
            first_id, at = await e.invoke(stamp_sync)
        assert uuid.UUID(first_id).version == 4 and at > 0

    run(body())


# ---- results typed from the handler -------------------------------------------------------------


@dataclass
class Receipt:
    order: int
    total: float


@svc.handler()
async def checkout(ctx: df.Context, order: int) -> Receipt:
    return Receipt(order, order * 1.5)


def test_result_is_typed_like_invoke() -> None:
    async def body() -> None:
        async with engine_for(svc) as e:
            inv = e.send(checkout, 4)
            assert await e.result(inv) == Receipt(4, 6.0)
            assert await e.invoke(checkout, 2) == Receipt(2, 3.0)
            assert await e.result(inv) == Receipt(4, 6.0)  # completed: read from the store

    run(body())


# ---- typed object clients -----------------------------------------------------------------------

wallet = df.VirtualObject("Wallet")


@wallet.handler()
async def deposit(ctx: df.ObjectContext, amount: int) -> Receipt:
    total = (await ctx.get("total", int) or 0) + amount
    ctx.set("total", total)
    return Receipt(total, float(total))


@svc.handler()
async def pay_twice(ctx: df.Context, key: str) -> list[Receipt]:
    first = await ctx.object(deposit, key).request(5)
    second = await ctx.object("Wallet", key, "deposit").request(7)  # untyped: a dict
    return [first, Receipt(**second)]


@svc.handler()
async def misuse(ctx: df.Context) -> str:
    try:
        ctx.object(lambda c, n: n, "k")
    except TypeError as e:
        return str(e)
    return "accepted"


def test_object_clients_are_typed_from_the_handler() -> None:
    async def body() -> None:
        async with engine_for(svc, wallet) as e:
            assert await e.invoke(pay_twice, "alice") == [Receipt(5, 5.0), Receipt(12, 12.0)]
            assert "registered on a df.VirtualObject" in await e.invoke(misuse)

    run(body())


# ---- misuse explained ---------------------------------------------------------------------------


@svc.handler()
async def waits_with_asyncio(ctx: df.Context) -> str:
    import asyncio

    timer = ctx.after(timedelta(seconds=1))
    step = ctx.run_async("x", prepare_nothing)
    try:
        await asyncio.wait([timer, step])  # type: ignore[type-var]
    except TypeError as e:
        return str(e)
    return "waited"


@svc.handler()
async def options_as_a_dict(ctx: df.Context) -> str:
    try:
        ctx.run_async("x", prepare_nothing, options={"max_attempts": 3})  # type: ignore[call-overload]
    except TypeError as e:
        return str(e)
    return "accepted"


def prepare_nothing() -> int:
    return 1


def test_misuse_is_explained() -> None:
    async def body() -> None:
        async with engine_for(svc) as e:
            waited = await e.invoke(waits_with_asyncio)
            if sys.version_info >= (3, 11):
                assert "ctx.select(" in waited
            else:
                # Python 3.10's asyncio.wait wraps any awaitable in a task of its own before
                # waiting: a durable future never sees the call, so it cannot refuse it.
                assert waited == "waited"
            assert "df.RunOptions" in await e.invoke(options_as_a_dict)

    run(body())


def test_a_registered_handler_still_looks_like_the_users_function() -> None:
    import asyncio
    import inspect

    assert stamp.__name__ == "stamp" and stamp.__module__ == __name__
    assert checkout.__doc__ is None and deposit.__qualname__ == "deposit"
    assert str(inspect.signature(checkout)) == "(ctx: 'df.Context', order: 'int') -> 'Receipt'"
    assert inspect.iscoroutinefunction(stamp) and asyncio.iscoroutinefunction(stamp)
    assert not inspect.iscoroutinefunction(stamp_sync)
    assert stamp.__wrapped__ is stamp.fn  # type: ignore[attr-defined]


def test_invoke_without_an_argument_lets_the_default_apply() -> None:
    """``engine.invoke(h)`` sends no input, as an HTTP request without a body: the
    parameter's default applies (``invoke(h, None)`` still passes ``None``)."""
    from durable_futures.testing import engine_for, run

    svc = df.Service("Defaults")

    @svc.handler()
    async def doubled(ctx: df.Context, n: int = 5) -> int:
        return n * 2

    @svc.handler()
    async def shown(ctx: df.Context, n: int | None = 7) -> str:
        return repr(n)

    async def body() -> None:
        async with engine_for(svc) as engine:
            assert await engine.invoke(doubled) == 10
            assert await engine.invoke(doubled, 3) == 6
            assert await engine.invoke(shown) == "7"
            assert await engine.invoke(shown, None) == "None"
            inv = engine.send(doubled)
            assert await engine.result(inv) == 10

    run(body())
