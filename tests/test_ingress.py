"""The Restate-compatible HTTP ingress of the embedded engine, called in process (ASGI,
HTTP/1.1 style) over a ``LocalEngine`` on a temporary SQLite file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

import durable_futures as df
from durable_futures.local.ingress import Ingress, parse_duration

from .asgi_client import Response, call
from .stored import invocation_stored

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class App:
    """Services of one test, with hooks the handlers report to."""

    awakeables: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    services: list[df.Service] = field(default_factory=list)


def make_app() -> App:
    app = App()
    svc = df.Service("Svc")
    obj = df.VirtualObject("Counter")

    @svc.handler()
    async def echo(ctx: df.Context, s: str) -> str:
        return s

    @svc.handler()
    async def add_one(ctx: df.Context, n: int) -> int:
        return n + 1

    @svc.handler()
    async def no_input(ctx: df.Context) -> str:
        return "nothing needed"

    @svc.handler()
    async def fail(ctx: df.Context, code: int) -> str:
        raise df.TerminalError(f"failed with {code}", code)

    @svc.handler()
    async def counted(ctx: df.Context, name: str) -> dict[str, int]:
        def bump() -> int:
            app.counts[name] = app.counts.get(name, 0) + 1
            return app.counts[name]

        return {"n": await ctx.run("bump", bump)}

    @svc.handler()
    async def wait(ctx: df.Context, name: str) -> dict[str, Any]:
        awk_id, fut = ctx.awakeable(Any)
        app.awakeables[name] = awk_id
        try:
            return {"value": await fut}
        except df.TerminalError as e:
            return {"rejected": e.message, "code": e.code}

    @svc.handler()
    def wait_sync(ctx: df.Context, name: str) -> dict[str, Any]:
        awk_id, fut = ctx.awakeable(Any)
        app.awakeables[name] = awk_id
        return {"value": fut.result()}

    @obj.handler()
    async def add(ctx: df.ObjectContext, n: int) -> dict[str, Any]:
        total = (await ctx.get("total", int)) or 0
        ctx.set("total", total + n)
        return {"key": ctx.key, "total": total + n}

    app.services = [svc, obj]
    return app


Body = Callable[[Ingress, df.LocalEngine, App], Awaitable[T]]


def with_ingress(tmp_path: Path, body: Body[T], timeout: float = 30) -> T:
    app = make_app()

    async def main() -> T:
        engine = df.LocalEngine(
            *app.services,
            path=tmp_path / "ingress.db",
            durability="os",
            retry_policy=df.RetryPolicy(initial_interval=timedelta(milliseconds=10)),
        )
        async with engine:
            return await body(Ingress(engine), engine, app)

    return run(main(), timeout)


async def post(
    ingress: Ingress, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return await call(
        ingress,
        path,
        body,
        headers=(("content-type", "application/json"), *headers),
        http_version="1.1",
    )


async def get(ingress: Ingress, path: str) -> Response:
    return await call(ingress, path, method="GET", http_version="1.1")


def error_of(resp: Response) -> dict[str, Any]:
    """An error answer: a JSON body with exactly ``code`` and ``message``."""
    assert resp.headers["content-type"] == "application/json", resp
    body = json.loads(resp.body)
    assert set(body) == {"code", "message"}, body
    assert isinstance(body["code"], int) and isinstance(body["message"], str), body
    return body  # type: ignore[no-any-return]


async def until(pred: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


# ---- calls ----------------------------------------------------------------------------------


def test_service_call_returns_the_output(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        resp = await post(ingress, "/Svc/echo", b'"hi"')
        assert resp.status == 200, resp
        assert resp.body == b'"hi"'
        assert resp.headers["content-type"] == "application/json"
        assert resp.headers["x-restate-id"].startswith("inv_")
        assert (await post(ingress, "/Svc/add_one", b"41")).body == b"42"
        # Neither a body nor a content-type for a handler without input; a trailing slash is
        # fine.
        resp = await call(ingress, "/Svc/no_input/", http_version="1.1")
        assert (resp.status, resp.body) == (200, b'"nothing needed"')

    with_ingress(tmp_path, body)


def test_virtual_object_call_with_key(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        assert json.loads((await post(ingress, "/Counter/k1/add", b"5")).body)["total"] == 5
        assert json.loads((await post(ingress, "/Counter/k1/add", b"2")).body)["total"] == 7
        # Each path segment is decoded on its own: a key may hold an encoded "/".
        resp = await post(ingress, "/Counter/a%2Fb/add", b"1")
        assert json.loads(resp.body) == {"key": "a/b", "total": 1}, resp

    with_ingress(tmp_path, body)


@pytest.mark.parametrize(("code", "status"), [(418, 418), (503, 503), (409, 409), (700, 500), (200, 500)])
def test_terminal_failure_answers_with_its_code(tmp_path: Path, code: int, status: int) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        resp = await post(ingress, "/Svc/fail", str(code).encode())
        assert resp.status == status, resp
        assert error_of(resp) == {"code": code, "message": f"failed with {code}"}
        assert resp.headers["x-restate-id"].startswith("inv_")

    with_ingress(tmp_path, body)


# ---- send, attach, output, awakeables -------------------------------------------------------


@pytest.mark.parametrize("handler", ["wait", "wait_sync"])
def test_send_then_attach_and_resolve_awakeable(tmp_path: Path, handler: str) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        resp = await post(ingress, f"/Svc/{handler}/send", b'"a"')
        assert resp.status == 202, resp
        sent = json.loads(resp.body)
        assert sent["status"] == "Accepted" and sent["invocationId"].startswith("inv_"), sent
        inv_id = sent["invocationId"]
        await until(lambda: "a" in app.awakeables)

        attach = asyncio.create_task(get(ingress, f"/restate/invocation/{inv_id}/attach"))
        resp = await get(ingress, f"/restate/invocation/{inv_id}/output")
        assert resp.status == 470, resp
        assert "not completed" in error_of(resp)["message"]
        await asyncio.sleep(0.05)
        assert not attach.done()

        awk = app.awakeables["a"]
        resp = await post(ingress, f"/restate/awakeables/{awk}/resolve", b'{"from": "ingress"}')
        assert resp.status == 202, resp
        resp = await attach
        assert resp.status == 200, resp
        assert json.loads(resp.body) == {"value": {"from": "ingress"}}
        # Attaching to a completed invocation answers at once; so does /output.
        assert (await get(ingress, f"/restate/invocation/{inv_id}/attach")).body == resp.body
        assert (await get(ingress, f"/restate/invocation/{inv_id}/output")).body == resp.body

    with_ingress(tmp_path, body)


def test_attach_and_output_right_after_send(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        # Nothing runs between the requests: the invocation may not be committed yet.
        sent = await post(ingress, "/Svc/echo/send", b'"soon"')
        inv_id = json.loads(sent.body)["invocationId"]
        resp = await get(ingress, f"/restate/invocation/{inv_id}/output")
        assert resp.status in (200, 470), resp
        resp = await get(ingress, f"/restate/invocation/{inv_id}/attach")
        assert (resp.status, resp.body) == (200, b'"soon"'), resp
        sent = await post(ingress, "/Svc/wait/send", b'"later"')
        inv_id = json.loads(sent.body)["invocationId"]
        resp = await get(ingress, f"/restate/invocation/{inv_id}/output")
        assert resp.status == 470, resp

    with_ingress(tmp_path, body)


def test_reject_awakeable_with_a_text_body(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        inv_id = json.loads((await post(ingress, "/Svc/wait/send", b'"r"')).body)["invocationId"]
        await until(lambda: "r" in app.awakeables)
        resp = await call(
            ingress,
            f"/restate/awakeables/{app.awakeables['r']}/reject",
            b"not today",
            headers=(("content-type", "text/plain"),),
            http_version="1.1",
        )
        assert resp.status == 202, resp
        resp = await get(ingress, f"/restate/invocation/{inv_id}/attach")
        assert json.loads(resp.body) == {"rejected": "not today", "code": 500}

    with_ingress(tmp_path, body)


def test_awakeable_errors(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        resp = await post(ingress, "/restate/awakeables/sign_1nonsense/resolve", b"1")
        assert resp.status == 400, resp
        assert "sign_1nonsense" in error_of(resp)["message"]
        await post(ingress, "/Svc/wait/send", b'"x"')
        await until(lambda: "x" in app.awakeables)
        resp = await post(ingress, f"/restate/awakeables/{app.awakeables['x']}/resolve", b"{nope")
        assert resp.status == 400, resp
        assert "not valid JSON" in error_of(resp)["message"]
        resp = await get(ingress, f"/restate/awakeables/{app.awakeables['x']}/resolve")
        assert resp.status == 405, resp
        error_of(resp)

    with_ingress(tmp_path, body)


def test_send_with_delay(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        async def delayed(scope: Any, receive: Any, send: Any) -> None:
            await ingress({**scope, "query_string": b"delay=300ms"}, receive, send)

        loop = asyncio.get_running_loop()
        started = loop.time()
        resp = await post(delayed, "/Svc/echo/send", b'"later"')  # type: ignore[arg-type]
        assert resp.status == 202, resp
        inv_id = json.loads(resp.body)["invocationId"]
        resp = await get(ingress, f"/restate/invocation/{inv_id}/attach")
        assert resp.body == b'"later"'
        assert loop.time() - started >= 0.29

        async def bad(scope: Any, receive: Any, send: Any) -> None:
            await ingress({**scope, "query_string": b"delay=soon"}, receive, send)

        resp = await post(bad, "/Svc/echo/send", b'"x"')  # type: ignore[arg-type]
        assert resp.status == 400, resp
        assert "not a duration" in error_of(resp)["message"]

    with_ingress(tmp_path, body)


def test_parse_duration() -> None:
    assert parse_duration("10s") == timedelta(seconds=10)
    assert parse_duration("1m30s") == timedelta(seconds=90)
    assert parse_duration("500ms") == timedelta(milliseconds=500)
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("1d") == timedelta(days=1)
    assert parse_duration("PT1.5S") == timedelta(seconds=1.5)
    assert parse_duration("P1DT2H") == timedelta(days=1, hours=2)
    for bad in ("", "10", "s", "10 parsecs", "PT", "1m x"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# ---- idempotency ----------------------------------------------------------------------------


def test_idempotency_key_returns_the_first_result(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        key = (("idempotency-key", "once"),)
        first = await post(ingress, "/Svc/counted", b'"c"', key)
        again = await post(ingress, "/Svc/counted", b'"c"', key)
        assert first.status == again.status == 200
        assert json.loads(first.body) == json.loads(again.body) == {"n": 1}
        assert first.headers["x-restate-id"] == again.headers["x-restate-id"]
        assert json.loads((await post(ingress, "/Svc/counted", b'"c"')).body) == {"n": 2}
        assert app.counts["c"] == 2

    with_ingress(tmp_path, body)


def test_idempotency_key_waits_for_the_first_invocation(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        key = (("idempotency-key", "k1"),)
        first = asyncio.create_task(post(ingress, "/Svc/wait", b'"w"', key))
        await until(lambda: "w" in app.awakeables)
        second = asyncio.create_task(post(ingress, "/Svc/wait", b'"w"', key))
        sent = await post(ingress, "/Svc/wait/send", b'"w"', key)
        assert sent.status == 202, sent
        assert json.loads(sent.body)["status"] == "PreviouslyAccepted"
        await asyncio.sleep(0.05)
        assert not first.done() and not second.done()
        engine.resolve_awakeable(app.awakeables["w"], 7)
        a, b = await first, await second
        assert a.status == b.status == 200
        assert json.loads(a.body) == json.loads(b.body) == {"value": 7}
        assert a.headers["x-restate-id"] == b.headers["x-restate-id"]
        assert json.loads(sent.body)["invocationId"] == a.headers["x-restate-id"]
        waits = [r for r in engine.invocations(100) if r[2] == "wait"]
        assert len(waits) == 1, waits

    with_ingress(tmp_path, body)


# ---- errors ---------------------------------------------------------------------------------


def test_unknown_service_and_handler_are_404(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        resp = await post(ingress, "/Nope/echo", b'"x"')
        assert resp.status == 404, resp
        assert error_of(resp) == {
            "code": 404,
            "message": "service 'Nope' not found, make sure to register the service before calling it.",
        }
        resp = await post(ingress, "/Svc/nope", b'"x"')
        assert resp.status == 404, resp
        assert "the service 'Svc' exists, but the handler 'nope' was not found" in error_of(resp)["message"]
        resp = await post(ingress, "/Counter/k/nope", b"1")
        assert resp.status == 404, resp
        assert "the service 'Counter' exists, but the handler 'nope'" in error_of(resp)["message"]
        # Paths of the wrong shape are 400, as in restate-server; an unknown /restate/ API 404.
        for path, status in (("/", 400), ("/restate/nothing", 404), ("/Svc/echo/extra/parts", 400)):
            resp = await post(ingress, path, b"")
            assert resp.status == status, (path, resp)
            error_of(resp)
        assert engine.invocations(10) == []

    with_ingress(tmp_path, body)


def test_malformed_json_input_is_400(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        resp = await post(ingress, "/Svc/echo", b"{bad")
        assert resp.status == 400, resp
        message = error_of(resp)["message"]
        assert message.startswith("invalid JSON input for Svc/echo: "), message
        assert engine.invocations(10) == []  # refused before any invocation exists
        # Well-formed JSON of the wrong type: the handler's decoding fails the invocation
        # terminally with 400, and the answer says what could not be decoded.
        resp = await post(ingress, "/Svc/add_one", b'"abc"')
        assert resp.status == 400, resp
        err = error_of(resp)
        assert err["code"] == 400 and "cannot decode" in err["message"], err
        assert "expected int" in err["message"], err

    with_ingress(tmp_path, body)


def test_key_errors_are_400(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        resp = await post(ingress, "/Counter/add", b"1")
        assert resp.status == 400, resp
        assert "Counter is a virtual object: the key is missing" in error_of(resp)["message"]
        resp = await post(ingress, "/Counter//add", b"1")
        assert resp.status == 400, resp
        assert "empty" in error_of(resp)["message"]
        resp = await post(ingress, "/Svc/somekey/echo", b'"x"')
        assert resp.status == 400, resp
        assert "takes no key" in error_of(resp)["message"]
        assert engine.invocations(10) == []

    with_ingress(tmp_path, body)


def test_method_and_id_errors(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        resp = await call(ingress, "/Svc/echo", b'"x"', method="PUT", http_version="1.1")
        assert resp.status == 405, resp
        error_of(resp)
        resp = await post(ingress, "/restate/invocation/inv_00000000000000000000000000000000/attach")
        assert resp.status == 405, resp
        for inv_id, status in (("inv_00000000000000000000000000000000", 404), ("bogus", 400)):
            for what in ("attach", "output"):
                resp = await get(ingress, f"/restate/invocation/{inv_id}/{what}")
                assert resp.status == status, (inv_id, what, resp)
                error_of(resp)

    with_ingress(tmp_path, body)


def test_health(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        resp = await get(ingress, "/restate/health")
        assert resp.status == 200, resp
        assert json.loads(resp.body) == {"status": "ok"}

    with_ingress(tmp_path, body)


def test_errors_leave_other_invocations_alone(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        waiting = asyncio.create_task(post(ingress, "/Svc/wait", b'"bystander"'))
        await until(lambda: "bystander" in app.awakeables)
        bad = [
            post(ingress, "/Nope/x", b"1"),
            post(ingress, "/Svc/echo", b"{bad"),
            post(ingress, "/Svc/add_one", b'"abc"'),
            post(ingress, "/Counter/add", b"1"),
            post(ingress, "/Svc/fail", b"500"),
            post(ingress, "/restate/awakeables/sign_1bad/resolve", b"1"),
            get(ingress, "/restate/invocation/bogus/attach"),
        ]
        statuses = [r.status for r in await asyncio.gather(*bad)]
        assert statuses == [404, 400, 400, 400, 500, 400, 400], statuses
        assert (await post(ingress, "/Svc/echo", b'"fine"')).body == b'"fine"'
        assert not waiting.done()
        engine.resolve_awakeable(app.awakeables["bystander"], "ok")
        resp = await waiting
        assert (resp.status, json.loads(resp.body)) == (200, {"value": "ok"})

    with_ingress(tmp_path, body)


def test_stop_answers_waiting_requests_with_503(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        waiting = asyncio.create_task(post(ingress, "/Svc/wait", b'"s"'))
        await until(lambda: "s" in app.awakeables)
        ingress.stop()
        resp = await waiting
        assert resp.status == 503, resp
        assert "shutting down" in error_of(resp)["message"]
        resp = await post(ingress, "/Svc/echo", b'"x"')
        assert resp.status == 503, resp
        # The invocation itself carries on in the engine.
        inv = next(r for r in engine.invocations(10) if r[2] == "wait")
        engine.resolve_awakeable(app.awakeables["s"], 1)
        assert await engine.result(inv[0]) == {"value": 1}

    with_ingress(tmp_path, body)


def test_closed_engine_answers_503(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine, app: App) -> None:
        waiting = asyncio.create_task(post(ingress, "/Svc/wait", b'"c"'))
        await until(lambda: "c" in app.awakeables)
        await engine.close()
        resp = await waiting
        assert resp.status == 503, resp
        resp = await post(ingress, "/Svc/echo", b'"x"')
        assert resp.status == 503, resp
        error_of(resp)

    with_ingress(tmp_path, body)


# ---- accepted means on disk -----------------------------------------------------------------


def test_accepted_sends_and_resolutions_are_on_disk_and_unsaved_ones_are_refused(
    tmp_path: Path,
) -> None:
    """A 202 is answered only once the send or the resolution is committed: read back from
    the file at once by another connection. One that cannot be saved (the database is at
    its size cap) is answered with 507, not accepted and then lost."""
    app = make_app()
    db = tmp_path / "capped.db"
    big = json.dumps("x" * (2 << 20)).encode()

    async def main() -> None:
        engine = df.LocalEngine(
            *app.services, path=db, durability="os", max_db_bytes=256 * 1024
        )
        async with engine:
            ingress = Ingress(engine)
            resp = await post(ingress, "/Svc/wait/send", b'"a"')
            assert resp.status == 202, resp
            assert invocation_stored(db, json.loads(resp.body)["invocationId"])

            resp = await post(ingress, "/Svc/echo/send", big)
            assert resp.status == 507, resp
            assert "disk is full" in error_of(resp)["message"]

            await until(lambda: "a" in app.awakeables)
            awk = app.awakeables["a"]
            resp = await post(ingress, f"/restate/awakeables/{awk}/resolve", big)
            assert resp.status == 507, resp
            # Nothing of it was saved: the awakeable can still be resolved.
            resp = await post(ingress, f"/restate/awakeables/{awk}/resolve", b'"small"')
            assert resp.status == 202, resp
            ids = [r[0] for r in engine.invocations() if r[2] == "wait"]
            assert [await engine.result(i) for i in ids] == [{"value": "small"}]

    run(main())


def test_past_the_bound_of_work_in_flight_new_invocations_get_503(tmp_path: Path) -> None:
    """With a bound of 3 and one attempt in flight, calls that wait plus invocations queued
    reach it: the next request is refused with 503 and Retry-After (nothing stored), and
    once the work drains requests are accepted again and every accepted one completes."""
    svc = df.Service("Busy")
    gate = asyncio.Event()

    @svc.handler()
    async def hold(ctx: df.Context, i: int) -> int:
        await ctx.run_async("wait", gate.wait)
        return i

    async def body() -> None:
        async with df.LocalEngine(
            svc, path=tmp_path / "e.db", durability="os", max_attempts_in_flight=1
        ) as engine:
            app = Ingress(engine, max_in_flight=3)
            headers = [("content-type", "application/json")]
            waiting = [
                asyncio.create_task(call(app, "/Busy/hold", b"%d" % i, headers=headers))
                for i in range(2)
            ]
            sent = await call(app, "/Busy/hold/send", b"2", headers=headers)
            assert sent.status == 202
            for _ in range(200):  # until both calls are counted and the send is queued
                if app._waiting == 2 and engine.backlog() >= 1:
                    break
                await asyncio.sleep(0.005)
            refused = await call(app, "/Busy/hold", b"3", headers=headers)
            assert refused.status == 503, refused.body
            assert refused.headers["retry-after"] == "1"
            assert "retry later" in json.loads(refused.body)["message"]
            refused_send = await call(app, "/Busy/hold/send", b"4", headers=headers)
            assert refused_send.status == 503
            rows = engine.invocations(100)
            assert len(rows) == 3, rows  # the refused ones were never stored
            gate.set()
            assert [json.loads((await t).body) for t in waiting] == [0, 1]
            again = await call(app, "/Busy/hold", b"5", headers=headers)
            assert again.status == 200 and json.loads(again.body) == 5

    run(body())


def test_a_bad_bound_of_work_in_flight_is_refused(tmp_path: Path) -> None:
    engine = df.LocalEngine(path=tmp_path / "e.db")
    with pytest.raises(ValueError, match="max_in_flight"):
        Ingress(engine, max_in_flight=0)
    with pytest.raises(TypeError, match="max_in_flight"):
        Ingress(engine, max_in_flight=2.5)  # type: ignore[arg-type]
