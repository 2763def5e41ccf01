"""durable_futures.testing: the pytest plugin's fixtures and marker, and the helpers that work
without pytest. The plugin is loaded through its ``pytest11`` entry point, here as anywhere
the package is installed; one test proves that in a fresh pytest process (pytester)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

import durable_futures as df
from durable_futures.local import VirtualClock
from durable_futures.testing import (
    DurableTest,
    EngineFactory,
    engine_for,
    run,
)

pytest_plugins = ["pytester"]

greeter = df.Service("Greeter")
_counter = iter(range(1_000_000))


@greeter.handler()
async def greet(ctx: df.Context, name: str) -> str:
    await ctx.sleep(timedelta(days=1))  # skipped by the virtual clock
    polite = await ctx.run("polish", lambda: f"Hello {name}")
    return f"{polite}!"


@greeter.handler()
def greet_sync(ctx: df.Context, name: str) -> str:
    ctx.after(timedelta(hours=5)).result()
    return ctx.run_async("polish", lambda: f"Hi {name}").result()


@greeter.handler()
async def nondeterministic(ctx: df.Context) -> str:
    await ctx.run(f"step-{next(_counter)}", lambda: 1)  # a new name on every execution
    await ctx.run("next", lambda: 2)
    return "should not get here with always_replay"


@greeter.handler()
async def broken(ctx: df.Context) -> str:
    raise ValueError("broken handler")


@greeter.handler()
async def wait_for_signal(ctx: df.Context) -> str:
    awk_id, fut = ctx.awakeable(str)
    await ctx.run("publish", lambda: awk_id)
    return await fut


# ---- the fixtures, in this session ----------------------------------------------------------


def test_local_engine_in_a_sync_test(local_engine: EngineFactory, durable: DurableTest) -> None:
    async def scenario() -> None:
        async with local_engine(greeter) as engine:
            assert await engine.invoke(greet, "Ada") == "Hello Ada!"
            assert await engine.invoke(greet_sync, "Bob") == "Hi Bob"

    t0 = time.monotonic()
    durable.run(scenario())
    assert time.monotonic() - t0 < 10, "a day of sleep is skipped"
    assert durable.path.exists() and durable.path.name == "durable.db"
    assert durable.options == {}


@pytest.mark.durable(always_replay=True)
def test_marker_always_replay_catches_non_determinism(durable: DurableTest) -> None:
    assert durable.options == {"always_replay": True}

    async def scenario() -> None:
        async with durable.engine(greeter) as engine:
            # The first mismatch ends the invocation: no retry until a coin flip matches.
            with pytest.raises(df.JournalMismatchError) as info:
                await engine.invoke(nondeterministic)
            assert "journal mismatch" in info.value.message
            assert info.value.source is not None and "test_testing_plugin.py" in info.value.source
            # Deterministic handlers pass under always_replay.
            assert await engine.invoke(greet, "Ada") == "Hello Ada!"

    durable.run(scenario())


@pytest.mark.parametrize(
    "local_engine", [{"always_replay": False}, {"always_replay": True}], indirect=True
)
def test_parametrized_options(local_engine: EngineFactory, durable: DurableTest) -> None:
    replaying = durable.options["always_replay"]

    async def scenario() -> None:
        async with local_engine(greeter) as engine:
            assert await engine.invoke(greet_sync, "Cy") == "Hi Cy"
            if replaying:
                with pytest.raises(df.JournalMismatchError, match="journal mismatch"):
                    await engine.invoke(nondeterministic)

    durable.run(scenario())


@pytest.mark.durable(always_replay=True)
@pytest.mark.parametrize("durable", [{"always_replay": False}], indirect=True)
def test_the_parameter_wins_over_the_marker(durable: DurableTest) -> None:
    assert durable.options == {"always_replay": False}


@pytest.mark.durable(virtual_clock=False)
def test_marker_wall_clock(durable: DurableTest) -> None:
    svc = df.Service("Wall")

    @svc.handler()
    async def nap(ctx: df.Context) -> str:
        await ctx.sleep(timedelta(milliseconds=80))
        return "awake"

    async def scenario() -> float:
        async with durable.engine(svc) as engine:
            t0 = time.monotonic()
            assert await engine.invoke(nap) == "awake"
            return time.monotonic() - t0

    assert durable.run(scenario()) >= 0.075


def test_failing_handler_fails_the_test_quickly(durable: DurableTest) -> None:
    async def scenario() -> None:
        async with durable.engine(greeter) as engine:
            with pytest.raises(df.TerminalError) as info:
                await engine.invoke(broken)
            assert "ValueError: broken handler" in info.value.message

    t0 = time.monotonic()
    durable.run(scenario())
    assert time.monotonic() - t0 < 5, "backoffs are skipped by the virtual clock"


def test_engines_of_a_test_share_its_database(durable: DurableTest) -> None:
    """A restart: close the engine while an invocation waits, open another, finish it."""

    async def first() -> tuple[str, str]:
        async with durable.engine(greeter) as engine:
            inv = engine.send(wait_for_signal)
            while True:
                journal = engine.journal(inv)
                if len(journal) >= 3:  # input, run, its completion
                    break
                await asyncio.sleep(0.005)
            return inv, _published(journal)

    async def second(inv: str, awk_id: str) -> str:
        async with durable.engine(greeter) as engine:
            engine.resolve_awakeable(awk_id, "resumed")
            return await engine.result(inv)  # type: ignore[no-any-return]

    inv, awk_id = durable.run(first())
    assert durable.run(second(inv, awk_id)) == "resumed"


def _published(journal: list[bytes]) -> str:
    """The awakeable id the handler journaled as the result of its 'publish' run."""
    import json

    from .frames import frames

    for raw in journal:
        f = frames(raw)[0]
        if f.type_name == "RunCompletion" and f.value is not None:
            return json.loads(f.value)  # type: ignore[no-any-return]
    raise AssertionError("no run completion in the journal")


# ---- without pytest: engine_for() and run() ---------------------------------------------------


def test_engine_for_and_run_without_fixtures() -> None:
    seen: list[Path] = []

    async def scenario() -> str:
        clock = VirtualClock()
        start = clock.now_ms
        async with engine_for(greeter, virtual_clock=clock) as engine:
            seen.append(Path(engine._path or ""))
            result = await engine.invoke(greet, "Dee")
            assert clock.now_ms - start == 24 * 3600 * 1000
            return result  # type: ignore[no-any-return]

    assert run(scenario()) == "Hello Dee!"
    assert not seen[0].exists() and not seen[0].parent.exists(), "the temporary file is gone"


def test_engine_for_always_replay_and_options(tmp_path: Path) -> None:
    async def scenario() -> None:
        db = tmp_path / "mine.db"
        async with engine_for(
            greeter,
            always_replay=True,
            path=db,
            retry_policy=df.RetryPolicy(max_attempts=2, on_max_attempts="kill"),
            fail_on_mismatch=False,
        ) as engine:
            # Retried (fail_on_mismatch=False) until killed after 2 attempts: the error has
            # no source line, which only a mismatch that ends the invocation at once records.
            with pytest.raises(df.JournalMismatchError, match="journal mismatch") as info:
                await engine.invoke(nondeterministic)
            assert info.value.source is None
        assert db.exists()

    run(scenario())


def test_run_is_bounded() -> None:
    with pytest.raises(asyncio.TimeoutError):
        run(asyncio.sleep(10), timeout=0.05)


# ---- the entry point, in a fresh pytest process -----------------------------------------------


def test_the_plugin_loads_through_its_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        addopts = --strict-markers
        filterwarnings = error
        """
    )
    pytester.makepyfile(
        """
        from datetime import timedelta

        import pytest

        import durable_futures as df

        svc = df.Service("Plugin")
        counter = iter(range(100))


        @svc.handler()
        async def slow(ctx: df.Context, n: int) -> int:
            await ctx.sleep(timedelta(days=n))
            return await ctx.run("double", lambda: 2 * n)


        @svc.handler()
        async def flaky(ctx: df.Context) -> int:
            return await ctx.run(f"r{next(counter)}", lambda: 1) + await ctx.run("s", lambda: 1)


        def test_sync_test(local_engine, durable):
            async def scenario():
                async with local_engine(svc) as engine:
                    assert await engine.invoke(slow, 3) == 6

            durable.run(scenario())


        @pytest.mark.durable(always_replay=True)
        def test_marker(local_engine, durable):
            async def scenario():
                async with local_engine(svc) as engine:
                    with pytest.raises(df.JournalMismatchError, match="journal mismatch"):
                        await engine.invoke(flaky)

            durable.run(scenario())
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2)


def test_the_plugin_imports_no_engine_until_a_fixture_is_used(pytester: pytest.Pytester) -> None:
    """The plugin is loaded by every pytest run where the package is installed: a run whose
    tests use none of its fixtures loads only the plugin module and the compiled core."""
    pytester.makeini(
        """
        [pytest]
        addopts = --strict-markers
        filterwarnings = error
        """
    )
    pytester.makeconftest(
        """
        import sys


        def pytest_sessionfinish(session):
            loaded = sorted(m for m in sys.modules if m.startswith(("durable_futures", "hypercorn")))
            with open("loaded.txt", "w") as f:
                f.write("\\n".join(loaded))
        """
    )
    pytester.makepyfile(
        """
        import pytest


        def test_trivial():
            assert 1 + 1 == 2


        @pytest.mark.durable(always_replay=True)  # registered by the plugin (--strict-markers)
        def test_marked_without_fixtures():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2)
    loaded = set((pytester.path / "loaded.txt").read_text().split())
    assert loaded == {"durable_futures", "durable_futures._core", "durable_futures.pytest_plugin"}
