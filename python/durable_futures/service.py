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
from .policy import RetryPolicy, retention_ms, timeout_ms
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
    workflow_retention: timedelta | None = None
    """A workflow's main handler: how long its run's result, state and promises are kept
    (its own, else its workflow's)."""
    inactivity_timeout: timedelta | None = None
    abort_timeout: timedelta | None = None
    ingress_private: bool | None = None
    enable_lazy_state: bool | None = None
    metadata: dict[str, str] | None = None

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

    The options apply to every handler that does not set its own; left ``None``, the
    engine's (or restate-server's) defaults apply:

    - ``retry_policy``: how failed attempts are retried (:class:`~durable_futures.RetryPolicy`).
    - ``journal_retention``, ``idempotency_retention``: how long a completed invocation keeps
      its journal, and the result of a request with an idempotency key.
    - ``inactivity_timeout``: an attempt that has heard nothing new for this long is asked
      to suspend; ``abort_timeout``: one that still makes no progress this long after that
      is abandoned and retried.
    - ``ingress_private``: the HTTP ingress refuses its handlers (calls from other handlers
      still work).
    - ``enable_lazy_state`` (virtual objects and workflows): restate-server sends the
      state along with an invocation only when asked for a key.
    - ``documentation``, ``metadata`` (``str`` to ``str``): shown by restate-server's admin
      API and UI.
    """

    name: str
    documentation: str | None = None
    handlers: dict[str, Handler[Any, Any]] = field(default_factory=dict, kw_only=True)
    ty: Literal["SERVICE", "VIRTUAL_OBJECT", "WORKFLOW"] = field(default="SERVICE", kw_only=True)
    retry_policy: RetryPolicy | None = field(default=None, kw_only=True)
    journal_retention: timedelta | None = field(default=None, kw_only=True)
    idempotency_retention: timedelta | None = field(default=None, kw_only=True)
    workflow_retention: timedelta | None = field(default=None, kw_only=True)
    inactivity_timeout: timedelta | None = field(default=None, kw_only=True)
    abort_timeout: timedelta | None = field(default=None, kw_only=True)
    ingress_private: bool | None = field(default=None, kw_only=True)
    enable_lazy_state: bool | None = field(default=None, kw_only=True)
    metadata: dict[str, str] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not _SERVICE_NAME.match(self.name):
            raise ValueError(f"invalid service name {self.name!r}")
        options = {opt: getattr(self, opt) for opt in _OPTIONS}
        _check_options(options, f"service {self.name}")
        self.metadata = options["metadata"]
        if self.workflow_retention is not None and self.ty != "WORKFLOW":
            raise ValueError(
                f"service {self.name}: workflow_retention applies to a workflow (df.Workflow) "
                "only"
            )
        if self.enable_lazy_state is not None and self.ty == "SERVICE":
            raise ValueError(
                f"service {self.name}: enable_lazy_state applies to virtual objects and workflows, "
                "which have state; a service has none"
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
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        ingress_private: bool | None = None,
        enable_lazy_state: bool | None = None,
        documentation: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Callable[[F], F]:
        """Registers an async (``async def``) or sync (``def``) handler.

        The first parameter is the context; an optional second one is the input, decoded
        from JSON according to its type hint (``bytes`` means raw). The input is required
        unless its type accepts ``None`` (``X | None``, ``Any``, no annotation) or it has a
        default (which an empty input then gets). The return annotation drives the output's
        encoding. The options override the service's (see :class:`Service`);
        ``documentation`` defaults to the function's docstring.
        """
        return self._register(
            name,
            kind,
            input_serde,
            output_serde,
            {
                "retry_policy": retry_policy,
                "journal_retention": journal_retention,
                "idempotency_retention": idempotency_retention,
                "inactivity_timeout": inactivity_timeout,
                "abort_timeout": abort_timeout,
                "ingress_private": ingress_private,
                "enable_lazy_state": enable_lazy_state,
                "documentation": documentation,
                "metadata": metadata,
            },
        )

    def _register(
        self,
        name: str | None,
        kind: Literal["exclusive", "shared", "workflow"] | None,
        input_serde: Serde[Any] | None,
        output_serde: Serde[Any] | None,
        options: dict[str, Any],
    ) -> Callable[[F], F]:
        options = {opt: options.get(opt) for opt in _OPTIONS}

        def register(fn: F) -> F:
            hname = name or fn.__name__
            if not _HANDLER_NAME.match(hname):
                raise ValueError(f"invalid handler name {hname!r}")
            self._check_handler_options(f"handler {self.name}/{hname}", kind, options)
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
                input_type=in_type,
                input_required=takes_input and not has_default and not _accepts_none(in_type),
                input_has_default=has_default,
                **{**options, "documentation": options["documentation"] or inspect.getdoc(fn)},
            )
            # The user's function shows through: name, docstring, module, signature (via
            # __wrapped__), and its code, so inspect.iscoroutinefunction answers for it.
            functools.update_wrapper(h, fn)
            for attr in ("__code__", "__defaults__", "__kwdefaults__"):
                setattr(h, attr, getattr(fn, attr, None))
            self.handlers[hname] = h
            return h  # type: ignore[return-value]

        return register

    def _check_handler_options(
        self, where: str, kind: str | None, options: dict[str, Any]
    ) -> None:
        _check_options(options, where)
        if options["workflow_retention"] is not None and kind != "workflow":
            raise ValueError(f"{where}: workflow_retention applies to a workflow's main handler")
        if options["enable_lazy_state"] is not None and self.ty == "SERVICE":
            raise ValueError(
                f"{where}: enable_lazy_state applies to handlers of virtual objects and "
                "workflows, which have state; a service has none"
            )
        if self.ingress_private and options["ingress_private"] is False:
            # restate-server refuses such a deployment
            raise ValueError(
                f"{where}: the service is ingress_private, so its handlers cannot be public; "
                "make the service public and its other handlers private instead"
            )
        if kind == "workflow" and options["workflow_retention"] is None:
            options["workflow_retention"] = self.workflow_retention

    def manifest(self, version: int = 4) -> dict[str, Any]:
        """This service in the endpoint manifest (discovery) of ``version`` (2, 3 or 4).

        Options a version does not define are left out: documentation and metadata are v2,
        the timeouts, retentions, ``ingressPrivate`` and ``enableLazyState`` v3, the retry
        policy v4 (as restate's ``discovery.proto`` numbers them).
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


#: Options of services and handlers: (name, its field in restate's endpoint manifest, the
#: first manifest version that has it, how it is written there). ``workflow_retention`` is a
#: handler field only (the main handler's); ``retry_policy`` is v4 (several fields).
_OPTIONS: dict[str, tuple[str, int, Callable[[str, Any], Any]]] = {
    "documentation": ("documentation", 2, lambda _, v: v),
    "metadata": ("metadata", 2, lambda _, v: dict(v)),
    "inactivity_timeout": ("inactivityTimeout", 3, timeout_ms),
    "abort_timeout": ("abortTimeout", 3, timeout_ms),
    "journal_retention": ("journalRetention", 3, retention_ms),
    "idempotency_retention": ("idempotencyRetention", 3, retention_ms),
    "workflow_retention": ("workflowCompletionRetention", 3, retention_ms),
    "enable_lazy_state": ("enableLazyState", 3, lambda _, v: v),
    "ingress_private": ("ingressPrivate", 3, lambda _, v: v),
    "retry_policy": ("", 4, lambda _, v: v),
}


def _check_options(options: dict[str, Any], where: str) -> None:
    """Raises ``TypeError`` / ``ValueError`` naming the option and ``where`` it was given;
    ``metadata`` is replaced by a copy (a later change to the caller's dict is not seen)."""
    try:
        policy = options["retry_policy"]
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise TypeError(
                f"retry_policy must be a df.RetryPolicy or None, not {type(policy).__name__}"
            )
        for name in ("journal_retention", "idempotency_retention", "workflow_retention"):
            retention_ms(name, options[name])
        for name in ("inactivity_timeout", "abort_timeout"):
            timeout_ms(name, options[name])
        for name in ("ingress_private", "enable_lazy_state"):
            if options[name] is not None and not isinstance(options[name], bool):
                raise TypeError(
                    f"{name} must be a bool or None, not {type(options[name]).__name__}"
                )
        doc = options["documentation"]
        if doc is not None and not isinstance(doc, str):
            raise TypeError(f"documentation must be a str or None, not {type(doc).__name__}")
        options["metadata"] = _metadata(options["metadata"])
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"metadata must be a dict of str to str, not {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(
                f"metadata must be a dict of str to str: {k!r}: {v!r} is "
                f"{type(k).__name__}: {type(v).__name__}"
            )
    return dict(value)


