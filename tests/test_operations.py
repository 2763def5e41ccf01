"""Operating the embedded engine on the day a handler has a bug: failures stored and shown,
retry policies with pause or kill at the end, cancel / kill / pause / resume / purge,
retention, the admin API (restate-server's paths) and journal mismatches in tests."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

import durable_futures as df
from durable_futures.errors import InvocationStateError, UnknownInvocationError
from durable_futures.local import VirtualClock
from durable_futures.local.admin import Admin
from durable_futures.testing import engine_for

from .asgi_client import call

T = TypeVar("T")

FAST = df.RetryPolicy(
    initial_interval=timedelta(milliseconds=5), max_interval=timedelta(milliseconds=20)
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


def engine(*services: df.Service, path: Path, **kw: Any) -> df.LocalEngine:
    kw.setdefault("durability", "os")
    kw.setdefault("retry_policy", FAST)
    return df.LocalEngine(*services, path=path, **kw)


async def until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def status(e: df.LocalEngine, inv_id: str) -> str | None:
    """The invocation's status (``None`` until its submission is committed)."""
    row = e.invocation(inv_id)
    return None if row is None else row.status


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ops.db"


# ---- failures stored, retry policies ------------------------------------------------------------

flaky = df.Service("Flaky")
FAILURES: dict[str, int] = {}


def prepare(s: str) -> str:
    return s.upper()


@flaky.handler()
async def fail_times(ctx: df.Context, n: int) -> str:
    """Fails its first ``n`` attempts (counted per invocation), after a journaled run."""
    key = ctx.invocation_id
    await ctx.run("prepare", prepare, "x")
    FAILURES[key] = FAILURES.get(key, 0) + 1
    if FAILURES[key] <= n:
        raise ValueError(f"failure {FAILURES[key]} of {n}")
    return f"ok after {FAILURES[key]}"


@flaky.handler(retry_policy=df.RetryPolicy(max_attempts=2, on_max_attempts="kill",
                                           initial_interval=timedelta(milliseconds=5)))
async def fail_times_killed(ctx: df.Context, n: int) -> str:
    return await fail_times.fn(ctx, n)  # type: ignore[no-any-return]


def test_the_last_failure_is_stored_with_the_command_it_failed_at(db: Path) -> None:
    async def body() -> None:
        async with engine(flaky, path=db, retry_policy=df.RetryPolicy(
            initial_interval=timedelta(hours=1), max_interval=timedelta(hours=1)
        )) as e:
            inv = e.send(fail_times, 5)
            await until(lambda: status(e, inv) == "backing-off", "the first failure")
            row = e.invocation(inv)
            assert row is not None and row.last_failure is not None
            f = row.last_failure
            assert (f.code, f.message) == (500, "ValueError: failure 1 of 5")
            assert "Traceback" in f.stacktrace and "fail_times" in f.stacktrace
            assert f.related_command_name == "prepare"
            assert f.related_command_index == 1
            assert row.failed_attempts == 1
            assert row.next_retry_at_ms > row.created_at_ms
            assert row.completion_result is None

    run(body())


def test_max_attempts_pause_then_resume_gives_the_full_policy_again(db: Path) -> None:
    async def body() -> None:
        policy = df.RetryPolicy(initial_interval=timedelta(milliseconds=5), max_attempts=2)
        async with engine(flaky, path=db, retry_policy=policy) as e:
            inv = e.send(fail_times, 3)
            await until(lambda: status(e, inv) == "paused", "the pause")
            assert FAILURES[inv] == 2
            await asyncio.sleep(0.1)
            assert FAILURES[inv] == 2, "no attempt while paused"
            e.resume(inv)  # two more attempts: the third fails, the fourth succeeds
            assert await e.result(inv) == "ok after 4"
            row = e.invocation(inv)
            assert row is not None and row.completion_result == "success"

    run(body())


def test_a_handlers_policy_wins_and_kill_ends_with_the_last_failure(db: Path) -> None:
    async def body() -> None:
        async with engine(flaky, path=db) as e:  # the engine's policy would pause
            with pytest.raises(df.TerminalError) as info:
                await e.invoke(fail_times_killed, 5)
            assert "ValueError: failure 2 of 5" in info.value.message
            rows = [r for r in e.invocations() if r.handler == "fail_times_killed"]
            assert rows[0].status == "completed" and rows[0].completion_result == "failure"

    run(body())


# ---- cancel, kill, pause, purge -----------------------------------------------------------------

holder = df.VirtualObject("Holder")
child_svc = df.Service("Child")
AWAKEABLES: dict[str, str] = {}


