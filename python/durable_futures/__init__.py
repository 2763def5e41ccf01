"""durable-futures: durable concurrency for Python handlers, with a Rust core."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from . import _core
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

__version__: str = _core.__version__
PROTOCOL_VERSIONS: tuple[int, int] = _core.PROTOCOL_VERSIONS


def _check_core_version() -> None:
    try:
        expected = _dist_version("durable-futures")
    except PackageNotFoundError:  # running from a source tree without metadata
        return
    if expected != _core.__version__:
        raise ImportError(
            f"durable_futures {expected} found a compiled core of version {_core.__version__}; "
            "reinstall the package so both come from the same build"
        )


_check_core_version()