def _options_manifest(owner: Service | Handler[Any, Any], version: int) -> dict[str, Any]:
    """The option fields of a service or a handler that manifest ``version`` defines."""
    out: dict[str, Any] = {}
    for name, (key, since, written) in _OPTIONS.items():
        value = getattr(owner, name)
        if value is None or version < since:
            continue
        if name == "retry_policy":
            out.update(value.manifest())
        elif name != "workflow_retention" or isinstance(owner, Handler):
            out[key] = written(name, value)
    return out


class VirtualObject(Service):
    """A keyed service with durable state (``ctx`` is an ``ObjectContext``). Options as for
    :class:`Service`."""

    def __init__(
        self,
        name: str,
        documentation: str | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        ingress_private: bool | None = None,
        enable_lazy_state: bool | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            name=name,
            ty="VIRTUAL_OBJECT",
            documentation=documentation,
            retry_policy=retry_policy,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            ingress_private=ingress_private,
            enable_lazy_state=enable_lazy_state,
            metadata=metadata,
        )


class Workflow(Service):
    """A workflow: its main handler (``@wf.main()``, a ``WorkflowContext``) runs exactly once
    per workflow key, and its other handlers (``@wf.handler()``, a
    ``WorkflowSharedContext``) run alongside it to signal it (through durable promises) and
    query it (through its state). A second call of the main handler with the same key fails
    with a ``TerminalError`` (409); a second send gets the first run's invocation id.

    Options as for :class:`Service`, plus ``workflow_retention``: how long a completed run
    keeps its result, its state and its promises (then the key can run again); it is the
    main handler's unless ``@wf.main()`` sets its own. ``idempotency_retention`` applies to
    the shared handlers only."""

    def __init__(
        self,
        name: str,
        documentation: str | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        workflow_retention: timedelta | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        ingress_private: bool | None = None,
        enable_lazy_state: bool | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            name=name,
            ty="WORKFLOW",
            documentation=documentation,
            retry_policy=retry_policy,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            workflow_retention=workflow_retention,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            ingress_private=ingress_private,
            enable_lazy_state=enable_lazy_state,
            metadata=metadata,
        )

    def main(
        self,
        name: str | None = None,
        *,
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        retry_policy: RetryPolicy | None = None,
        journal_retention: timedelta | None = None,
        workflow_retention: timedelta | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        ingress_private: bool | None = None,
        enable_lazy_state: bool | None = None,
        documentation: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Callable[[F], F]:
        """Registers the workflow's main handler (one per workflow), run once per key.

        It has no ``idempotency_retention`` (the workflow key makes it idempotent, and
        restate-server refuses the option on it): ``workflow_retention`` says how long its
        result, the workflow's state and its promises are kept."""
        if any(h.kind == "workflow" for h in self.handlers.values()):
            raise ValueError(f"workflow {self.name} already has a main handler")
        return self._register(
            name,
            "workflow",
            input_serde,
            output_serde,
            {
                "retry_policy": retry_policy,
                "journal_retention": journal_retention,
                "workflow_retention": workflow_retention,
                "inactivity_timeout": inactivity_timeout,
                "abort_timeout": abort_timeout,
                "ingress_private": ingress_private,
                "enable_lazy_state": enable_lazy_state,
                "documentation": documentation,
                "metadata": metadata,
            },
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
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        ingress_private: bool | None = None,
        enable_lazy_state: bool | None = None,
        documentation: str | None = None,
        metadata: dict[str, str] | None = None,
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
            {
                "retry_policy": retry_policy,
                "journal_retention": journal_retention,
                "idempotency_retention": idempotency_retention,
                "inactivity_timeout": inactivity_timeout,
                "abort_timeout": abort_timeout,
                "ingress_private": ingress_private,
                "enable_lazy_state": enable_lazy_state,
                "documentation": documentation,
                "metadata": metadata,
            },
        )
