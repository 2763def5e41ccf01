"""Workflows seen from outside the handlers: ``LocalEngine.attach`` / ``output`` (by
invocation id and by workflow key), the once-per-key rule for ``invoke`` and ``send``, and the
embedded ingress's workflow and attach/output paths with the statuses and bodies
restate-server 1.7.12 answers (``tests/test_workflow_ingress_restate.py`` checks those
against the real server).
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mypy import api

import durable_futures as df
from durable_futures.errors import BadRequestError, NotReadyError, UnknownInvocationError
from durable_futures.local import Sent
from durable_futures.local.ingress import Ingress

from .asgi_client import Response, call

T = TypeVar("T")


# ---- services ---------------------------------------------------------------------------------


@dataclass
class Decision:
    approved: bool
    by: str


def make_services() -> list[df.Service]:
    wf = df.Workflow("Approval")
    svc = df.Service("Plain")
    obj = df.VirtualObject("Obj")

    @wf.main()
    async def run(ctx: df.WorkflowContext, by: str) -> Decision:
        ctx.set("status", "waiting")
        answer = await ctx.promise("answer", str).value()
        if answer == "fail":
            raise df.TerminalError("refused", code=418)
        return Decision(approved=answer == "yes", by=by)

    @wf.handler()
    async def answer(ctx: df.WorkflowSharedContext, value: str) -> str:
        await ctx.promise("answer", str).resolve(value)
        return "ok"

    @wf.handler()
    async def status(ctx: df.WorkflowSharedContext) -> str:
        return await ctx.get("status", str) or "not started"

    @svc.handler()
    async def echo(ctx: df.Context, s: str) -> str:
        return s

    @obj.handler()
    async def put(ctx: df.ObjectContext, s: str) -> str:
        return f"{ctx.key}:{s}"

    return [wf, svc, obj]


def run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def with_engine(tmp_path: Path, body: Callable[[df.LocalEngine], Awaitable[T]]) -> T:
    async def main() -> T:
        async with df.LocalEngine(
            *make_services(), path=tmp_path / "wf.db", durability="os"
        ) as engine:
            return await body(engine)

    return run(main())


def main_of(engine: df.LocalEngine) -> Any:
    return engine.services["Approval"].handlers["run"]


async def until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def waiting(engine: df.LocalEngine, inv_id: str) -> None:
    """Until the run waits for its promise (its state says so)."""

    async def status() -> str:
        result: str = await engine.invoke("Approval/status", key=key_of(engine, inv_id))
        return result

    for _ in range(500):
        if await status() == "waiting":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the run never waited")


def key_of(engine: df.LocalEngine, inv_id: str) -> str:
    row = engine.invocation(inv_id)
    assert row is not None
    return row.key


# ---- LocalEngine ------------------------------------------------------------------------------


def test_attach_waits_and_output_does_not(tmp_path: Path) -> None:
    async def body(engine: df.LocalEngine) -> None:
        run_fn = main_of(engine)
        inv_id = engine.send(run_fn, "ann", key="k1")
        assert isinstance(inv_id, Sent) and not inv_id.previously_accepted
        with pytest.raises(NotReadyError) as e:
            await engine.output(inv_id)
        assert e.value.code == 470
        with pytest.raises(NotReadyError):
            await engine.output_workflow(run_fn, "k1")
        await waiting(engine, inv_id)
        attached = asyncio.ensure_future(engine.attach(inv_id))
        by_key = asyncio.ensure_future(engine.attach_workflow(run_fn, "k1"))
        by_name = asyncio.ensure_future(engine.attach_workflow("Approval", "k1"))
        await asyncio.sleep(0.05)
        assert not (attached.done() or by_key.done() or by_name.done())

        assert await engine.invoke("Approval/answer", "yes", key="k1") == "ok"
        expected = Decision(approved=True, by="ann")
        # Typed by the main handler's return type, by id as by key.
        assert await attached == await by_key == await by_name == expected
        assert await engine.output(inv_id) == expected
        assert await engine.result(inv_id) == expected
        assert await engine.output_workflow(run_fn, "k1") == expected
        wf = engine.services["Approval"]
        assert await engine.output_workflow(wf, "k1") == expected
        assert engine.workflow_run(run_fn, "k1") == inv_id
        assert engine.workflow_run("Approval", "k2") is None

    with_engine(tmp_path, body)


def test_a_failed_run_raises_its_failure_from_attach_and_output(tmp_path: Path) -> None:
    async def body(engine: df.LocalEngine) -> None:
        inv_id = engine.send(main_of(engine), "bob", key="k")
        await engine.invoke("Approval/answer", "fail", key="k")
        for get in (
            lambda: engine.attach(inv_id),
            lambda: engine.output(inv_id),
            lambda: engine.attach_workflow("Approval", "k"),
            lambda: engine.output_workflow("Approval", "k"),
        ):
            with pytest.raises(df.TerminalError) as e:
                await get()
            assert (e.value.code, e.value.message) == (418, "refused")

    with_engine(tmp_path, body)


def test_unknown_invocations_and_workflows(tmp_path: Path) -> None:
    async def body(engine: df.LocalEngine) -> None:
        unknown = "inv_" + "0" * 32
        with pytest.raises(UnknownInvocationError):
            await engine.attach(unknown)
        with pytest.raises(UnknownInvocationError):
            await engine.output(unknown)
        with pytest.raises(UnknownInvocationError, match="has not run with key 'nobody'"):
            await engine.attach_workflow(main_of(engine), "nobody")
        with pytest.raises(UnknownInvocationError):
            await engine.output_workflow("Approval", "nobody")
        with pytest.raises(BadRequestError, match="no workflow Nope"):
            await engine.attach_workflow("Nope", "k")
        with pytest.raises(BadRequestError, match="not a workflow"):
            await engine.output_workflow("Plain", "k")
        shared = engine.services["Approval"].handlers["answer"]
        with pytest.raises(BadRequestError, match="main handler"):
            await engine.attach_workflow(shared, "k")
        with pytest.raises(TypeError):
            await engine.attach_workflow(42, "k")

    with_engine(tmp_path, body)


def test_the_main_handler_runs_once_per_key(tmp_path: Path) -> None:
    async def body(engine: df.LocalEngine) -> None:
        run_fn = main_of(engine)
        first = engine.send(run_fn, "first", key="k")
        # Not committed yet: still the same run, and a call is refused at once.
        again = engine.send(run_fn, "second", key="k")
        assert (again, again.previously_accepted) == (first, True)
        with pytest.raises(df.TerminalError) as e:
            await engine.invoke(run_fn, "third", key="k")
        assert (e.value.code, e.value.message) == (409, "the workflow method was already invoked")
        await engine.invoke("Approval/answer", "yes", key="k")
        assert await engine.attach(first) == Decision(approved=True, by="first")
        # Completed: the same.
        with pytest.raises(df.TerminalError) as e:
            await engine.invoke(run_fn, "fourth", key="k")
        assert e.value.code == 409
        later = engine.send(run_fn, "fifth", key="k")
        assert (later, later.previously_accepted) == (first, True)
        # Another key is another run; an idempotent send says it was accepted before.
        other = engine.send(run_fn, "x", key="other")
        assert other != first and not other.previously_accepted
        sent = engine.send("Plain/echo", "a", idempotency_key="ik")
        repeat = engine.send("Plain/echo", "b", idempotency_key="ik")
        assert (repeat, sent.previously_accepted, repeat.previously_accepted) == (sent, False, True)
        assert await engine.attach(repeat) == "a"

    with_engine(tmp_path, body)


def test_attach_workflow_is_typed(tmp_path: Path) -> None:
    module = tmp_path / "typed_wf.py"
    module.write_text(
        textwrap.dedent(
            '''
            from __future__ import annotations

            import durable_futures as df

            wf = df.Workflow("TypedWf")
            sync_wf = df.Workflow("SyncWf")


            @wf.main()
            async def main(ctx: df.WorkflowContext, n: int) -> list[int]:
                return [n]


            @sync_wf.main()
            def sync_main(ctx: df.WorkflowContext) -> float:
                return 1.0


            async def use(engine: df.LocalEngine) -> None:
                reveal_type(await engine.attach_workflow(main, "k"))  # R1
                reveal_type(await engine.output_workflow(sync_main, "k"))  # R2
                reveal_type(await engine.attach_workflow("TypedWf", "k"))  # R3
                reveal_type(engine.send(main, 1, key="k").previously_accepted)  # R4
            '''
        )
    )
    out, _, _ = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(module)])
    assert "error:" not in out, out
    revealed: dict[str, str] = {}
    lines = module.read_text().splitlines()
    for match in re.finditer(r":(\d+): note: Revealed type is \"(.+)\"", out):
        marker = lines[int(match.group(1)) - 1].rsplit("# ", 1)[1]
        revealed[marker] = match.group(2)
    assert revealed == {
        "R1": "builtins.list[builtins.int]",
        "R2": "builtins.float",
        "R3": "Any",
        "R4": "builtins.bool",
    }, out


# ---- the embedded ingress ---------------------------------------------------------------------

NOT_READY = {"code": 470, "message": "the invocation exists but has not completed yet"}
NOT_FOUND = {"code": 404, "message": "invocation not found"}
ATTACH_NOT_FOUND = {"code": 404, "message": "not found"}
ALREADY_INVOKED = {"code": 409, "message": "the workflow method was already invoked"}
BAD_INVOCATION_PATH = (
    "bad path, expected either /restate/invocation/:invocation_id/output or "
    "/restate/invocation/:invocation_id/attach or "
    "/restate/invocation/:invocation_target/:idempotency_key/output or "
    "/restate/invocation/:invocation_target/:idempotency_key/attach"
)
BAD_WORKFLOW_PATH = (
    "bad path, expected either /restate/workflow/:workflow_name/:workflow_key/output or "
    "/restate/workflow/:workflow_name/:workflow_key/attach"
)
IDEMPOTENCY_KEY_REFUSED = (
    "cannot use the idempotency key with workflow handlers. The handler invocation will "
    "already be idempotent by the workflow key itself."
)
UNKNOWN_ID = "inv_" + "0" * 32


class _AnyId:
    """Equal to any invocation id."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith("inv_")


