"""Testing helpers: the same handlers on an in-process engine per test, no server, no Docker.

The engine is :class:`~durable_futures.LocalEngine` on a temporary SQLite file, set up for
tests: a virtual clock (timers and retry backoffs are skipped: a handler sleeping for a
day finishes at once), ``durability="os"`` (no fsync), and at most 5 attempts, after which
the invocation is killed, so a handler that keeps failing fails the test with its error
instead of retrying or pausing. A journal mismatch is never retried: ``engine.invoke``
raises :class:`~durable_futures.JournalMismatchError` at the first one, naming the command
index, the recorded and the attempted command and the handler's line. With
``always_replay=True`` every new journal entry ends the attempt and the next one replays
the whole journal from scratch: non-deterministic handler code fails at once.

**With pytest** the plugin (:mod:`durable_futures.pytest_plugin`) is registered
automatically (entry point ``pytest11``); it imports the engine only when a test uses one
of its fixtures. It adds two fixtures and a marker; no pytest-asyncio needed, tests can be
plain ``def`` functions:

* ``local_engine``: a factory, ``local_engine(*services, **options)``, giving an async
  context manager that opens the engine on the test's database (``tmp_path/durable.db``).
  Opening a second engine after closing the first resumes its invocations: that is how to
  test a restart.
* ``durable``: the same factory as ``durable.engine(...)``, plus ``durable.run(coro)``, which
  runs a coroutine to its end in a fresh event loop (bounded by a timeout, 60 s by default).
* ``@pytest.mark.durable(always_replay=True, ...)``: options for the test's engines; any
  :class:`~durable_futures.LocalEngine` keyword works, as well as ``virtual_clock=False``.
  ``@pytest.mark.parametrize("local_engine", [{...}, {...}], indirect=True)`` runs a test
  once per set of options.

.. code-block:: python

    import pytest
    import durable_futures as df
    from myapp import greeter, greet

    def test_greet(local_engine, durable):
        async def scenario() -> None:
            async with local_engine(greeter) as engine:
                assert await engine.invoke(greet, "Ada") == "Hello Ada"

        durable.run(scenario())

    @pytest.mark.durable(always_replay=True)
    def test_greet_is_deterministic(local_engine, durable):
        async def scenario() -> None:
            async with local_engine(greeter) as engine:
                assert await engine.invoke(greet, "Ada") == "Hello Ada"

        durable.run(scenario())

**Without pytest**, :func:`engine_for` is the same engine as an async context manager
(on a temporary file removed afterwards), and :func:`run` the runner:

.. code-block:: python

    from durable_futures.testing import engine_for, run

    async def main() -> None:
        async with engine_for(greeter, always_replay=True) as engine:
            print(await engine.invoke(greet, "Ada"))

    run(main())
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from .local import LocalEngine, VirtualClock
from .policy import RetryPolicy
from .service import Service

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TIMEOUT",
    "DurableTest",
    "EngineFactory",
    "engine_for",
    "run",
]

T = TypeVar("T")

#: Attempts of a failing handler before its invocation fails.
DEFAULT_MAX_ATTEMPTS = 5

#: Tests' retry policy: a handler that keeps failing fails its invocation (and the test)
#: after :data:`DEFAULT_MAX_ATTEMPTS` attempts, with its last error.
DEFAULT_RETRY_POLICY = RetryPolicy(max_attempts=DEFAULT_MAX_ATTEMPTS, on_max_attempts="kill")

#: How long :func:`run` lets a test's coroutine run.
DEFAULT_TIMEOUT = 60.0

EngineFactory = Callable[..., contextlib.AbstractAsyncContextManager[LocalEngine]]


@contextlib.asynccontextmanager
async def engine_for(
    *services: Service,
    always_replay: bool = False,
    virtual_clock: bool | VirtualClock = True,
    path: str | os.PathLike[str] | None = None,
    retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
    fail_on_mismatch: bool = True,
    **options: Any,
) -> AsyncIterator[LocalEngine]:
    """An engine for tests, running ``services``; use as ``async with``.

    ``virtual_clock``: ``True`` for a fresh :class:`VirtualClock` starting at 2023-11-14
    (or pass your own, to read or advance it), ``False`` for the wall clock. ``path``: the
    database file (default: a temporary file, removed afterwards). ``options`` go to
    :class:`LocalEngine` (``durability`` defaults to ``"os"``; a ``clock`` option wins over
    ``virtual_clock``).
    """
    options.setdefault("durability", "os")
    if "clock" not in options and virtual_clock is not False:
        options["clock"] = virtual_clock if isinstance(virtual_clock, VirtualClock) else VirtualClock()
    with contextlib.ExitStack() as stack:
        if path is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="durable-futures-"))
            path = Path(tmp) / "durable.db"
        engine = LocalEngine(
            *services,
            path=path,
            always_replay=always_replay,
            retry_policy=retry_policy,
            fail_on_mismatch=fail_on_mismatch,
            **options,
        )
        async with engine:
            yield engine


def run(coro: Coroutine[Any, Any, T], timeout: float | None = DEFAULT_TIMEOUT) -> T:
    """Runs ``coro`` to its end in a fresh event loop and returns its result: async test
    code from a plain ``def`` test. Fails with ``TimeoutError`` after ``timeout`` seconds
    (``None``: no limit)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class DurableTest:
    """What the ``durable`` fixture gives a test: its engine options, its database file,
    the engine factory and the runner."""

    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        #: The database file every engine of this test opens (unless given ``path=``).
        self.path = path
        #: Options from the ``durable`` marker and the fixture parameter.
        self.options = options

    def engine(
        self, *services: Service, **overrides: Any
    ) -> contextlib.AbstractAsyncContextManager[LocalEngine]:
        """``async with durable.engine(svc) as engine``: an engine on this test's database,
        with the test's options (``overrides`` win)."""
        options = {"path": self.path, **self.options, **overrides}
        return engine_for(*services, **options)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = DEFAULT_TIMEOUT) -> T:
        """Runs ``coro`` in a fresh event loop (see :func:`run`)."""
        return run(coro, timeout)
