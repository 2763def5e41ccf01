"""Workflows and durable promises on the embedded engine: the sign-up example end to end
(confirmed, expired, rejected, confirmed early, SIGKILLed while it waits), once-per-key
runs, the promise API in selects and combinators, attach / output from handlers, typed
workflow clients, and determinism under always-replay."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import durable_futures as df
from durable_futures.testing import engine_for, run
from examples import signup

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = signup.Account("ada@example.com", "Ada", deadline_s=3600)


async def wait_for_status(engine: df.LocalEngine, key: str, want: str) -> None:
    for _ in range(1000):
        if await engine.invoke(signup.status, key=key) == want:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"status of {key} never became {want!r}")


# ---- the sign-up example ---------------------------------------------------------------------


def test_signup_confirmed_once_on_the_wall_clock() -> None:
    async def scenario() -> None:
        signup.OUTBOX.clear()
        async with engine_for(signup.wf, virtual_clock=False) as engine:
            run_id = engine.send(signup.run, ACCOUNT, key="ada")
            await wait_for_status(engine, "ada", "awaiting confirmation")
            assert await engine.invoke(signup.confirm, "yes", key="ada") == "thanks"
            assert await engine.invoke(signup.confirm, "no", key="ada") == "already decided"
            assert await engine.result(run_id) == "welcome, Ada"
            assert await engine.invoke(signup.status, key="ada") == "active"
            # Once per key: a send returns the first run, a call fails as on restate-server.
            assert engine.send(signup.run, ACCOUNT, key="ada") == run_id
            with pytest.raises(df.TerminalError) as e:
                await engine.invoke(signup.run, ACCOUNT, key="ada")
            assert (e.value.code, e.value.message) == (
                409,
                "the workflow method was already invoked",
            )
            # Another key is another workflow.
            other = signup.Account("bo@example.com", "Bo", deadline_s=3600)
            other_id = engine.send(signup.run, other, key="bo")
            assert other_id != run_id
            assert await engine.invoke(signup.confirm, "no", key="bo") == "thanks"
            assert await engine.result(other_id) == "Bo declined"
        assert [e for e, _ in signup.OUTBOX] == ["ada@example.com", "bo@example.com"]

    run(scenario())


def test_signup_deadline_fires_on_the_virtual_clock() -> None:
    async def scenario() -> None:
        async with engine_for(signup.wf) as engine:
            assert await engine.invoke(signup.run, ACCOUNT, key="late") == (
                "Ada did not confirm in time"
            )
            assert await engine.invoke(signup.status, key="late") == "expired"
            # The promise is still open: a late confirmation is accepted but changes nothing.
            assert await engine.invoke(signup.confirm, "yes", key="late") == "thanks"
            assert await engine.invoke(signup.status, key="late") == "expired"

    run(scenario())


@pytest.mark.parametrize("always_replay", [False, True])
def test_signup_confirmed_before_the_run_waits(always_replay: bool) -> None:
    """A shared handler may complete the promise before the run asks for it (or before
    it even started); the run then takes the confirmation, not the deadline."""

    async def scenario() -> None:
        async with engine_for(signup.wf, always_replay=always_replay) as engine:
            assert await engine.invoke(signup.confirm, "yes", key="early") == "thanks"
            assert await engine.invoke(signup.run, ACCOUNT, key="early") == "welcome, Ada"

    run(scenario())


def test_signup_rejected() -> None:
    async def scenario() -> None:
        async with engine_for(signup.wf, virtual_clock=False) as engine:
            run_id = engine.send(signup.run, ACCOUNT, key="eve")
            await wait_for_status(engine, "eve", "awaiting confirmation")
            assert await engine.invoke(signup.reject, "spam", key="eve") == "rejected"
            assert await engine.invoke(signup.reject, "twice", key="eve") == "already decided"
            assert await engine.result(run_id) == "Ada was rejected: spam"

    run(scenario())


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {repo!r})
    import durable_futures as df
    from examples import signup

    def counted(email, link):
        with open({sends!r}, "a") as f:
            f.write(email + "\\n")
        return "sent"

    signup.send_confirmation = counted

    async def main():
        async with df.LocalEngine(signup.wf, path={db!r}) as engine:
            run_id = engine.send(signup.run, signup.Account("k@x", "Kim", 3600.0), key="kim")
            # Wait until the run's GetPromise command is on disk, then report.
            while not any(f[:2] == b"\\x04\\x09" for f in engine.journal(run_id)):
                await asyncio.sleep(0.01)
            print(run_id, flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_signup_survives_sigkill_while_it_waits(tmp_path: Path) -> None:
    """The process dies (SIGKILL) while the run waits for its confirmation; a new engine
    on the same file resumes it: the confirmation reaches it, and the email, journaled
    before the crash, is not sent again."""
    db, sends = tmp_path / "signup.db", tmp_path / "sends.txt"
    code = WORKER.format(repo=str(REPO), db=str(db), sends=str(sends))
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().decode().strip()
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert run_id.startswith("inv_"), err.decode()
    assert proc.returncode == -signal.SIGKILL
    assert sends.read_text().splitlines() == ["k@x"]

    original = signup.send_confirmation
    signup.send_confirmation = lambda email, link: (_ for _ in ()).throw(  # type: ignore[assignment]
        AssertionError("the journaled email was sent again")
    )

    async def scenario() -> None:
        async with df.LocalEngine(signup.wf, path=db) as engine:
            assert await engine.invoke(signup.status, key="kim") == "awaiting confirmation"
            assert engine.send(signup.run, ACCOUNT, key="kim") == run_id
            assert await engine.invoke(signup.confirm, "yes", key="kim") == "thanks"
            assert await engine.result(run_id) == "welcome, Kim"

    try:
        run(scenario())
    finally:
        signup.send_confirmation = original
    assert sends.read_text().splitlines() == ["k@x"]
    assert os.path.exists(db)


# ---- promises in every kind of wait ----------------------------------------------------------


@dataclass
class Decision:
    approved: bool
    by: str


flow = df.Workflow("Flow")


@flow.main()
async def collect(ctx: df.WorkflowContext, n: int) -> list[str]:
    """Waits for promises p0..p{n-1} in completion order (a remaining() loop)."""
    futures = [ctx.promise(f"p{i}", str).value() for i in range(n)]
    sel = ctx.select(*futures)
    got: list[str] = []
    while sel.remaining():
        f = await sel.select()
        assert f is not None
        got.append(await f)
    ctx.set("got", got)
    return got


@flow.handler()
async def complete(ctx: df.WorkflowSharedContext, name_value: list[str]) -> str:
    name, value = name_value
    try:
        await ctx.promise(name, str).resolve(value)
    except df.TerminalError as e:
        return f"{e.code}: {e.message}"
    return "ok"


@flow.handler()
async def fail(ctx: df.WorkflowSharedContext, name: str) -> str:
    ctx.promise(name, str).reject("no", 418)  # not awaited: journaled anyway
    return "sent"


@flow.handler()
async def peek(ctx: df.WorkflowSharedContext, name: str) -> str:
    try:
        return repr(await ctx.promise(name, str).peek())
    except df.TerminalError as e:
        return f"failed {e.code}: {e.message}"


@flow.handler()
async def typed(ctx: df.WorkflowSharedContext, who: str) -> str:
    p = ctx.promise("decision", Decision)
    if who:
        await p.resolve(Decision(True, who))
    d = await p
    assert isinstance(d, Decision)
    return f"{d.approved} by {d.by}"


@flow.handler()
async def combinators(ctx: df.WorkflowSharedContext) -> list[Any]:
    a = ctx.promise("a", str).value()
    b = ctx.promise("b", str).value()
    both = await ctx.all_succeeded(a, b)
    first = await ctx.first_completed(ctx.promise("a", str).value(), ctx.after(timedelta(days=1)))
    return [both, await first]


def test_promises_in_a_remaining_loop_arrive_in_completion_order() -> None:
    async def scenario() -> None:
        async with engine_for(flow, always_replay=True) as engine:
            run_id = engine.send(collect, 3, key="k")
            for name in ("p2", "p0", "p1"):
                assert await engine.invoke(complete, [name, name.upper()], key="k") == "ok"
            assert await engine.result(run_id) == ["P2", "P0", "P1"]
            again = await engine.invoke(complete, ["p0", "x"], key="k")
            assert again == "409: promise was already completed"

    run(scenario())


def test_peek_reject_and_typed_values() -> None:
    async def scenario() -> None:
        async with engine_for(flow) as engine:
            assert await engine.invoke(peek, "p", key="k") == "None"
            assert await engine.invoke(complete, ["p", "v"], key="k") == "ok"
            assert await engine.invoke(peek, "p", key="k") == "'v'"
            assert await engine.invoke(fail, "q", key="k") == "sent"
            assert await engine.invoke(peek, "q", key="k") == "failed 418: no"
            assert await engine.invoke(typed, "ada", key="k") == "True by ada"
            assert await engine.invoke(typed, "", key="k") == "True by ada"

    run(scenario())


def test_promises_in_combinators() -> None:
    async def scenario() -> None:
        async with engine_for(flow, virtual_clock=False) as engine:
            inv = engine.send(combinators, key="k")
            for name, value in (("b", "2"), ("a", "1")):
                await engine.invoke(complete, [name, value], key="k")
            assert await engine.result(inv) == [["1", "2"], "1"]

    run(scenario())


# ---- clients, attach and output ----------------------------------------------------------------

caller = df.Service("Caller")


@caller.handler()
async def start_and_attach(ctx: df.Context, key: str) -> list[Any]:
    client = ctx.workflow(collect, key)
    run_id = await client.send(1).invocation_id()
    before = await ctx.invocation_output(run_id, list[str])
    await ctx.workflow(complete, key).request(["p0", "zero"])
    result = await ctx.attach_invocation(run_id, list[str])
    after = await ctx.invocation_output(run_id, list[str])
    return [before, result, after]


@caller.handler()
async def call_twice(ctx: df.Context, key: str) -> str:
    first = await ctx.workflow("Flow", key, "collect").request(0)
    try:
        await ctx.workflow(collect, key).request(0)
    except df.TerminalError as e:
        return f"{first} then {e.code}: {e.message}"
    return "ran twice"


@caller.handler()
async def attach_unknown(ctx: df.Context) -> str:
    try:
        await ctx.attach_invocation("inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    except df.TerminalError as e:
        return f"{e.code}"
    return "found"


@pytest.mark.parametrize("always_replay", [False, True])
def test_workflow_clients_attach_and_output_from_a_handler(always_replay: bool) -> None:
    async def scenario() -> None:
        async with engine_for(flow, caller, always_replay=always_replay) as engine:
            assert await engine.invoke(start_and_attach, "w1") == [None, ["zero"], ["zero"]]
            assert await engine.invoke(call_twice, "w2") == (
                "[] then 409: the workflow method was already invoked"
            )
            assert await engine.invoke(attach_unknown) == "404"

    run(scenario())


# ---- registration ----------------------------------------------------------------------------


def test_a_workflow_has_one_main_handler_and_shared_handlers() -> None:
    wf = df.Workflow("W")

    @wf.main()
    async def main(ctx: df.WorkflowContext) -> None: ...

    with pytest.raises(ValueError, match="already has a main handler"):

        @wf.main()
        async def other(ctx: df.WorkflowContext) -> None: ...

    with pytest.raises(ValueError, match="shared"):
        wf.handler(kind="exclusive")

    @wf.handler()
    async def query(ctx: df.WorkflowSharedContext) -> str:
        return ""

    assert [h["ty"] for h in wf.manifest()["handlers"]] == ["WORKFLOW", "SHARED"]
    assert wf.manifest()["ty"] == "WORKFLOW"
    assert not hasattr(df.WorkflowSharedContext, "set")
    assert issubclass(df.WorkflowContext, df.ObjectContext)
    with pytest.raises(ValueError, match="non-empty name"):
        df.WorkflowSharedContext.promise(object.__new__(df.WorkflowSharedContext), "")


def test_a_workflow_needs_its_key() -> None:
    async def scenario() -> None:
        async with engine_for(signup.wf) as engine:
            with pytest.raises(df.DurableError, match="workflow key is required"):
                await engine.invoke(signup.run, ACCOUNT)

    run(scenario())
