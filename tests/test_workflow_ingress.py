"""Workflows seen from outside the handlers: ``LocalEngine.attach`` / ``output`` (by
invocation id and by workflow key), the once-per-key rule for ``invoke`` and ``send``, and the
embedded ingress's workflow and attach/output paths with the statuses and bodies
restate-server 1.7.12 answers (``tests/test_workflow_ingress_restate.py`` checks those
against the real server).
"""

from __future__ import annotations

import asyncio
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