@holder.handler()
async def hold(ctx: df.ObjectContext, tag: str) -> str:
    awakeable_id, fut = ctx.awakeable(str)
    AWAKEABLES[tag] = awakeable_id
    return f"{tag} got {await fut}"


@holder.handler()
async def quick(ctx: df.ObjectContext, tag: str) -> str:
    return f"{tag} ran"


@holder.handler()
async def parent(ctx: df.ObjectContext, tag: str) -> str:
    return await ctx.service(wait_forever).request(tag)


@child_svc.handler()
async def wait_forever(ctx: df.Context, tag: str) -> str:
    awakeable_id, fut = ctx.awakeable(str)
    AWAKEABLES[tag] = awakeable_id
    return await fut


def test_kill_ends_at_once_frees_the_key_and_kills_awaited_calls(db: Path) -> None:
    async def body() -> None:
        async with engine(holder, child_svc, path=db) as e:
            first = e.send(parent, "p1", key="k")
            queued = e.send(quick, "q", key="k")
            await until(lambda: "p1" in AWAKEABLES, "the child to wait")
            child = next(r.id for r in e.invocations() if r.service == "Child")
            assert status(e, queued) == "pending"
            e.kill(first)
            with pytest.raises(df.TerminalError) as info:
                await e.result(first)
            assert info.value.code == 409 and "killed" in info.value.message
            with pytest.raises(df.TerminalError) as info:
                await e.result(child)
            assert info.value.code == 409
            assert await e.result(queued) == "q ran"
            with pytest.raises(InvocationStateError):
                e.kill(first)
            with pytest.raises(UnknownInvocationError):
                e.kill("inv_" + "0" * 32)

    run(body())


def test_cancel_reaches_an_invocation_backing_off_for_long(db: Path) -> None:
    async def body() -> None:
        slow = df.RetryPolicy(initial_interval=timedelta(hours=1), max_interval=timedelta(hours=1))
        async with engine(flaky, path=db, retry_policy=slow) as e:
            inv = e.send(fail_times, 99)
            await until(lambda: status(e, inv) == "backing-off", "the first failure")
            e.cancel(inv)
            with pytest.raises(df.TerminalError) as info:
                await asyncio.wait_for(e.result(inv), 5)
            assert info.value.code == 409

    run(body())


def test_pause_holds_notifications_until_resume(db: Path) -> None:
    async def body() -> None:
        async with engine(holder, path=db) as e:
            inv = e.send(hold, "h", key="k2")
            await until(lambda: "h" in AWAKEABLES, "the handler to wait")
            await until(lambda: status(e, inv) in ("suspended", "running"), "it to wait")
            e.pause(inv)
            await until(lambda: status(e, inv) == "paused", "the pause")
            e.resolve_awakeable(AWAKEABLES["h"], "news")
            await asyncio.sleep(0.2)
            assert e.invocation(inv).completion_result is None  # type: ignore[union-attr]
            e.resume(inv)
            assert await e.result(inv) == "h got news"

    run(body())


def test_purge_forgets_a_completed_invocation_only(db: Path) -> None:
    async def body() -> None:
        async with engine(holder, path=db) as e:
            done = await e.invoke(quick, "x", key="k3", idempotency_key="once")
            inv = next(r.id for r in e.invocations() if r.handler == "quick")
            waiting = e.send(hold, "w", key="k4")
            await until(lambda: "w" in AWAKEABLES, "the handler to wait")
            with pytest.raises(InvocationStateError):
                e.purge(waiting)
            e.purge(inv)
            assert e.invocation(inv) is None
            # The idempotency key went with it: the same key runs again.
            assert await e.invoke(quick, "x", key="k3", idempotency_key="once") == done
            assert len([r for r in e.invocations() if r.handler == "quick"]) == 1
            e.kill(waiting)

    run(body())


# ---- retention ----------------------------------------------------------------------------------


def test_completed_invocations_are_purged_after_their_retention(db: Path) -> None:
    async def body() -> None:
        clock = VirtualClock()
        async with engine(holder, path=db, clock=clock, retention=timedelta(seconds=1)) as e:
            await e.invoke(quick, "a", key="r")
            inv = e.invocations()[0].id
            clock.advance(timedelta(seconds=2))
            e.send(quick, "b", key="r")  # wakes the engine, whose next round purges
            await until(lambda: e.invocation(inv) is None, "the purge")

    run(body())


