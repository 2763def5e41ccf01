"""End to end through a real restate-server, durable-futures vs restate-sdk 1.3.0 registered
on the same server, measured alternately in the same run:

- one invocation fanning out 1,000 runs (bidi, h2c);
- replay-heavy: a server where every await suspends
  (``RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT=0s``), request/response deployments, one
  invocation awaiting 300 plain-function runs in sequence: each step replays the whole
  journal so far. Measured twice, both apps on the same HTTP server each time: hypercorn,
  and uvicorn on httptools (``durable-futures endpoint --http1-only``). restate-server
  sends a journal one frame per HTTP chunk; hypercorn's h11 path spends about 8 µs on each,
  which both SDKs pay and which was most of our latency.

    make bench   (runs in a loopback-only network namespace, like the tests)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import restate

import durable_futures as df
from tests.restate_harness import (
    ALWAYS_SUSPEND_ENV,
    AsgiServer,
    Http1Server,
    RestateClient,
    RestateServer,
    ensure_restate_server,
)

from . import peers
from .summary import record

RUNS = 1000
ROUNDS = 5

ours = df.Service("FanOutOurs")


def square(i: int) -> int:
    return i * i


@ours.handler()
async def fan(ctx: df.Context, n: int) -> int:
    futures = [ctx.run_async(f"task-{i}", square, i) for i in range(n)]
    total = 0
    for f in futures:
        total += await f
    return total


@pytest.fixture(scope="module")
def client() -> Iterator[RestateClient]:
    server = RestateServer(ensure_restate_server(), name="bench").start()
    apps = [AsgiServer(df.asgi_app(ours)).start(), AsgiServer(peers.fanout_app()).start()]
    try:
        c = RestateClient(server, timeout=300)
        for a in apps:
            c.register(a.url, use_http_11=False)
        yield c
    finally:
        for a in apps:
            a.stop()
        server.stop()


def _latency(c: RestateClient, service: str) -> float:
    t = time.perf_counter()
    resp = c.call(service, "fan", RUNS)
    elapsed = time.perf_counter() - t
    assert resp.status == 200, resp.text
    assert resp.json() == sum(i * i for i in range(RUNS))
    return elapsed


def test_fanout_1000_through_restate_server(client: Any) -> None:
    _latency(client, "FanOutOurs")
    _latency(client, "FanOutTheirs")
    a = b = 0.0
    for _ in range(ROUNDS):
        a += _latency(client, "FanOutOurs")
        b += _latency(client, "FanOutTheirs")
    a, b = a / ROUNDS, b / ROUNDS
    print(
        f"\nfan-out of {RUNS} runs through restate-server: durable-futures {a * 1e3:.0f} ms, "
        f"restate-sdk {b * 1e3:.0f} ms, ours = {a / b:.2f}x its latency"
    )
    record(
        f"fan-out of {RUNS} runs through restate-server (bidi)",
        f"{a * 1e3:.0f} ms",
        f"restate-sdk {b * 1e3:.0f} ms",
        f"{a / b:.2f}x its latency",
    )


# ---- replay-heavy: every await suspends, request/response ------------------------------------

STEPS = 300

seq_ours = df.Service("SequenceOurs")


def plain_step(i: int) -> int:
    return i


@seq_ours.handler()
async def sequence(ctx: df.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_async(f"step-{i}", plain_step, i)
    return total


seq_theirs = restate.Service("SequenceTheirs")


@seq_theirs.handler("sequence")
async def sequence_theirs(ctx: restate.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_typed(f"step-{i}", lambda i=i: plain_step(i))
    return total


# The HTTP server both apps run on: hypercorn (h11), or uvicorn on httptools, which is what
# `durable-futures endpoint --http1-only` serves with.
HTTP_SERVERS: dict[str, type[AsgiServer]] = {"hypercorn": AsgiServer, "uvicorn": Http1Server}


@pytest.fixture(scope="module", params=list(HTTP_SERVERS))
def suspending_client(request: pytest.FixtureRequest) -> Iterator[tuple[str, RestateClient]]:
    server = RestateServer(
        ensure_restate_server(), extra_env=ALWAYS_SUSPEND_ENV, name="bench-suspending"
    ).start()
    http = HTTP_SERVERS[request.param]
    apps = [
        http(df.asgi_app(seq_ours, protocol="request_response")).start(),
        http(restate.app(services=[seq_theirs])).start(),
    ]
    try:
        c = RestateClient(server, timeout=300)
        for a in apps:
            c.register(a.url, use_http_11=True)
        yield request.param, c
    finally:
        for a in apps:
            a.stop()
        server.stop()


def _sequence_latency(c: RestateClient, service: str) -> float:
    t = time.perf_counter()
    resp = c.call(service, "sequence", STEPS)
    elapsed = time.perf_counter() - t
    assert resp.status == 200, resp.text
    assert resp.json() == sum(range(STEPS))
    return elapsed


def test_replay_heavy_sequence_through_restate_server(
    suspending_client: tuple[str, RestateClient],
) -> None:
    http, c = suspending_client
    _sequence_latency(c, "SequenceOurs")
    _sequence_latency(c, "SequenceTheirs")
    a = b = 0.0
    rounds = 3
    for _ in range(rounds):
        a += _sequence_latency(c, "SequenceOurs")
        b += _sequence_latency(c, "SequenceTheirs")
    a, b = a / rounds, b / rounds
    print(
        f"\n{STEPS} plain-function runs in sequence, every await suspending, "
        f"request/response on {http} for both: durable-futures {a:.2f} s, "
        f"restate-sdk {b:.2f} s, ours = {a / b:.2f}x its latency"
    )
    record(
        f"{STEPS} sequential runs, always suspending, request/response, {http}",
        f"{a:.2f} s",
        f"restate-sdk {b:.2f} s",
        f"{a / b:.2f}x its latency",
        "<= 0.5x" if http == "uvicorn" else "",
    )
