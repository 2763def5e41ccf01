"""The pytest plugin of :mod:`durable_futures.testing`: the ``durable`` marker and the
``durable`` and ``local_engine`` fixtures.

pytest loads it (entry point ``pytest11``) in every run of every environment that has the
package, so it imports nothing but pytest and ``durable_futures`` itself (the compiled core):
the engine and the rest of :mod:`durable_futures.testing` are imported by the fixtures, for
the tests that use them. Without autoloading: ``pytest -p durable_futures.pytest_plugin``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from .testing import DurableTest, EngineFactory

__all__ = ["durable", "local_engine", "pytest_configure"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "durable(**options): options of the test's durable_futures engines, e.g. "
        "always_replay=True, virtual_clock=False, or any LocalEngine keyword",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Options from ``durable`` markers (the closest wins) and the fixture's parameter."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("durable"))):
        if marker.args:
            raise TypeError("@pytest.mark.durable takes keyword arguments only")
        options.update(marker.kwargs)
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
