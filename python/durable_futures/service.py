"""Services and their handlers: ``df.Service``, ``df.VirtualObject``, ``@svc.handler()``."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from .serde import BytesSerde, JsonSerde, Serde, serde_for

__all__ = ["Handler", "Service", "VirtualObject"]

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
    kind: Literal["exclusive", "shared"] | None = None
    documentation: str | None = None

    def decode_input(self, data: bytes) -> Any:
        if not self.takes_input:
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
    """A group of handlers under one name, addressed as ``/{service}/{handler}``."""

    name: str
    handlers: dict[str, Handler[Any, Any]] = field(default_factory=dict)
    ty: Literal["SERVICE", "VIRTUAL_OBJECT", "WORKFLOW"] = "SERVICE"
    documentation: str | None = None

    def __post_init__(self) -> None:
        if not _SERVICE_NAME.match(self.name):
            raise ValueError(f"invalid service name {self.name!r}")

    def handler(
        self,
        name: str | None = None,
        *,
        kind: Literal["exclusive", "shared"] | None = None,
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
    ) -> Callable[[F], F]:
        """Registers an async (``async def``) or sync (``def``) handler.

        The first parameter is the context; an optional second one is the input, decoded
        from JSON according to its type hint (``bytes`` means raw). The return annotation
        drives the output's encoding.
        """

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
            out_type = hints.get("return", Any)
            h: Handler[Any, Any] = Handler(
                service_name=self.name,
                name=hname,
                fn=fn,
                is_async=inspect.iscoroutinefunction(fn),
                takes_input=takes_input,
                input_serde=input_serde or (serde_for(in_type) if takes_input else JsonSerde()),
                output_serde=output_serde or serde_for(out_type),
                kind=kind if self.ty == "VIRTUAL_OBJECT" else None,
                documentation=inspect.getdoc(fn),
            )
            self.handlers[hname] = h
            return h  # type: ignore[return-value]

        return register

    def manifest(self) -> dict[str, Any]:
        """This service in the endpoint manifest (discovery)."""
        handlers = []
        for h in self.handlers.values():
            entry: dict[str, Any] = {"name": h.name}
            if self.ty == "VIRTUAL_OBJECT":
                entry["ty"] = "SHARED" if h.kind == "shared" else "EXCLUSIVE"
            if h.takes_input:
                entry["input"] = {"required": False, "contentType": _ct(h.input_serde)}
            else:
                entry["input"] = {}
            entry["output"] = {"setContentTypeIfEmpty": False, "contentType": _ct(h.output_serde)}
            handlers.append(entry)
        out: dict[str, Any] = {"name": self.name, "ty": self.ty, "handlers": handlers}
        return out


def _ct(serde: Serde[Any]) -> str:
    if isinstance(serde, BytesSerde):
        return "application/octet-stream"
    return getattr(serde, "content_type", "application/json")


class VirtualObject(Service):
    """A keyed service with durable state (``ctx`` is an ``ObjectContext``)."""

    def __init__(self, name: str, documentation: str | None = None) -> None:
        super().__init__(name=name, ty="VIRTUAL_OBJECT", documentation=documentation)
