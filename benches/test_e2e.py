"""End to end through a real restate-server (bidi, h2c): one invocation fanning out 1,000
runs, durable-futures vs restate-sdk 1.3.0 registered on the same server, measured
alternately in the same run.

    make bench   (runs in a loopback-only network namespace, like the tests)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import durable_futures as df
from tests.restate_harness import AsgiServer, RestateClient, RestateServer, ensure_restate_server

from . import peers

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
