"""Cost of ``ctx.run_async`` + ``await`` on a journaled completion, next to a plain call,
and of collecting completed futures with a selector (flat from 1,000 to 10,000).

    .venv/bin/python -m pytest benches/test_overhead.py -s
"""

from __future__ import annotations

import time
from typing import Any

import durable_futures as df

from .journals import interleaved, replay, runs_journal
from .summary import record

svc = df.Service("Bench")


def one() -> int:
    return 1


@svc.handler()
async def awaited_one_by_one(ctx: df.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_async(f"r{i}", one)
    return total


@svc.handler()
async def selected(ctx: df.Context, n: int) -> int:
    sel = ctx.select(*[ctx.run_async(f"r{i}", one) for i in range(n)])
    total = 0
    while sel.remaining():
        f = await sel.select()
        assert f is not None
        total += await f
    return total


APP = df.asgi_app(svc)


def _plain(n: int) -> int:
    total = 0
    for _ in range(n):
        total += one()
    return total


def test_run_async_overhead() -> None:
    small, big = 100, 2000
    j_small, j_big = runs_journal(small, b"100"), runs_journal(big, b"2000")
    path = "/invoke/Bench/awaited_one_by_one"
    t = interleaved(
        {
            "small": lambda: replay(APP, path, j_small),
            "big": lambda: replay(APP, path, j_big),
        }
    )
    per_op = (t["big"] - t["small"]) / (big - small)
    start = time.perf_counter()
    _plain(1_000_000)
    plain = (time.perf_counter() - start) / 1_000_000
    print(
        f"\nrun_async + await of a journaled result: {per_op * 1e6:.2f} µs/op "
        f"(plain Python call: {plain * 1e6:.3f} µs/op, {per_op / plain:.0f}x)"
    )
    record(
        "run_async + await of a journaled result",
        f"{per_op * 1e6:.2f} µs/op",
        f"plain call {plain * 1e6:.3f} µs",
        f"{per_op / plain:.0f}x",
    )


def test_selector_cost_is_flat() -> None:
    path = "/invoke/Bench/selected"
    sizes = [1_000, 10_000]
    journals = {n: runs_journal(n, str(n).encode()) for n in sizes}
    base = runs_journal(10, b"10")
    t = interleaved(
        {
            "base": lambda: replay(APP, path, base),
            **{str(n): (lambda n=n: replay(APP, path, journals[n])) for n in sizes},
        },
        rounds=5,
    )
    per = {n: (t[str(n)] - t["base"]) / (n - 10) for n in sizes}
    print(
        f"\nselector: {per[1000] * 1e6:.2f} µs/future at 1,000, {per[10000] * 1e6:.2f} µs/future "
        f"at 10,000 (ratio {per[10000] / per[1000]:.2f})"
    )
    record(
        "selector, cost per future at 10,000",
        f"{per[10000] * 1e6:.2f} µs",
        f"at 1,000: {per[1000] * 1e6:.2f} µs",
        f"{per[10000] / per[1000]:.2f}",
        "flat (~1)",
    )


def test_benchmark_selector_10k(benchmark: Any) -> None:
    body = runs_journal(10_000, b"10000")
    assert benchmark(replay, APP, "/invoke/Bench/selected", body) == 10_000
