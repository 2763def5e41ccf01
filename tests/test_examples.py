"""The examples in examples/ run as documented against a real restate-server, in both
deployment modes and both server configurations, async and sync handlers alike."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

import durable_futures as df
from examples import parallel_tasks, select_first, signup, wait_all

from .restate_harness import AsgiServer, RestateClient, RestateServer

pytestmark = pytest.mark.e2e

SERVICES = [
    parallel_tasks.svc,
    parallel_tasks.analytics,
    select_first.svc,
    select_first.echo_svc,
    wait_all.svc,
    wait_all.worker,
    signup.wf,
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


_keys = itertools.count()


def _signup_key(client: RestateClient) -> str:
    return f"{client.server.name}-{time.monotonic_ns()}-{next(_keys)}"


def _status(client: RestateClient, key: str) -> Any:
    """POST /Signup/{key}/status: a handler without input takes no body."""
    return ok(client._ingress("POST", f"/Signup/{key}/status", None))


def _wait_for_status(client: RestateClient, key: str, want: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        state = _status(client, key)
        if state == want:
            return
        assert time.monotonic() < deadline, f"status stayed {state!r}"
        time.sleep(0.05)


def test_signup_confirmed_once(client: RestateClient) -> None:
    """The run waits on its promise (raced against a one-hour deadline); the shared
    `confirm` resolves it once; the result is the first run's for every later submission,
    and the email went out once."""
    key = _signup_key(client)
    account = {"email": f"{key}@example.com", "name": "Alice", "deadline_s": 3600}
    run_id = client.send("Signup", "run", account, key=key)
    _wait_for_status(client, key, "awaiting confirmation")
    assert ok(client.call("Signup", "confirm", "yes", key=key)) == "thanks"
    assert ok(client.call("Signup", "confirm", "no", key=key)) == "already decided"
    assert ok(client.attach(run_id)) == "welcome, Alice"
    assert _status(client, key) == "active"
    # Once per key: another call fails with 409, a send is "PreviouslyAccepted", attach
    # gives the first run's result.
    second = client.call("Signup", "run", account, key=key)
    assert second.status == 409, second.text
    assert second.json()["message"] == "the workflow method was already invoked"
    wf_attach = client._ingress("GET", f"/restate/workflow/Signup/{key}/attach", None)
    assert ok(wf_attach) == "welcome, Alice"
    again = client._ingress(
        "POST", f"/Signup/{key}/run/send", client._json_body(account),
        {"content-type": "application/json"},
    )
    assert again.status == 202, again.text
    assert again.json() == {"invocationId": run_id, "status": "PreviouslyAccepted"}
    assert [e for e in signup.OUTBOX if e[0] == account["email"]] == [
        (account["email"], f"https://example.com/confirm/{key}")
    ]


def test_signup_deadline_and_rejection(client: RestateClient) -> None:
    key = _signup_key(client)
    late = {"email": "late@example.com", "name": "Bob", "deadline_s": 0.3}
    assert ok(client.call("Signup", "run", late, key=key)) == "Bob did not confirm in time"
    assert _status(client, key) == "expired"
    key = _signup_key(client)
    refused = {"email": "no@example.com", "name": "Eve", "deadline_s": 3600}
    run_id = client.send("Signup", "run", refused, key=key)
    _wait_for_status(client, key, "awaiting confirmation")
    assert ok(client.call("Signup", "reject", "spam", key=key)) == "rejected"
    assert ok(client.attach(run_id)) == "Eve was rejected: spam"
