"""durable-futures: durable concurrency for Python handlers, with a Rust core."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _dist_version

from . import _core

__all__ = ["__version__", "PROTOCOL_VERSIONS"]

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
