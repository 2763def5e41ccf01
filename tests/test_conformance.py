"""Every recorded conformance vector replayed through the ASGI app in process.

The six points of tests/conformance/README.md, with the Conformance service written in the
public API (tests/conformance_service.py).
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import durable_futures as df

from . import conformance_service
from .asgi_client import call
from .frames import error_of, frames, output_value

VECTORS = Path(__file__).parent / "conformance" / "vectors"


def load(name: str) -> dict[str, Any]:
    meta = json.loads((VECTORS / name / "vector.json").read_text())
    meta["dir"] = VECTORS / name
    return meta


ALL = sorted(p.name for p in VECTORS.iterdir() if (p / "vector.json").exists())


def replay(meta: dict[str, Any], attempt: dict[str, Any], app: Any, chunks: list[int]) -> Any:
    body = (meta["dir"] / attempt["req"]).read_bytes()
    return asyncio.run(
        call(app, attempt["path"], body, headers=[("content-type", attempt["content_type"])], chunks=chunks)
    )


APP = df.asgi_app(conformance_service.svc, conformance_service.wf)


def _chunkings() -> list[tuple[str, str]]:
    """Whole bodies and random chunks for every vector; one byte at a time for the vectors
    under 20 kB (the 1000-step ones would take 40,000 ASGI messages)."""
    out = []
    for name in ALL:
        meta = load(name)
        size = (meta["dir"] / meta["attempts"][-1]["req"]).stat().st_size
        out += [(name, "whole"), (name, "random")]
        if size < 20_000:
            out.append((name, "bytes"))
    return out


@pytest.mark.parametrize(("name", "chunking"), _chunkings())
def test_last_attempt_replays_to_the_recorded_output(name: str, chunking: str) -> None:
    meta = load(name)
    last = meta["attempts"][-1]
    rng = random.Random(name)
    chunks = {"whole": [1 << 30], "random": [rng.randint(1, 97) for _ in range(64)], "bytes": [1]}[chunking]
    conformance_service.executions.clear()
    resp = replay(meta, last, APP, chunks)
    assert resp.status == 200
    assert resp.headers["content-type"] == last["content_type"]
    fs = frames(resp.body)
    assert error_of(fs) is None
    assert [f.type_name for f in fs][-2:] == ["OutputCommand", "End"]
    assert json.loads(output_value(fs) or b"null") == meta["output"]
    assert conformance_service.executions == [], "a replayed run executed"


def test_completion_order_comes_from_the_journal() -> None:
    meta = load("completion-order")
    conformance_service.executions.clear()
    resp = replay(meta, meta["attempts"][-1], APP, [5])
    assert json.loads(output_value(frames(resp.body)) or b"") == "b,c,a"
    assert conformance_service.executions == []


@pytest.mark.parametrize("name", ALL)
def test_earlier_attempts_never_error(name: str) -> None:
    meta = load(name)
    for attempt in meta["attempts"][:-1]:
        resp = replay(meta, attempt, APP, [13])
        fs = frames(resp.body)
        assert error_of(fs) is None, error_of(fs)
        assert fs and fs[-1].type_name in ("Suspension", "End"), [f.type_name for f in fs]


def _mutated_app(name: str) -> Any:
    """The Conformance service with one handler changed: another run name, another call
    target, or one command more."""
    svc = df.Service("Conformance")
    original = conformance_service.svc.handlers
    svc.handlers.update(original)

    async def renamed_sequence(ctx: df.Context, n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx.run_async(f"stage-{i}", conformance_service.step, i)
        return total

    async def other_target(ctx: df.Context, s: str) -> str:
        timer = ctx.after(timedelta(seconds=30))
        call_ = ctx.service("Conformance", "echo_v2").request_future(s)
        first = await ctx.select(timer, call_).select()
        return "sleep won" if first is timer else f"call won with {await call_}"

    async def extra_command(ctx: df.Context, s: str) -> str:
        await ctx.sleep(timedelta(milliseconds=1))
        return await conformance_service.completion_order.fn(ctx, s)

    async def other_promise(ctx: df.WorkflowContext, ms: int) -> str:
        ctx.set("status", "waiting")
        consent = ctx.promise("consent", str).value()
        first = await ctx.select(consent, ctx.after(timedelta(milliseconds=ms))).select()
        return "timed out" if first is not consent else f"decided: {await consent}"

    async def peek_and_resolve(ctx: df.WorkflowSharedContext) -> str:
        await ctx.promise("approval", str).resolve("sneaky")
        return "ok"

    replacements = {
        "sequence-5": ("sequence", renamed_sequence),
        "race-call": ("race_call", other_target),
        "completion-order": ("completion_order", extra_command),
        "workflow-approve-k1": ("run", other_promise),
        "workflow-approve-k1-peek": ("peek", peek_and_resolve),
    }
    hname, fn = replacements[name]
    if name.startswith("workflow-"):
        svc = df.Workflow("ConformanceWf")
        original = conformance_service.wf.handlers
        svc.handlers.update(original)
    h = original[hname]
    svc.handlers[hname] = df.Handler(
        service_name=h.service_name,
        name=h.name,
        fn=fn,
        is_async=True,
        takes_input=h.takes_input,
        input_serde=h.input_serde,
        output_serde=h.output_serde,
        kind=h.kind,
    )
    return df.asgi_app(svc)


@pytest.mark.parametrize(
    "name",
    [
        "sequence-5",
        "race-call",
        "completion-order",
        "workflow-approve-k1",
        "workflow-approve-k1-peek",
    ],
)
def test_a_handler_that_differs_is_a_journal_mismatch(name: str) -> None:
    meta = load(name)
    conformance_service.executions.clear()
    resp = replay(meta, meta["attempts"][-1], _mutated_app(name), [7])
    fs = frames(resp.body)
    err = error_of(fs)
    assert err is not None, [f.type_name for f in fs]
    code, message, index = err
    assert code == 570
    assert index is not None and "command index" in message
    assert fs[-1].type_name == "Error"
    assert conformance_service.executions == []
