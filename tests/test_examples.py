"""The examples in examples/ run as documented against a real restate-server, in both
deployment modes and both server configurations, async and sync handlers alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import durable_futures as df
from examples import parallel_tasks, select_first, wait_all

from .restate_harness import AsgiServer, RestateClient, RestateServer

pytestmark = pytest.mark.e2e

SERVICES = [
    parallel_tasks.svc,
    parallel_tasks.analytics,
    select_first.svc,
    select_first.echo_svc,
    wait_all.svc,
    wait_all.worker,
]


@pytest.fixture(scope="module", params=["bidi", "request_response"])
def client(request: pytest.FixtureRequest, restate_server: RestateServer) -> Iterator[RestateClient]:
    endpoint = AsgiServer(df.asgi_app(*SERVICES, protocol=request.param)).start()
    try:
        c = RestateClient(restate_server, timeout=30)
        c.register(endpoint.url, use_http_11=request.param == "request_response")
        yield c
    finally:
        endpoint.stop()


def ok(resp: Any) -> Any:
    assert resp.status == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("handler", ["overview", "overview_sync"])
def test_parallel_tasks(client: RestateClient, handler: str) -> None:
    assert ok(client.call("Orders", handler, 7)) == {
        "user": {"id": 7, "name": "user-7"},
        "orders": [700, 701, 702],
        "metrics": {"user_id": 7, "orders_last_30_days": 3},
    }


@pytest.mark.parametrize("handler", ["race", "race_sync"])
def test_select_first(client: RestateClient, handler: str) -> None:
    # The call answers at once; the 30 s timer loses.
    assert ok(client.call("Race", handler, "hi")) == "call won with result: hi"


@pytest.mark.parametrize("handler", ["all_of", "all_of_sync"])
def test_wait_all(client: RestateClient, handler: str) -> None:
    assert sorted(ok(client.call("FanOut", handler, 5))) == [f"done {i}" for i in range(5)]
