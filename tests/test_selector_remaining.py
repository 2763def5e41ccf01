"""``selector.remaining()`` and ``len(selector)`` count the futures not yet handed out.

A future that has completed but that ``select()`` has not returned yet is still remaining:
a ``while selector.remaining(): await selector.select()`` loop (the documented way to drain
a selector) would otherwise stop early and drop completed results. These tests let futures
complete before selecting them, on the embedded engine, live and with every step replayed
from the journal (``always_replay``), in async and sync handlers.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import durable_futures as df
from durable_futures.testing import EngineFactory, run

svc = df.Service("Drain")

#: (remaining(), len()) before anything completed; after both runs completed; after the
#: first select(); after the timer completed too; after the second and the third select().
EXPECTED_COUNTS = [[True, 3], [True, 3], [True, 2], [True, 2], [True, 1], [False, 0]]


def value(name: str) -> str:
    return name


@svc.handler()
async def drain(ctx: df.Context) -> dict[str, Any]:
    a = ctx.run_async("a", value, "a")
    b = ctx.run_async("b", value, "b")
    timer = ctx.after(timedelta(hours=1))
    names: dict[int, str] = {id(a): "a", id(b): "b", id(timer): "timer"}
    sel = ctx.select(a, b, timer)
    counts = [[sel.remaining(), len(sel)]]
    # Both runs completed, neither handed out: all three are still to come.
    await ctx.all_completed(a, b)
    counts.append([sel.remaining(), len(sel)])
    handed: list[str] = []
    first = await sel.select()
    handed.append(names[id(first)])
    counts.append([sel.remaining(), len(sel)])
    # Now the timer completes too: one run and the timer are waiting to be handed out.
    await ctx.all_completed(timer)
    counts.append([sel.remaining(), len(sel)])
    for _ in range(2):
        f = await sel.select()
        handed.append(names[id(f)])
        counts.append([sel.remaining(), len(sel)])
    return {"counts": counts, "handed": handed, "then": await sel.select()}


@svc.handler()
def drain_sync(ctx: df.Context) -> dict[str, Any]:
    a = ctx.run_async("a", value, "a")
    b = ctx.run_async("b", value, "b")
    timer = ctx.after(timedelta(hours=1))
    names: dict[int, str] = {id(a): "a", id(b): "b", id(timer): "timer"}
    sel = ctx.select(a, b, timer)
    counts = [[sel.remaining(), len(sel)]]
    ctx.all_completed(a, b).result()
    counts.append([sel.remaining(), len(sel)])
    handed: list[str] = []
    first = sel.select_blocking()
    handed.append(names[id(first)])
    counts.append([sel.remaining(), len(sel)])
    ctx.all_completed(timer).result()
    counts.append([sel.remaining(), len(sel)])
    for _ in range(2):
        f = sel.select_blocking()
        handed.append(names[id(f)])
        counts.append([sel.remaining(), len(sel)])
    return {"counts": counts, "handed": handed, "then": sel.select_blocking()}


@svc.handler()
async def drain_loop(ctx: df.Context) -> list[str]:
    """The documented loop, entered only once everything has completed."""
    futures = [ctx.run_async(name, value, name) for name in ("x", "y", "z")]
    await ctx.all_completed(*futures)
    sel = ctx.select(*futures)
    out: list[str] = []
    while sel.remaining():
        f = await sel.select()
        assert f is not None
        out.append(await f)
    return out


MODES = [{}, {"always_replay": True}]
MODE_IDS = ["live", "always_replay"]


@pytest.mark.parametrize("local_engine", MODES, ids=MODE_IDS, indirect=True)
@pytest.mark.parametrize("handler", [drain, drain_sync], ids=["async", "sync"])
def test_completed_futures_remain_until_handed_out(
    local_engine: EngineFactory, handler: Any
) -> None:
    async def scenario() -> dict[str, Any]:
        async with local_engine(svc) as engine:
            return await engine.invoke(handler)  # type: ignore[no-any-return]

    out = run(scenario())
    assert out["counts"] == EXPECTED_COUNTS
    # The runs in the order they completed, then the timer (an hour later, virtually).
    assert sorted(out["handed"][:2]) == ["a", "b"] and out["handed"][2] == "timer"
    assert out["then"] is None


@pytest.mark.parametrize("local_engine", MODES, ids=MODE_IDS, indirect=True)
def test_a_remaining_loop_drains_futures_that_all_completed_first(
    local_engine: EngineFactory,
) -> None:
    async def scenario() -> list[str]:
        async with local_engine(svc) as engine:
            return await engine.invoke(drain_loop)  # type: ignore[no-any-return]

    assert sorted(run(scenario())) == ["x", "y", "z"]
