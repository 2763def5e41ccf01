"""End to end through an unmodified restate-server 1.7.12 (issue 3, item 4).

Our handlers are served by ``df.asgi_app`` under hypercorn and registered as a deployment;
every scenario is driven through the server's HTTP ingress and admin API. Each test runs for

- every deployment mode: ``bidi`` (HTTP/2 cleartext, bidirectional stream),
  ``request_response`` (HTTP/1.1; the server closes its side after the replay, so the handler
  suspends at the first await that needs new input), and the same on uvicorn with httptools
  (``request_response_http1``, what ``durable-futures endpoint --http1-only`` serves with), and
- both server configurations of ``conftest.SERVER_CONFIGS``: the defaults, and
  ``RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT=0s`` where every await suspends and every
  resumption replays the journal.

Handlers talk to the test through module-level dicts keyed by a per-test key (the endpoint runs
in this process, in hypercorn's thread): attempt counters, run intervals, awakeable ids.
"""

import asyncio
import collections
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import durable_futures as df

from .restate_harness import (
    AsgiServer,
    HarnessError,
    Http1Server,
    RestateClient,
    RestateServer,
    wait_until,
)

pytestmark = pytest.mark.e2e

# --------------------------------------------------------------------------------------------
# State shared between handlers and tests


_lock = threading.Lock()
ATTEMPTS: collections.Counter[str] = collections.Counter()
INTERVALS: dict[str, list[tuple[str, float, float]]] = collections.defaultdict(list)
AWAKEABLES: dict[str, str] = {}
EVENTS: dict[str, list[Any]] = collections.defaultdict(list)


def bump(key: str) -> int:
    with _lock:
        ATTEMPTS[key] += 1
        return ATTEMPTS[key]


def event(key: str, what: Any) -> None:
    with _lock:
        EVENTS[key].append(what)


# --------------------------------------------------------------------------------------------
# Side effects run by ctx.run / ctx.run_async


def sync_work(key: str, name: str, value: Any, delay: float = 0.0) -> Any:
    start = time.monotonic()
    time.sleep(delay)
    with _lock:
        INTERVALS[key].append((name, start, time.monotonic()))
    return value


async def async_work(key: str, name: str, value: Any, delay: float = 0.0) -> Any:
    start = time.monotonic()
    await asyncio.sleep(delay)
    with _lock:
        INTERVALS[key].append((name, start, time.monotonic()))
    return value


def flaky(key: str, succeed_on: int) -> int:
    n = bump(key)
    if n < succeed_on:
        raise RuntimeError(f"flaky attempt {n} of {key}")
    return n


def fail_terminally(key: str) -> None:
    bump(key)
    raise df.TerminalError(f"run failed terminally: {key}", code=418)


def publish_awakeable(key: str, awakeable_id: str) -> str:
    with _lock:
        AWAKEABLES[key] = awakeable_id
    return awakeable_id


def count(key: str) -> int:
    return bump(key)


# --------------------------------------------------------------------------------------------
# Services

callee = df.Service("E2ECallee")


@callee.handler()
async def double(ctx: df.Context, n: int) -> int:
    return n * 2


@callee.handler()
async def slow_echo(ctx: df.Context, arg: dict) -> dict:
    await ctx.sleep(timedelta(milliseconds=arg["sleep_ms"]))
    return {"echo": arg["value"]}


@callee.handler()
async def settle_awakeable(ctx: df.Context, arg: dict) -> bool:
    if arg.get("reject"):
        ctx.reject_awakeable(arg["id"], arg["message"])
    else:
        ctx.resolve_awakeable(arg["id"], arg["value"])
    return True


main = df.Service("E2E")


@main.handler()
async def parallel(ctx: df.Context, arg: dict) -> dict:
    key, n = arg["key"], arg["n"]
    bump(f"{key}/entered")  # once per attempt: counts suspensions/replays
    a = ctx.run_async("a", sync_work, key, "a", n + 1, delay=0.3)
    b = ctx.run_async("b", async_work, key, "b", n * 10, delay=0.3)
    c = ctx.run_async("c", sync_work, key, "c", [n, n], delay=0.3)
    call = ctx.service("E2ECallee", "double").request_future(n)
    return {"a": await a, "b": await b, "c": await c, "call": await call}


