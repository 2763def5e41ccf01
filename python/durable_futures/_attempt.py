"""One invocation attempt: the VM, the bytes in and out, the handler, and whoever waits
(its run closures execute in ``_runs``).

All VM calls hold ``lock``: async handlers and run completions use the VM on the event loop
thread, sync handlers use it from a worker thread. Every wait (a future's value, a
selector's next future, a combinator) is one loop, ``wait`` in a task and ``wait_blocking``
on a sync handler's thread, given what to ask the VM. Waiting never polls: a waiter that the
VM cannot satisfy yet sleeps until the transport feeds input or a run finishes
(``progressed``), then asks the VM again. A future whose result is already known is
answered without ever yielding to the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from . import _core, _logging
from ._runs import Runs, RunSpec
from .errors import CANCELLED, DurableError, TerminalError

if TYPE_CHECKING:
    from ._tracing import AttemptTrace

# What the VM's waits return (``do_await``, ``await_take``, ``select_next``).
READY = _core.OUTCOME_READY
CANCELLED_CODE = _core.OUTCOME_CANCELLED
PENDING = _core.OUTCOME_PENDING
SUSPENDED = _core.OUTCOME_SUSPENDED
EXHAUSTED = _core.OUTCOME_EXHAUSTED

# Kinds of the ``(kind, payload)`` values of completed handles.
VOID = _core.KIND_VOID
VALUE = _core.KIND_VALUE
FAILURE = _core.KIND_FAILURE
INVOCATION_ID = _core.KIND_INVOCATION_ID
STATE_KEYS = _core.KIND_STATE_KEYS

# Shared by every attempt: sync handlers (each blocked handler holds a thread).
_HANDLER_POOL = ThreadPoolExecutor(max_workers=64, thread_name_prefix="df-handler")


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


T = TypeVar("T")

# A call to another handler: service, handler, serialized argument, key, idempotency key,
# headers.
Call = tuple[str, str, bytes, str | None, str | None, list[tuple[str, str]]]


class Suspended(BaseException):
    """Unwinds the handler when the attempt is over (suspended, or the VM closed).

    A ``BaseException`` so that ``except Exception`` in handler code does not swallow it.
    """


class Attempt:
    """One attempt at an invocation, driven to its end. The transport calls :meth:`feed` /
    :meth:`feed_closed` as input arrives and sends what ``send_output`` receives."""

    #: Whether the VM may be used without the lock (:class:`LoopAttempt`).
    lock_free = False
    #: This attempt's spans (:mod:`._tracing`), set by the host when tracing is on.
    trace: AttemptTrace | None = None

    def __init__(
        self,
        vm: _core.Vm,
        loop: asyncio.AbstractEventLoop,
        send_output: Callable[[bytes], None],
        runs_in_flight: list[int] | None = None,
    ) -> None:
        self.vm = vm
        # Milliseconds since the epoch for timers and delayed sends: the wall clock, or the
        # embedded engine's clock (a test's virtual clock).
        self.now_ms: Callable[[], int] = _wall_clock_ms
        self.loop = loop
        self.lock = threading.RLock()
        # Made when a sync handler's thread first waits (async handlers never need it).
        self._cond: threading.Condition | None = None
        self._send_output = send_output
        self._outbox: collections.deque[bytes] = collections.deque()
        # The request has started to arrive: before that, closing the input would fail the
        # attempt (no StartMessage) instead of suspending it.
        self.fed = False
        self._generation = 0
        self._async_waiters: list[asyncio.Future[None]] = []
        self._loop_thread = threading.get_ident()
        self.disconnected = False
        # No more input will come (set before the VM hears it, so nothing is fed after).
        self.input_closed = False
        self._blocked_threads = 0
        self._sync_handler_running = False
        # ``runs_in_flight``: a counter shared with other attempts (see ``Runs``).
        self.runs = Runs(self, runs_in_flight)
        # The exception that failed the handler, if one did (a host may report where).
        self.error: BaseException | None = None
        # Known once the handler starts: for log records and ``ctx.logger``.
        self.invocation_id = ""
        self.target = "?"
        self.logger: logging.Logger = _logging.handler_logger("", "")
        # What ``wait`` asks the VM for a future's value and a selector's next handle
        # (bound once, not on every wait).
        self.take: Callable[[int], tuple[int, Any]] = vm.await_take
        self.next_selected: Callable[[int], tuple[int, int]] = vm.select_next

    # ---- transport side (event loop thread) --------------------------------------------------

    def feed(self, data: bytes) -> None:
        with self.lock:
            self.fed = True
            self.vm.notify_input(data)
            if self.trace is not None and self.trace.waiting:
                self.trace.completed(self.vm)
        self.flush()
        self.progressed()

    def feed_closed(self) -> None:
        with self.lock:
            self.input_closed = True
            self.vm.notify_input_closed()
        self.flush()
        self.progressed()

    def disconnect(self) -> None:
        """The peer went away: waiters stop; nothing more can be sent."""
        self.disconnected = True
        self.progressed()

    def flush(self) -> None:
        with self.lock:
            data = self.vm.take_output()
            if data:
                self._emit(data)

    def _emit(self, data: bytes) -> None:
        """Sends output the VM wrote, in the order it was taken (call with the lock held).

        Output reaches the transport on the loop's thread: from another thread (a sync
        handler's) through the loop's queue, from the loop directly. Both go through one
        outbox, so a frame taken on the loop after one taken on a handler's thread (a run's
        completion after its command) cannot overtake it while the latter waits in the
        loop's queue."""
        self._outbox.append(data)
        if threading.get_ident() == self._loop_thread:
            self._deliver()
        else:
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        outbox = self._outbox
        while outbox:
            self._send_output(outbox.popleft())

    def progressed(self) -> None:
        with self.lock:
            self._generation += 1
            if self._blocked_threads:
                self._blocked_threads = 0
                assert self._cond is not None
                self._cond.notify_all()
        if threading.get_ident() == self._loop_thread:
            self._wake_async()
        else:
            self.loop.call_soon_threadsafe(self._wake_async)

    def _wake_async(self) -> None:
        waiters, self._async_waiters = self._async_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _progress(self, generation: int) -> Generator[Any, None, None]:
        """For ``yield from`` in :meth:`wait`: waits past ``generation`` (a generator, not
        a coroutine: one object less per wait)."""
        while self._generation == generation and not self.disconnected:
            w = self.loop.create_future()
            self._async_waiters.append(w)
            yield from w
        if self.disconnected:
            raise Suspended("the runtime disconnected")

    def _block_progress(self, generation: int) -> None:
        # Called with the lock held (Condition over the same RLock). ``progressed`` zeroes
        # the count as it notifies, so a thread counts as waiting only until it is woken.
        if self._cond is None:
            self._cond = threading.Condition(self.lock)
        while self._generation == generation and not self.disconnected:
            self._blocked_threads += 1
            self._cond.wait()
        if self.disconnected:
            raise Suspended("the runtime disconnected")

    # ---- waiting (handler side) --------------------------------------------------------------

    def _pending(self) -> int:
        """Flushes (the runtime must see our commands before answering) and returns the
        generation to wait past. Lock held."""
        generation = self._generation
        data = self.vm.take_output()
        if data:
            self._emit(data)
        return generation

    def _outcome(self, code: int) -> None:
        """Raises for an attempt that cannot go on; nothing for ``EXHAUSTED``."""
        if code == CANCELLED_CODE:
            raise TerminalError("cancelled", CANCELLED)
        if code == SUSPENDED:
            self.flush()
            raise Suspended()

    def wait(self, ask: Callable[[int], tuple[int, T]], arg: int) -> Generator[Any, None, T | None]:
        """Generator for ``__await__``: asks the VM (``ask(arg)``, one of :attr:`take`,
        :attr:`next_selected` or :meth:`combined`) until it answers, yielding to the loop
        only while the VM must wait. Returns the answer, or ``None`` for a selector with
        nothing left."""
        while True:
            with self.lock:
                code, value = ask(arg)
                if code == READY:
                    return value
                if code == PENDING:
                    generation = self._pending()
            if code != PENDING:
                self._outcome(code)
                return None
            yield from self._progress(generation)

    def wait_blocking(self, ask: Callable[[int], tuple[int, T]], arg: int) -> T | None:
        """:meth:`wait` for a sync handler's thread: sleeps on the condition instead."""
        with self.lock:
            while True:
                code, value = ask(arg)
                if code == READY:
                    return value
                if code != PENDING:
                    break
                self._block_progress(self._pending())
        self._outcome(code)
        return None

    def combined(self, handle: int) -> tuple[int, None]:
        """Asks about a combinator (it has no value to take)."""
        return self.vm.do_await(handle), None

    # ---- commands and queries (handler side): the VM under the lock -------------------------

    def sys_run(self, name: str) -> tuple[int, bool]:
        with self.lock:
            return self.vm.sys_run(name)

    def sys_sleep(self, name: str, wake_up_time_ms: int) -> int:
        with self.lock:
            return self.vm.sys_sleep(name, wake_up_time_ms)

    def sys_call(self, call: Call) -> tuple[int, int]:
        with self.lock:
            return self.vm.sys_call(*call)

    def sys_send(self, call: Call, invoke_time_ms: int | None) -> int:
        with self.lock:
            return self.vm.sys_send(*call, invoke_time_ms)

    def sys_awakeable(self) -> tuple[str, int]:
        with self.lock:
            return self.vm.sys_awakeable()

    def sys_resolve_awakeable(self, awakeable_id: str, value: bytes) -> None:
        with self.lock:
            self.vm.sys_resolve_awakeable(awakeable_id, value)

    def sys_reject_awakeable(self, awakeable_id: str, code: int, message: str) -> None:
        with self.lock:
            self.vm.sys_reject_awakeable(awakeable_id, code, message)

    def sys_cancel_invocation(self, invocation_id: str) -> None:
        with self.lock:
            self.vm.sys_cancel_invocation(invocation_id)

    def sys_get_promise(self, key: str) -> int:
        with self.lock:
            return self.vm.sys_get_promise(key)

    def sys_peek_promise(self, key: str) -> int:
        with self.lock:
            return self.vm.sys_peek_promise(key)

    def sys_resolve_promise(self, key: str, value: bytes) -> int:
        with self.lock:
            return self.vm.sys_resolve_promise(key, value)

    def sys_reject_promise(self, key: str, code: int, message: str) -> int:
        with self.lock:
            return self.vm.sys_reject_promise(key, code, message)

    def sys_attach_invocation(
        self, invocation_id: str | None, workflow: tuple[str, str] | None = None
    ) -> int:
        with self.lock:
            return self.vm.sys_attach_invocation(invocation_id, workflow)

    def sys_get_invocation_output(
        self, invocation_id: str | None, workflow: tuple[str, str] | None = None
    ) -> int:
        with self.lock:
            return self.vm.sys_get_invocation_output(invocation_id, workflow)

    def sys_state_get(self, key: str) -> int:
        with self.lock:
            return self.vm.sys_state_get(key)

    def sys_state_get_keys(self) -> int:
        with self.lock:
            return self.vm.sys_state_get_keys()

    def sys_state_set(self, key: str, value: bytes) -> None:
        with self.lock:
            self.vm.sys_state_set(key, value)

    def sys_state_clear(self, key: str) -> None:
        with self.lock:
            self.vm.sys_state_clear(key)

    def sys_state_clear_all(self) -> None:
        with self.lock:
            self.vm.sys_state_clear_all()

    def combinator(self, kind: int, handles: list[int]) -> int:
        with self.lock:
            return self.vm.combinator(kind, handles)

    def outcome(self, handle: int) -> tuple[bool, int | None] | None:
        with self.lock:
            return self.vm.outcome(handle)

    def selector(self, handles: list[int]) -> int:
        with self.lock:
            return self.vm.selector(handles)

    def selector_remaining(self, selector: int) -> int:
        with self.lock:
            return self.vm.selector_remaining(selector)

    def is_completed(self, handle: int) -> bool:
        with self.lock:
            return self.vm.is_completed(handle)

    def is_replaying(self) -> bool:
        with self.lock:
            return self.vm.is_replaying()

    def is_closed(self) -> bool:
        with self.lock:
            return self.vm.is_closed()

    def sys_input(self) -> _core.Input:
        with self.lock:
            return self.vm.sys_input()

    def end_with_failure(self, code: int, message: str) -> None:
        """Ends the invocation with a terminal failure (``DurableError`` if the journal
        holds more than the input)."""
        with self.lock:
            self.vm.sys_write_output_failure(code, message)
            self.vm.sys_end()

    def busy_on_a_thread(self) -> bool:
        """Whether this attempt's sync handler is working on its thread rather than waiting
        for a durable future (a virtual clock must not move then)."""
        return self._sync_handler_running and not self._blocked_threads

    def on_loop(self) -> bool:
        return threading.get_ident() == self._loop_thread

    # ---- runs (the handler side starts them; ``_runs`` executes them) ------------------------

    def start_run(self, name: str, handle: int, spec: RunSpec) -> None:
        """Starts the closure of run ``handle`` (journaled as ``name``) now, from any thread."""
        if self.trace is not None:
            self.trace.run_started(handle, name)
        self.runs.start(handle, spec)

    def propose_run_success(self, handle: int, value: bytes) -> None:
        if self.trace is not None:
            self.trace.run_ended(handle, "success")
        with self.lock:
            self.vm.propose_run_success(handle, value)

    def propose_run_failure(self, handle: int, error: TerminalError) -> None:
        """Journals ``error`` as the run's failure (nothing once the attempt is over)."""
        if self.trace is not None:
            self.trace.run_ended(handle, "terminal failure", f"[{error.code}] {error.message}")
        with self.lock:
            _ignore_closed(
                self.vm.propose_run_failure,
                handle,
                error.code,
                error.message,
                list(error.metadata.items()),
            )

    def propose_run_retryable(
        self, handle: int, message: str, stacktrace: str, elapsed_ms: int, retry: dict[str, Any]
    ) -> None:
        """A failure to retry, as ``retry`` says (nothing once the attempt is over)."""
        if self.trace is not None:
            self.trace.run_ended(handle, "failed", message)
        with self.lock:
            _ignore_closed(
                self.vm.propose_run_retryable, handle, 500, message, stacktrace, elapsed_ms, **retry
            )

    # ---- the handler -------------------------------------------------------------------------

    async def run_handler(
        self,
        call: Callable[[Any, Any], Any],
        is_async: bool,
        decode_input: Callable[[bytes], Any],
        encode_output: Callable[[Any], bytes],
        make_context: Callable[..., Any],
    ) -> None:
        """Runs the handler to its end and journals the outcome.

        A failed attempt is logged once, on ``durable_futures.attempt``; so is a step of an
        async handler that holds the event loop too long (:mod:`._logging`)."""
        service, handler = _handler_name(call)
        self.logger = _logging.handler_logger(service, handler)
        trace = self.trace
        if trace is not None:
            trace.start(self.vm.retry_count() + 1)
        outcome, failure = "failed", None
        running = _logging.current_attempt.set(self)
        try:
            start = self.sys_input()
            self.invocation_id = start.invocation_id
            self.target = _logging.target_of(service, handler, start.key)
            if trace is not None:
                trace.started(self.invocation_id, self.target)
            ctx = make_context(self, start.invocation_id, start.key, start.headers, start.random_seed)
            if is_async:
                threshold = _logging.blocked_loop_threshold
                if threshold is None:
                    result = await call(ctx, decode_input(start.input))
                else:
                    coro = call(ctx, decode_input(start.input))
                    result = await _logging.timed_steps(coro, self, threshold)
            else:
                cv = contextvars.copy_context()
                arg = decode_input(start.input)
                fn = functools.partial(cv.run, call, ctx, arg)
                self._sync_handler_running = True
                try:
                    result = await self.loop.run_in_executor(_HANDLER_POOL, fn)
                finally:
                    self._sync_handler_running = False
            out = encode_output(result)
            with self.lock:
                self.vm.sys_write_output_success(out)
                self.vm.sys_end()
            outcome = "success"
            _logging.attempt_logger.debug("%s %s: attempt ended", self.target, self.invocation_id)
        except TerminalError as e:
            with self.lock:
                if not self.vm.is_closed():
                    _ignore_closed(
                        self.vm.sys_write_output_failure,
                        e.code,
                        e.message,
                        list(e.metadata.items()),
                    )
                    _ignore_closed(self.vm.sys_end)
                error = self.vm.last_error()
            if error is not None:  # the VM refused the failure (e.g. a journal mismatch)
                failure = f"[{error.code}] {error.message}"
                _logging.log_failed_attempt(self, e, error, handler_failed=False)
            else:
                outcome, failure = "terminal failure", f"[{e.code}] {e.message}"
                _logging.attempt_logger.info(
                    "%s %s: ended with a terminal failure [%d] %s",
                    self.target,
                    self.invocation_id,
                    e.code,
                    e.message,
                    extra={"invocation_id": self.invocation_id, "target": self.target},
                )
        except Suspended:
            with self.lock:
                error = self.vm.last_error()
            if error is not None:  # the VM closed with an error while the handler waited
                failure = f"[{error.code}] {error.message}"
                _logging.log_failed_attempt(self, None, error, handler_failed=False)
            else:
                outcome = "suspended"
                _logging.attempt_logger.debug("%s %s: suspended", self.target, self.invocation_id)
        except Exception as e:  # noqa: BLE001 - the attempt fails and the runtime retries
            self.error = e
            with self.lock:
                # A closed VM already wrote its terminator (e.g. a journal mismatch).
                handler_failed = not self.vm.is_closed()
                if handler_failed:
                    self.vm.notify_error(f"{type(e).__name__}: {e}", traceback.format_exc())
                error = self.vm.last_error()
            failure = f"{type(e).__name__}: {e}"
            _logging.log_failed_attempt(self, e, error, handler_failed)
        finally:
            _logging.current_attempt.reset(running)
            if trace is not None:  # before the output goes out: it may end the invocation
                if outcome == "failed" and failure is None:
                    failure = "the attempt was abandoned"
                trace.end(outcome, failure)
            self.flush()
            self.runs.cancel()


