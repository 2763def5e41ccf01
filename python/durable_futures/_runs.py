"""Run closures of one attempt: started as soon as ``ctx.run_async`` journals them, executed
as tasks (coroutine functions) or on a thread pool (plain functions), their outcome proposed
to the VM.

A coroutine function that the handler awaits before its task has taken a first step is run
inline by the handler's own task instead (``claim`` and ``run_inline``), which saves two loop
turns. A plain function the handler awaits while it is the only closure on a thread, with
nothing else for the loop to do, is waited for right in the handler (``wait_here``, bounded
by the loop's next timer and a couple of milliseconds): the same saving for the common
``await ctx.run_async("fetch", fetch_user, user_id)``. While any closure executes, the
embedded engine's group commit waits for it (the shared ``in_flight`` count).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import inspect
import os
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ._core import Bell
from .errors import TerminalError

if TYPE_CHECKING:
    from ._attempt import Attempt


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


# Hand-offs between the loop and the closures' threads watch a ``Bell`` for a while (with
# the GIL released) before parking the thread: a parked thread takes tens of microseconds to
# wake, about as long as a whole durable step's work besides the fsync. Watching needs a
# spare CPU, so one CPU means no watching. $DURABLE_FUTURES_SPIN_US sets how long an idle
# thread watches for its next closure; the loop watches for a finished one a fifth of that.
_SPIN = (float(os.environ.get("DURABLE_FUTURES_SPIN_US", "500")) / 1e6) if _cpus() > 1 else 0.0
_SPIN_WAIT = _SPIN / 5


# Threads kept busy with queued closures (the rest stay parked) while the submitting loop
# watches for stuck ones (``_Workers.unstall``): trivial closures run back to back on one or
# two threads instead of each waking a thread that then fights the others for the GIL.
_AWAKE = 2
# A closure running this long holds its thread (blocked on I/O, say): it no longer counts
# among the awake threads, and another is woken for the queue.
_STUCK = float(os.environ.get("DURABLE_FUTURES_RUN_STUCK_MS", "1")) / 1000


class _Worker:
    __slots__ = ("bell", "job", "since")

    def __init__(self) -> None:
        self.bell = Bell()
        self.job: Callable[[], Bell | None] | None = None
        self.since = 0.0  # when the job running now started (0: none)


class _Workers:
    """Threads for plain-function closures: a job is a callable taking no argument, run by
    an idle thread (the one idle the shortest time); a thread is added while none is idle,
    up to ``limit``, then jobs queue. Leaner than ``ThreadPoolExecutor``: no future per job
    (a job hands its outcome on itself, and returns the bell to ring once the thread has
    let go of the GIL). When no other closure runs, the thread that goes idle watches its
    bell for ``_SPIN`` before parking, so that the next closure of a sequence starts
    without a thread wake-up; under load, watching would only take CPU from the others.

    A submitter that calls :meth:`unstall` at every turn of its loop (a selector event loop,
    see ``_ThreadWake``) may submit ``lazy`` jobs: with ``_AWAKE`` threads already busy they
    queue, and the busy threads take them as they finish. A burst of quick closures then
    costs a couple of threads' wake-ups, not one per closure. Closures that block do not
    hold the queue up: ``unstall`` wakes more threads for it, doubling each time."""

    def __init__(self, limit: int) -> None:
        self._backlog: collections.deque[Callable[[], Bell | None]] = collections.deque()
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._limit = limit
        self._threads = 0
        self._awake = 0  # threads running a job or handed one
        self.pending = 0  # submitted, not finished
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._watched_until = 0.0  # until when an idle thread watches its bell

    def wait_idle(self, timeout: float) -> bool:
        """Waits until every job submitted so far has finished (for tests)."""
        with self._drained:
            return self._drained.wait_for(lambda: self.pending == 0, timeout)

    def may_unstall(self) -> bool:
        """Whether jobs wait for a thread while one could be woken (or added) for them."""
        return bool(self._backlog) and (bool(self._idle) or self._threads < self._limit)

    def submit(self, job: Callable[[], Bell | None], lazy: bool = False) -> Bell | None:
        """Hands ``job`` to a thread. Returns the bell of the idle thread that takes it,
        which the caller rings (now, or when it is about to wait itself); ``None`` if a new
        thread runs it, or if it waits for a busy one."""
        with self._lock:
            self.pending += 1
            if lazy and self._awake >= _AWAKE:
                self._backlog.append(job)
                return None
            worker = self._wake_one(job)
        return None if worker is None else worker.bell

    def _wake_one(self, job: Callable[[], Bell | None]) -> _Worker | None:
        """With the lock held: an idle thread takes ``job`` (its worker is returned, to be
        rung), or a new thread starts with it, or it queues."""
        if self._idle:
            worker = self._idle.pop()
            worker.job = job
            self._awake += 1
            return worker
        if self._threads >= self._limit:
            self._backlog.append(job)
            return None
        self._threads += 1
        self._awake += 1
        # The job goes through the worker, not the thread's arguments: a thread keeps those
        # as long as it lives, and with them whatever the job holds (its attempt).
        me = _Worker()
        me.job = job
        self._all.append(me)
        threading.Thread(target=self._work, args=(me,), name="df-run", daemon=True).start()
        return None

    def unstall(self, everything: bool = False) -> list[Bell] | None:
        """While jobs are queued: threads whose closure has run for ``_STUCK`` no longer
        count as awake, and idle (or new) threads take queued jobs until ``_AWAKE`` others
        are, or as many as are stuck, whichever is more (so a fan-out of blocking closures
        has the pool doubled at each look). ``everything``: one thread per queued job (the
        loop that watched the queue closes). Returns the bells to ring."""
        if not self._backlog:
            return None
        now = time.monotonic()
        bells: list[Bell] = []
        with self._lock:
            if everything:
                want = len(self._backlog)
            else:
                stuck = 0
                for w in self._all:
                    if w.since and now - w.since > _STUCK:
                        stuck += 1
                want = max(_AWAKE, stuck) - (self._awake - stuck)
            while want > 0 and self._backlog and (self._idle or self._threads < self._limit):
                worker = self._wake_one(self._backlog.popleft())
                if worker is not None:
                    bells.append(worker.bell)
                want -= 1
        return bells

    def _work(self, me: _Worker) -> None:
        lock, backlog, idle = self._lock, self._backlog, self._idle
        job, me.job = me.job, None
        while True:
            assert job is not None
            me.since = time.monotonic()
            try:
                signal = job()
            except BaseException:  # noqa: BLE001 - jobs report their own errors: a bug
                traceback.print_exc()
                signal = None
            job = None
            me.since = 0.0
            with lock:
                self.pending -= 1
                if not self.pending:
                    self._drained.notify_all()
                if backlog:
                    job = backlog.popleft()
                else:
                    self._awake -= 1
                    idle.append(me)
                    spin = 0.0
                    now = time.monotonic()
                    if _SPIN and not self.pending and now >= self._watched_until:
                        spin = _SPIN
                        self._watched_until = now + spin
            if job is not None:
                if signal is not None:
                    signal.ring()
                continue
            # Rings ``signal`` once the GIL is released, then waits for the next job.
            me.bell.wait(None, spin, signal)
            if spin:
                self._watched_until = 0.0  # the next idle thread may watch
            job, me.job = me.job, None


# Shared by every attempt: plain-function run closures (at most 32 threads at once, or
# $DURABLE_FUTURES_RUN_THREADS).
_WORKERS = _Workers(int(os.environ.get("DURABLE_FUTURES_RUN_THREADS", "32")))

_TASK_TAKES_CONTEXT = sys.version_info >= (3, 11)


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, with a shortcut for a plain ``def``/``async def``
    (what closures are nearly always): its code's flags answer at once."""
    if type(fn) is types.FunctionType and not hasattr(fn, "_is_coroutine_marker"):
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)

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
        # Plain-function closures on the thread pool: how many execute, whether the attempt
        # is over (their outcome is then dropped), and the finished ones the loop has not
        # seen yet (handed over in batches: one wake-up of the loop for many).
        self._threads = 0
        self._cancelled = False
        self._finished: collections.deque[
            tuple[int, RunSpec, float, tuple[Any, BaseException | None]]
        ] = collections.deque()
        self._finished_lock = threading.Lock()
        self._finish_scheduled = False
        self._on_threads: set[int] = set()  # handles of the closures on threads
        # The handler waits right here for the one closure on a thread (``wait_here``):
        # the thread rings this bell instead of waking the loop.
        self._here = False
        self._here_bell = Bell()
        self._wake = _wake_for(self._loop)
        # Tests exploring completion orders (``durable_futures.testing.explore``): called
        # with ``(runs, handle, fn, release)`` instead of proposing a finished closure's
        # outcome; ``release()`` proposes it later. ``None``: proposed at once.
        self.hold: Callable[[Runs, int, Callable[..., Any], Callable[[], None]], None] | None = None
        self._fns: dict[int, Callable[..., Any]] = {}

    def start(self, handle: int, spec: RunSpec) -> None:
        """Starts the closure of run ``handle`` now (from any thread).

        On the loop, a coroutine function gets its task at once, as usual, and is also
        registered: should the handler await its future before the task's first step
        (``await ctx.run_async(...)``), the handler's task runs the closure inline instead
        (``claim``) and the task finds nothing to do, which saves two loop turns.
        """
        if self.hold is not None:
            self._fns[handle] = spec[0]
        if not self._attempt.on_loop():
            self._loop.call_soon_threadsafe(self._start_on_loop, handle, spec)
            return
        if _is_coroutine_function(spec[0]):
            ctx = contextvars.copy_context()
            if _TASK_TAKES_CONTEXT:
                task = self._loop.create_task(self._execute_claimable(handle), context=ctx)
            else:  # a task copies the current context: make that ``ctx``
                task = ctx.run(self._loop.create_task, self._execute_claimable(handle))
            self._unstarted[handle] = (spec, ctx, task)
            self._track(task)
            return
        self._submit(handle, spec)

    def _submit(self, handle: int, spec: RunSpec) -> None:
        """Starts a plain function on a worker thread at once (no task, no loop turn). The
        thread hands its outcome back to the loop, batched with the other closures that
        finish meanwhile (one wake-up of the loop for them all); the loop proposes them to
        the VM, so the VM of an async handler is only ever used from the loop."""
        self._threads += 1
        self._in_flight[0] += 1
        self._on_threads.add(handle)
        bell = _WORKERS.submit(
            functools.partial(self._execute_on_thread, handle, spec, contextvars.copy_context()),
            self._wake.lazy,
        )
        self._wake.started(bell)

    def _execute_on_thread(
        self, handle: int, spec: RunSpec, ctx: contextvars.Context
    ) -> Bell | None:
        """Runs on a worker thread; returns the bell the thread rings once it has let go of
        the GIL (the loop's, or that of the handler waiting here), if any."""
        fn, args, kwargs, serialize, retry = spec
        started = time.monotonic()
        try:
            result = ctx.run(fn, *args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - journaled as the run's failure, or retried
            outcome: tuple[Any, BaseException | None] = (None, e)
        else:
            outcome = (result, None)
        if inspect.isawaitable(outcome[0]):
            # A plain function that returned an awaitable: the loop awaits it.
            self._loop.call_soon_threadsafe(self._await_returned, handle, spec, outcome[0], started)
            return None
        with self._finished_lock:
            self._finished.append((handle, spec, started, outcome))
            if self._finish_scheduled:
                return None
            self._finish_scheduled = True
            if self._here:
                return self._here_bell
        return self._wake.call(self._threads_finished)

    def _await_returned(self, handle: int, spec: RunSpec, awaitable: Any, started: float) -> None:
        async def finish() -> None:
            try:
                result = await awaitable
                self._propose(handle, spec[3], spec[4], started, result=result)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                self._propose(handle, spec[3], spec[4], started, error=e)

        task = self._loop.create_task(finish())
        # The thread's count passes to the task.
        self._on_threads.discard(handle)
        self._threads -= 1
        self._in_flight[0] -= 1
        self._track(task)
        task.add_done_callback(lambda _t: self._after_run())

    def _threads_finished(self) -> None:
        """On the loop: proposes the outcomes of the closures finished on threads (the VM
        of an async handler is only ever touched from the loop) and sends them at once."""
        with self._finished_lock:
            finished = list(self._finished)
            self._finished.clear()
            self._finish_scheduled = False
        n = len(finished)
        if not n:  # taken already by the handler waiting for them (``wait_here``)
            return
        self._threads -= n
        self._in_flight[0] -= n
        self._wake.done(n)
        for entry in finished:
            self._on_threads.discard(entry[0])
        if self._cancelled:
            self._let_go()
            return
        for handle, spec, started, (result, error) in finished:
            if error is not None and not isinstance(error, Exception):
                error = RuntimeError(f"{type(error).__name__}: {error}")
            self._propose(handle, spec[3], spec[4], started, result=result, error=error)
        self._after_run()

    def wait_here(self, handle: int) -> None:
        """The handler awaits run ``handle``, which executes on a thread: if it is the only
        closure on a thread in the process and the loop has nothing else to do, wait for it
        right here (at most as long as the loop waits for threads anyway, and never past
        its next timer) and propose its outcome. The handler then goes on without a loop
        turn, as when it awaits a coroutine closure, once the embedded engine has committed
        the outcome at once. Otherwise (or if the closure takes longer) it waits as usual."""
        wake = self._wake
        if (
            self._threads != 1
            or handle not in self._on_threads
            or self.hold is not None
            or _WORKERS.pending != 1
        ):
            return
        timeout = wake.quiet_for()
        if timeout is None:
            return
        lock = self._finished_lock
        with lock:
            waiting = self._here = not self._finished
        if waiting:
            rung = self._here_bell.wait(timeout, _SPIN_WAIT, wake.take_deferred())
            with lock:
                self._here = False
            if not rung:  # the thread may still ring it for this wait: take a fresh one
                self._here_bell = Bell()
        if self._finished:
            self._threads_finished()

    def _after_run(self) -> None:
        attempt = self._attempt
        if attempt is None:  # over, and let go (``_let_go``)
            return
        attempt.flush()
        if attempt.input_closed or attempt.is_closed():
            attempt.progressed()

    async def _execute_claimable(self, handle: int) -> None:
        entry = self._unstarted.pop(handle, None)
        if entry is None:
            return  # claimed: the handler ran it inline
        await self._execute(handle, entry[0])

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
        """Cancels the closures still executing (the attempt is over): tasks are cancelled,
        and plain functions on threads, which cannot be, have their outcome dropped."""
        self._cancelled = True
        for t in list(self._tasks):
            t.cancel()
        self._let_go()

    def _let_go(self) -> None:
        """Once the attempt is over and nothing here can reach it any more (no closure
        executing, no callback scheduled), drops the reference back to it: the pair is then
        freed with the attempt, not left to the cycle collector, whose full passes over
        every live object a burst of invocations would otherwise make frequent."""
        if self._cancelled and not (
            self._tasks or self._threads or self._flush_scheduled or self._finish_scheduled
        ):
            self._attempt = None  # type: ignore[assignment]

    def _start_on_loop(self, handle: int, spec: RunSpec) -> None:
        if _is_coroutine_function(spec[0]):
            self._spawn(handle, spec)
        else:
            self._submit(handle, spec)

    def _spawn(self, handle: int, spec: RunSpec) -> None:
        self._track(self._loop.create_task(self._execute(handle, spec)))

    def _track(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        self._in_flight[0] += 1
        task.add_done_callback(self._run_done)

    def _run_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        self._in_flight[0] -= 1
        if self._cancelled:
            self._let_go()

    async def _execute(self, handle: int, spec: RunSpec) -> None:
        """Runs a coroutine function's closure in its task."""
        fn, args, kwargs, serialize, retry = spec
        started = time.monotonic()
        attempt = self._attempt
        try:
            result = await fn(*args, **kwargs)
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
        if len(self._tasks) <= 1 and not self._threads:  # only the run calling this
            self._attempt.flush()
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._attempt.flush()
        if self._cancelled:
            self._let_go()

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
        if self.hold is not None:
            self.hold(
                self,
                handle,
                self._fns.get(handle, _unknown),
                functools.partial(
                    self._release, handle, serialize, retry, started, result, error
                ),
            )
            return
        self._propose_now(handle, serialize, retry, started, result=result, error=error)

    def released(self) -> bool:
        """Whether a held outcome can still be proposed (the attempt is not over)."""
        return not self._cancelled and not self._attempt.is_closed()

    def _release(
        self,
        handle: int,
        serialize: Callable[[Any], bytes],
        retry: dict[str, Any],
        started: float,
        result: Any,
        error: Exception | None,
    ) -> None:
        """Proposes an outcome that ``hold`` kept back, and sends it."""
        if not self.released():
            return
        self._propose_now(handle, serialize, retry, started, result=result, error=error)
        self._after_run()

    def _propose_now(
        self,
        handle: int,
        serialize: Callable[[Any], bytes],
        retry: dict[str, Any],
        started: float,
        *,
        result: Any = None,
        error: Exception | None = None,
    ) -> None:
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


def _unknown() -> None:
    """Stands for a closure whose function is not known."""


# ---- waking the loop when a thread finishes ----------------------------------------------------

_WAIT_AFTER_START = float(os.environ.get("DURABLE_FUTURES_THREAD_WAIT_MS", "2")) / 1000


class _ThreadWake:
    """Wraps a selector event loop's selector so that, while plain-function closures run on
    threads, the idle loop waits for them on a bell instead of in ``epoll``, and a finished
    closure hands its callback over directly: no write to the event loop's self-pipe, no
    ``epoll`` wake-up. The wait lasts at most ``_WAIT_AFTER_START`` after the last start
    (I/O is polled right after it), so sockets are never left unwatched longer than that.

    Idle threads given a closure are rung at the end of the loop's turn (``started``), with
    the GIL released: with the loop about to wait for them, they find it free."""

    def __init__(self, loop: asyncio.AbstractEventLoop, selector: Any) -> None:
        self._loop = loop
        self._ready: collections.deque[Any] = getattr(loop, "_ready", collections.deque())
        self._scheduled: list[Any] = getattr(loop, "_scheduled", [])
        self._inner = selector
        self._bell = Bell()
        self._lock = threading.Lock()
        self._waiting = False
        self._callbacks: list[Callable[[], None]] = []
        self._poked = False  # _run_callbacks is scheduled
        self._running = 0
        self._deadline = 0.0
        self._deferred: list[Bell] = []

    #: Closures it starts may queue for a busy thread: ``select`` looks for stuck ones.
    lazy = True

    def started(self, bell: Bell | None) -> None:
        """On the loop: a closure was handed to a thread; ``bell`` is to be rung to start it."""
        self._running += 1
        self._deadline = time.monotonic() + _WAIT_AFTER_START
        if bell is not None:
            self._deferred.append(bell)

    def done(self, n: int) -> None:
        self._running -= n

    def take_deferred(self) -> list[Bell] | None:
        """The threads' bells not rung yet (the caller rings them)."""
        deferred = self._deferred
        if not deferred:
            return None
        self._deferred = []
        return deferred

    def quiet_for(self) -> float | None:
        """How long the loop may be kept waiting for a thread: ``None`` (not at all) if it
        has callbacks ready, except that one (often the embedded engine's bookkeeping) may
        wait as long as the thread is watched for without parking."""
        wait = _WAIT_AFTER_START
        ready = len(self._ready)
        if ready:
            if ready > 1 or not _SPIN_WAIT:
                return None
            wait = _SPIN_WAIT
        if self._scheduled:
            wait = min(wait, self._scheduled[0].when() - self._loop.time())
        return wait if wait > 0 else None

    def call(self, callback: Callable[[], None]) -> Bell | None:
        """From a thread: ``callback`` runs on the loop soon. Returns the bell the thread
        rings once it has let go of the GIL, if the loop waits for one."""
        with self._lock:
            self._callbacks.append(callback)
            if self._waiting:
                return self._bell
            if self._poked:  # the loop was told already: it runs them all at once
                return None
            self._poked = True
        self._loop.call_soon_threadsafe(self._run_callbacks)
        return None

    def _run_callbacks(self) -> None:
        """On the loop: the callbacks of the threads that finished since it was woken (one
        write to the event loop's self-pipe for all of them)."""
        with self._lock:
            self._poked = False
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb()
            except Exception as e:  # noqa: BLE001 - as the loop would report a callback's
                self._loop.call_exception_handler(
                    {"message": f"exception in callback {cb!r}", "exception": e}
                )

    def select(self, timeout: float | None = None) -> Any:
        deferred = self.take_deferred()
        if _WORKERS.may_unstall():
            # Closures wait for a thread: wake more if those running are stuck, and look
            # again soon (the threads that are not will take the queue meanwhile).
            more = _WORKERS.unstall()
            if more:
                deferred = more if deferred is None else deferred + more
            if timeout is None or timeout > _STUCK:
                timeout = _STUCK
        if self._running and (timeout is None or timeout > 0):
            wait = self._deadline - time.monotonic()
            if timeout is not None:
                wait = min(wait, timeout)
            if wait > 0:
                with self._lock:
                    self._waiting = True
                spin = _SPIN_WAIT if self._running == 1 else 0.0
                woken = self._bell.wait(wait, spin, deferred)
                deferred = None
                with self._lock:
                    self._waiting = False
                    handed = bool(self._callbacks)
                    schedule = handed and not self._poked
                    self._poked = self._poked or handed
                if schedule:
                    self._loop.call_soon(self._run_callbacks)
                if woken or handed:
                    return self._inner.select(0)
                if timeout is not None:
                    timeout = max(0.0, timeout - wait)
        if deferred:
            Bell.ring_all(deferred)
        return self._inner.select(timeout)

    def close(self) -> None:
        """The loop closes: threads handed a closure in its last turn still run it."""
        Bell.ring_all((self.take_deferred() or []) + (_WORKERS.unstall(everything=True) or []))
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _NoWake:
    #: Nothing watches the pool for stuck threads: every closure gets a thread of its own.
    lazy = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._call_soon_threadsafe = loop.call_soon_threadsafe

    def started(self, bell: Bell | None) -> None:
        if bell is not None:
            bell.ring()

    def done(self, n: int) -> None:
        pass

    def take_deferred(self) -> None:
        return None

    def quiet_for(self) -> None:
        return None

    def call(self, callback: Callable[[], None]) -> None:
        self._call_soon_threadsafe(callback)


def _wake_for(loop: asyncio.AbstractEventLoop) -> _ThreadWake | _NoWake:
    """The loop's :class:`_ThreadWake` (installed on first use), or a plain
    ``call_soon_threadsafe`` for loops without a selector to wrap (uvloop, the proactor)."""
    w = getattr(loop, "_durable_futures_wake", None)
    if isinstance(w, _ThreadWake):
        return w
    selector = getattr(loop, "_selector", None)
    if selector is None or _WAIT_AFTER_START <= 0 or not hasattr(selector, "select"):
        return _NoWake(loop)
    w = _ThreadWake(loop, selector)
    loop._selector = w  # type: ignore[attr-defined]
    loop._durable_futures_wake = w  # type: ignore[attr-defined]
    return w
