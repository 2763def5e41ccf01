"""The package itself: its version, and what ``import durable_futures`` costs (which modules
it loads: the public names are imported on first use)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import durable_futures

# Modules ``import durable_futures`` must not load: the version lookup of installed
# distributions, the HTTP server, the event loop, logging, typing, and every module of the
# engine, the endpoint, the services and the handler API.
NOT_AT_IMPORT = {
    "importlib.metadata",
    "hypercorn",
    "asyncio",
    "logging",
    "sqlite3",
    "typing",
    "durable_futures.local",
    "durable_futures.local.engine",
    "durable_futures.endpoint",
    "durable_futures.context",
    "durable_futures.service",
    "durable_futures._logging",
}


def test_compiled_core_matches_package_version() -> None:
    from importlib.metadata import version

    assert durable_futures.__version__ == version("durable-futures")
    assert durable_futures.PROTOCOL_VERSIONS == (5, 7)


def _imported(code: str) -> set[str]:
    """The modules a fresh interpreter imports to run ``code`` (from ``-X importtime``)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                modules.add(name)
    return modules


def test_import_loads_only_the_compiled_core() -> None:
    modules = _imported("import durable_futures")
    assert {"durable_futures", "durable_futures._core"} <= modules
    assert {m for m in modules if m.startswith("durable_futures")} == {
        "durable_futures",
        "durable_futures._core",
    }
    assert not modules & NOT_AT_IMPORT
    assert not {m for m in modules if m.startswith(("hypercorn", "importlib.metadata"))}


def test_version_and_protocols_need_no_more() -> None:
    modules = _imported(
        "import durable_futures as df; print(df.__version__, df.PROTOCOL_VERSIONS)"
    )
    assert not modules & NOT_AT_IMPORT


def test_public_names_resolve_on_first_use() -> None:
    for name in durable_futures.__all__:
        assert getattr(durable_futures, name) is not None, name
    assert set(durable_futures.__all__) <= set(dir(durable_futures))
    assert durable_futures.LocalEngine.__module__ == "durable_futures.local.engine"
    assert durable_futures.asgi_app.__module__ == "durable_futures.endpoint.asgi"
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        durable_futures.NoSuchName  # noqa: B018


def test_star_import_and_from_import_in_a_fresh_interpreter() -> None:
    code = (
        "from durable_futures import *\n"
        "from durable_futures import Service, LocalEngine\n"
        "import durable_futures as df\n"
        "assert LocalEngine is df.LocalEngine and Service is df.Service\n"
        "missing = [n for n in df.__all__ if n not in globals()]\n"
        "assert not missing, missing\n"
        "assert set(df.__all__) <= set(dir(df))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