ANY_ID: Any = _AnyId()


def with_ingress(tmp_path: Path, body: Callable[[Ingress, df.LocalEngine], Awaitable[T]]) -> T:
    return with_engine(tmp_path, lambda engine: body(Ingress(engine), engine))


async def get(app: Any, path: str, method: str = "GET") -> Response:
    return await call(app, path, method=method, http_version="1.1")


async def post(app: Any, path: str, value: Any = None, **headers: str) -> Response:
    body = b"" if value is None else json.dumps(value).encode()
    sent = [("content-type", "application/json")] if value is not None else []
    sent += [(k.replace("_", "-"), v) for k, v in headers.items()]
    return await call(app, path, body, headers=sent, http_version="1.1")


def answer(resp: Response, status: int, body: Any, inv_id: str | None = None) -> None:
    """``resp`` is ``status`` with the JSON ``body``, naming ``inv_id`` in ``x-restate-id``
    (or no invocation at all)."""
    assert (resp.status, json.loads(resp.body)) == (status, body), resp
    assert resp.headers["content-type"] == "application/json", resp
    assert resp.headers.get("x-restate-id") == inv_id, resp


def test_a_workflow_through_the_ingress(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        resp = await post(ingress, "/Approval/k1/run/send", "ann")
        inv_id = json.loads(resp.body)["invocationId"]
        answer(resp, 202, {"invocationId": inv_id, "status": "Accepted"}, inv_id)
        again = await post(ingress, "/Approval/k1/run/send", "bob")
        answer(again, 202, {"invocationId": inv_id, "status": "PreviouslyAccepted"}, inv_id)
        answer(await get(ingress, "/restate/workflow/Approval/k1/output"), 470, NOT_READY)
        answer(await get(ingress, f"/restate/invocation/{inv_id}/output"), 470, NOT_READY)
        answer(await post(ingress, "/Approval/k1/run", "cy"), 409, ALREADY_INVOKED, inv_id)

        attaches = [
            asyncio.ensure_future(get(ingress, path))
            for path in (
                "/restate/workflow/Approval/k1/attach",
                f"/restate/invocation/{inv_id}/attach",
            )
        ]
        await waiting(engine, inv_id)
        assert not any(a.done() for a in attaches)
        answer(await post(ingress, "/Approval/k1/answer", "yes"), 200, "ok", ANY_ID)
        decision = {"approved": True, "by": "ann"}
        for attached in attaches:
            answer(await attached, 200, decision, inv_id)
        for path in (
            "/restate/workflow/Approval/k1/output",
            "/restate/workflow/Approval/k1/attach",
            "/restate/workflow/Approval/k1/output/ignored",
            f"/restate/invocation/{inv_id}/output",
        ):
            answer(await get(ingress, path), 200, decision, inv_id)
        # Completed: still once per key.
        answer(await post(ingress, "/Approval/k1/run", "cy"), 409, ALREADY_INVOKED, inv_id)
        again = await post(ingress, "/Approval/k1/run/send", "dan")
        answer(again, 202, {"invocationId": inv_id, "status": "PreviouslyAccepted"}, inv_id)

        # A call waits for the run's result; a key is percent-decoded.
        call_run = asyncio.ensure_future(post(ingress, "/Approval/a%2Fb/run", "eve"))
        await until(lambda: engine.workflow_run("Approval", "a/b") is not None)
        run_id = engine.workflow_run("Approval", "a/b")
        assert run_id is not None
        answer(await get(ingress, "/restate/workflow/Approval/a%2Fb/output"), 470, NOT_READY)
        await post(ingress, "/Approval/a%2Fb/answer", "no")
        answer(await call_run, 200, {"approved": False, "by": "eve"}, run_id)

    with_ingress(tmp_path, body)


def test_workflow_paths_refused_or_not_found(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        for name, key in (("Approval", "nobody"), ("Nope", "k"), ("Plain", "k")):
            answer(await get(ingress, f"/restate/workflow/{name}/{key}/output"), 404, NOT_FOUND)
            answer(
                await get(ingress, f"/restate/workflow/{name}/{key}/attach"), 404, ATTACH_NOT_FOUND
            )
        refusals = [
            (await get(ingress, "/restate/workflow/Approval/k/output", "POST"), 405,
             "method not allowed"),
            (await get(ingress, "/restate/workflow/Nope/k/attach", "PUT"), 405,
             "method not allowed"),
            (await get(ingress, "/restate/workflow/Approval/k"), 400, BAD_WORKFLOW_PATH),
            (await get(ingress, "/restate/workflow/Approval"), 400, BAD_WORKFLOW_PATH),
            (await get(ingress, "/restate/workflow/Approval/k/other"), 404, "not found"),
            (await post(ingress, "/Approval/k/run", "x", idempotency_key="i"), 400,
             IDEMPOTENCY_KEY_REFUSED),
            (await post(ingress, "/Approval/k/run/send", "x", idempotency_key="i"), 400,
             IDEMPOTENCY_KEY_REFUSED),
            (await post(ingress, "/Approval/run", "x"), 400,
             "Approval is a workflow: the key is missing"),
            (await post(ingress, "/Approval/k/nohandler", "x"), 404,
             "the service 'Approval' exists, but the handler 'nohandler' was not found"),
        ]
        for resp, status, message in refusals:
            assert resp.status == status, resp
            error = json.loads(resp.body)
            assert error["code"] == status and message in error["message"], resp
        await engine.flush()
        assert engine.invocations() == [], "a refused request stored an invocation"
        # A shared handler takes an idempotency key like any other.
        resp = await post(ingress, "/Approval/k/status", idempotency_key="i")
        answer(resp, 200, "not started", ANY_ID)

        # A failed run answers its failure, with its status.
        inv_id = json.loads((await post(ingress, "/Approval/f/run/send", "x")).body)["invocationId"]
        await post(ingress, "/Approval/f/answer", "fail")
        for what in ("attach", "output"):
            failure = {"code": 418, "message": "refused"}
            answer(await get(ingress, f"/restate/workflow/Approval/f/{what}"), 418, failure, inv_id)
            answer(await get(ingress, f"/restate/invocation/{inv_id}/{what}"), 418, failure, inv_id)

    with_ingress(tmp_path, body)


@pytest.mark.parametrize(
    ("inv_id", "problem"),
    [
        ("bogus", "bad format"),
        ("inv_1234", "bad length"),
        ("inv_1foAirY4KKzi6p1CApU4jiPEyPAn2s20tX", "bad length"),  # restate-server's shape
        ("inv_" + "g" * 32, "bad format"),
        ("foo_1234", "unrecognized resource type: foo"),
    ],
)
def test_malformed_invocation_ids_are_400_whatever_the_method(
    tmp_path: Path, inv_id: str, problem: str
) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        for what in ("attach", "output"):
            for method in ("GET", "POST"):
                resp = await get(ingress, f"/restate/invocation/{inv_id}/{what}", method)
                answer(resp, 400, {"code": 400, "message": f"bad invocation id '{inv_id}': {problem}"})

    with_ingress(tmp_path, body)


def test_invocation_paths(tmp_path: Path) -> None:
    async def body(ingress: Ingress, engine: df.LocalEngine) -> None:
        answer(await get(ingress, f"/restate/invocation/{UNKNOWN_ID}/output"), 404, NOT_FOUND)
        resp = await get(ingress, f"/restate/invocation/{UNKNOWN_ID}/attach")
        answer(resp, 404, ATTACH_NOT_FOUND, UNKNOWN_ID)
        resp = await get(ingress, "/restate/invocation//output")
        answer(resp, 400, {"code": 400, "message": "bad invocation id '': bad length"})
        for path, status, message in (
            (f"/restate/invocation/{UNKNOWN_ID}", 400, BAD_INVOCATION_PATH),
            (f"/restate/invocation/{UNKNOWN_ID}/other", 404, "not found"),
            (f"/restate/invocation/{UNKNOWN_ID}/attach", 405, "method not allowed"),
        ):
            resp = await get(ingress, path, "GET" if status != 405 else "POST")
            answer(resp, status, {"code": status, "message": message})

        # Idempotent requests, by service, [key,] handler and idempotency key.
        sent = await post(ingress, "/Plain/echo/send", "v", idempotency_key="ik1")
        plain = json.loads(sent.body)["invocationId"]
        await post(ingress, "/Obj/o%2F1/put", "w", idempotency_key="ik1")
        keyed = engine.invocations()[0].id
        await post(ingress, "/Approval/k/answer", "z", idempotency_key="ik1")
        for path, value, inv_id in (
            ("/restate/invocation/Plain/echo/ik1", "v", plain),
            ("/restate/invocation/Obj/o%2F1/put/ik1", "o/1:w", keyed),
            ("/restate/invocation/Approval/k/answer/ik1", "ok", ANY_ID),
        ):
            answer(await get(ingress, path + "/attach"), 200, value, inv_id)
            answer(await get(ingress, path + "/output"), 200, value, inv_id)
        resp = await get(ingress, "/restate/invocation/Plain/echo/ik1/output/ignored")
        answer(resp, 200, "v", plain)
        for path in (
            "/restate/invocation/Plain/echo/ik2",
            "/restate/invocation/Plain/nohandler/ik1",
            "/restate/invocation/Obj/o%2F2/put/ik1",
            "/restate/invocation/Approval/k/run/",  # a run's implicit key is not a request's
        ):
            answer(await get(ingress, path + "/output"), 404, NOT_FOUND)
            answer(await get(ingress, path + "/attach"), 404, ATTACH_NOT_FOUND)
        for path, status, message in (
            ("/restate/invocation/Nope/echo/ik1/output", 404,
             "service 'Nope' not found, make sure to register the service before calling it."),
            ("/restate/invocation/Plain/echo/ik1", 400, BAD_INVOCATION_PATH),
            ("/restate/invocation/Obj/o/put/ik1", 400, BAD_INVOCATION_PATH),
            ("/restate/invocation/Plain/echo/ik1/other", 404, "not found"),
        ):
            answer(await get(ingress, path), status, {"code": status, "message": message})
        resp = await get(ingress, "/restate/invocation/Plain/echo/ik1/output", "POST")
        answer(resp, 405, {"code": 405, "message": "method not allowed"})

    with_ingress(tmp_path, body)
