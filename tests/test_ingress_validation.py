"""What the embedded engine's ingress refuses, and the handler options the endpoint
advertises to restate-server.

The ingress answers like restate-server 1.7.12's (``crates/ingress-http``), with the status
each kind of bad request gets there; none of them stores an invocation. The manifest carries
``input.required``, the retry policy and the retentions under the names of restate's
``endpoint_manifest_schema.json``, each only in the manifest versions that define it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional, TypeVar

import pytest

import durable_futures as df
from durable_futures.local import ingress as ingress_module
from durable_futures.local.ingress import DEFAULT_MAX_BODY_BYTES, Ingress

from .asgi_client import Response, call

T = TypeVar("T")

JSON_CT = (("content-type", "application/json"),)
BAD_PATH = "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"


# ---- services ---------------------------------------------------------------------------------


@dataclass
class Item:
    sku: str
    qty: int


class Opaque:
    """A type the JSON serde passes through as decoded (it knows nothing to check)."""


def make_services() -> list[df.Service]:
    svc = df.Service("Svc")
    obj = df.VirtualObject("Counter")

    @svc.handler()
    async def echo(ctx: df.Context, s: str) -> str:
        return s

    @svc.handler()
    async def add_one(ctx: df.Context, n: int) -> int:
        return n + 1

    @svc.handler()
    async def item(ctx: df.Context, it: Item) -> int:
        return it.qty

    @svc.handler()
    async def opaque(ctx: df.Context, v: Opaque) -> str:
        return type(v).__name__

    @svc.handler()
    async def no_input(ctx: df.Context) -> str:
        return "nothing needed"

    @svc.handler()
    async def maybe(ctx: df.Context, n: int | None) -> str:
        return repr(n)

    @svc.handler()
    async def with_default(ctx: df.Context, n: int = 7) -> int:
        return n

    @svc.handler()
    async def raw(ctx: df.Context, data: bytes) -> bytes:
        return data[::-1]

    @obj.handler()
    async def add(ctx: df.ObjectContext, n: int) -> dict[str, Any]:
        total = (await ctx.get("total", int)) or 0
        ctx.set("total", total + n)
        return {"key": ctx.key, "total": total + n}

    return [svc, obj]


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


Scenario = Callable[[Ingress, df.LocalEngine], Awaitable[T]]


def with_ingress(tmp_path: Path, body: Scenario[T], **ingress_kw: Any) -> T:
    async def main() -> T:
        engine = df.LocalEngine(*make_services(), path=tmp_path / "v.db", durability="os")
        async with engine:
            return await body(Ingress(engine, **ingress_kw), engine)

    return run(main())


async def request(
    app: Any,
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    headers: Sequence[tuple[str, str]] = JSON_CT,
) -> Response:
    return await call(app, path, body, method=method, headers=headers, http_version="1.1")


def error_of(resp: Response) -> dict[str, Any]:
    assert resp.headers["content-type"] == "application/json", resp
    body = json.loads(resp.body)
    assert set(body) == {"code", "message"} and body["code"] == resp.status, body
    return body  # type: ignore[no-any-return]


def stored(engine: df.LocalEngine) -> int:
    return len(engine.invocations(10_000))


async def refused(
    engine: df.LocalEngine,
    app: Any,
    path: str,
    body: bytes = b"",
    *,
    status: int,
    message: str,
    method: str = "POST",
    headers: Sequence[tuple[str, str]] = JSON_CT,
) -> None:
    """The request is answered ``status`` with ``message`` in its error, and nothing is
    stored."""
    before = stored(engine)
    resp = await request(app, path, body, method=method, headers=headers)
    assert resp.status == status, (path, resp)
    assert message in error_of(resp)["message"], (path, resp)
    await engine.flush()
    assert stored(engine) == before, (path, "an invocation was stored")


# ---- input: required, content-type, body ------------------------------------------------------


def test_a_required_input_refuses_an_empty_body(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        # restate-server: no content-type → "Empty content-type"; a JSON content-type and no
        # body → "Empty body not allowed".
        await refused(
            engine, ingress, "/Svc/echo", headers=(), status=400, message="Empty content-type"
        )
        await refused(engine, ingress, "/Svc/echo", status=400, message="Empty body not allowed")
        await refused(
            engine, ingress, "/Svc/echo/send", status=400, message="Empty body not allowed"
        )
        await refused(
            engine, ingress, "/Counter/k/add", status=400, message="Empty body not allowed"
        )

    with_ingress(tmp_path, body)


@pytest.mark.parametrize("handler", ["echo", "add_one", "item", "opaque"])
def test_a_required_input_refuses_null(tmp_path: Path, handler: str) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        await refused(engine, ingress, f"/Svc/{handler}", b"null", status=400, message="null")
        await refused(
            engine, ingress, f"/Svc/{handler}/send", b" null ", status=400, message="null"
        )
        if handler == "opaque":  # whatever else decodes is the handler's business
            resp = await request(ingress, "/Svc/opaque", b"{}")
            assert (resp.status, resp.body) == (200, b'"dict"'), resp

    with_ingress(tmp_path, body)


@pytest.mark.parametrize(
    ("path", "payload", "message"),
    [
        ("/Svc/add_one", b'"abc"', "expected int"),
        ("/Svc/add_one", b"true", "expected int"),
        ("/Svc/echo", b"42", "expected str"),
        ("/Svc/item", b"[1]", "cannot decode"),
        ("/Svc/item", b'{"sku": "a"}', "cannot decode"),
        ("/Svc/maybe", b'"x"', "cannot decode"),
        ("/Svc/echo", b"{bad", "invalid JSON input for Svc/echo"),
        ("/Svc/echo", b'"\xff\xfe"', "invalid JSON input for Svc/echo"),
        ("/Counter/k/add", b"[]", "expected int"),
    ],
)
def test_input_that_does_not_decode_is_refused_before_an_invocation_exists(
    tmp_path: Path, path: str, payload: bytes, message: str
) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        await refused(engine, ingress, path, payload, status=400, message=message)
        await refused(engine, ingress, path + "/send", payload, status=400, message=message)

    with_ingress(tmp_path, body)


def test_an_optional_input_may_be_left_out(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        resp = await request(ingress, "/Svc/maybe", headers=())
        assert (resp.status, resp.body) == (200, b'"None"'), resp
        resp = await request(ingress, "/Svc/maybe", b"null")
        assert (resp.status, resp.body) == (200, b'"None"'), resp
        resp = await request(ingress, "/Svc/maybe", b"5")
        assert (resp.status, resp.body) == (200, b'"5"'), resp
        # Without a body, a parameter with a default gets its default.
        resp = await request(ingress, "/Svc/with_default", headers=())
        assert (resp.status, resp.body) == (200, b"7"), resp
        resp = await request(ingress, "/Svc/with_default", b"3")
        assert (resp.status, resp.body) == (200, b"3"), resp
        # A JSON content-type promises a JSON value: an empty body then is refused (as
        # restate-server does for an input with a JSON schema), and so is a body without one.
        await refused(engine, ingress, "/Svc/maybe", status=400, message="Empty body not allowed")
        await refused(
            engine,
            ingress,
            "/Svc/maybe",
            b"5",
            headers=(),
            status=400,
            message="Empty content-type",
        )

    with_ingress(tmp_path, body)


def test_a_handler_without_input_refuses_a_body_or_a_content_type(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        empty = "Expected body and content-type to be empty"
        await refused(engine, ingress, "/Svc/no_input", b"null", status=400, message=empty)
        await refused(engine, ingress, "/Svc/no_input", b"", status=400, message=empty)
        await refused(engine, ingress, "/Svc/no_input", b"x", headers=(), status=400, message=empty)
        resp = await request(ingress, "/Svc/no_input", headers=())
        assert (resp.status, resp.body) == (200, b'"nothing needed"'), resp
        # restate-server invokes with GET as well as POST.
        resp = await request(ingress, "/Svc/no_input", method="GET", headers=())
        assert (resp.status, resp.body) == (200, b'"nothing needed"'), resp

    with_ingress(tmp_path, body)


def test_the_content_type_must_match_the_input(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        for ct in ("text/plain", "Application/JSON", "application", "application/octet-stream"):
            await refused(
                engine,
                ingress,
                "/Svc/echo",
                b'"x"',
                headers=(("content-type", ct),),
                status=400,
                message=f"Content-type '{ct}' does not match 'application/json'",
            )
        resp = await request(
            ingress,
            "/Svc/echo",
            b'"x"',
            headers=(("content-type", "application/json; charset=utf-8"),),
        )
        assert (resp.status, resp.body) == (200, b'"x"'), resp
        # Raw input: octet-stream, and an empty body is a value.
        octet = (("content-type", "application/octet-stream"),)
        resp = await request(ingress, "/Svc/raw", b"abc", headers=octet)
        assert (resp.status, resp.body) == (200, b"cba"), resp
        resp = await request(ingress, "/Svc/raw", b"", headers=octet)
        assert (resp.status, resp.body) == (200, b""), resp
        await refused(engine, ingress, "/Svc/raw", b"abc", status=400, message="does not match")
        await refused(
            engine, ingress, "/Svc/raw", headers=(), status=400, message="Empty content-type"
        )

    with_ingress(tmp_path, body)


# ---- paths, keys, methods -----------------------------------------------------------------------


def test_keys(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        await refused(engine, ingress, "/Svc/somekey/echo", b'"x"', status=400, message=BAD_PATH)
        await refused(
            engine, ingress, "/Svc/somekey/echo", b'"x"', status=400, message="takes no key"
        )
        await refused(
            engine, ingress, "/Counter/add", b"1", status=400, message="the key is missing"
        )
        # The key is "add", the handler "send": restate-server looks for that handler.
        await refused(
            engine, ingress, "/Counter/add/send", b"1", status=404, message="handler 'send'"
        )
        await refused(
            engine, ingress, "/Counter//add", b"1", status=400, message="must not be empty"
        )
        await refused(
            engine, ingress, "/Counter/%ff/add", b"1", status=400, message="cannot decode key"
        )
        resp = await request(ingress, "/Counter/caf%C3%A9%2F1/add", b"1")
        assert json.loads(resp.body) == {"key": "café/1", "total": 1}, resp

    with_ingress(tmp_path, body)


def test_unknown_services_and_handlers_are_404(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        await refused(
            engine, ingress, "/Nope/echo", b'"x"', status=404, message="service 'Nope' not found"
        )
        # Only a key is percent-decoded, as restate-server does.
        await refused(
            engine, ingress, "/Sv%63/echo", b'"x"', status=404, message="service 'Sv%63' not found"
        )
        await refused(
            engine,
            ingress,
            "/Svc/nope",
            b'"x"',
            status=404,
            message="the service 'Svc' exists, but the handler 'nope' was not found",
        )
        await refused(
            engine, ingress, "/Counter/k/nope", b"1", status=404, message="handler 'nope'"
        )
        # The handler is looked up before the method is checked.
        await refused(
            engine, ingress, "/Svc/nope", method="DELETE", headers=(), status=404, message="nope"
        )

    with_ingress(tmp_path, body)


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/", 400, "bad path: /"),
        ("/Svc", 400, "bad path: /Svc"),
        ("/a/b/c/d/e/f/g/h", 400, "bad path"),
        ("/Svc/echo/other", 400, BAD_PATH),
        ("/Svc/echo/send/more", 400, BAD_PATH),
        ("/restate", 400, "bad path: /restate"),
        ("/restate/nothing", 404, "not found"),
        ("/openapi/x", 404, "not found"),
        ("/restate/awakeables/x", 400, "/restate/awakeables/:id/resolve"),
        ("/restate/awakeables/x/other", 404, "not found"),
        ("/restate/invocation/x", 400, "/restate/invocation/:invocation_id/output"),
        ("/restate/invocation/x/other", 404, "not found"),
    ],
)
def test_unknown_paths(tmp_path: Path, path: str, status: int, message: str) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        await refused(engine, ingress, path, b"1", status=status, message=message)

    with_ingress(tmp_path, body)


def test_methods(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        for method in ("PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
            await refused(
                engine,
                ingress,
                "/Svc/echo",
                b'"x"',
                method=method,
                status=405,
                message="method not allowed",
            )
        await refused(
            engine,
            ingress,
            "/restate/health",
            method="POST",
            status=405,
            message="method not allowed",
        )
        await refused(
            engine,
            ingress,
            "/restate/awakeables/x/resolve",
            method="GET",
            status=405,
            message="method not allowed",
        )
        await refused(
            engine,
            ingress,
            "/restate/invocation/inv_00000000000000000000000000000000/attach",
            method="POST",
            status=405,
            message="method not allowed",
        )
        # restate-server reads the invocation id before it looks at the method.
        await refused(
            engine,
            ingress,
            "/restate/invocation/x/attach",
            method="POST",
            status=400,
            message="bad invocation id 'x': bad format",
        )
        # GET invokes, as POST does (here the required input is missing).
        await refused(
            engine,
            ingress,
            "/Svc/echo",
            method="GET",
            headers=(),
            status=400,
            message="Empty content-type",
        )

    with_ingress(tmp_path, body)


def test_a_trailing_slash_is_ignored(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        resp = await request(ingress, "/Svc/echo/", b'"x"')
        assert (resp.status, resp.body) == (200, b'"x"'), resp

    with_ingress(tmp_path, body)


def test_delay_and_headers(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        def with_query(query: bytes) -> Any:
            async def app(scope: Any, receive: Any, send: Any) -> None:
                await ingress({**scope, "query_string": query}, receive, send)

            return app

        await refused(
            engine,
            with_query(b"delay=10ms"),
            "/Svc/echo",
            b'"x"',
            status=400,
            message="only with sends",
        )
        await refused(
            engine,
            with_query(b"DELAY=soon"),
            "/Svc/echo/send",
            b'"x"',
            status=400,
            message="bad delay",
        )
        resp = await request(with_query(b"Delay=10ms"), "/Svc/echo/send", b'"x"')
        assert resp.status == 202, resp
        assert resp.headers["x-restate-id"] == json.loads(resp.body)["invocationId"]
        # A header value restate-server cannot read as text is refused.
        for name in ("idempotency-key", "x-trace"):
            await refused(
                engine,
                ingress,
                "/Svc/echo",
                b'"x"',
                headers=(*JSON_CT, (name, "caf\u00e9")),
                status=400,
                message=f"bad header {name}",
            )

    with_ingress(tmp_path, body)


# ---- body size ----------------------------------------------------------------------------------


class Body:
    """An ASGI request body in chunks, counting how many were read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.read = 0

    async def receive(self) -> dict[str, Any]:
        if self.read < len(self.chunks):
            self.read += 1
            more = self.read < len(self.chunks)
            return {"type": "http.request", "body": self.chunks[self.read - 1], "more_body": more}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}