def _handler_name(call: Callable[..., Any]) -> tuple[str, str]:
    """``(service, handler)`` of a registered handler's ``call`` (a bound ``Handler.call``);
    ``("", "")`` for anything else."""
    owner = getattr(call, "__self__", None)
    service = getattr(owner, "service_name", None)
    name = getattr(owner, "name", None)
    if isinstance(service, str) and isinstance(name, str):
        return service, name
    return "", ""


def _ignore_closed(f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        f(*args, **kwargs)
    except DurableError:
        pass  # the attempt is already over; nothing more can be journaled



class LoopAttempt(Attempt):
    """An attempt whose VM is only ever used from the event loop's thread: an async
    handler's (run closures on threads hand their outcome to the loop). Its commands and
    queries go to the VM without taking the lock, which costs about as much as a replayed
    step's own work; a sync handler's attempt (:class:`Attempt`) shares its VM with the
    handler's thread and keeps it."""

    lock_free = True

    def sys_run(self, name: str) -> tuple[int, bool]:
        return self.vm.sys_run(name)

    def sys_sleep(self, name: str, wake_up_time_ms: int) -> int:
        return self.vm.sys_sleep(name, wake_up_time_ms)

    def sys_call(self, call: Call) -> tuple[int, int]:
        return self.vm.sys_call(*call)

    def sys_send(self, call: Call, invoke_time_ms: int | None) -> int:
        return self.vm.sys_send(*call, invoke_time_ms)

    def sys_state_get(self, key: str) -> int:
        return self.vm.sys_state_get(key)

    def sys_state_set(self, key: str, value: bytes) -> None:
        self.vm.sys_state_set(key, value)

    def sys_get_promise(self, key: str) -> int:
        return self.vm.sys_get_promise(key)

    def combinator(self, kind: int, handles: list[int]) -> int:
        return self.vm.combinator(kind, handles)

    def outcome(self, handle: int) -> tuple[bool, int | None] | None:
        return self.vm.outcome(handle)

    def selector(self, handles: list[int]) -> int:
        return self.vm.selector(handles)

    def selector_remaining(self, selector: int) -> int:
        return self.vm.selector_remaining(selector)

    def is_completed(self, handle: int) -> bool:
        return self.vm.is_completed(handle)

    def is_replaying(self) -> bool:
        return self.vm.is_replaying()

    def is_closed(self) -> bool:
        return self.vm.is_closed()

    def propose_run_success(self, handle: int, value: bytes) -> None:
        if self.trace is not None:
            self.trace.run_ended(handle, "success")
        self.vm.propose_run_success(handle, value)

    def flush(self) -> None:
        data = self.vm.take_output()
        if data:
            self._send_output(data)

    def _pending(self) -> int:
        generation = self._generation
        data = self.vm.take_output()
        if data:
            self._send_output(data)  # on the loop: no outbox needed
        return generation

    def wait(self, ask: Callable[[int], tuple[int, T]], arg: int) -> Generator[Any, None, T | None]:
        """:meth:`Attempt.wait` without the lock."""
        while True:
            code, value = ask(arg)
            if code == READY:
                return value
            if code != PENDING:
                self._outcome(code)
                return None
            yield from self._progress(self._pending())
