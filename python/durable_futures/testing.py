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
* ``@pytest.mark.durable(explore=64, services=[...])`` on an ``async def`` test taking
  ``durable_engine``: the test runs through :func:`explore`.

:func:`explore` runs a test body once per order in which the completions of concurrent runs
and timers, and the starts of new invocations, can happen (or a seeded sample of them), and
reports a failing order reproducibly (:class:`ExplorationFailure`).

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
import random
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .local import LocalEngine, VirtualClock
from .policy import RetryPolicy
from .service import Service

if TYPE_CHECKING:
    from . import _core
    from ._attempt import Attempt
    from ._runs import Runs

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_TIMEOUT",
    "DEFAULT_EXPLORE_RUNS",
    "DurableTest",
    "EngineFactory",
    "Exploration",
    "ExplorationFailure",
    "engine_for",
    "explore",
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

#: How many runs :func:`explore` makes by default.
DEFAULT_EXPLORE_RUNS = 64

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
    explorer = options.pop("_explorer", None)
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
        engine._explorer = explorer
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


# ---- exploring completion orders -----------------------------------------------------------


class ExplorationFailure(AssertionError):
    """A run of :func:`explore` failed: ``seed``, the ``run`` (0-based), the ``order`` in
    which completions were delivered and attempts started (``"run fetch (Orders/overview)"``,
    ``"timer +30s"``, ``"attempt Orders/lookup"``) and the ``schedule`` (the choices made)
    that replays exactly this run: ``explore(test, *services, schedule=failure.schedule)``.
    The test's exception is the ``__cause__``."""

    def __init__(
        self, seed: int, run: int, order: list[str], schedule: list[int], error: BaseException
    ) -> None:
        self.seed = seed
        self.run = run
        self.order = order
        self.schedule = schedule
        lines = "\n".join(f"  {i + 1}. {what}" for i, what in enumerate(order)) or "  (none)"
        super().__init__(
            f"run {run} of explore(seed={seed}) failed: {type(error).__name__}: {error}\n"
            f"completion order:\n{lines}\n"
            f"reproduce: explore(..., seed={seed}), or this run alone: "
            f"explore(..., schedule={schedule!r})"
        )


@dataclass
class Exploration:
    """What :func:`explore` did: how many ``runs`` passed, whether they tried every
    completion order there is (``exhaustive``), and with which ``seed``."""

    runs: int
    exhaustive: bool
    seed: int
    orders: list[list[str]] = field(default_factory=list)


class _Node:
    """A decision of past runs: how many candidates it had, the choices tried below it,
    and whether every order below it has been tried (``done``)."""

    __slots__ = ("children", "done", "n")

    def __init__(self) -> None:
        self.n: int | None = None
        self.children: dict[int, _Node] = {}
        self.done = False


class _Chooser:
    """The choices of one run: replayed from ``schedule``, else drawn from ``rng`` among
    the candidates under which some order is still untried (so each run tries a new
    order, and a small tree is covered completely)."""

    def __init__(self, root: _Node, rng: random.Random, schedule: list[int] | None) -> None:
        self._node = root
        self._path = [root]
        self._rng = rng
        self._schedule = schedule
        self.choices: list[int] = []

    def choose(self, n: int) -> int:
        node = self._node
        if self._schedule is not None:
            k = len(self.choices)
            i = min(self._schedule[k], n - 1) if k < len(self._schedule) else 0
        else:
            if node.n != n:  # first visit (or the test is not deterministic)
                node.n, node.children = n, {}
            untried = [c for c in range(n) if c not in node.children or not node.children[c].done]
            i = self._rng.choice(untried or list(range(n)))
        self.choices.append(i)
        self._node = node.children.setdefault(i, _Node())
        self._path.append(self._node)
        return i

    def finish(self) -> None:
        """The run passed: its order is tried; so is every decision all of whose orders are."""
        self._node.done = self._node.n is None
        for node in reversed(self._path[:-1]):
            node.done = node.n is not None and all(
                c in node.children and node.children[c].done for c in range(node.n)
            )


@dataclass
class _Held:
    label: str
    key: tuple[str, int, int]
    runs: Runs
    release: Callable[[], None]


@dataclass
class _HeldAttempt:
    label: str
    key: tuple[str, int]
    attempt: _core.Attempt


