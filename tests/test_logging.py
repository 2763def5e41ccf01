"""Logging: every failed attempt once on ``durable_futures.attempt`` (with the invocation, the
target, the attempt number and the traceback), a journal mismatch as an ERROR, ``ctx.logger``
silent while the handler replays, a handler that blocks the event loop reported, and the
CLI's ``--log-level`` / ``$DURABLE_FUTURES_LOG_LEVEL``.

The handlers run on the embedded engine of ``durable_futures.testing`` (virtual clock: the
retry backoff is skipped); records are read with pytest's ``caplog``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

import durable_futures as df
from durable_futures import _logging
from durable_futures.cli import _parser, main
from durable_futures.testing import engine_for, run

from .asgi_client import call
from .journal import DEBUG_ID, V6, Journal

ATTEMPT = "durable_futures.attempt"
CLI = str(Path(sys.executable).parent / "durable-futures")


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


def traceback_of(record: logging.LogRecord) -> str:
    formatted = logging.Formatter().format(record)
    return formatted[len(record.getMessage()) :]


# ---- failed attempts ----------------------------------------------------------------------------


def test_each_failed_attempt_is_logged_once_with_its_invocation_target_and_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = df.Service("Flaky")
    tries = Counter[str]()

    @svc.handler()
    async def twice(ctx: df.Context, n: int) -> int:
        await ctx.run("step", lambda: n)
        tries["twice"] += 1
        if tries["twice"] <= 2:
            raise ValueError(f"not yet ({tries['twice']})")
        return n

    async def body() -> str:
        async with engine_for(svc) as engine:
            inv_id = engine.send(twice, 7)
            assert await engine.result(inv_id) == 7
            return inv_id

    caplog.set_level(logging.INFO)
    inv_id = run(body())
    failed = [r for r in records(caplog, ATTEMPT) if r.levelno >= logging.WARNING]
    assert [r.levelno for r in failed] == [logging.WARNING, logging.WARNING]
    assert [r.attempt for r in failed] == [1, 2]  # type: ignore[attr-defined]
    for n, r in enumerate(failed, 1):
        assert r.invocation_id == inv_id  # type: ignore[attr-defined]
        assert r.target == "Flaky/twice"  # type: ignore[attr-defined]
        message = r.getMessage()
        assert inv_id in message and "Flaky/twice" in message and f"attempt {n}" in message
        assert f"ValueError: not yet ({n})" in message
        text = traceback_of(r)
        assert "Traceback (most recent call last)" in text
        assert f"ValueError: not yet ({n})" in text and "in twice" in text


def test_a_virtual_objects_target_names_its_key(caplog: pytest.LogCaptureFixture) -> None:
    cart = df.VirtualObject("Cart")
    tries = Counter[str]()

    @cart.handler()
    async def add(ctx: df.ObjectContext, item: str) -> str:
        tries[item] += 1
        if tries[item] == 1:
            raise RuntimeError("flaky store")
        return item

    async def body() -> None:
        async with engine_for(cart) as engine:
            assert await engine.invoke(add, "apple", key="k1") == "apple"

    caplog.set_level(logging.INFO)
    run(body())
    (failed,) = [r for r in records(caplog, ATTEMPT) if r.levelno >= logging.WARNING]
    assert failed.target == "Cart/k1/add"  # type: ignore[attr-defined]
    assert (
        "Cart/k1/add" in failed.getMessage() and "RuntimeError: flaky store" in failed.getMessage()
    )


def test_the_endpoint_logs_a_failed_attempt_with_the_servers_attempt_number(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On restate-server the attempt number is the StartMessage's retry count + 1; the body
    arrives here one byte at a time."""
    svc = df.Service("Remote")

    @svc.handler()
    async def fails(ctx: df.Context) -> str:
        raise KeyError("missing")

    body = Journal(retry_count=2).body()
    caplog.set_level(logging.INFO)
    resp = asyncio.run(
        call(
            df.asgi_app(svc),
            "/invoke/Remote/fails",
            body,
            headers=[("content-type", V6)],
            chunks=(1,),
        )
    )
    assert resp.status == 200
    (failed,) = [r for r in records(caplog, ATTEMPT) if r.levelno >= logging.WARNING]
    assert failed.attempt == 3  # type: ignore[attr-defined]
    assert failed.invocation_id == DEBUG_ID  # type: ignore[attr-defined]
    assert failed.target == "Remote/fails"  # type: ignore[attr-defined]
    assert "attempt 3" in failed.getMessage() and "KeyError: 'missing'" in failed.getMessage()
    assert "KeyError: 'missing'" in traceback_of(failed)


