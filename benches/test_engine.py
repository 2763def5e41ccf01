"""The embedded engine on this machine's disk, side by side in one run:

- sequential durable steps (one invocation awaiting 1,000 runs one after another) against
  the disk's raw fsync rate (write + fdatasync of a small record, appended to a growing
  file and overwritten in place in a filled one, measured next to each round) and against
  DBOS 3.4 on SQLite doing the same with ``@DBOS.step``;
- fan-out: one invocation with 10,000 concurrent runs;
- bursts: 10,000 invocations of a 3-step handler submitted at once, to the engine and
  through its HTTP ingress by 256 clients: throughput, when the median and the 99th
  percentile invocation finished (as a share of the whole batch), peak memory (each burst
  in a process of its own, ``benches/burst_worker.py``).

Every figure is measured with plain-function closures (how most side effects are written:
``requests``, database drivers) and with coroutine functions.

    make bench     (or: .venv/bin/python -m pytest benches/test_engine.py -s -o testpaths=benches)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import durable_futures as df

from .summary import record

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
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
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
        f"rate; {s:.0f} steps/s ({sync_vs_append:.0%} of append) with plain-function steps "
        f"on threads; DBOS 3.4 {peer_text}"
    )
    record(
        "sequential steps, plain functions",
        f"{s:.0f} steps/s",
        f"append+fdatasync {raw:.0f}/s",
        f"{sync_vs_append:.0%}",
        ">= 70%",
    )
    record(
        "sequential steps, coroutines",
        f"{a:.0f} steps/s",
        f"append+fdatasync {raw:.0f}/s",
        f"{vs_append:.0%}",
    )
    if peer is not None:
        record(
            "sequential steps, coroutines",
            f"{a:.0f} steps/s",
            f"DBOS 3.4 {peer:.0f}/s",
            f"{a / peer:.1f}x",
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
        f"\nfan-out of 10,000 runs (median of 3): {a:.0f} durable steps/s (coroutines), "
        f"{s:.0f} (plain functions)"
    )
    record(
        "10,000 concurrent runs, plain functions", f"{s:.0f} steps/s", "target", "", ">= 20,000/s"
    )
    record(
        "10,000 concurrent runs, coroutines", f"{a:.0f} steps/s", "plain functions", f"{a / s:.2f}x"
    )


def _burst(how: str, kind: str, n: int = 10_000) -> dict[str, float]:
    d = bench_dir()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benches.burst_worker", d, how, kind, str(n), "256"],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    finally:
        shutil.rmtree(d, ignore_errors=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


BURSTS = 3


def test_bursts_of_10k_invocations() -> None:
    """10,000 invocations of a 3-step handler submitted at once, each burst in a fresh
    process: to the engine (plain functions, coroutines), then through the HTTP ingress
    (256 clients, plain functions).

    A burst lasts about 1.5 s, so one stall of the host skews a single one (once: 5,500/s
    with the median at 66%, against 6,900-7,300/s and 55-57% in ten runs around it). Each
    engine burst runs three times; the table shows the run of median length (and the highest
    peak RSS of the three), and every run is printed."""
    for kind in ("plain", "async"):
        label = "plain functions" if kind == "plain" else "coroutines"
        runs = sorted((_burst("engine", kind) for _ in range(BURSTS)), key=lambda r: r["elapsed"])
        for r in runs:
            print(
                f"\n10,000 invocations of a 3-step handler at once ({label}): "
                f"{r['n'] / r['elapsed']:.0f}/s, p50 {r['p50']:.2f} s "
                f"({r['p50'] / r['elapsed']:.0%} of the batch), p99 {r['p99']:.2f} s of "
                f"{r['elapsed']:.2f} s, peak RSS {r['rss_mib']:.0f} MiB"
            )
        r = runs[len(runs) // 2]
        rate = r["n"] / r["elapsed"]
        share = r["p50"] / r["elapsed"]
        rss = max(run["rss_mib"] for run in runs)  # memory: the most any run took
        targets = kind == "plain"
        record(
            f"burst of 10k x 3 steps, {label}",
            f"{rate:.0f} inv/s",
            "target",
            "",
            ">= 5,000/s" if targets else "",
        )
        record(
            f"burst, {label}: median done at",
            f"{share:.0%} of the batch (p99 {r['p99'] / r['elapsed']:.0%})",
            "target",
            "",
            "<= 60%" if targets else "",
        )
        record(
            f"burst, {label}: peak RSS",
            f"{rss:.0f} MiB",
            "target",
            "",
            "<= 120 MiB" if targets else "",
        )
    r = _burst("http", "plain")
    rate = r["n"] / r["elapsed"]
    print(
        f"\nthe same burst through the HTTP ingress, 256 clients: {rate:.0f}/s, "
        f"{r['errors']:.0f} errors, {r.get('retried', 0):.0f} answers 503 + Retry-After "
        f"(retried), p50 {r['p50']:.2f} s of {r['elapsed']:.2f} s, peak RSS {r['rss_mib']:.0f} MiB"
    )
    assert r["errors"] == 0 and r["n"] == 10_000
    record(
        "burst through the HTTP ingress, 256 clients",
        f"{rate:.0f} inv/s, {r['errors']:.0f} errors, RSS {r['rss_mib']:.0f} MiB",
        "every accepted one completes",
        "",
        "no errors",
    )