@main.handler()
def parallel_sync(ctx: df.Context, arg: dict) -> dict:
    key, n = arg["key"], arg["n"]
    a = ctx.run_async("a", sync_work, key, "a", n + 1, delay=0.3)
    b = ctx.run_async("b", sync_work, key, "b", n * 10, delay=0.3)
    call = ctx.service("E2ECallee", "double").request_future(n)
    return {"a": a.result(), "b": b.result(), "call": call.result()}


@main.handler()
async def race(ctx: df.Context, arg: dict) -> dict:
    timer = ctx.after(timedelta(milliseconds=arg["timer_ms"]))
    call = ctx.service("E2ECallee", "slow_echo").request_future(
        {"sleep_ms": arg["callee_ms"], "value": arg["value"]}
    )
    first = await ctx.select(timer, call).select()
    call_id = await call.invocation_id()
    if first is timer:
        return {"winner": "timer", "call_id": call_id}
    if first is call:
        return {"winner": "call", "value": await call, "call_id": call_id}
    return {"winner": repr(first), "call_id": call_id}


@main.handler()
async def wait_all(ctx: df.Context, arg: dict) -> dict:
    key, n = arg["key"], arg["n"]
    attempt = bump(f"{key}/entered")
    futures: list[Any] = [ctx.service("E2ECallee", "double").request_future(i) for i in range(n)]
    futures.append(ctx.run_async("run", sync_work, key, "run", "ran", delay=0.01))
    futures.append(ctx.after(timedelta(milliseconds=50)))
    sel = ctx.select(*futures)
    results: list[Any] = [None] * len(futures)
    order: list[int] = []
    while sel.remaining():
        f = await sel.select()
        index = next(i for i, candidate in enumerate(futures) if candidate is f)
        order.append(index)
        event(f"{key}/order/{attempt}", index)
        results[index] = await f
    after = await sel.select()
    return {"results": results, "order": order, "none_after": after is None}


@main.handler()
async def awakeable_by_handler(ctx: df.Context, arg: dict) -> dict:
    awakeable_id, awakeable = ctx.awakeable()
    ctx.service("E2ECallee", "settle_awakeable").send(
        {
            "id": awakeable_id,
            "value": arg.get("value"),
            "reject": arg.get("reject", False),
            "message": arg.get("message"),
        },
        delay=timedelta(milliseconds=100),
    )
    try:
        return {"value": await awakeable}
    except df.TerminalError as e:
        return {"rejected": e.message}


@main.handler()
async def awakeable_by_ingress(ctx: df.Context, key: str) -> dict:
    awakeable_id, awakeable = ctx.awakeable()
    await ctx.run("publish", publish_awakeable, key, awakeable_id)
    try:
        return {"value": await awakeable}
    except df.TerminalError as e:
        return {"rejected": e.message}


@main.handler()
async def run_terminal(ctx: df.Context, key: str) -> dict:
    try:
        await ctx.run("fail", fail_terminally, key)
    except df.TerminalError as e:
        return {"message": e.message, "code": e.code}
    return {"message": None, "code": None}


@main.handler()
async def handler_terminal(ctx: df.Context, key: str) -> dict:
    bump(key)
    raise df.TerminalError(f"handler failed terminally: {key}", code=422)


@main.handler()
async def run_retry(ctx: df.Context, key: str) -> dict:
    options = df.RunOptions(max_attempts=3, initial_interval=timedelta(milliseconds=10))
    attempt = await ctx.run("flaky", flaky, key, 3, options=options)
    return {"attempt": attempt}


@main.handler()
async def run_exhausted(ctx: df.Context, key: str) -> dict:
    options = df.RunOptions(max_attempts=2, initial_interval=timedelta(milliseconds=10))
    try:
        await ctx.run("always-fails", flaky, key, 1000, options=options)
    except df.TerminalError as e:
        return {"message": e.message}
    return {"message": None}


@main.handler()
async def handler_retry(ctx: df.Context, key: str) -> dict:
    # The run completes in the first attempt and is replayed, never re-executed, in the next two.
    ran = await ctx.run("once", count, f"{key}/run")
    attempt = bump(key)
    if attempt < 3:
        raise RuntimeError(f"handler attempt {attempt} fails")
    return {"attempt": attempt, "ran": ran}