def test_a_journal_mismatch_is_an_error_with_the_vms_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = df.Service("Drifting")
    executions = Counter[str]()

    @svc.handler()
    async def drift(ctx: df.Context) -> str:
        executions["drift"] += 1
        first = executions["drift"] == 1
        await ctx.run("step-1" if first else "step-2", lambda: 1)  # another name on a retry
        if first:
            raise ValueError("transient")
        return "done"

    def mismatches() -> list[logging.LogRecord]:
        return [r for r in records(caplog, ATTEMPT) if r.levelno == logging.ERROR]

    async def body() -> None:
        # Waits for the logged mismatch, not for the invocation's end: whether the engine
        # ends it or retries it is the engine's policy, not what this test is about.
        async with engine_for(svc) as engine:
            engine.send(drift)
            deadline = time.monotonic() + 20
            while not mismatches():
                assert time.monotonic() < deadline, "no journal mismatch was logged"
                await asyncio.sleep(0.01)

    caplog.set_level(logging.INFO)
    run(body())
    attempts = [r for r in records(caplog, ATTEMPT) if r.levelno >= logging.WARNING]
    assert (
        attempts[0].levelno == logging.WARNING
        and "ValueError: transient" in attempts[0].getMessage()
    )
    assert len(attempts) >= 2 and {r.levelno for r in attempts[1:]} == {logging.ERROR}
    mismatch = attempts[1].getMessage()
    assert "Drifting/drift" in mismatch and "attempt 2" in mismatch and "[570]" in mismatch
    assert (
        'recorded run "step-1", but the handler now attempts run "step-2"' in mismatch
    )  # the VM's words


def test_a_suspension_and_a_normal_end_log_nothing_above_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = df.Service("Quiet")

    @svc.handler()
    async def steps(ctx: df.Context) -> int:
        a = await ctx.run("a", lambda: 1)
        b = await ctx.run("b", lambda: 2)
        return a + b

    async def body() -> None:
        async with engine_for(svc, always_replay=True) as engine:  # suspends at every step
            assert await engine.invoke(steps) == 3

    caplog.set_level(logging.DEBUG)
    run(body())
    assert [r.getMessage() for r in records(caplog, ATTEMPT) if r.levelno > logging.DEBUG] == []
    assert any("suspended" in r.getMessage() for r in records(caplog, ATTEMPT))


# ---- ctx.logger ---------------------------------------------------------------------------------


def test_ctx_logger_logs_each_line_once_per_real_execution_under_always_replay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = df.Service("Chatty")
    loggers: list[logging.Logger] = []

    @svc.handler()
    async def talk(ctx: df.Context, who: str) -> str:
        loggers.append(ctx.logger)
        ctx.logger.info("before the run for %s", who)
        greeting = await ctx.run("greet", lambda: f"hello {who}")
        ctx.logger.info("after the run")
        await ctx.run("again", lambda: 0)
        ctx.logger.warning("at the end")
        return greeting

    async def body() -> str:
        async with engine_for(svc, always_replay=True) as engine:
            inv_id = engine.send(talk, "ada")
            assert await engine.result(inv_id) == "hello ada"
            return inv_id

    caplog.set_level(logging.INFO)
    inv_id = run(body())
    assert len(loggers) == 3  # three executions: the handler replayed twice
    assert all(type(lg) is logging.Logger for lg in loggers)
    assert {lg.name for lg in loggers} == {"durable_futures.handler.Chatty.talk"}
    lines = records(caplog, "durable_futures.handler.Chatty.talk")
    assert [r.getMessage() for r in lines] == [
        "before the run for ada",
        "after the run",
        "at the end",
    ]
    assert {r.invocation_id for r in lines} == {inv_id}  # type: ignore[attr-defined]


def test_ctx_logger_in_a_sync_handler_and_its_run(caplog: pytest.LogCaptureFixture) -> None:
    svc = df.Service("SyncChatty")

    @svc.handler()
    def talk(ctx: df.Context) -> int:
        ctx.logger.info("start")

        def effect() -> int:
            ctx.logger.info("in the run")
            return 1

        value = ctx.run_async("effect", effect).result()
        ctx.logger.info("end")
        return value

    async def body() -> None:
        async with engine_for(svc, always_replay=True) as engine:
            assert await engine.invoke(talk) == 1

    caplog.set_level(logging.INFO)
    run(body())
    lines = records(caplog, "durable_futures.handler.SyncChatty.talk")
    assert [r.getMessage() for r in lines] == ["start", "in the run", "end"]


# ---- a blocked event loop -----------------------------------------------------------------------


