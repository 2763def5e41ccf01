"""durable-futures: durable concurrency for Python handlers, with a Rust core.

``import durable_futures`` loads only the compiled core: the public names below are
imported from their modules on first use (``df.Service``, ``df.LocalEngine``, ...), so
a program, a pytest run or the command line pays only for the parts it touches.
"""

from . import _core

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .context import (
        Context,
        DurablePromise,
        ObjectContext,
        ObjectSharedContext,
        RunOptions,
        SendHandle,
        ServiceClient,
        WorkflowContext,
        WorkflowSharedContext,
    )
    from .endpoint import asgi_app
    from .errors import (
        DurableError,
        JournalMismatchError,
        ProtocolError,
        TerminalError,
        UnsupportedFeatureError,
    )
    from .futures import (
        AwakeableFuture,
        CombinatorFuture,
        DurableFuture,
        ResponseFuture,
        RunFuture,
        Selector,
        TimerFuture,
    )
    from .local import LocalEngine
    from .policy import RetryPolicy
    from .serde import BytesSerde, JsonSerde, Serde
    from .service import Handler, Service, VirtualObject, Workflow

__all__ = [
    "PROTOCOL_VERSIONS",
    "AwakeableFuture",
    "BytesSerde",
    "CombinatorFuture",
    "Context",
    "DurableError",
    "DurableFuture",
    "DurablePromise",
    "Handler",
    "JournalMismatchError",
    "JsonSerde",
    "LocalEngine",
    "ObjectContext",
    "ObjectSharedContext",
    "ProtocolError",
    "ResponseFuture",
    "RunFuture",
    "RetryPolicy",
    "RunOptions",
    "Selector",
    "SendHandle",
    "Serde",
    "Service",
    "ServiceClient",
    "TerminalError",
    "TimerFuture",
    "UnsupportedFeatureError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "__version__",
    "asgi_app",
]

#: The package's version: the compiled core's, which is the Cargo workspace version (the
#: wheel's metadata takes it from there too).
__version__: str = _core.__version__
PROTOCOL_VERSIONS: tuple[int, int] = _core.PROTOCOL_VERSIONS

# Each lazily imported public name, and the submodule that defines it.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "Context",
            "DurablePromise",
            "ObjectContext",
            "ObjectSharedContext",
            "RunOptions",
            "SendHandle",
            "ServiceClient",
            "WorkflowContext",
            "WorkflowSharedContext",
        ),
        "context",
    ),
    "asgi_app": "endpoint",
    **dict.fromkeys(
        (
            "DurableError",
            "JournalMismatchError",
            "ProtocolError",
            "TerminalError",
            "UnsupportedFeatureError",
        ),
        "errors",
    ),
    **dict.fromkeys(
        (
            "AwakeableFuture",
            "CombinatorFuture",
            "DurableFuture",
            "ResponseFuture",
            "RunFuture",
            "Selector",
            "TimerFuture",
        ),
        "futures",
    ),
    "LocalEngine": "local",
    "RetryPolicy": "policy",
    **dict.fromkeys(("BytesSerde", "JsonSerde", "Serde"), "serde"),
    **dict.fromkeys(("Handler", "Service", "VirtualObject", "Workflow"), "service"),
}

if not TYPE_CHECKING:  # type checkers see the imports above, and flag unknown names

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # the next lookup finds it without calling this
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
