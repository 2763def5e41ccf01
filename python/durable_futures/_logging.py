"""The ``durable_futures`` loggers, the handler's replay-aware ``ctx.logger``, the report of
a failed attempt and of a handler that blocks the event loop, and the CLI's logging setup.

The package only creates loggers, all under ``durable_futures``:

=================================================  =============================================
``durable_futures.attempt``                        attempts of handlers (failures, a blocked
                                                   event loop), on the embedded engine and on
                                                   restate-server alike
``durable_futures.engine``                         the embedded engine
``durable_futures.ingress``                        the embedded engine's HTTP ingress
``durable_futures.endpoint``                       the endpoint serving restate-server
``durable_futures.handler.<Service>.<handler>``    ``ctx.logger`` (the handlers' own lines)
=================================================  =============================================

It adds no handler but a ``NullHandler`` on ``durable_futures`` (so an application that
configures no logging sees nothing, not Python's last-resort output); the application
decides where records go. ``durable-futures serve`` and ``endpoint`` configure logging
themselves (:func:`configure_logging`).
"""

from __future__ import annotations

import argparse
import contextvars
import logging
import os
import sys
import time
import types
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from . import _core
from .errors import JOURNAL_MISMATCH

if TYPE_CHECKING:
    from ._attempt import Attempt

ROOT = "durable_futures"

logging.getLogger(ROOT).addHandler(logging.NullHandler())

attempt_logger = logging.getLogger(f"{ROOT}.attempt")
engine_logger = logging.getLogger(f"{ROOT}.engine")
ingress_logger = logging.getLogger(f"{ROOT}.ingress")
endpoint_logger = logging.getLogger(f"{ROOT}.endpoint")
admin_logger = logging.getLogger(f"{ROOT}.admin")

# ---- ctx.logger --------------------------------------------------------------------------------

#: The attempt whose handler code is running (set by ``Attempt.run_handler``; copied into
#: the handler's sync thread and its runs like any context variable).
current_attempt: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "durable_futures_attempt", default=None
)


class ReplayFilter(logging.Filter):
    """Drops the records of a handler that is replaying (it logged them when it first ran
    that code) and gives the others the invocation's ``invocation_id`` and ``target``.

    It runs only for records that are made: a disabled level costs the handler nothing
    beyond the logger's own level check."""

    def filter(self, record: logging.LogRecord) -> bool:
        attempt = current_attempt.get()
        if attempt is None:
            return True
        if attempt.is_replaying():
            return False
        record.invocation_id = attempt.invocation_id
        record.target = attempt.target
        return True


_REPLAY_FILTER = ReplayFilter()
_HANDLER_LOGGERS: dict[tuple[str, str], logging.Logger] = {}


def handler_logger(service: str, handler: str) -> logging.Logger:
    """``durable_futures.handler.<service>.<handler>``, with the replay filter (one logger
    per handler, made once)."""
    logger = _HANDLER_LOGGERS.get((service, handler))
    if logger is None:
        name = f"{ROOT}.handler.{service}.{handler}" if service else f"{ROOT}.handler"
        logger = logging.getLogger(name)
        if _REPLAY_FILTER not in logger.filters:
            logger.addFilter(_REPLAY_FILTER)
        _HANDLER_LOGGERS[(service, handler)] = logger
    return logger


# ---- a failed attempt --------------------------------------------------------------------------


def target_of(service: str, handler: str, key: str) -> str:
    """``Service/handler``, or ``Object/key/handler`` for a keyed one (``?`` unknown)."""
    if not service:
        return "?"
    return f"{service}/{key}/{handler}" if key else f"{service}/{handler}"


def _command(error: _core.VmError) -> str:
    if error.related_command_index is None:
        return ""
    what = error.related_command_type or "command"
    if error.related_command_name:
        what += f' "{error.related_command_name}"'
    return f" at command {error.related_command_index} ({what})"


def log_failed_attempt(
    attempt: Attempt,
    exc: BaseException | None,
    error: _core.VmError | None,
    handler_failed: bool,
) -> None:
    """One record for one failed attempt, on ``durable_futures.attempt``.

    ``error`` is what closed the VM (``Vm.last_error()``, naming the command the handler
    failed at); ``handler_failed``: the handler raised ``exc`` while the VM was open, so
    ``error`` is ``exc`` as the attempt reported it, and the record carries ``exc``'s
    traceback. Otherwise the VM had closed first (a journal mismatch, a run's failure to
    retry) and the record says why. A journal mismatch is an ERROR with the VM's message;
    everything else a WARNING (the runtime retries it)."""
    logger = attempt_logger
    number = attempt.vm.retry_count() + 1
    fields = {
        "invocation_id": attempt.invocation_id,
        "target": attempt.target,
        "attempt": number,
        "command_index": None if error is None else error.related_command_index,
    }
    where = "" if error is None else _command(error)
    prefix = f"{attempt.target} {attempt.invocation_id}: attempt {number}"
    if error is not None and error.code == JOURNAL_MISMATCH:
        fields["code"] = error.code
        logger.error(f"{prefix} failed: [{error.code}] {error.message}", exc_info=exc, extra=fields)
    elif handler_failed and exc is not None:
        logger.warning(
            f"{prefix} failed{where}: {type(exc).__name__}: {exc}", exc_info=exc, extra=fields
        )
    elif error is not None:
        fields["code"] = error.code
        message = f"{prefix} failed{where}: [{error.code}] {error.message}"
        if error.stacktrace:
            message += "\n" + error.stacktrace.rstrip()
        logger.warning(message, extra=fields)
    elif exc is not None:
        logger.warning(f"{prefix} failed: {type(exc).__name__}: {exc}", exc_info=exc, extra=fields)


