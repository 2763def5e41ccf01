"""The embedded engine on this machine's disk, side by side in one run:

- sequential durable steps (one invocation awaiting 1,000 runs one after another) against
  the disk's raw fsync rate (write + fdatasync of a small record, appended to a growing
  file and overwritten in place in a filled one, measured next to each round) and against
  DBOS 3.4 on SQLite doing the same with ``@DBOS.step``;
- fan-out: one invocation with 10,000 concurrent runs;
- 10,000 invocations of a 3-step handler submitted at once: throughput, p99 latency and
  peak memory.

    make bench     (or: .venv/bin/python -m pytest benches/test_engine.py -s -o testpaths=benches)
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import durable_futures as df

svc = df.Service("EngineBench")


def step(i: int) -> int:
    return i


async def astep(i: int) -> int:
    return i


@svc.handler()
async def sequence_async(ctx: df.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_async(f"s{i}", astep, i)
    return total


@svc.handler()
async def sequence_sync(ctx: df.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_async(f"s{i}", step, i)
    return total


@svc.handler()
async def fanout_async(ctx: df.Context, n: int) -> int:
    futures = [ctx.run_async(f"s{i}", astep, i) for i in range(n)]
    total = 0
    for f in futures:
        total += await f
    return total


@svc.handler()
async def fanout_sync(ctx: df.Context, n: int) -> int:
    futures = [ctx.run_async(f"s{i}", step, i) for i in range(n)]
    total = 0
    for f in futures:
        total += await f
    return total


@svc.handler()
async def three_steps(ctx: df.Context, i: int) -> int:
    a = await ctx.run_async("a", astep, i)
    b = await ctx.run_async("b", astep, a + 1)
    return await ctx.run_async("c", astep, b + 1)


def bench_dir() -> str:
    """A fresh directory on the repository's disk (not /tmp, which may be in memory)."""
    root = Path(__file__).resolve().parent.parent / ".cache" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="engine-", dir=root)