@main.handler()
async def cancellable(ctx: df.Context, key: str) -> dict:
    timer = ctx.after(timedelta(seconds=120))
    _, awakeable = ctx.awakeable()  # nobody resolves it
    sel = ctx.select(timer, awakeable)
    event(key, "selecting")
    try:
        first = await sel.select()
    except df.TerminalError as e:
        event(key, ("cancelled", e.code, e.message))
        raise
    event(key, "not cancelled")
    return {"first": "timer" if first is timer else "awakeable"}


@main.handler()
async def counted(ctx: df.Context, key: str) -> dict:
    return {"n": await ctx.run("count", count, key)}


# --------------------------------------------------------------------------------------------
# Deployment per mode


# mode -> (protocol, use_http_11 at registration, HTTP server). The last one is how
# `durable-futures endpoint --http1-only` serves: HTTP/1.1 alone, uvicorn on httptools.
MODES: dict[str, tuple[str, bool, type[AsgiServer]]] = {
    "bidi": ("bidi", False, AsgiServer),
    "request_response": ("request_response", True, AsgiServer),
    "request_response_http1": ("request_response", True, Http1Server),
}


@dataclass
class E2E:
    mode: str
    client: RestateClient
    endpoint: AsgiServer
    server: RestateServer

    def failure_logs(self) -> list[tuple[str, str]]:
        return self.endpoint.failure_logs()


@pytest.fixture(scope="session", params=list(MODES))
def e2e(
    request: pytest.FixtureRequest,
    restate_server: RestateServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[E2E]:
    mode = request.param
    protocol, use_http_11, http = MODES[mode]
    log_dir: Path = tmp_path_factory.mktemp(f"endpoint-{mode}")
    endpoint = http(df.asgi_app(main, callee, protocol=protocol), log_path=log_dir / "http.log")
    endpoint.start()
    try:
        client = RestateClient(restate_server, timeout=30)
        # The same service names are registered again for each mode: the newest deployment wins.
        deployment = client.register(endpoint.url, use_http_11=use_http_11)
        assert {s["name"] for s in deployment["services"]} == {"E2E", "E2ECallee"}
        yield E2E(mode, client, endpoint, restate_server)
    finally:
        endpoint.stop()


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name}-{uuid.uuid4().hex[:8]}"


def ok(resp: Any) -> Any:
    assert resp.status == 200, resp
    return resp.json()


# --------------------------------------------------------------------------------------------
# Scenarios


def _overlapping(intervals: list[tuple[str, float, float]]) -> bool:
    return any(
        n1 != n2 and s1 < e2 and s2 < e1 for (n1, s1, e1) in intervals for (n2, s2, e2) in intervals
    )


def test_parallel_runs_and_call(e2e: E2E, key: str) -> None:
    result = ok(e2e.client.call("E2E", "parallel", {"key": key, "n": 7}))
    assert result == {"a": 8, "b": 70, "c": [7, 7], "call": 14}
    # Runs start when created: their executions overlap in time.
    assert _overlapping(INTERVALS[key]), INTERVALS[key]
    # Each run executed once, however often the handler was replayed.
    assert sorted(name for name, _, _ in INTERVALS[key]) == ["a", "b", "c"]
    # The configuration under test is real: with request/response or a zero inactivity
    # timeout, the handler suspends (at least at the call) and is re-entered by replay.
    entered = ATTEMPTS[f"{key}/entered"]
    if e2e.mode.startswith("request_response") or e2e.server.name == "always_suspend":
        assert entered >= 2, entered
    else:
        assert entered == 1, entered


def test_parallel_runs_sync_handler(e2e: E2E, key: str) -> None:
    result = ok(e2e.client.call("E2E", "parallel_sync", {"key": key, "n": 5}))
    assert result == {"a": 6, "b": 50, "call": 10}
    assert _overlapping(INTERVALS[key]), INTERVALS[key]


def test_select_timer_wins_over_slow_call(e2e: E2E) -> None:
    result = ok(
        e2e.client.call("E2E", "race", {"timer_ms": 100, "callee_ms": 1500, "value": "late"})
    )
    assert result["winner"] == "timer", result
    assert result["call_id"].startswith("inv_")
    # The losing call still runs to completion, and its id is the real one.
    assert ok(e2e.client.attach(result["call_id"])) == {"echo": "late"}


