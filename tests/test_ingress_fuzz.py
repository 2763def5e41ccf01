"""Property-based fuzzing of the embedded engine's HTTP ingress, in process (no port).

Random methods, paths (real service, handler and key names, ``/send``, ``/restate/...``,
garbage, percent-encoding), headers (content-types, lying content-lengths, idempotency
keys, values that are not ASCII) and bodies (empty, ``null``, JSON of any shape, invalid
UTF-8, over the size limit), sent in random chunks. Whatever arrives:

- no 5xx: the services' handlers never fail, so a 5xx could only be the ingress's fault;
- a refused request (4xx) stores no invocation;
- a body over the limit is never accepted, and one announced so is 413 before anything else;
- every answer is complete, and errors are ``{"code", "message"}`` JSON;
- the engine goes on serving valid requests, checked after the run.

Bounded: 200 examples, each under a deadline, the whole test in seconds. The examples are
the same on every run; ``DF_FUZZ_SEED=<int>`` draws another set.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import durable_futures as df
from durable_futures.local.ingress import Ingress

T = TypeVar("T")

LIMIT = 4096  # max_body_bytes of the fuzzed ingress: "big" bodies stay cheap


@dataclass
class Item:
    sku: str
    qty: int


def make_services() -> list[df.Service]:
    """Handlers that succeed on every input they accept."""
    svc = df.Service("Svc")
    obj = df.VirtualObject("Counter")

    @svc.handler()
    async def echo(ctx: df.Context, s: str) -> str:
        return s

    @svc.handler()
    async def add_one(ctx: df.Context, n: int) -> int:
        return n + 1

    @svc.handler()
    async def total(ctx: df.Context, xs: list[float]) -> float:
        return sum(xs)

    @svc.handler()
    async def item(ctx: df.Context, it: Item) -> Item:
        return it

    @svc.handler()
    async def maybe(ctx: df.Context, n: int | None) -> str:
        return repr(n)

    @svc.handler()
    async def anything(ctx: df.Context, v: Any) -> Any:
        return v

    @svc.handler()
    async def with_default(ctx: df.Context, n: int = 7) -> int:
        return n

    @svc.handler()
    async def no_input(ctx: df.Context) -> str:
        return "ok"

    @svc.handler()
    def sync_echo(ctx: df.Context, s: str) -> str:
        return s

    @svc.handler()
    async def raw(ctx: df.Context, data: bytes) -> bytes:
        return data

    @obj.handler()
    async def add(ctx: df.ObjectContext, n: int) -> int:
        total = ((await ctx.get("total", int)) or 0) + n
        ctx.set("total", total)
        return total

    @obj.handler(kind="shared")
    async def get(ctx: df.ObjectSharedContext) -> int:
        return (await ctx.get("total", int)) or 0

    return [svc, obj]


# ---- the engine, on a loop of its own -----------------------------------------------------------


class Harness:
    """A started engine and its ingress on an event loop in a background thread; each
    example sends one request to it and waits for the answer."""

    def __init__(self, db: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.engine = df.LocalEngine(*make_services(), path=db, durability="os")
        self.run(self.engine.start())
        self.ingress = Ingress(self.engine, max_body_bytes=LIMIT)
        self.invocation_ids: list[str] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stored(self) -> set[str]:
        async def ids() -> set[str]:
            await self.engine.flush()
            return {row[0] for row in self.engine.invocations(100_000)}

        return self.run(ids())

    def close(self) -> None:
        self.run(self.engine.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    yield h
    h.close()


# ---- requests -----------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunks: list[int]


NAMES = [
    "Svc",
    "Counter",
    "echo",
    "add_one",
    "total",
    "item",
    "maybe",
    "anything",
    "with_default",
    "no_input",
    "sync_echo",
    "raw",
    "add",
    "get",
    "send",
    "restate",
    "awakeables",
    "a",
    "invocation",
    "attach",
    "output",
    "resolve",
    "reject",
    "health",
    "openapi",
    "workflow",
    "call",
    "{invocation}",
    "Nope",
]
GARBAGE = [
    "",
    "%",
    "%ff",
    "%2F",
    "%zz",
    "%C3%A9",
    "caf%C3%A9",
    "..",
    ".",
    "a b",
    "k?x",
    "%00",
    "\u00e9",
]

segment = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(GARBAGE),
    st.text(st.characters(codec="utf-8", exclude_characters="/?#"), max_size=12),
    st.text("abcXYZ019_-.~%", min_size=1, max_size=8),
)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def as_json(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda v: json.dumps(v).encode())


# What each handler accepts: (content-type, body). Requests start from one of these and are
# then spoiled in a random number of ways (or not at all).
ACCEPTED: dict[str, tuple[str | None, st.SearchStrategy[bytes]]] = {
    "Svc/echo": ("application/json", as_json(st.text(max_size=20))),
    "Svc/sync_echo": ("application/json", as_json(st.text(max_size=20))),
    "Svc/add_one": ("application/json", as_json(st.integers(-(10**30), 10**30))),
    "Svc/total": (
        "application/json",
        as_json(st.lists(st.integers(-1000, 1000) | st.floats(-1e9, 1e9), max_size=5)),
    ),
    "Svc/item": (
        "application/json",
        as_json(st.fixed_dictionaries({"sku": st.text(max_size=5), "qty": st.integers(0, 9)})),
    ),
    "Svc/maybe": ("application/json", as_json(st.none() | st.integers(-5, 5))),
    "Svc/anything": ("application/json", as_json(JSON_VALUES)),
    "Svc/with_default": ("application/json", as_json(st.integers(-5, 5))),
    "Svc/no_input": (None, st.just(b"")),
    "Svc/raw": ("application/octet-stream", st.binary(max_size=64)),
    "Counter/add": ("application/json", as_json(st.integers(-5, 5))),
    "Counter/get": (None, st.just(b"")),
}

BODIES = st.one_of(
    st.just(b""),
    st.just(b"null"),
    st.sampled_from(
        [
            b'"text"',
            b"41",
            b"[1, 2.5]",
            b'{"sku": "a", "qty": 2}',
            b"{bad",
            b"\xff\xfe\xfd",
            b'"\xff"',
        ]
    ),
    as_json(JSON_VALUES),
    st.binary(max_size=64),
    st.integers(LIMIT - 2, LIMIT + 2).map(lambda n: b'"' + b"x" * (n - 2) + b'"'),
    st.integers(LIMIT + 1, 4 * LIMIT).map(lambda n: b"1" * n),
)

CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/octet-stream",
        "Application/JSON",
        "garbage",
        "",
        "*/*",
        "application/*",
    ]
) | st.binary(max_size=12).map(lambda b: b.decode("latin-1"))


@st.composite
def random_path(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        verb = draw(st.sampled_from(["invocation", "awakeables", "health"]))
        action = {
            "invocation": ["attach", "output"],
            "awakeables": ["resolve", "reject"],
            "health": [""],
        }[verb]
        parts = [
            "restate",
            verb,
            draw(st.just("{invocation}") | segment),
            draw(st.sampled_from(action) | segment),
        ]
        parts = parts[: draw(st.integers(2, 5))]
        return "/" + "/".join(parts)
    first = draw(st.sampled_from(["Svc", "Counter", "restate", "restate", "Nope"]) | segment)
    parts = [first, *draw(st.lists(segment, max_size=7))]
    path = "/" + "/".join(parts)
    return path + "/" if draw(st.integers(0, 9)) == 0 else path


SPOILABLE = [
    "path",
    "key",
    "body",
    "content-type",
    "length",
    "idempotency-key",
    "header",
    "query",
    "method",
]


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """A request a handler accepts, spoiled in none, one or a few of its parts."""
    count = draw(st.sampled_from([0, 0, 1, 1, 1, 1, 2, 3]))
    bad = set(draw(st.permutations(SPOILABLE))[:count])
    target = draw(st.sampled_from(sorted(ACCEPTED)))
    ct, valid_body = ACCEPTED[target]
    service, handler = target.split("/")
    is_send = draw(st.integers(0, 2)) == 0
    if "path" in bad:
        path = draw(random_path())
    else:
        parts = [service, handler]
        if service == "Counter":
            parts.insert(1, draw(st.sampled_from(["k1", "k2", "a%2Fb", "caf%C3%A9"])))
        if "key" in bad:  # a key too many or too few, another handler
            parts = draw(st.permutations([*parts, draw(segment)]))[: draw(st.integers(1, 4))]
        path = "/" + "/".join([*parts, *(["send"] if is_send else [])])
    body = draw(BODIES) if "body" in bad else draw(valid_body)
    if "content-type" in bad:
        ct = draw(CONTENT_TYPES)
    headers: list[tuple[bytes, bytes]] = []
    if ct is not None:
        headers.append((b"content-type", ct.encode("latin-1")))
    length = (
        draw(st.sampled_from(["low", "high", "garbage", "none"])) if "length" in bad else "true"
    )
    if len(body) > LIMIT and draw(st.booleans()):
        length = "none"  # streamed: only counting what arrives finds it too long
    if length != "none":
        value = {
            "true": str(len(body)),
            "low": str(max(0, len(body) - 5)),
            "high": str(LIMIT + 1 + len(body)),
            "garbage": "12abc",
        }[length]
        headers.append((b"content-length", value.encode()))
    if "idempotency-key" in bad:
        headers.append((b"idempotency-key", draw(st.binary(max_size=6))))
    elif draw(st.booleans()):
        headers.append((b"idempotency-key", draw(st.sampled_from([b"k1", b"k2"]))))
    if "header" in bad:
        headers.append((b"x-extra", draw(st.binary(max_size=8))))
    if "query" in bad:
        query = draw(
            st.sampled_from(
                [
                    b"delay=10ms",
                    b"DELAY=PT0.01S",
                    b"delay=soon",
                    b"delay=",
                    b"x=1&delay=5ms",
                    b"%ff=%ff",
                    b"delay=-1s",
                ]
            )
        )
    else:
        query = draw(st.sampled_from([b"", b"delay=10ms", b"DELAY=PT0.01S"])) if is_send else b""
    method = (
        draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "HEAD", "BREW"]))
        if "method" in bad
        else "POST"
    )
    return Request(
        method=method,
        path=path,
        query=query,
        headers=headers,
        body=body,
        chunks=draw(st.lists(st.integers(1, 2 * LIMIT), min_size=1, max_size=4)),
    )


@dataclass
class Answer:
    status: int = 0
    headers: dict[bytes, bytes] | None = None
    body: bytes = b""
    complete: bool = False


async def send_request(ingress: Ingress, req: Request, path: str) -> Answer:
    pieces: list[bytes] = []
    i = k = 0
    while i < len(req.body):
        n = req.chunks[k % len(req.chunks)]
        pieces.append(req.body[i : i + n])
        i, k = i + n, k + 1
    queue = [{"type": "http.request", "body": p, "more_body": True} for p in pieces]
    queue.append({"type": "http.request", "body": b"", "more_body": False})
    answer = Answer()

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # a well-behaved server sends nothing after the end
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        assert not answer.complete, "a message after the response ended"
        if msg["type"] == "http.response.start":
            assert answer.headers is None, "two response starts"
            answer.status = msg["status"]
            answer.headers = dict(msg["headers"])
        else:
            assert answer.headers is not None, "a body before the response start"
            answer.body += msg.get("body", b"")
            answer.complete = not msg.get("more_body", False)

    raw = path.encode("utf-8", "surrogateescape")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": "http",
        "path": path,
        "raw_path": raw,
        "query_string": req.query,
        "headers": req.headers,
    }
    await ingress(scope, receive, send)
    return answer


# ---- the property -------------------------------------------------------------------------------

_seed = os.environ.get("DF_FUZZ_SEED")


def _fuzz(test: Any) -> Any:
    test = settings(
        max_examples=200,
        deadline=timedelta(seconds=2),
        derandomize=_seed is None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )(test)
    return seed(int(_seed))(test) if _seed is not None else test


@_fuzz
@given(req=requests())
def test_the_ingress_survives_any_request(harness: Harness, req: Request) -> None:
    path = req.path
    if "{invocation}" in path:
        recent = (
            harness.invocation_ids[-1]
            if harness.invocation_ids
            else "inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        )
        path = path.replace("{invocation}", recent)
    before = harness.stored()
    answer = harness.run(send_request(harness.ingress, req, path))
    assert answer.complete, (req, answer)
    assert answer.status < 500, (req, answer)
    assert answer.headers is not None
    declared = dict(req.headers).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > LIMIT:
        assert answer.status == 413, ("announced over the limit", req, answer)
    if len(req.body) > LIMIT:
        assert answer.status >= 400, ("a body over the limit was accepted", req, answer)
    if answer.status >= 400:
        assert answer.headers[b"content-type"] == b"application/json", (req, answer)
        error = json.loads(answer.body)
        assert set(error) == {"code", "message"} and isinstance(error["message"], str), error
        assert harness.stored() == before, ("a refused request stored an invocation", req, answer)
    inv_id = answer.headers.get(b"x-restate-id")
    if inv_id:
        harness.invocation_ids.append(inv_id.decode())


def test_valid_requests_succeed_after_the_fuzzing(harness: Harness) -> None:
    """Runs after the property (same module, same engine): the engine still serves."""
    ct = [(b"content-type", b"application/json")]
    started = time.monotonic()
    calls = [
        ("/Svc/echo", b'"still here"', b'"still here"'),
        ("/Svc/add_one", b"41", b"42"),
        ("/Svc/maybe", b"null", b'"None"'),
    ]
    for path, body, expected in calls:
        answer = harness.run(
            send_request(
                harness.ingress, Request("POST", path, b"", ct, body, [len(body) or 1]), path
            )
        )
        assert (answer.status, answer.body) == (200, expected), (path, answer)
    sent = harness.run(
        send_request(
            harness.ingress,
            Request("POST", "/Counter/fuzz-after/add/send", b"", ct, b"5", [1]),
            "/Counter/fuzz-after/add/send",
        )
    )
    assert sent.status == 202, sent
    inv_id = json.loads(sent.body)["invocationId"]

    async def result() -> Any:
        return await harness.engine.result(inv_id)

    assert harness.run(result()) == 5
    assert time.monotonic() - started < 10
