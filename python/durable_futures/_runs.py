"""Run closures of one attempt: started as soon as ``ctx.run_async`` journals them, executed
as tasks (coroutine functions) or on a thread pool (plain functions), their outcome proposed
to the VM.

A coroutine function that the handler awaits before its task has taken a first step is run
inline by the handler's own task instead (``claim`` and ``run_inline``), which saves two loop
turns. While any closure executes, the embedded engine's group commit waits for it (the
shared ``in_flight`` count).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
import time
import traceback
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .errors import TerminalError

if TYPE_CHECKING:
    from ._attempt import Attempt

# Shared by every attempt: sync run closures.
_RUN_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="df-run")

_TASK_TAKES_CONTEXT = sys.version_info >= (3, 11)

# A run closure: fn, args, kwargs, how to serialize its result, retry options.
RunSpec = tuple[
    Callable[..., Any],
    tuple[Any, ...],
    dict[str, Any],
    Callable[[Any], bytes],
    dict[str, Any],
]

# An async run closure whose task has not started it: the closure, the context variables it
# runs with (copied when the run was started), and the task.
_Unstarted = tuple[RunSpec, contextvars.Context, asyncio.Future[Any]]


class Runs:
    """The run closures of one attempt."""

    def __init__(self, attempt: Attempt, in_flight: list[int] | None = None) -> None:
        self._attempt = attempt
        self._loop = attempt.loop
        # Shared counter of executing run closures (the embedded engine's group commit
        # waits for them); one cell so many attempts can share it.
        self._in_flight = in_flight if in_flight is not None else [0]
        self._tasks: set[asyncio.Future[Any]] = set()
        # Async run closures whose task has not taken its first step yet, with the task:
        # the handler may await one first and run it inline instead (``claim``).
        self._unstarted: dict[int, _Unstarted] = {}
        self._flush_scheduled = False

    def start(self, handle: int, spec: RunSpec) -> None:
        """Starts the closure of run ``handle`` now (from any thread).

        On the loop, a coroutine function gets its task at once, as usual, and is also
        registered: should the handler await its future before the task's first step
        (``await ctx.run_async(...)``), the handler's task runs the closure inline instead
        (``claim``) and the task finds nothing to do, which saves two loop turns.
        """
        if not self._attempt.on_loop():
            self._loop.call_soon_threadsafe(self._spawn, handle, spec)
            return
        if inspect.iscoroutinefunction(spec[0]):
            ctx = contextvars.copy_context()
            if _TASK_TAKES_CONTEXT:
                task = self._loop.create_task(self._execute_claimable(handle), context=ctx)
            else:  # a task copies the current context: make that ``ctx``
                task = ctx.run(self._loop.create_task, self._execute_claimable(handle))
            self._unstarted[handle] = (spec, ctx, task)
            self._track(task)
            return
        self._spawn(handle, spec)

    async def _execute_claimable(self, handle: int) -> None:
        entry = self._unstarted.pop(handle, None)
        if entry is None:
            return  # claimed: the handler ran it inline
        await self._execute(handle, entry[0], is_coro=True)

    def claim(self, handle: int) -> _Unstarted | None:
        """Run ``handle`` if its task has not started it: the caller (the handler's task,
        about to await it) runs it with ``run_inline``, and the run counts as in flight
        until then."""
        if not self._unstarted:
            return None
        entry = self._unstarted.pop(handle, None)
        if entry is None:
            return None
        task = entry[2]
        # The task will find nothing to do; the count it held passes to the inline run.
        task.remove_done_callback(self._run_done)
        self._tasks.discard(task)
        return entry

    def run_inline(self, handle: int, run: _Unstarted) -> Generator[Any, None, None]:
        """Runs a claimed closure inside the awaiting handler's task, in its own copy of the
        context variables, and proposes its result. What the closure awaits is awaited by
        the handler's task, so cancelling that task (a timeout in the closure, or the
        attempt being abandoned) reaches the closure as it would in a task of its own."""
        (fn, args, kwargs, serialize, retry), ctx, _task = run
        started = time.monotonic()
        try:
            coro = ctx.run(fn, *args, **kwargs)
            send, throw = coro.send, coro.throw
            value: Any = None
            error: BaseException | None = None
            while True:
                try:
                    step = ctx.run(send, value) if error is None else ctx.run(throw, error)
                except StopIteration as stop:
                    result = stop.value
                    break
                try:
                    value, error = (yield step), None
                except BaseException as e:  # noqa: BLE001 - thrown into the task: pass it on
                    value, error = None, e
            self._propose(handle, serialize, retry, started, result=result)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - journaled as the run's failure, or retried
            self._propose(handle, serialize, retry, started, error=e)
        finally:
            self._in_flight[0] -= 1

    def cancel(self) -> None:
        """Cancels the closures still executing (the attempt is over)."""
        for t in list(self._tasks):
            t.cancel()

    def _spawn(self, handle: int, spec: RunSpec) -> None:
        self._track(self._loop.create_task(self._execute(handle, spec)))

    def _track(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        self._in_flight[0] += 1
        task.add_done_callback(self._run_done)

    def _run_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        self._in_flight[0] -= 1

    async def _execute(self, handle: int, spec: RunSpec, is_coro: bool | None = None) -> None:
        fn, args, kwargs, serialize, retry = spec
        started = time.monotonic()
        attempt = self._attempt
        try:
            if is_coro if is_coro is not None else inspect.iscoroutinefunction(fn):
                result = await fn(*args, **kwargs)
            else:
                ctx = contextvars.copy_context()
                call = functools.partial(ctx.run, fn, *args, **kwargs)
                result = await self._loop.run_in_executor(_RUN_POOL, call)
                if inspect.isawaitable(result):
                    result = await result
            self._propose(handle, serialize, retry, started, result=result)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - journaled as the run's failure, or retried
            self._propose(handle, serialize, retry, started, error=e)
        finally:
            self._flush_soon()
            # A proposal is answered through the input (an ack or an echoed completion), so
            # a finished run changes what a waiter sees only once no input can come: the
            # attempt may then suspend. (A run that fails the attempt closes the VM.)
            if attempt.input_closed or attempt.is_closed():
                attempt.progressed()

    def _flush_soon(self) -> None:
        """Sends the output: now if no other run is executing, else at the end of this loop
        turn, once for all the runs that finish in it (a fan-out's completions then reach
        the runtime together)."""
        if len(self._tasks) <= 1:  # only the run calling this (its task is not done yet)
            self._attempt.flush()
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._attempt.flush()

    def _propose(
        self,
        handle: int,
        serialize: Callable[[Any], bytes],
        retry: dict[str, Any],
        started: float,
        *,
        result: Any = None,
        error: Exception | None = None,
    ) -> None:
        """Hands a finished closure's outcome to the VM: a value, a ``TerminalError`` as
        the run's failure, or any other exception as a retryable failure."""
        if error is None:
            try:
                payload = serialize(result)
            except Exception as e:  # noqa: BLE001 - an unserializable result is retried
                error = e
            else:
                self._attempt.propose_run_success(handle, payload)
                return
        if isinstance(error, TerminalError):
            self._attempt.propose_run_failure(handle, error)
            return
        elapsed = int((time.monotonic() - started) * 1000)
        self._attempt.propose_run_retryable(
            handle,
            f"{type(error).__name__}: {error}",
            "".join(traceback.format_exception(error)),
            elapsed,
            retry,
        )