class _Explorer:
    """The engine's scheduler during one run of :func:`explore`: finished run closures'
    outcomes and the first attempts of new invocations are held back; each time every
    invocation waits, one of them is let through (a held run completes, a held attempt
    starts) or the next timer fires (the clock jumps to it), as ``choose`` decides among
    them. Later attempts of an invocation (woken by a completion) start at once."""

    def __init__(self, choose: Callable[[int], int], start_ms: int) -> None:
        self._choose = choose
        self._start_ms = start_ms
        self._held: list[_Held] = []
        self._attempts: list[_HeldAttempt] = []
        self._started: set[str] = set()
        self._seen: dict[str, int] = {}
        self.order: list[str] = []

    def hold(
        self,
        engine: LocalEngine,
        attempt: Attempt,
        runs: Runs,
        handle: int,
        fn: Callable[..., Any],
        release: Callable[[], None],
    ) -> None:
        index = self._seen.setdefault(attempt.invocation_id, len(self._seen))
        name = getattr(fn, "__qualname__", None) or repr(fn)
        label = f"run {name} ({attempt.target})"
        self._held.append(_Held(label, (attempt.target, handle, index), runs, release))
        engine._poke()

    def hold_attempt(self, engine: LocalEngine, attempt: _core.Attempt) -> bool:
        """Keeps back the first attempt of an invocation (a new callee, a send, the test's
        own submission) until it is chosen; says whether it did."""
        if attempt.id in self._started:
            return False
        self._started.add(attempt.id)
        index = self._seen.setdefault(attempt.id, len(self._seen))
        label = f"attempt {attempt.service}/{attempt.handler}"
        self._attempts.append(_HeldAttempt(label, (label, index), attempt))
        engine._poke()
        return True

    def forget_attempt(self, invocation_id: str) -> None:
        """The invocation completed (killed or cancelled) before its held attempt started."""
        if self._attempts:
            self._attempts = [a for a in self._attempts if a.attempt.id != invocation_id]

    def _live(self) -> list[_Held]:
        self._held = [h for h in self._held if h.runs.released()]
        return self._held

    def holding(self) -> bool:
        return bool(self._attempts) or bool(self._live())

    def decide(self, engine: LocalEngine, due: int | None) -> None:
        held = sorted(self._live(), key=lambda h: h.key)
        attempts = sorted(self._attempts, key=lambda a: a.key)
        n = len(held) + len(attempts) + (due is not None)
        if n == 0:
            return
        i = self._choose(n) if n > 1 else 0
        if i < len(held):
            chosen = held[i]
            self._held.remove(chosen)
            self.order.append(chosen.label)
            chosen.release()
        elif i < len(held) + len(attempts):
            start = attempts[i - len(held)]
            self._attempts.remove(start)
            if n > 1:  # an attempt that was the only possibility is no choice: not listed
                self.order.append(start.label)
            engine._start_attempt(start.attempt)
        else:
            assert due is not None and isinstance(engine._clock, VirtualClock)
            engine._clock.now_ms = max(engine._clock.now_ms, due)
            self.order.append(f"timer +{(due - self._start_ms) / 1000:g}s")


async def explore(
    test: Callable[[LocalEngine], Awaitable[Any]],
    *services: Service,
    runs: int = DEFAULT_EXPLORE_RUNS,
    seed: int = 0,
    schedule: list[int] | None = None,
    **options: Any,
) -> Exploration:
    """Runs ``test(engine)`` up to ``runs`` times, each time on a fresh test engine serving
    ``services`` (``always_replay=True``, a virtual clock), delivering the completions of
    concurrently pending runs and timers in a different order: finished run closures and
    the first attempts of new invocations (callees, sends, shared handlers resolving a
    promise) are held back, and whenever every invocation waits, one of them is chosen to
    complete or start, or the next timer to fire (an invocation woken by a completion goes
    on at once). Each run tries an order no earlier run tried (chosen at random from
    ``seed`` among the untried ones); once every order has been tried, it stops early.

    Raises :class:`ExplorationFailure` (naming the seed, the run and the completion order)
    at the first run whose test raises; calling again with the same seed reproduces it, and
    ``schedule=failure.schedule`` replays that run alone. ``options`` go to
    :func:`engine_for`."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs!r}")
    options.setdefault("always_replay", True)
    root = _Node()
    result = Exploration(runs=0, exhaustive=False, seed=seed)
    for k in range(1 if schedule is not None else runs):
        chooser = _Chooser(root, random.Random(f"{seed}:{k}"), schedule)
        clock = VirtualClock()
        explorer = _Explorer(chooser.choose, clock.now_ms)
        try:
            async with engine_for(
                *services, virtual_clock=clock, _explorer=explorer, **options
            ) as engine:
                await test(engine)
        except Exception as e:  # noqa: BLE001 - the failure of this order
            raise ExplorationFailure(seed, k, explorer.order, chooser.choices, e) from e
        result.runs += 1
        result.orders.append(explorer.order)
        chooser.finish()
        if root.done:
            result.exhaustive = schedule is None
            break
    return result