async def send_body(
    app: Any, path: str, body: Body, headers: Sequence[tuple[bytes, bytes]] = ()
) -> Response:
    resp = Response()

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            resp.status = msg["status"]
            resp.headers = {k.decode(): v.decode() for k, v in msg["headers"]}
        else:
            resp.body += msg.get("body", b"")

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
    }
    await asyncio.wait_for(app(scope, body.receive, send), 10)
    return resp


def test_a_body_over_the_limit_is_413_and_not_read_further(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        assert ingress.max_body_bytes == 64
        value = json.dumps("x" * 60).encode()  # 62 bytes
        # Announced by content-length: refused before anything is read, whatever the path.
        for path in ("/Svc/echo", "/Nope/x", "/restate/awakeables/x/resolve"):
            big = Body([value + b"   "])
            resp = await send_body(ingress, path, big, [(b"content-length", b"65")])
            assert resp.status == 413, resp
            assert "length limit exceeded" in error_of(resp)["message"]
            assert big.read == 0
        # Streamed without a length: reading stops at the chunk that passes the limit.
        streamed = Body([value[:40], value[40:] + b"  ", b" ", b"more", b"and more"])
        resp = await send_body(ingress, "/Svc/echo/send", streamed)
        assert resp.status == 413, resp
        assert streamed.read == 3
        # A length that lies low is caught while streaming.
        lying = Body([value, b"    "])
        resp = await send_body(ingress, "/Svc/echo", lying, [(b"content-length", b"2")])
        assert resp.status == 413, resp
        awakeable = Body([b"1" * 65])
        resp = await send_body(ingress, "/restate/awakeables/x/resolve", awakeable)
        assert resp.status == 413, resp
        assert stored(engine) == 0
        # Up to the limit is fine.
        exact = Body([value[:30], value[30:] + b"  "])
        resp = await send_body(ingress, "/Svc/echo", exact, [(b"content-length", b"64")])
        assert (resp.status, resp.body) == (200, value), resp

    with_ingress(tmp_path, body, max_body_bytes=64)


def test_the_default_limit_is_restate_servers() -> None:
    assert DEFAULT_MAX_BODY_BYTES == 32 * 1024 * 1024
    engine = df.LocalEngine()
    assert Ingress(engine).max_body_bytes == DEFAULT_MAX_BODY_BYTES
    with pytest.raises(TypeError):
        Ingress(engine, max_body_bytes="1MB")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Ingress(engine, max_body_bytes=0)


def test_serve_passes_the_limit_to_the_ingress(monkeypatch: pytest.MonkeyPatch) -> None:
    import hypercorn.asyncio

    served: list[Any] = []

    async def fake_serve(app: Any, config: Any, shutdown_trigger: Any) -> None:
        served.append(app)
        await shutdown_trigger()

    async def now() -> None:
        return None

    monkeypatch.setattr(hypercorn.asyncio, "serve", fake_serve)

    async def main() -> None:
        async with df.LocalEngine() as engine:
            await ingress_module.serve(engine, port=0, shutdown_trigger=now, max_body_bytes=1000)
            await ingress_module.serve(engine, port=0, shutdown_trigger=now)

    run(main())
    assert [app.max_body_bytes for app in served] == [1000, DEFAULT_MAX_BODY_BYTES]


# ---- the manifest -------------------------------------------------------------------------------

RETRY_FIELDS = {
    "retryPolicyInitialInterval",
    "retryPolicyMaxInterval",
    "retryPolicyMaxAttempts",
    "retryPolicyExponentiationFactor",
    "retryPolicyOnMaxAttempts",
}
RETENTION_FIELDS = {"journalRetention", "idempotencyRetention"}


def options_service() -> df.Service:
    svc = df.Service(
        "Opts",
        retry_policy=df.RetryPolicy(
            initial_interval=timedelta(milliseconds=250),
            max_interval=timedelta(seconds=30),
            factor=1.5,
            max_attempts=5,
            on_max_attempts="kill",
        ),
        journal_retention=timedelta(hours=2),
        idempotency_retention=timedelta(minutes=10),
    )

    @svc.handler(
        retry_policy=df.RetryPolicy(max_attempts=None),
        journal_retention=timedelta(0),
        idempotency_retention=timedelta(seconds=1.5),
    )
    async def own(ctx: df.Context, s: str) -> str:
        return s

    @svc.handler()
    async def inherits(ctx: df.Context) -> None:
        return None

    return svc


def discover(app: Any, version: int) -> dict[str, Any]:
    accept = f"application/vnd.restate.endpointmanifest.v{version}+json"
    resp = asyncio.run(call(app, "/discover", method="GET", headers=[("accept", accept)]))
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == accept
    return json.loads(resp.body)  # type: ignore[no-any-return]


def test_the_manifest_v4_carries_retry_policy_and_retention_at_both_levels() -> None:
    manifest = discover(df.asgi_app(options_service()), 4)
    (svc,) = manifest["services"]
    handlers = {h["name"]: h for h in svc["handlers"]}
    assert {k: svc[k] for k in RETRY_FIELDS | RETENTION_FIELDS} == {
        "retryPolicyInitialInterval": 250,
        "retryPolicyMaxInterval": 30_000,
        "retryPolicyMaxAttempts": 5,
        "retryPolicyExponentiationFactor": 1.5,
        "retryPolicyOnMaxAttempts": "KILL",
        "journalRetention": 7_200_000,
        "idempotencyRetention": 600_000,
    }
    own = handlers["own"]
    # No limit on attempts cannot be said in the manifest: the field is left out.
    assert {k: own[k] for k in (RETRY_FIELDS | RETENTION_FIELDS) & set(own)} == {
        "retryPolicyInitialInterval": 500,
        "retryPolicyMaxInterval": 60_000,
        "retryPolicyExponentiationFactor": 2.0,
        "retryPolicyOnMaxAttempts": "PAUSE",
        "journalRetention": 0,
        "idempotencyRetention": 1500,
    }
    assert not (RETRY_FIELDS | RETENTION_FIELDS) & set(handlers["inherits"])


@pytest.mark.parametrize(
    ("version", "absent"), [(3, RETRY_FIELDS), (2, RETRY_FIELDS | RETENTION_FIELDS)]
)
def test_older_manifests_leave_out_the_fields_they_do_not_define(
    version: int, absent: set[str]
) -> None:
    manifest = discover(df.asgi_app(options_service()), version)
    (svc,) = manifest["services"]
    for entry in (svc, *svc["handlers"]):
        assert not absent & set(entry), entry
    if version == 3:
        assert svc["journalRetention"] == 7_200_000
        assert svc["handlers"][0]["idempotencyRetention"] == 1500


def test_every_option_field_is_one_restates_manifest_schema_names() -> None:
    # service-protocol/endpoint_manifest_schema.json (restate 1.7): the fields a service and
    # a handler may carry besides name, ty, handlers, input, output.
    schema_service = {
        "documentation",
        "inactivityTimeout",
        "abortTimeout",
        "journalRetention",
        "idempotencyRetention",
        "enableLazyState",
        "ingressPrivate",
        "metadata",
        *RETRY_FIELDS,
    }
    schema_handler = schema_service | {"workflowCompletionRetention"}
    (svc,) = discover(df.asgi_app(options_service()), 4)["services"]
    assert set(svc) - {"name", "ty", "handlers"} <= schema_service
    for h in svc["handlers"]:
        assert set(h) - {"name", "ty", "input", "output"} <= schema_handler
        assert set(h["input"]) <= {"required", "contentType", "jsonSchema"}


def test_the_manifest_says_which_inputs_are_required() -> None:
    svc = df.Service("Inputs")

    @svc.handler()
    async def plain(ctx: df.Context, s: str) -> str:
        return s

    @svc.handler()
    async def union(ctx: df.Context, n: int | None) -> None:
        return None

    @svc.handler()
    async def optional(ctx: df.Context, n: Optional[int]) -> None:  # noqa: UP045
        return None

    @svc.handler()
    async def anything(ctx: df.Context, v: Any) -> None:
        return None

    @svc.handler()
    async def unannotated(ctx, v):  # type: ignore[no-untyped-def]
        return None

    @svc.handler()
    async def defaulted(ctx: df.Context, n: int = 3) -> None:
        return None

    @svc.handler()
    async def items(ctx: df.Context, xs: list[int]) -> None:
        return None

    @svc.handler()
    async def record(ctx: df.Context, it: Item) -> None:
        return None

    @svc.handler()
    async def raw(ctx: df.Context, b: bytes) -> None:
        return None

    @svc.handler()
    async def none(ctx: df.Context) -> None:
        return None

    for version in (2, 3, 4):
        (entry,) = discover(df.asgi_app(svc), version)["services"]
        inputs = {h["name"]: h["input"] for h in entry["handlers"]}
        assert inputs == {
            "plain": {
                "required": True,
                "contentType": "application/json",
                "jsonSchema": {"type": "string"},
            },
            "union": {
                "required": False,
                "contentType": "application/json",
                "jsonSchema": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            },
            "optional": {
                "required": False,
                "contentType": "application/json",
                "jsonSchema": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            },
            "anything": {"required": False, "contentType": "application/json", "jsonSchema": {}},
            "unannotated": {"required": False, "contentType": "application/json", "jsonSchema": {}},
            "defaulted": {
                "required": False,
                "contentType": "application/json",
                "jsonSchema": {"type": "integer"},
            },
            "items": {
                "required": True,
                "contentType": "application/json",
                "jsonSchema": {"type": "array", "items": {"type": "integer"}},
            },
            "record": {
                "required": True,
                "contentType": "application/json",
                "jsonSchema": {
                    "type": "object",
                    "title": "Item",
                    "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                    "required": ["sku", "qty"],
                },
            },
            "raw": {"required": True, "contentType": "application/octet-stream"},
            "none": {},
        }
    assert svc.handlers["plain"].input_required and not svc.handlers["union"].input_required


# ---- options on services and handlers -----------------------------------------------------------


def test_options_are_stored_on_the_service_and_the_handler() -> None:
    svc = options_service()
    assert svc.retry_policy is not None and svc.retry_policy.max_attempts == 5
    assert svc.journal_retention == timedelta(hours=2)
    assert svc.idempotency_retention == timedelta(minutes=10)
    own, inherits = svc.handlers["own"], svc.handlers["inherits"]
    assert own.retry_policy == df.RetryPolicy(max_attempts=None)
    assert (own.journal_retention, own.idempotency_retention) == (
        timedelta(0),
        timedelta(seconds=1.5),
    )
    assert (inherits.retry_policy, inherits.journal_retention, inherits.idempotency_retention) == (
        None,
        None,
        None,
    )
    obj = df.VirtualObject(
        "Obj", retry_policy=df.RetryPolicy(), journal_retention=timedelta(days=2)
    )
    assert obj.ty == "VIRTUAL_OBJECT"
    assert obj.retry_policy == df.RetryPolicy() and obj.journal_retention == timedelta(days=2)
    assert obj.idempotency_retention is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"retry_policy": {"max_attempts": 3}}, TypeError),
        ({"retry_policy": 3}, TypeError),
        ({"journal_retention": 3600}, TypeError),
        ({"journal_retention": "1h"}, TypeError),
        ({"idempotency_retention": 1.5}, TypeError),
        ({"idempotency_retention": True}, TypeError),
        ({"journal_retention": timedelta(seconds=-1)}, ValueError),
    ],
)
def test_wrong_options_are_refused_when_declared(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        df.Service("S", **kwargs)
    with pytest.raises(error):
        df.VirtualObject("O", **kwargs)
    svc = df.Service("S")
    with pytest.raises(error):

        @svc.handler(**kwargs)
        async def h(ctx: df.Context) -> None:
            return None

    assert not svc.handlers


# ---- df.RetryPolicy ------------------------------------------------------------------------------


def test_retry_policy_defaults_are_restate_servers() -> None:
    p = df.RetryPolicy()
    assert (p.initial_interval, p.max_interval, p.factor, p.max_attempts, p.on_max_attempts) == (
        timedelta(milliseconds=500),
        timedelta(minutes=1),
        2.0,
        70,
        "pause",
    )
    assert p.manifest() == {
        "retryPolicyInitialInterval": 500,
        "retryPolicyMaxInterval": 60_000,
        "retryPolicyExponentiationFactor": 2.0,
        "retryPolicyOnMaxAttempts": "PAUSE",
        "retryPolicyMaxAttempts": 70,
    }
    kill = df.RetryPolicy(factor=3, on_max_attempts="kill", max_attempts=1).manifest()
    assert kill["retryPolicyOnMaxAttempts"] == "KILL" and kill["retryPolicyMaxAttempts"] == 1
    assert type(kill["retryPolicyExponentiationFactor"]) is float
    assert "retryPolicyMaxAttempts" not in df.RetryPolicy(max_attempts=None).manifest()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"initial_interval": 500}, TypeError),
        ({"max_interval": 60.0}, TypeError),
        ({"initial_interval": timedelta(0)}, ValueError),
        ({"max_interval": timedelta(seconds=-1)}, ValueError),
        (
            {"initial_interval": timedelta(seconds=2), "max_interval": timedelta(seconds=1)},
            ValueError,
        ),
        ({"factor": "2"}, TypeError),
        ({"factor": True}, TypeError),
        ({"factor": 0.5}, ValueError),
        ({"factor": float("nan")}, ValueError),
        ({"factor": float("inf")}, ValueError),
        ({"max_attempts": 2.0}, TypeError),
        ({"max_attempts": True}, TypeError),
        ({"max_attempts": 0}, ValueError),
        ({"on_max_attempts": "retry"}, ValueError),
        ({"on_max_attempts": "PAUSE"}, ValueError),
    ],
)
def test_retry_policy_validation(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        df.RetryPolicy(**kwargs)


def test_retry_policy_is_immutable_and_comparable() -> None:
    p = df.RetryPolicy(max_attempts=3)
    with pytest.raises(AttributeError):
        p.max_attempts = 4  # type: ignore[misc]
    assert p == df.RetryPolicy(max_attempts=3) and hash(p) == hash(df.RetryPolicy(max_attempts=3))
    assert df.RetryPolicy(factor=1) == df.RetryPolicy(factor=1.0)