def test_select_fast_call_wins_over_long_timer(e2e: E2E) -> None:
    result = ok(
        e2e.client.call("E2E", "race", {"timer_ms": 60_000, "callee_ms": 0, "value": "fast"})
    )
    assert result["winner"] == "call", result
    assert result["value"] == {"echo": "fast"}
    assert result["call_id"].startswith("inv_")


def test_wait_all_with_remaining(e2e: E2E, key: str) -> None:
    n = 5
    result = ok(e2e.client.call("E2E", "wait_all", {"key": key, "n": n}))
    assert result["results"] == [2 * i for i in range(n)] + ["ran", None]
    assert sorted(result["order"]) == list(range(n + 2))
    assert result["none_after"] is True
    # Every attempt (replays included) saw the completions in the same order: the journal's.
    attempts = ATTEMPTS[f"{key}/entered"]
    for attempt in range(1, attempts + 1):
        seen = EVENTS[f"{key}/order/{attempt}"]
        assert seen == result["order"][: len(seen)], (attempt, seen, result["order"])
    assert EVENTS[f"{key}/order/{attempts}"] == result["order"]


@pytest.mark.parametrize("outcome", ["resolve", "reject"])
def test_awakeable_settled_by_another_handler(e2e: E2E, outcome: str) -> None:
    if outcome == "resolve":
        value = {"from": "handler", "items": [1, 2, 3]}
        result = ok(e2e.client.call("E2E", "awakeable_by_handler", {"value": value}))
        assert result == {"value": value}
    else:
        arg = {"reject": True, "message": "no thanks"}
        result = ok(e2e.client.call("E2E", "awakeable_by_handler", arg))
        assert result == {"rejected": "no thanks"}


@pytest.mark.parametrize("outcome", ["resolve", "reject"])
def test_awakeable_settled_through_ingress(e2e: E2E, key: str, outcome: str) -> None:
    invocation_id = e2e.client.send("E2E", "awakeable_by_ingress", key)
    awakeable_id = wait_until(lambda: AWAKEABLES.get(key), 20, what="the awakeable id")
    if outcome == "resolve":
        resp = e2e.client.resolve_awakeable(awakeable_id, {"from": "ingress"})
        assert resp.status in (200, 202), resp
        assert ok(e2e.client.attach(invocation_id)) == {"value": {"from": "ingress"}}
    else:
        resp = e2e.client.reject_awakeable(awakeable_id, "rejected at the ingress")
        assert resp.status in (200, 202), resp
        assert ok(e2e.client.attach(invocation_id)) == {"rejected": "rejected at the ingress"}


def test_terminal_failure_of_a_run_is_caught(e2e: E2E, key: str) -> None:
    result = ok(e2e.client.call("E2E", "run_terminal", key))
    assert result == {"message": f"run failed terminally: {key}", "code": 418}
    assert ATTEMPTS[key] == 1  # terminal: never retried


def test_terminal_failure_of_a_handler(e2e: E2E, key: str) -> None:
    resp = e2e.client.call("E2E", "handler_terminal", key)
    assert resp.status == 422, resp
    assert resp.json()["message"] == f"handler failed terminally: {key}"
    assert ATTEMPTS[key] == 1


def test_retryable_run_succeeds_on_third_attempt(e2e: E2E, key: str) -> None:
    result = ok(e2e.client.call("E2E", "run_retry", key))
    assert result == {"attempt": 3}
    assert ATTEMPTS[key] == 3


def test_run_fails_terminally_when_attempts_are_exhausted(e2e: E2E, key: str) -> None:
    result = ok(e2e.client.call("E2E", "run_exhausted", key))
    assert result["message"], result
    assert ATTEMPTS[key] == 2


def test_handler_retried_by_the_server_until_it_succeeds(e2e: E2E, key: str) -> None:
    result = ok(e2e.client.call("E2E", "handler_retry", key))
    assert result == {"attempt": 3, "ran": 1}
    assert ATTEMPTS[key] == 3
    assert ATTEMPTS[f"{key}/run"] == 1  # replayed from the journal on the retries


