"""OpenTelemetry spans (``durable_futures._tracing``): on the embedded engine, an invocation's
span with its attempts, runs, calls and timers; on the endpoint, an attempt continuing the
``traceparent`` restate-server sends; and nothing at all without a tracer provider."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once

import durable_futures as df
from durable_futures import _tracing
from durable_futures.local.engine import VirtualClock

from .asgi_client import call
from .frames import frames, output_value
from .journal import V6, Journal, notification, run_cmd, run_in_thread

svc = df.Service("Traced")


@svc.handler()
async def double(ctx: df.Context, n: int) -> int:
    return n * 2


@svc.handler()
async def work(ctx: df.Context, n: int) -> int:
    a = await ctx.run("fetch", lambda: n + 1)
    b = await ctx.run("store", _async_add, a)
    await ctx.sleep(timedelta(seconds=5), "pause")
    c = await ctx.service(double).request(b)
    return c


async def _async_add(x: int) -> int:
    return x + 10


@svc.handler()
async def fails(ctx: df.Context, _: str) -> str:
    raise df.TerminalError("no such thing", 404)


@svc.handler()
async def replays(ctx: df.Context, _: str) -> str:
    first = await ctx.run("first", lambda: "computed")
    second = await ctx.run("second", lambda: "fresh")
    return f"{first} {second}"


@svc.handler()
def sync_work(ctx: df.Context, n: int) -> int:
    with trace.get_tracer("user").start_as_current_span("user work"):
        a = ctx.run_async("fetch", lambda: n + 1).result()
    ctx.after(timedelta(seconds=1)).result()
    return a


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A tracer provider exporting to memory, set for this test only (the API lets a
    program set its provider once: the test restores the unset state after)."""
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    trace.set_tracer_provider(provider)
    yield exp
    provider.shutdown()


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {s.name: s for s in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


def _parent(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _id(span: ReadableSpan) -> int:
    ctx = span.context
    assert ctx is not None
    return ctx.span_id


async def _invoke_work() -> int:
    async with df.LocalEngine(svc, durability="os", clock=VirtualClock()) as engine:
        result: int = await engine.invoke(work, 1)
        return result


def test_an_invocation_with_runs_a_timer_and_a_call(exporter: InMemorySpanExporter) -> None:
    assert asyncio.run(_invoke_work()) == 24
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == sorted(
        [
            "invocation Traced/work",
            "attempt 1",
            "run fetch",
            "run store",
            "sleep",
            "call Traced/double",
            "invocation Traced/double",
            "attempt 1",
        ]
    )


def test_spans_and_their_parents_on_the_engine(exporter: InMemorySpanExporter) -> None:
    assert asyncio.run(_invoke_work()) == 24
    spans = exporter.get_finished_spans()
    invocations = {s.name: s for s in spans if s.name.startswith("invocation ")}
    work_inv = invocations["invocation Traced/work"]
    double_inv = invocations["invocation Traced/double"]
    attempts = [s for s in spans if s.name.startswith("attempt ")]
    work_attempt = next(s for s in attempts if _parent(s) == _id(work_inv))
    double_attempt = next(s for s in attempts if _parent(s) == _id(double_inv))
    assert len(attempts) == 2
    assert work_inv.parent is None and double_inv.parent is None
    assert work_inv.attributes is not None
    assert work_inv.attributes[_tracing.TARGET] == "Traced/work"
    inv_id = work_inv.attributes[_tracing.INVOCATION_ID]
    assert isinstance(inv_id, str) and inv_id.startswith("inv_")
    assert work_attempt.attributes is not None
    assert work_attempt.attributes[_tracing.INVOCATION_ID] == inv_id
    assert work_attempt.attributes[_tracing.ATTEMPT] == 1
    assert work_attempt.attributes[_tracing.OUTCOME] == "success"
    assert double_attempt.attributes is not None
    assert double_attempt.attributes[_tracing.TARGET] == "Traced/double"
    children = {s.name: s for s in spans if _parent(s) == _id(work_attempt)}
    assert set(children) == {"run fetch", "run store", "sleep", "call Traced/double"}
    for child in children.values():
        assert child.context is not None and work_inv.context is not None
        assert child.context.trace_id == work_inv.context.trace_id
        assert child.attributes is not None
    assert children["run fetch"].attributes[_tracing.OUTCOME] == "success"  # type: ignore[index]
    assert children["sleep"].attributes[_tracing.OUTCOME] == "completed"  # type: ignore[index]
    assert children["sleep"].attributes[_tracing.TIMER_NAME] == "pause"  # type: ignore[index]
    assert children["call Traced/double"].attributes[_tracing.OUTCOME] == "completed"  # type: ignore[index]
    # Each span lies within its parent: the attempt within the invocation; the callee's
    # invocation starts after the call's command.
    for child in children.values():
        assert work_attempt.start_time <= child.start_time <= child.end_time <= work_attempt.end_time  # type: ignore[operator]
    assert work_inv.start_time <= work_attempt.start_time  # type: ignore[operator]
    assert work_attempt.end_time <= work_inv.end_time  # type: ignore[operator]
    call = children["call Traced/double"]
    assert call.start_time <= double_inv.start_time  # type: ignore[operator]
    assert all(s.status.status_code != StatusCode.ERROR for s in spans)


def test_replayed_runs_calls_and_timers_have_no_spans(exporter: InMemorySpanExporter) -> None:
    """With every step replayed from scratch, each run, call and timer still has one span:
    in the attempt that made it. A call or timer whose attempt suspended first is
    ``pending``."""

    async def scenario() -> None:
        async with df.LocalEngine(
            svc, durability="os", clock=VirtualClock(), always_replay=True
        ) as engine:
            assert await engine.invoke(work, 1) == 24

    asyncio.run(scenario())
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    for name in ("run fetch", "run store", "sleep", "call Traced/double"):
        assert names.count(name) == 1, names
    work_inv = next(s for s in spans if s.name == "invocation Traced/work")
    work_attempts = [s for s in spans if _parent(s) == _id(work_inv)]
    assert len(work_attempts) > 2
    outcomes = [a.attributes[_tracing.OUTCOME] for a in work_attempts]  # type: ignore[index]
    assert outcomes[-1] == "success" and set(outcomes[:-1]) == {"suspended"}, outcomes
    sleep = next(s for s in spans if s.name == "sleep")
    assert sleep.attributes is not None and sleep.attributes[_tracing.OUTCOME] == "pending"


def test_a_user_span_around_invoke_is_the_parent(exporter: InMemorySpanExporter) -> None:
    async def scenario() -> None:
        tracer = trace.get_tracer("test")
        async with df.LocalEngine(svc, durability="os") as engine:
            with tracer.start_as_current_span("request"):
                assert await engine.invoke(double, 4) == 8

    asyncio.run(scenario())
    named = _by_name(exporter.get_finished_spans())
    assert _parent(named["invocation Traced/double"]) == _id(named["request"])
    assert _parent(named["attempt 1"]) == _id(named["invocation Traced/double"])


def test_a_sync_handler_and_its_own_spans(exporter: InMemorySpanExporter) -> None:
    """A sync handler runs on a thread: its spans, and the spans it starts itself, nest in
    the attempt's span all the same."""

    async def scenario() -> None:
        async with df.LocalEngine(svc, durability="os", clock=VirtualClock()) as engine:
            assert await engine.invoke(sync_work, 1) == 2

    asyncio.run(scenario())
    named = _by_name(exporter.get_finished_spans())
    assert set(named) == {"invocation Traced/sync_work", "attempt 1", "user work", "run fetch", "sleep"}
    attempt = named["attempt 1"]
    for name in ("user work", "run fetch", "sleep"):
        assert _parent(named[name]) == _id(attempt), name


def test_a_terminal_failure_is_an_error_status(exporter: InMemorySpanExporter) -> None:
    async def scenario() -> None:
        async with df.LocalEngine(svc, durability="os") as engine:
            with pytest.raises(df.TerminalError):
                await engine.invoke(fails, "x")

    asyncio.run(scenario())
    named = _by_name(exporter.get_finished_spans())
    inv, attempt = named["invocation Traced/fails"], named["attempt 1"]
    assert inv.status.status_code == StatusCode.ERROR
    assert "no such thing" in (inv.status.description or "")
    assert inv.attributes is not None and inv.attributes[_tracing.OUTCOME] == "failure"
    assert attempt.status.status_code == StatusCode.ERROR
    assert attempt.attributes is not None
    assert attempt.attributes[_tracing.OUTCOME] == "terminal failure"


# ---- the endpoint ------------------------------------------------------------------------------

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


def test_an_endpoint_attempt_continues_the_traceparent(exporter: InMemorySpanExporter) -> None:
    """restate-server sends ``traceparent`` (and ``tracestate``) on the invoke request, its
    own attempt span as the parent. A run replayed from the journal has no span: it did not
    execute."""
    app = df.asgi_app(svc)
    body = Journal(b'""').add(run_cmd(1, "first"), notification("RunCompletion", 1, b'"computed"')).body()
    headers = [
        ("content-type", V6),
        ("traceparent", f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"),
        ("tracestate", "vendor=x"),
    ]
    resp = run_in_thread(call(app, "/invoke/Traced/replays", body, headers=headers, timeout=10), timeout=15)
    assert resp.status == 200
    fs = frames(resp.body)
    assert output_value(fs) is None  # request/response: the run's completion comes next time
    spans = exporter.get_finished_spans()
    named = _by_name(spans)
    assert set(named) == {"attempt 1", "run second"}
    attempt, run = named["attempt 1"], named["run second"]
    assert attempt.parent is not None and attempt.parent.is_remote
    assert attempt.parent.trace_id == int(TRACE_ID, 16)
    assert attempt.parent.span_id == int(PARENT_SPAN_ID, 16)
    assert attempt.context is not None and attempt.context.trace_id == int(TRACE_ID, 16)
    assert attempt.context.trace_state.get("vendor") == "x"
    assert _parent(run) == _id(attempt)
    assert attempt.attributes is not None
    assert str(attempt.attributes[_tracing.INVOCATION_ID]).startswith("inv_")
    assert attempt.attributes[_tracing.TARGET] == "Traced/replays"
    assert attempt.attributes[_tracing.OUTCOME] == "suspended"
    assert run.attributes is not None and run.attributes[_tracing.OUTCOME] == "success"


def test_an_endpoint_attempt_without_traceparent_starts_a_trace(exporter: InMemorySpanExporter) -> None:
    app = df.asgi_app(svc)
    body = Journal(b"3").body()
    resp = run_in_thread(
        call(app, "/invoke/Traced/double", body, headers=[("content-type", V6)], timeout=10),
        timeout=15,
    )
    assert json.loads(output_value(frames(resp.body)) or b"") == 6
    (attempt,) = exporter.get_finished_spans()
    assert attempt.name == "attempt 1" and attempt.parent is None
    assert attempt.attributes is not None and attempt.attributes[_tracing.OUTCOME] == "success"


def test_a_malformed_traceparent_is_ignored() -> None:
    assert _tracing.remote_context([(b"traceparent", b"not-a-traceparent")]) is None
    assert _tracing.remote_context([]) is None


# ---- without a tracer provider ------------------------------------------------------------------


def test_no_tracer_without_a_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    assert _tracing.tracer() is None
    monkeypatch.delitem(sys.modules, "opentelemetry.trace")
    assert _tracing.tracer() is None


def test_without_opentelemetry_nothing_is_imported_or_traced() -> None:
    """A program that never imported OpenTelemetry runs handlers (runs, a timer, a call) on
    the engine and the endpoint without importing it, and its attempts carry no trace."""
    code = textwrap.dedent(
        """
        import asyncio, sys
        from datetime import timedelta
        import durable_futures as df
        from durable_futures.local.engine import VirtualClock

        svc = df.Service("Traced")

        @svc.handler()
        async def double(ctx: df.Context, n: int) -> int:
            return n * 2

        @svc.handler()
        def work(ctx: df.Context, n: int) -> int:
            a = ctx.run_async("fetch", lambda: n + 1).result()
            ctx.after(timedelta(seconds=5)).result()
            return ctx.service(double).request_future(a + 10).result()

        seen = []

        async def main():
            async with df.LocalEngine(svc, durability="os", clock=VirtualClock()) as engine:
                orig = engine._start_attempt
                def spy(attempt):
                    orig(attempt)
                    seen.append(engine._attempts[attempt.id].inv.trace)
                engine._start_attempt = spy
                assert await engine.invoke(work, 1) == 24
            assert engine._tracer is None and not engine._spans

        asyncio.run(main())
        assert seen and all(t is None for t in seen), seen
        df.asgi_app(svc)
        loaded = [m for m in sys.modules if m.startswith("opentelemetry")]
        assert not loaded, loaded
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
