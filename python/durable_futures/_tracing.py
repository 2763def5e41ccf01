"""OpenTelemetry spans, when the program set a tracer provider (docs/operating.md, "Traces").

Nothing here imports OpenTelemetry: :func:`tracer` looks for ``opentelemetry.trace`` among
the modules already imported (a program that set a tracer provider has imported it), so a
program without it pays one dictionary lookup per engine start or endpoint request, and an
attempt without tracing one attribute check per run, call or timer it starts.

Spans: ``invocation Service/handler`` (the embedded engine: from submission to completion),
``attempt N`` (each attempt, a child of the invocation's span, or on the endpoint of the
span restate-server passes in ``traceparent``), and within an attempt ``run NAME`` (a
closure's execution; a replayed run did not execute and has none), ``call Service/handler``
and ``sleep`` (from the command to its completion reaching the attempt; an attempt that ends
first ends them, marked ``pending``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core import Vm

INVOCATION_ID = "restate.invocation.id"
TARGET = "restate.invocation.target"
ATTEMPT = "durable_futures.attempt"
OUTCOME = "durable_futures.outcome"
RUN_NAME = "durable_futures.run.name"
CALL_TARGET = "durable_futures.call.target"
TIMER_NAME = "durable_futures.timer.name"

# The provider last seen and its tracer (a tracer per provider, made once).
_cached: tuple[Any, Any] | None = None


def tracer() -> Any:
    """The tracer to emit spans with, or ``None``: OpenTelemetry is not imported, or no
    tracer provider is set (the API's default proxy or no-op provider)."""
    global _cached
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    cached = _cached
    if cached is not None and cached[0] is provider:
        return cached[1]
    from . import _core

    t = provider.get_tracer("durable_futures", _core.__version__)
    _cached = (provider, t)
    return t


def _trace_api() -> Any:
    return sys.modules["opentelemetry.trace"]


def start_invocation(
    t: Any, handler: str, invocation_id: str, parent: Any = None, target: str | None = None
) -> Any:
    """The span of an invocation of ``handler`` (``Service/handler``) on the embedded
    engine; ``target`` names a keyed one's key too; ``parent`` an OpenTelemetry context
    (``None``: the current one)."""
    return t.start_span(
        f"invocation {handler}",
        context=parent,
        attributes={INVOCATION_ID: invocation_id, TARGET: target or handler},
    )


def end_invocation(span: Any, ok: bool, failure: Any = None) -> None:
    trace = _trace_api()
    if ok:
        span.set_attribute(OUTCOME, "success")
    else:
        span.set_attribute(OUTCOME, "failure")
        code, message = failure if isinstance(failure, tuple) else (None, str(failure))
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"[{code}] {message}"))
    span.end()


def context_of(span: Any) -> Any:
    """An OpenTelemetry context whose current span is ``span``."""
    return _trace_api().set_span_in_context(span)


def root_context() -> Any:
    """An empty OpenTelemetry context: a span started in it begins a trace."""
    from opentelemetry.context import Context

    return Context()


def remote_context(headers: list[tuple[bytes, bytes]]) -> Any:
    """The context restate-server passes on the invoke request: W3C ``traceparent`` and
    ``tracestate`` headers (``None`` without a valid ``traceparent``)."""
    carrier = {}
    for name, value in headers:
        lname = name.lower()
        if lname in (b"traceparent", b"tracestate"):
            carrier[lname.decode("latin-1")] = value.decode("latin-1")
    if "traceparent" not in carrier:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    ctx = TraceContextTextMapPropagator().extract(carrier)
    span = _trace_api().get_current_span(ctx)
    return ctx if span.get_span_context().is_valid else None


class AttemptTrace:
    """The spans of one attempt: the attempt's, and those of its runs, calls and timers,
    children of it. Made by the host (engine or endpoint) when tracing is on."""

    __slots__ = ("_tracer", "_parent", "span", "_context", "_token", "_runs", "_open")

    def __init__(self, t: Any, parent: Any) -> None:
        self._tracer = t
        self._parent = parent
        self.span: Any = None
        self._context: Any = None
        self._token: Any = None
        self._runs: dict[int, Any] = {}
        # Calls and timers not completed yet: handle -> span.
        self._open: dict[int, Any] = {}

    def start(self, number: int) -> None:
        """Starts the attempt's span and makes it current in the handler's context (spans
        the handler starts, and its sync handler's thread and run closures, nest in it)."""
        from opentelemetry import context as otel_context

        self.span = self._tracer.start_span(
            f"attempt {number}", context=self._parent, attributes={ATTEMPT: number}
        )
        self._context = context_of(self.span)
        self._token = otel_context.attach(self._context)

    def started(self, invocation_id: str, target: str) -> None:
        if self.span is not None:
            self.span.set_attributes({INVOCATION_ID: invocation_id, TARGET: target})

    def end(self, outcome: str, error: str | None = None) -> None:
        """Ends the attempt's span (``outcome``: success, terminal failure, suspended,
        failed), and those of its runs, calls and timers still open."""
        for spans, what in ((self._runs, "abandoned"), (self._open, "pending")):
            for span in spans.values():
                span.set_attribute(OUTCOME, what)
                span.end()
            spans.clear()
        span = self.span
        if span is None:
            return
        self.span = None
        span.set_attribute(OUTCOME, outcome)
        if error is not None:
            trace = _trace_api()
            span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        span.end()
        if self._token is not None:
            from opentelemetry import context as otel_context

            try:
                otel_context.detach(self._token)
            except Exception:  # noqa: BLE001 - a context that moved on: nothing to restore
                pass
            self._token = None

    def run_started(self, handle: int, name: str) -> None:
        self._runs[handle] = self._tracer.start_span(
            f"run {name}" if name else "run",
            context=self._context,
            attributes={RUN_NAME: name},
        )

    def run_ended(self, handle: int, outcome: str, error: str | None = None) -> None:
        span = self._runs.pop(handle, None)
        if span is None:
            return
        span.set_attribute(OUTCOME, outcome)
        if error is not None:
            trace = _trace_api()
            span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        span.end()

    def command(self, handle: int, name: str, attributes: dict[str, Any]) -> None:
        """A call or timer whose completion will reach this attempt (``completed``)."""
        self._open[handle] = self._tracer.start_span(
            name, context=self._context, attributes=attributes
        )

    def completed(self, vm: Vm) -> None:
        """Ends the spans of calls and timers the VM now has completions for (called with
        the attempt's lock held, after new input)."""
        done = [h for h in self._open if vm.has_arrived(h)]
        for h in done:
            span = self._open.pop(h)
            span.set_attribute(OUTCOME, "completed")
            span.end()

    @property
    def waiting(self) -> bool:
        return bool(self._open)