def test_cancellation_while_a_selector_waits(e2e: E2E, key: str) -> None:
    invocation_id = e2e.client.send("E2E", "cancellable", key)
    wait_until(lambda: "selecting" in EVENTS[key], 20, what="the handler to reach select()")
    e2e.client.wait_for_status(invocation_id, {"running", "suspended"})
    resp = e2e.client.cancel(invocation_id)
    assert resp.status in (200, 202), resp

    attached = e2e.client.attach(invocation_id)
    assert attached.status == 409, attached
    assert "cancel" in attached.json()["message"].lower(), attached
    row = e2e.client.wait_for_status(invocation_id, {"completed"})
    assert row["completion_result"] == "failure", row
    assert "409" in str(row["completion_failure"]), row
    cancelled = [e for e in EVENTS[key] if isinstance(e, tuple) and e[0] == "cancelled"]
    assert cancelled and all(code == 409 for _, code, _ in cancelled), EVENTS[key]
    assert "not cancelled" not in EVENTS[key]


def test_idempotency_key(e2e: E2E, key: str) -> None:
    first = ok(e2e.client.call("E2E", "counted", key, idempotency_key=key))
    again = ok(e2e.client.call("E2E", "counted", key, idempotency_key=key))
    assert first == again == {"n": 1}
    assert ok(e2e.client.call("E2E", "counted", key)) == {"n": 2}


def _invocation_cli(operation: str, invocation_id: str, admin: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "durable-futures"
    return subprocess.run(
        [str(cli), "invocation", operation, invocation_id, "--admin", admin],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_invocation_cli_against_restate_servers_admin_api(e2e: E2E, key: str) -> None:
    """`durable-futures invocation ...` speaks restate-server's admin API unchanged."""
    admin = e2e.server.admin_url
    invocation_id = e2e.client.send("E2E", "cancellable", key)
    wait_until(lambda: "selecting" in EVENTS[key], 20, what="the handler to reach select()")
    e2e.client.wait_for_status(invocation_id, {"running", "suspended"})

    paused = _invocation_cli("pause", invocation_id, admin)
    assert paused.returncode == 0, paused
    # restate-server pauses a running attempt; a suspended invocation stays suspended.
    e2e.client.wait_for_status(invocation_id, {"paused", "suspended"})
    resumed = _invocation_cli("resume", invocation_id, admin)
    assert resumed.returncode == 0, resumed
    e2e.client.wait_for_status(invocation_id, {"running", "suspended", "ready", "pending"})

    killed = _invocation_cli("kill", invocation_id, admin)
    assert killed.returncode == 0, killed
    row = e2e.client.wait_for_status(invocation_id, {"completed"})
    assert row["completion_result"] == "failure", row
    assert "cancelled" not in [e[0] for e in EVENTS[key] if isinstance(e, tuple)], EVENTS[key]

    again = _invocation_cli("kill", invocation_id, admin)
    assert again.returncode == 1 and "[409]" in again.stderr, again
    purged = _invocation_cli("purge", invocation_id, admin)
    assert purged.returncode == 0, purged
    gone = _invocation_cli("purge", invocation_id, admin)
    assert gone.returncode == 1 and "[404]" in gone.stderr, gone


probe = df.Service("E2EHttp1Probe")  # a name of its own: the E2E deployments stay as they are


@probe.handler()
async def ping(ctx: df.Context, who: str) -> str:
    return f"pong {who}"


def test_an_http1_only_endpoint_registered_for_http2_is_refused_with_a_hint(
    restate_server: RestateServer, tmp_path: Path
) -> None:
    """docs/engines.md's word on `--http1-only`: registered without use_http_11, restate-server
    speaks HTTP/2 to it, gets an HTTP/1.1 answer, and says which flag is missing."""
    endpoint = Http1Server(
        df.asgi_app(probe, protocol="request_response"), log_path=tmp_path / "http.log"
    )
    with endpoint:
        client = RestateClient(restate_server, timeout=30)
        with pytest.raises(HarnessError) as info:
            client.register(endpoint.url, use_http_11=False)
        assert "META0014" in str(info.value) and "--use-http1.1" in str(info.value), info.value
        # Registered for HTTP/1.1, the same endpoint is discovered in request/response mode.
        deployment = client.register(endpoint.url, use_http_11=True)
        assert {s["name"] for s in deployment["services"]} == {"E2EHttp1Probe"}
        assert ok(client.call("E2EHttp1Probe", "ping", "amy")) == "pong amy"
