"""The pytest plugin of :mod:`durable_futures.testing`: the ``durable`` marker and the
``durable``, ``local_engine`` and ``durable_engine`` fixtures.

``@pytest.mark.durable(explore=64, services=[...], seed=0)`` on an ``async def`` test
taking ``durable_engine`` runs it with :func:`~durable_futures.testing.explore`: once per
completion order tried, each time with a fresh engine serving ``services``.

pytest loads it (entry point ``pytest11``) in every run of every environment that has the
package, so it imports nothing but pytest and ``durable_futures`` itself (the compiled core):
the engine and the rest of :mod:`durable_futures.testing` are imported by the fixtures, for
the tests that use them. Without autoloading: ``pytest -p durable_futures.pytest_plugin``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from .testing import DurableTest, EngineFactory

__all__ = [
    "durable",
    "durable_engine",
    "local_engine",
    "pytest_configure",
    "pytest_pyfunc_call",
]

# Marker options of an exploring test, not engine options.
_EXPLORE_OPTIONS = ("explore", "seed", "services", "timeout")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "durable(**options): options of the test's durable_futures engines, e.g. "
        "always_replay=True, virtual_clock=False, or any LocalEngine keyword; "
        "explore=N, services=[...], seed=0 run an async def test taking durable_engine "
        "in N completion orders",
    )


def _marker_options(item: pytest.Item) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for marker in reversed(list(item.iter_markers("durable"))):
        if marker.args:
            raise TypeError("@pytest.mark.durable takes keyword arguments only")
        options.update(marker.kwargs)
    return options


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Runs a test marked ``durable(explore=N)`` through ``explore``."""
    options = _marker_options(pyfuncitem)
    if "explore" not in options:
        return None
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn) or "durable_engine" not in pyfuncitem.fixturenames:
        raise TypeError(
            "@pytest.mark.durable(explore=N) runs an 'async def' test taking durable_engine"
        )
    from .testing import DEFAULT_TIMEOUT, explore, run

    runs = options.pop("explore")
    seed = options.pop("seed", 0)
    services = options.pop("services", ())
    timeout = options.pop("timeout", DEFAULT_TIMEOUT)
    argnames = pyfuncitem._fixtureinfo.argnames
    funcargs = {name: pyfuncitem.funcargs[name] for name in argnames}

    async def test(engine: Any) -> None:
        await fn(**{**funcargs, "durable_engine": engine})

    run(explore(test, *services, runs=runs, seed=seed, **options), timeout)
    return True


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Options from ``durable`` markers (the closest wins) and the fixture's parameter."""
    options = _marker_options(request.node)
    if "explore" in options:
        for name in _EXPLORE_OPTIONS:
            options.pop(name, None)
    options.update(_param(request))
    return options


def _param(request: pytest.FixtureRequest) -> dict[str, Any]:
    param = getattr(request, "param", None)
    if param is None:
        return {}
    if not isinstance(param, dict):
        raise TypeError(f"the parameter of {request.fixturename} is a dict of options, not {param!r}")
    return param


@pytest.fixture
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> DurableTest:
    """The test's engine options and database file, ``durable.engine(*services)`` and
    ``durable.run(coro)``."""
    from .testing import DurableTest

    return DurableTest(tmp_path / "durable.db", _options(request))


@pytest.fixture
def local_engine(request: pytest.FixtureRequest, durable: DurableTest) -> EngineFactory:
    """``local_engine(*services, **options)``: ``async with`` it for an engine on the
    test's database. Parametrize it (``indirect=True``) with dicts of options."""
    durable.options.update(_param(request))
    return durable.engine


@pytest.fixture
def durable_engine(request: pytest.FixtureRequest) -> None:
    """The engine of a test marked ``durable(explore=N, services=[...])``: a fresh one for
    each completion order tried (given to the test by the marker)."""
    if "explore" not in _marker_options(request.node):
        raise pytest.UsageError(
            "durable_engine is the engine of a test marked "
            "@pytest.mark.durable(explore=N, services=[...])"
        )