def test_an_async_handler_blocking_the_loop_is_reported_and_a_sync_one_is_not(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_logging, "blocked_loop_threshold", 0.2)
    svc = df.Service("Sleepy")

    @svc.handler()
    async def blocks(ctx: df.Context) -> str:
        await ctx.run("first", lambda: 1)
        time.sleep(0.7)  # holds the event loop
        return "woke"

    @svc.handler()
    def on_a_thread(ctx: df.Context) -> str:
        time.sleep(0.7)  # a sync handler has a thread to itself
        return "woke"

    async def body() -> tuple[str, str]:
        async with engine_for(svc) as engine:
            blocked = engine.send(blocks)
            threaded = engine.send(on_a_thread)
            assert await engine.result(blocked) == "woke"
            assert await engine.result(threaded) == "woke"
            return blocked, threaded

    caplog.set_level(logging.INFO)
    blocked, threaded = run(body())
    reports = [r for r in records(caplog, ATTEMPT) if "held the event loop" in r.getMessage()]
    assert len(reports) == 1, [r.getMessage() for r in reports]
    (report,) = reports
    assert report.levelno == logging.WARNING
    assert "Sleepy/blocks" in report.getMessage() and blocked in report.getMessage()
    assert report.invocation_id == blocked  # type: ignore[attr-defined]
    assert report.held_ms >= 200  # type: ignore[attr-defined]
    assert threaded not in " ".join(r.getMessage() for r in caplog.records)


def test_the_blocked_loop_threshold_comes_from_the_environment(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import logging, sys, time
        import durable_futures as df
        from durable_futures.testing import engine_for, run

        logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
        svc = df.Service("Env")

        @svc.handler()
        async def blocks(ctx: df.Context) -> int:
            time.sleep(0.7)
            return 1

        async def main() -> None:
            async with engine_for(svc) as engine:
                assert await engine.invoke(blocks) == 1

        run(main())
        """
    )
    env = {**os.environ, "DURABLE_FUTURES_BLOCKED_LOOP_MS": "200"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "Env/blocks" in out.stderr and "held the event loop" in out.stderr
    env["DURABLE_FUTURES_BLOCKED_LOOP_MS"] = "0"  # off
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "held the event loop" not in out.stderr


# ---- the CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["serve", "app"], ["endpoint", "app"]])
def test_log_level_flag_beats_the_environment_which_beats_info(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DURABLE_FUTURES_LOG_LEVEL", raising=False)
    assert _parser().parse_args(command).log_level == logging.INFO
    assert _parser().parse_args([*command, "--log-level", "debug"]).log_level == logging.DEBUG
    monkeypatch.setenv("DURABLE_FUTURES_LOG_LEVEL", "WARNING")
    assert _parser().parse_args(command).log_level == logging.WARNING
    assert _parser().parse_args([*command, "--log-level", "ERROR"]).log_level == logging.ERROR


@pytest.mark.parametrize("from_env", [False, True])
def test_an_unknown_log_level_is_a_usage_error(
    from_env: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "app"]
    if from_env:
        monkeypatch.setenv("DURABLE_FUTURES_LOG_LEVEL", "chatty")
    else:
        monkeypatch.delenv("DURABLE_FUTURES_LOG_LEVEL", raising=False)
        argv += ["--log-level", "chatty"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown log level 'chatty'" in err and "Traceback" not in err


def test_endpoint_logs_to_stderr_with_time_level_and_logger(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import durable_futures as df\nsvc = df.Service('Hello')\n\n"
        "@svc.handler()\nasync def hi(ctx: df.Context) -> str:\n    return 'hi'\n"
    )
    env = {**os.environ, "DURABLE_FUTURES_LOG_LEVEL": "DEBUG"}
    with subprocess.Popen(
        [CLI, "endpoint", "app", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            assert "serving Hello" in proc.stdout.readline()
            # asyncio's DEBUG line about its selector: the root logger is at DEBUG, on stderr.
            deadline = time.monotonic() + 20
            line = ""
            while "asyncio" not in line:
                assert time.monotonic() < deadline, "no asyncio DEBUG line on stderr"
                line = proc.stderr.readline()
                assert line, "stderr closed"
            assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} DEBUG asyncio: ", line), line
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_the_endpoint_logs_a_request_for_a_handler_it_does_not_have(
    caplog: pytest.LogCaptureFixture,
) -> None:
    svc = df.Service("Known")

    @svc.handler()
    async def here(ctx: df.Context) -> str:
        return "here"

    app = df.asgi_app(svc)
    with caplog.at_level(logging.WARNING, logger="durable_futures.endpoint"):
        resp = run(call(app, "/invoke/Known/gone", b""))
    assert resp.status == 404
    (record,) = [r for r in caplog.records if r.name == "durable_futures.endpoint"]
    assert "Known/gone" in record.getMessage()


def test_the_admin_api_logs_and_answers_json_when_it_fails(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from durable_futures.local.admin import Admin

    class Broken:
        def query(self, sql: str) -> None:
            raise RuntimeError("the view is gone")

    app = Admin(Broken())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="durable_futures.admin"):
        resp = run(call(app, "/query", b'{"query": "SELECT 1"}'))
    assert resp.status == 500 and b"RuntimeError: the view is gone" in resp.body
    (record,) = [r for r in caplog.records if r.name == "durable_futures.admin"]
    assert record.exc_info is not None and "POST /query" in record.getMessage()
