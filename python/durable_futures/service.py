"""Services and their handlers: ``df.Service``, ``df.VirtualObject``, ``@svc.handler()``."""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

from ._schema import json_schema
from .policy import RetryPolicy, retention_ms
from .serde import BytesSerde, JsonSerde, Serde, serde_for

__all__ = ["Handler", "Service", "VirtualObject", "Workflow", "json_schema"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
F = TypeVar("F", bound=Callable[..., Any])

_SERVICE_NAME = re.compile(r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*$")
_HANDLER_NAME = re.compile(r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*$")
_NO_INPUT: Any = object()


@dataclass
class Handler(Generic[I, O]):
    """A registered handler: the function plus what the endpoint needs to call it."""

    service_name: str
    name: str
    fn: Callable[..., Any]
    is_async: bool
    takes_input: bool
    input_serde: Serde[Any]
    output_serde: Serde[Any]
    kind: Literal["exclusive", "shared", "workflow"] | None = None
    """In a virtual object, ``"exclusive"`` (the default) or ``"shared"``; in a workflow,
    ``"workflow"`` for its main handler and ``"shared"`` for the others."""
    documentation: str | None = None
    input_type: Any = None
    """The input parameter's type hint (``None`` without an input parameter)."""
    input_required: bool = False
    """The input parameter's type does not accept ``None`` and it has no default: a request
    without a body is refused (the manifest's ``input.required``)."""
    input_has_default: bool = False
    """An empty input calls the handler without it, so its default applies."""
    retry_policy: RetryPolicy | None = None
    journal_retention: timedelta | None = None
    idempotency_retention: timedelta | None = None

    def decode_input(self, data: bytes) -> Any:
        if not self.takes_input or (not data and self.input_has_default):
            return _NO_INPUT
        return self.input_serde.deserialize(data)

    def call(self, ctx: Any, arg: Any) -> Any:
        if arg is _NO_INPUT:
            return self.fn(ctx)
        return self.fn(ctx, arg)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling a decorated handler directly runs the plain function (for unit tests)."""
        return self.fn(*args, **kwargs)


@dataclass
class Service:
    """A group of handlers under one name, addressed as ``/{service}/{handler}``.

    ``retry_policy``, ``journal_retention`` and ``idempotency_retention`` apply to every
    handler that does not set its own; left ``None``, the engine's (or restate-server's)
    defaults apply.
    """

    name: str
    handlers: dict[str, Handler[Any, Any]] = field(default_factory=dict)
    ty: Literal["SERVICE", "VIRTUAL_OBJECT", "WORKFLOW"] = "SERVICE"
    documentation: str | None = None
    retry_policy: RetryPolicy | None = field(default=None, kw_only=True)
    journal_retention: timedelta | None = field(default=None, kw_only=True)
    idempotency_retention: timedelta | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not _SERVICE_NAME.match(self.name):
            raise ValueError(f"invalid service name {self.name!r}")
        _check_options(self.retry_policy, self.journal_retention, self.idempotency_retention)

    def handler(
        self,
        name: str | None = None,
        *,
        kind: Literal["exclusive", "shared"] | None = None,
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        retry_policy: RetryPolicy | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
    ) -> Callable[[F], F]:
        """Registers an async (``async def``) or sync (``def``) handler.

        The first parameter is the context; an optional second one is the input, decoded
        from JSON according to its type hint (``bytes`` means raw). The input is required
        unless its type accepts ``None`` (``X | None``, ``Any``, no annotation) or it has a
        default (which an empty input then gets). The return annotation drives the output's
        encoding. ``retry_policy``, ``journal_retention`` and ``idempotency_retention``
        override the service's.
        """
        return self._register(
            name,
            kind,
            input_serde,
            output_serde,
            retry_policy,
            journal_retention,
            idempotency_retention,
        )

    def _register(
        self,
        name: str | None,
        kind: Literal["exclusive", "shared", "workflow"] | None,
        input_serde: Serde[Any] | None,
        output_serde: Serde[Any] | None,
        retry_policy: RetryPolicy | None,
        journal_retention: timedelta | None,
        idempotency_retention: timedelta | None,
    ) -> Callable[[F], F]:
        _check_options(retry_policy, journal_retention, idempotency_retention)

        def register(fn: F) -> F:
            hname = name or fn.__name__
            if not _HANDLER_NAME.match(hname):
                raise ValueError(f"invalid handler name {hname!r}")
            if hname in self.handlers:
                raise ValueError(f"{self.name} already has a handler {hname!r}")
            params = list(inspect.signature(fn).parameters.values())
            if not params or len(params) > 2:
                raise TypeError(f"handler {hname} must take (ctx) or (ctx, input)")
            hints = typing.get_type_hints(fn)
            takes_input = len(params) == 2
            in_type = hints.get(params[1].name, Any) if takes_input else None
            has_default = takes_input and params[1].default is not inspect.Parameter.empty
            out_type = hints.get("return", Any)
            h: Handler[Any, Any] = Handler(
                service_name=self.name,
                name=hname,
                fn=fn,
                is_async=inspect.iscoroutinefunction(fn),
                takes_input=takes_input,
                input_serde=input_serde or (serde_for(in_type) if takes_input else JsonSerde()),
                output_serde=output_serde or serde_for(out_type),
                kind=kind if self.ty in ("VIRTUAL_OBJECT", "WORKFLOW") else None,
                documentation=inspect.getdoc(fn),
                input_type=in_type,
                input_required=takes_input and not has_default and not _accepts_none(in_type),
                input_has_default=has_default,
                retry_policy=retry_policy,
                journal_retention=journal_retention,
                idempotency_retention=idempotency_retention,
            )
            # The user's function shows through: name, docstring, module, signature (via
            # __wrapped__), and its code, so inspect.iscoroutinefunction answers for it.
            functools.update_wrapper(h, fn)
            for attr in ("__code__", "__defaults__", "__kwdefaults__"):
                setattr(h, attr, getattr(fn, attr, None))
            self.handlers[hname] = h
            return h  # type: ignore[return-value]

        return register

    def manifest(self, version: int = 4) -> dict[str, Any]:
        """This service in the endpoint manifest (discovery) of ``version`` (2, 3 or 4).

        Options a version does not define are left out: the retentions need v3, the retry
        policy v4 (a server that negotiated an older manifest refuses fields it does not know).
        """
        handlers = []
        for h in self.handlers.values():
            entry: dict[str, Any] = {"name": h.name}
            if self.ty == "VIRTUAL_OBJECT":
                entry["ty"] = "SHARED" if h.kind == "shared" else "EXCLUSIVE"
            elif self.ty == "WORKFLOW":
                entry["ty"] = "WORKFLOW" if h.kind == "workflow" else "SHARED"
            entry["input"] = input_manifest(h)
            entry["output"] = output_manifest(h)
            entry.update(_options_manifest(h, version))
            handlers.append(entry)
        out: dict[str, Any] = {"name": self.name, "ty": self.ty, "handlers": handlers}
        out.update(_options_manifest(self, version))
        return out


def _ct(serde: Serde[Any]) -> str:
    if isinstance(serde, BytesSerde):
        return "application/octet-stream"
    return getattr(serde, "content_type", "application/json")


def input_manifest(h: Handler[Any, Any]) -> dict[str, Any]:
    """The handler's ``input`` in the manifest; restate-server's ingress validates requests
    against it (and so does the embedded engine's, :mod:`durable_futures.local.ingress`).

    ``{}`` (no input): a request must carry neither a body nor a content-type.
    ``required``: a request must carry a content-type (then, without it, it may carry
    neither). ``contentType``: the content-type a request must have. ``jsonSchema`` (JSON
    inputs): the body must not be empty when a content-type is sent.
    """
    if not h.takes_input:
        return {}
    ct = _ct(h.input_serde)
    out: dict[str, Any] = {"required": h.input_required, "contentType": ct}
    if ct == "application/json":
        out["jsonSchema"] = _serde_schema(h.input_serde, "input")
    return out


def output_manifest(h: Handler[Any, Any]) -> dict[str, Any]:
    """The handler's ``output`` in the manifest: its content-type and, for JSON, the schema
    of what its output serde writes (restate-server shows it; it validates nothing)."""
    ct = _ct(h.output_serde)
    out: dict[str, Any] = {"setContentTypeIfEmpty": False, "contentType": ct}
    if ct == "application/json":
        out["jsonSchema"] = _serde_schema(h.output_serde, "output")
    return out


def _serde_schema(serde: Serde[Any], mode: Literal["input", "output"]) -> dict[str, Any]:
    """The schema of what our JSON serde reads or writes for its type; ``{}`` (any value)
    for a serde of the user's, whose JSON the type hint need not describe."""
    if isinstance(serde, JsonSerde):
        return json_schema(serde.type_, mode)
    return {}


def _accepts_none(tp: Any) -> bool:
    """Whether a value of type hint ``tp`` may be ``None`` (an absent input decodes to it)."""
    if tp is Any or tp is None or tp is type(None) or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _accepts_none(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return any(_accepts_none(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return None in typing.get_args(tp)
    return False


def _check_options(retry_policy: Any, journal_retention: Any, idempotency_retention: Any) -> None:
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise TypeError(
            f"retry_policy must be a df.RetryPolicy or None, not {type(retry_policy).__name__}"
        )
    retention_ms("journal_retention", journal_retention)
    retention_ms("idempotency_retention", idempotency_retention)


def _options_manifest(owner: Service | Handler[Any, Any], version: int) -> dict[str, Any]:
    """The retention (v3+) and retry policy (v4+) fields of a service or a handler."""
    out: dict[str, Any] = {}
    if version >= 3:
        for name, key in (
            ("journal_retention", "journalRetention"),
            ("idempotency_retention", "idempotencyRetention"),
        ):
            ms = retention_ms(name, getattr(owner, name))
            if ms is not None:
                out[key] = ms
    if version >= 4 and owner.retry_policy is not None:
        out.update(owner.retry_policy.manifest())
    return out


class VirtualObject(Service):
    """A keyed service with durable state (``ctx`` is an ``ObjectContext``)."""

    def __init__(
        self,
        name: str,
        documentation: str | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
    ) -> None:
        super().__init__(
            name=name,
            ty="VIRTUAL_OBJECT",
            documentation=documentation,
            retry_policy=retry_policy,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
        )


class Workflow(Service):
    """A workflow: its main handler (``@wf.main()``, a ``WorkflowContext``) runs exactly once
    per workflow key, and its other handlers (``@wf.handler()``, a
    ``WorkflowSharedContext``) run alongside it to signal it (through durable promises) and
    query it (through its state). A second submission of the main handler with the same key
    gets the first one's invocation and result."""

    def __init__(
        self,
        name: str,
        documentation: str | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
    ) -> None:
        super().__init__(
            name=name,
            ty="WORKFLOW",
            documentation=documentation,
            retry_policy=retry_policy,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
        )

    def main(
        self,
        name: str | None = None,
        *,
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        retry_policy: RetryPolicy | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
    ) -> Callable[[F], F]:
        """Registers the workflow's main handler (one per workflow), run once per key."""
        if any(h.kind == "workflow" for h in self.handlers.values()):
            raise ValueError(f"workflow {self.name} already has a main handler")
        return self._register(
            name,
            "workflow",
            input_serde,
            output_serde,
            retry_policy,
            journal_retention,
            idempotency_retention,
        )

    def handler(
        self,
        name: str | None = None,
        *,
        kind: Literal["exclusive", "shared"] | None = None,
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        retry_policy: RetryPolicy | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
    ) -> Callable[[F], F]:
        """Registers a shared handler: it runs while the main handler runs (or before, or
        after), reads the workflow's state and completes or reads its promises."""
        if kind not in (None, "shared"):
            raise ValueError(
                "a workflow's handlers are shared; its main handler is registered with @wf.main()"
            )
        return self._register(
            name,
            "shared",
            input_serde,
            output_serde,
            retry_policy,
            journal_retention,
            idempotency_retention,
        )