# ---- a blocked event loop ----------------------------------------------------------------------

BLOCKED_LOOP_ENV = "DURABLE_FUTURES_BLOCKED_LOOP_MS"
DEFAULT_BLOCKED_LOOP_MS = 500.0


def _blocked_loop_seconds(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return DEFAULT_BLOCKED_LOOP_MS / 1000
    try:
        ms = float(raw)
    except ValueError:
        return DEFAULT_BLOCKED_LOOP_MS / 1000
    return ms / 1000 if ms > 0 else None


#: How long an async handler may hold the event loop in one step before a WARNING says so,
#: in seconds; ``None`` turns the check off. From ``$DURABLE_FUTURES_BLOCKED_LOOP_MS`` at
#: import (milliseconds, default 500; 0 turns it off). Read at the start of each attempt.
blocked_loop_threshold: float | None = _blocked_loop_seconds(os.environ.get(BLOCKED_LOOP_ENV))


def report_blocked_loop(attempt: Attempt, held: float, threshold: float) -> None:
    attempt_logger.warning(
        f"{attempt.target} {attempt.invocation_id} held the event loop for {held:.2f} s in one "
        f"step (threshold {threshold:.2f} s): every other handler waited. Blocking code belongs "
        "in a sync handler or in ctx.run with a plain function (both run on a thread)",
        extra={
            "invocation_id": attempt.invocation_id,
            "target": attempt.target,
            "held_ms": round(held * 1000, 1),
        },
    )


@types.coroutine
def timed_steps(
    coro: Coroutine[Any, Any, Any], attempt: Attempt, threshold: float
) -> Generator[Any, Any, Any]:
    """Drives the handler's coroutine step by step for its task, timing each step (one
    ``perf_counter`` pair) and reporting a step that held the loop longer than
    ``threshold`` seconds. Everything else passes through: what the coroutine yields goes to
    the task, what the task sends or throws goes to the coroutine."""
    clock = time.perf_counter
    send = coro.send
    value: Any = None
    thrown: BaseException | None = None
    while True:
        t0 = clock()
        try:
            yielded = send(value) if thrown is None else coro.throw(thrown)
        except StopIteration as done:
            held = clock() - t0
            if held > threshold:
                report_blocked_loop(attempt, held, threshold)
            return done.value
        except BaseException:
            held = clock() - t0
            if held > threshold:
                report_blocked_loop(attempt, held, threshold)
            raise
        held = clock() - t0
        if held > threshold:
            report_blocked_loop(attempt, held, threshold)
        try:
            value = yield yielded
            thrown = None
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as e:  # noqa: BLE001 - cancellation and the like go to the handler
            thrown = e
            value = None


# ---- the CLI's logging -------------------------------------------------------------------------

LOG_LEVEL_ENV = "DURABLE_FUTURES_LOG_LEVEL"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_level(value: str) -> int:
    """A level name (any case) or number, for ``--log-level``."""
    name = value.strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name in _LEVELS:
        return int(getattr(logging, name))
    if name.isdigit():
        return int(name)
    raise argparse.ArgumentTypeError(f"unknown log level {value!r} (one of {', '.join(_LEVELS)})")


def log_level_argument(parser: argparse.ArgumentParser) -> None:
    """``--log-level LEVEL``: the flag, else ``$DURABLE_FUTURES_LOG_LEVEL``, else INFO (an
    invalid value of either is a usage error)."""
    parser.add_argument(
        "--log-level",
        type=parse_level,
        default=os.environ.get(LOG_LEVEL_ENV) or "INFO",
        metavar="LEVEL",
        help=f"DEBUG, INFO, WARNING, ERROR or CRITICAL (default ${LOG_LEVEL_ENV} or INFO)",
    )


class _CliHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (recognised so that it is installed
    once). Hypercorn gives its error log a stderr handler of its own when it starts a
    server: those records are printed there, not twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("hypercorn.") and logging.getLogger(record.name).handlers:
            return False
        return super().filter(record)


def configure_logging(level: int | str) -> None:
    """Logs to stderr at ``level`` (a number or a name): time, level, logger name, message.
    Configures the root logger, so the handlers' own loggers are included (hypercorn's error
    log keeps the stderr handler hypercorn gives it). Calling it again changes the level
    only."""
    if isinstance(level, str):
        level = parse_level(level)
    root = logging.getLogger()
    root.setLevel(level)
    if not any(isinstance(h, _CliHandler) for h in root.handlers):
        handler = _CliHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