def test_the_database_stays_bounded_under_a_steady_load(db: Path) -> None:
    """4,000 short invocations with a 1-second retention: after the first 1,000 the file
    (database + WAL) grows by at most 50% more, since purged pages are reused."""

    async def body() -> tuple[int, int]:
        clock = VirtualClock()
        sizes = []
        async with engine(holder, path=db, clock=clock, retention=timedelta(seconds=1)) as e:
            for round_ in range(8):
                await asyncio.gather(
                    *(e.invoke(quick, "x" * 200, key=f"k{i}") for i in range(500))
                )
                clock.advance(timedelta(seconds=2))
                await e.invoke(quick, "tick", key="tick")
                await until(lambda: len(e.invocations(1000)) <= 502, "the purge")
                if round_ in (1, 7):
                    sizes.append(_size(db))
        return sizes[0], sizes[1]

    after_1000, after_4000 = run(body())
    assert after_4000 <= after_1000 * 1.5, (after_1000, after_4000)


def _size(db: Path) -> int:
    wal = Path(f"{db}-wal")
    return os.path.getsize(db) + (os.path.getsize(wal) if wal.exists() else 0)


# ---- journal mismatches in tests ----------------------------------------------------------------

nondet = df.Service("NonDet")
DRAWS = iter(range(10_000))


@nondet.handler()
async def branches(ctx: df.Context) -> str:
    await ctx.run(f"step-{next(DRAWS)}", prepare, "x")  # the name changes on every execution
    return "unreachable"


def test_a_mismatch_fails_at_once_with_its_own_error_class() -> None:
    async def body() -> None:
        async with engine_for(nondet, always_replay=True) as e:
            with pytest.raises(df.JournalMismatchError) as info:
                await e.invoke(branches)
        err = info.value
        assert err.command_index == 1
        assert err.recorded is not None and err.recorded.startswith('run "step-')
        assert err.attempted is not None and err.attempted.startswith('run "step-')
        assert err.recorded != err.attempted
        assert err.source is not None and "test_operations.py" in err.source
        assert "f\"step-{next(DRAWS)}\"" in err.source
        assert "Debug" not in err.message and "Run {" not in err.message

    run(body())


# ---- the admin API ------------------------------------------------------------------------------


def test_admin_api_on_restate_paths(db: Path) -> None:
    async def body() -> None:
        async with engine(holder, path=db) as e:
            app = Admin(e)
            r = await call(app, "/health", method="GET")
            assert r.status == 200
            inv = e.send(hold, "admin", key="a")
            await until(lambda: "admin" in AWAKEABLES, "the handler to wait")

            r = await call(app, "/query", json.dumps({"query": (
                "SELECT id, target, target_service_name, target_service_key, "
                "target_handler_name, status, journal_size FROM sys_invocation"
            )}).encode())
            assert r.status == 200, r.body
            (row,) = json.loads(r.body)["rows"]
            assert row["id"] == inv and row["target"] == "Holder/a/hold"
            assert (row["target_service_name"], row["target_service_key"]) == ("Holder", "a")
            assert row["target_handler_name"] == "hold" and row["journal_size"] >= 1

            r = await call(app, "/query", json.dumps(
                {"query": f"SELECT index, entry_type, raw FROM sys_journal WHERE id = '{inv}'"}
            ).encode())
            entries = json.loads(r.body)["rows"]
            assert entries[0]["index"] == 0 and isinstance(entries[0]["raw"], str)
            bytes.fromhex(entries[0]["raw"])

            for bad in (b"nope", b'{"q": 1}', json.dumps({"query": "DELETE FROM journal"}).encode(),
                        json.dumps({"query": "SELEC"}).encode()):
                r = await call(app, "/query", bad)
                assert r.status == 400, (bad, r.body)
                assert "message" in json.loads(r.body)
            assert e.invocation(inv) is not None

            assert (await call(app, f"/invocations/{inv}/pause", method="PATCH")).status == 200
            assert status(e, inv) == "paused"
            assert (await call(app, f"/invocations/{inv}/resume", method="PATCH")).status == 200
            assert (await call(app, f"/invocations/{inv}/cancel", method="PATCH")).status == 202
            with pytest.raises(df.TerminalError):
                await e.result(inv)
            r = await call(app, f"/invocations/{inv}/kill", method="PATCH")
            assert r.status == 409, r.body
            assert (await call(app, f"/invocations/{inv}?mode=purge", method="DELETE")).status == 200
            r = await call(app, f"/invocations/{inv}/purge", method="PATCH")
            assert r.status == 404, r.body
            assert (await call(app, "/invocations/garbage/kill", method="PATCH")).status in (400, 404)
            assert (await call(app, f"/invocations/{inv}/kill", method="GET")).status == 405
            assert (await call(app, "/nothing", method="GET")).status == 404

    run(body())