def raw_fsync_rate(directory: str, n: int = 1000) -> float:
    """Appends of a 120-byte record, each followed by ``fdatasync``: the file grows, so each
    fsync also writes the new size (what a plain durable log append costs)."""
    fd = os.open(os.path.join(directory, "raw"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        start = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x" * 120)
            os.fdatasync(fd)
        return n / (time.perf_counter() - start)
    finally:
        os.close(fd)


def raw_overwrite_fsync_rate(directory: str, n: int = 1000) -> float:
    """Writes of a 120-byte record into a file filled beforehand (as ``pg_test_fsync``
    does), each followed by ``fdatasync``: data only, the cheapest fsync of this disk."""
    path = os.path.join(directory, "raw-overwrite")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, bytes(n * 120))
        os.fsync(fd)
        start = time.perf_counter()
        for i in range(n):
            os.pwrite(fd, b"x" * 120, i * 120)
            os.fdatasync(fd)
        return n / (time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)


def dbos_rate(directory: str, n: int) -> float | None:
    script = Path(__file__).with_name("dbos_peer.py")
    try:
        out = subprocess.run(
            [sys.executable, str(script), os.path.join(directory, "dbos.sqlite"), str(n)],
            capture_output=True, text=True, timeout=300, check=True,
        )
    except (subprocess.SubprocessError, OSError) as e:
        print(f"\n(DBOS run failed: {e})")
        return None
    return float(out.stdout.strip().splitlines()[-1])


async def _rate(engine: df.LocalEngine, handler: df.Handler, n: int) -> float:
    await engine.invoke(handler, 10)
    start = time.perf_counter()
    await engine.invoke(handler, n)
    return n / (time.perf_counter() - start)


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def test_sequential_steps_against_fsync_and_dbos() -> None:
    """Three rounds, each measuring the raw fsync rates and then our steps right after, so
    each ratio compares numbers taken within a second of each other on this noisy disk;
    the medians are reported."""
    d = bench_dir()
    rounds = 3
    raw_append: list[float] = []
    raw_over: list[float] = []
    ours_async: list[float] = []
    ours_sync: list[float] = []

    async def ours() -> None:
        async with df.LocalEngine(svc, path=os.path.join(d, "engine.db")) as engine:
            for _ in range(rounds):
                raw_append.append(raw_fsync_rate(d))
                raw_over.append(raw_overwrite_fsync_rate(d))
                ours_async.append(await _rate(engine, sequence_async, 1000))
                ours_sync.append(await _rate(engine, sequence_sync, 1000))

    asyncio.run(ours())
    peer = dbos_rate(d, 1000)
    raw_after = raw_fsync_rate(d)
    shutil.rmtree(d, ignore_errors=True)
    vs_append = _median([a / r for a, r in zip(ours_async, raw_append, strict=True)])
    vs_over = _median([a / r for a, r in zip(ours_async, raw_over, strict=True)])
    sync_vs_append = _median([a / r for a, r in zip(ours_sync, raw_append, strict=True)])
    a, s, raw, over = map(_median, (ours_async, ours_sync, raw_append, raw_over))
    peer_text = (
        "n/a"
        if peer is None
        else f"{peer:.0f} steps/s ({peer / raw_after:.0%} of the append fsync rate measured "
        f"right after it; ours {a / peer:.1f}x)"
    )
    print(
        f"\nsequential durable steps (medians of {rounds} rounds): raw fsync {raw:.0f}/s "
        f"appending, {over:.0f}/s overwriting in place; durable-futures {a:.0f} steps/s with "
        f"async steps = {vs_append:.0%} of the append rate, {vs_over:.0%} of the overwrite "
        f"rate; {s:.0f} steps/s ({sync_vs_append:.0%} of append) with sync steps on the "
        f"thread pool; DBOS 3.4 {peer_text}"
    )


def test_fanout_10k() -> None:
    """After one run of the full size (the database and its WAL grow to their working size),
    the median of three."""
    d = bench_dir()

    async def rates(engine: df.LocalEngine, handler: df.Handler) -> float:
        await engine.invoke(handler, 10_000)
        out = []
        for _ in range(3):
            start = time.perf_counter()
            await engine.invoke(handler, 10_000)
            out.append(10_000 / (time.perf_counter() - start))
        return _median(out)

    async def go() -> tuple[float, float]:
        async with df.LocalEngine(svc, path=os.path.join(d, "engine.db")) as engine:
            return await rates(engine, fanout_async), await rates(engine, fanout_sync)

    a, s = asyncio.run(go())
    shutil.rmtree(d, ignore_errors=True)
    print(
        f"\nfan-out of 10,000 runs (median of 3): {a:.0f} durable steps/s (async steps), "
        f"{s:.0f} (sync steps)"
    )


def test_10k_invocations_of_3_steps() -> None:
    d = bench_dir()
    n = 10_000

    async def go() -> tuple[float, float]:
        async with df.LocalEngine(svc, path=os.path.join(d, "engine.db")) as engine:
            await engine.invoke(three_steps, 0)
            start = time.perf_counter()
            latencies: list[float] = []

            async def one(i: int) -> None:
                t = time.perf_counter()
                assert await engine.invoke(three_steps, i) == i + 2
                latencies.append(time.perf_counter() - t)

            await asyncio.gather(*(one(i) for i in range(n)))
            elapsed = time.perf_counter() - start
            latencies.sort()
            return n / elapsed, latencies[int(len(latencies) * 0.99)]

    rate, p99 = asyncio.run(go())
    shutil.rmtree(d, ignore_errors=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n10,000 invocations of a 3-step handler at once: {rate:.0f} invocations/s "
        f"({3 * rate:.0f} steps/s), p99 latency {p99 * 1e3:.0f} ms, peak RSS {peak_mb:.0f} MiB"
    )
