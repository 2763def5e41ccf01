"""The handler's view of its invocation: ``df.Context``."""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import typing
import uuid as _uuid
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .errors import BadRequestError, TerminalError
from .futures import (
    _UNSET,
    ALL_COMPLETED,
    ALL_SUCCEEDED,
    FIRST_COMPLETED,
    FIRST_SUCCEEDED,
    TEXT,
    AwakeableFuture,
    CombinatorFuture,
    DurableFuture,
    ResponseFuture,
    RunFuture,
    Selector,
    TimerFuture,
    _InvocationIdFuture,
)
from .serde import JsonSerde, Serde, serde_for

if TYPE_CHECKING:
    from ._attempt import Attempt, Call
    from .service import Handler

__all__ = [
    "Context",
    "DurablePromise",
    "ObjectContext",
    "ObjectSharedContext",
    "RunOptions",
    "ServiceClient",
    "WorkflowContext",
    "WorkflowSharedContext",
]

P = ParamSpec("P")
T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
F1 = TypeVar("F1", bound=DurableFuture[Any])
F2 = TypeVar("F2", bound=DurableFuture[Any])
F3 = TypeVar("F3", bound=DurableFuture[Any])
F4 = TypeVar("F4", bound=DurableFuture[Any])

_JSON: JsonSerde[Any] = JsonSerde()


def _target_text(service: str, handler: str, key: str | None) -> str:
    return f"{service}/{key}/{handler}" if key else f"{service}/{handler}"


def _ms(d: timedelta | None) -> int | None:
    return None if d is None else int(d.total_seconds() * 1000)


@dataclass(frozen=True)
class RunOptions:
    """Retries of a run that fails with a non-terminal exception.

    With nothing set, a failing run is retried forever (by re-running the attempt). Any field
    set switches to exponential backoff: ``initial_interval`` (default 50 ms), multiplied by
    ``factor`` (2.0) up to ``max_interval`` (10 s), until ``max_attempts`` or
    ``max_duration`` are reached; then the run fails with a ``TerminalError``.
    """

    max_attempts: int | None = None
    max_duration: timedelta | None = None
    initial_interval: timedelta | None = None
    max_interval: timedelta | None = None
    factor: float | None = None

    def _core(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "max_duration_ms": _ms(self.max_duration),
            "initial_interval_ms": _ms(self.initial_interval),
            "max_interval_ms": _ms(self.max_interval),
            "factor": self.factor,
        }


_NO_RETRY_OPTIONS: dict[str, Any] = RunOptions()._core()


class SendHandle:
    """A one-way call; its invocation id can be awaited."""

    def __init__(self, id_future: DurableFuture[str]) -> None:
        self._id = id_future

    def invocation_id(self) -> DurableFuture[str]:
        return self._id


class ServiceClient(Generic[I, O]):
    """Calls one handler of another service (or virtual object)."""

    def __init__(
        self,
        ctx: Context,
        service: str,
        handler: str,
        key: str | None = None,
        input_serde: Serde[Any] = _JSON,
        output_serde: Serde[Any] = _JSON,
    ) -> None:
        self._ctx = ctx
        self._service = service
        self._handler = handler
        self._key = key
        self._in = input_serde
        self._out = output_serde

    def request_future(
        self,
        arg: I = None,  # type: ignore[assignment]
        *,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> ResponseFuture[O]:
        """Starts the call now; the returned future completes with the response."""
        attempt = self._ctx._attempt
        if attempt.trace is not None:
            return self._traced_call(attempt, arg, idempotency_key, headers)
        id_h, res_h = attempt.sys_call(self._call(arg, idempotency_key, headers))
        return ResponseFuture(attempt, res_h, id_h, self._out)

    def _traced_call(
        self,
        attempt: Attempt,
        arg: Any,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> ResponseFuture[O]:
        """``request_future`` with a span from the call to its response (a replayed call,
        made by an earlier attempt, has none)."""
        replaying = attempt.is_replaying()
        id_h, res_h = attempt.sys_call(self._call(arg, idempotency_key, headers))
        trace = attempt.trace
        if trace is not None and not replaying:
            target = _target_text(self._service, self._handler, self._key)
            trace.command(res_h, f"call {target}", {"durable_futures.call.target": target})
        return ResponseFuture(attempt, res_h, id_h, self._out)

    async def request(self, arg: I = None, **kwargs: Any) -> O:  # type: ignore[assignment]
        """Calls and awaits the response."""
        return await self.request_future(arg, **kwargs)

    def send(
        self,
        arg: I = None,  # type: ignore[assignment]
        *,
        delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """One-way call, optionally delayed. Nothing to await but the invocation id."""
        attempt = self._ctx._attempt
        invoke_time = None if delay is None else attempt.now_ms() + (_ms(delay) or 0)
        h = attempt.sys_send(self._call(arg, idempotency_key, headers), invoke_time)
        return SendHandle(_InvocationIdFuture(attempt, h, TEXT))

    def _call(self, arg: Any, idempotency_key: str | None, headers: dict[str, str] | None) -> Call:
        return (
            self._service,
            self._handler,
            self._in.serialize(arg),
            self._key,
            idempotency_key,
            list((headers or {}).items()),
        )


class Context:
    """What a handler can do durably. Every method journals what it does."""

    def __init__(
        self,
        attempt: Attempt,
        invocation_id: str,
        key: str,
        headers: list[tuple[str, str]],
        random_seed: int,
    ) -> None:
        self._attempt = attempt
        self.invocation_id = invocation_id
        self.key = key
        self.headers = dict(headers)
        self._seed = random_seed
        self._random: random.Random | None = None

    @property
    def random(self) -> random.Random:
        """Randomness seeded by the invocation: the same numbers on every replay. (Made on
        first use: seeding a generator costs more than a whole step.)"""
        r = self._random
        if r is None:
            r = self._random = random.Random(self._seed)
        return r

    def uuid(self) -> _uuid.UUID:
        """A random (version 4) UUID from :attr:`random`: the same UUIDs, in the same order,
        on every replay of the invocation, so it can serve as an idempotency key."""
        return _uuid.UUID(int=self.random.getrandbits(128), version=4)

    def time(self, name: str = "time") -> RunFuture[float]:
        """The current time (seconds since the epoch, the engine's clock), journaled as a run
        named ``name``: a replay reads the recorded time instead of the clock."""
        now_ms = self._attempt.now_ms

        async def read_clock() -> float:
            return now_ms() / 1000

        return self.run_async(name, read_clock)

    # ---- runs ----------------------------------------------------------------------------------

    @overload
    def run_async(
        self,
        name: str,
        fn: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RunFuture[T]: ...

    @overload
    def run_async(
        self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> RunFuture[T]: ...

    def run_async(
        self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> RunFuture[Any]:
        """Starts a side effect now and returns its future.

        ``fn`` may be a coroutine function (run as a task; if the handler awaits this
        future before that task has started, the handler's own task runs it instead, which
        saves loop turns) or a plain function (run on a thread pool). Either way it gets a
        copy of the context variables. On replay, a run whose result is in
        the journal is not executed. Pass ``options=RunOptions(...)`` as a keyword to tune
        retries (it is not forwarded to ``fn``). A ``TerminalError`` raised by ``fn`` is
        journaled as the run's failure; any other exception is retried.
        """
        if kwargs:
            options = kwargs.pop("options", None)
            if options is not None:
                if not isinstance(options, RunOptions):
                    raise TypeError(
                        f"options must be df.RunOptions(...), not {type(options).__name__}; "
                        "ctx.run_async_with(options, name, fn, ...) is the typed form"
                    )
                return self._start(name, options, fn, args, kwargs)
        # Without options (the common case, and every run of a replay): `_start`'s steps
        # here, without its frame, `_return_serde`'s or the future's `__init__` (90 of the
        # 1,000 ns a replayed run costs in all).
        try:
            serde: Serde[Any] = fn.__dict__[_SERDE_ATTR]
        except (AttributeError, KeyError, TypeError):
            serde = _return_serde(fn)
        attempt = self._attempt
        # A loop attempt's VM is called as it is (no frame of ours).
        handle, replayed = attempt.vm.sys_run(name) if attempt.lock_free else attempt.sys_run(name)
        if not replayed:
            attempt.start_run(name, handle, (fn, args, kwargs, serde.serialize, _NO_RETRY_OPTIONS))
        future: RunFuture[Any] = _new_object(RunFuture)  # DurableFuture.__init__'s stores
        future._attempt = attempt
        future._handle = handle
        future._serde = serde
        future._value = _UNSET
        future._error = None
        return future

    @overload
    def run_async_with(
        self,
        options: RunOptions,
        name: str,
        fn: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> RunFuture[T]: ...

    @overload
    def run_async_with(
        self, options: RunOptions, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> RunFuture[T]: ...

    def run_async_with(
        self, options: RunOptions, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> RunFuture[Any]:
        """``run_async`` with retry options, typed end to end (``ctx.run_async(..., options=)``
        works too, but type checkers see ``options`` as an argument of ``fn``)."""
        return self._start(name, options, fn, args, kwargs)

    def _start(
        self,
        name: str,
        options: RunOptions | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> RunFuture[Any]:
        """A run with options: the steps of ``run_async``'s common case."""
        retry = options._core() if options is not None else _NO_RETRY_OPTIONS
        serde = _return_serde(fn)
        attempt = self._attempt
        handle, replayed = attempt.sys_run(name)
        if not replayed:
            attempt.start_run(name, handle, (fn, args, kwargs, serde.serialize, retry))
        return RunFuture(attempt, handle, serde)

    @overload
    async def run(
        self,
        name: str,
        fn: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T: ...

    @overload
    async def run(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def run(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``await ctx.run_async(...)``."""
        return await self.run_async(name, fn, *args, **kwargs)

    # ---- timers --------------------------------------------------------------------------------

    def after(self, duration: timedelta, name: str | None = None) -> TimerFuture:
        """A durable timer firing after ``duration``."""
        attempt = self._attempt
        wake = attempt.now_ms() + (_ms(duration) or 0)
        trace = attempt.trace
        if trace is None:
            h = attempt.sys_sleep(name or "", wake)
        else:  # a span from the command to the timer firing (none for a replayed timer)
            replaying = attempt.is_replaying()
            h = attempt.sys_sleep(name or "", wake)
            if not replaying:
                trace.command(h, "sleep", {"durable_futures.timer.name": name or ""})
        return TimerFuture(attempt, h, _JSON)

    async def sleep(self, duration: timedelta, name: str | None = None) -> None:
        """Durable sleep: ``await ctx.after(duration)``."""
        await self.after(duration, name)

    # ---- calls ---------------------------------------------------------------------------------

    @overload
    def service(self, target: Handler[I, O], /) -> ServiceClient[I, O]: ...

    # `@svc.handler()` returns a Handler typed as the function it wraps, so type checkers see
    # handler functions: async or sync, with or without an input.
    @overload
    def service(self, target: Callable[[Any, I], Awaitable[O]], /) -> ServiceClient[I, O]: ...

    @overload
    def service(self, target: Callable[[Any, I], O], /) -> ServiceClient[I, O]: ...

    @overload
    def service(self, target: Callable[[Any], Awaitable[O]], /) -> ServiceClient[None, O]: ...

    @overload
    def service(self, target: Callable[[Any], O], /) -> ServiceClient[None, O]: ...

    @overload
    def service(self, target: str, handler: str, /) -> ServiceClient[Any, Any]: ...

    def service(self, target: Any, handler: str | None = None, /) -> ServiceClient[Any, Any]:
        """A client for a handler: ``ctx.service("Svc", "handler")`` or, typed,
        ``ctx.service(handler_fn)`` for a function registered with ``@svc.handler()``."""
        if handler is None:
            return self._typed_client(
                target,
                None,
                "ctx.service(fn) takes a handler registered with @svc.handler(), "
                f"not {target!r}; or call ctx.service('Service', 'handler')",
            )
        return ServiceClient(self, target, handler)

    def _typed_client(self, target: Any, key: str | None, refusal: str) -> ServiceClient[Any, Any]:
        """The client of a registered handler, encoding and decoding as its types say."""
        from .service import Handler

        if not isinstance(target, Handler):
            raise TypeError(refusal)
        return ServiceClient(
            self, target.service_name, target.name, key, target.input_serde, target.output_serde
        )

    @overload
    def object(self, target: Handler[I, O], key: str, /) -> ServiceClient[I, O]: ...

    @overload
    def object(
        self, target: Callable[[Any, I], Awaitable[O]], key: str, /
    ) -> ServiceClient[I, O]: ...

    @overload
    def object(self, target: Callable[[Any, I], O], key: str, /) -> ServiceClient[I, O]: ...

    @overload
    def object(
        self, target: Callable[[Any], Awaitable[O]], key: str, /
    ) -> ServiceClient[None, O]: ...

    @overload
    def object(self, target: Callable[[Any], O], key: str, /) -> ServiceClient[None, O]: ...

    @overload
    def object(self, target: str, key: str, handler: str, /) -> ServiceClient[Any, Any]: ...

    def object(self, target: Any, key: str, handler: str | None = None, /) -> ServiceClient[Any, Any]:
        """A client for a virtual object's handler under ``key``: ``ctx.object("Cart", key,
        "add")`` or, typed, ``ctx.object(add, key)`` for a handler registered on a
        ``df.VirtualObject``."""
        if handler is not None:
            return ServiceClient(self, target, handler, key)
        return self._typed_client(
            target,
            key,
            "ctx.object(fn, key) takes a handler registered on a df.VirtualObject, "
            f"not {target!r}; or call ctx.object('Object', key, 'handler')",
        )

    @overload
    def workflow(self, target: Handler[I, O], key: str, /) -> ServiceClient[I, O]: ...

    @overload
    def workflow(
        self, target: Callable[[Any, I], Awaitable[O]], key: str, /
    ) -> ServiceClient[I, O]: ...

    @overload
    def workflow(self, target: Callable[[Any, I], O], key: str, /) -> ServiceClient[I, O]: ...

    @overload
    def workflow(
        self, target: Callable[[Any], Awaitable[O]], key: str, /
    ) -> ServiceClient[None, O]: ...

    @overload
    def workflow(self, target: Callable[[Any], O], key: str, /) -> ServiceClient[None, O]: ...

    @overload
    def workflow(self, target: str, key: str, handler: str, /) -> ServiceClient[Any, Any]: ...

    def workflow(
        self, target: Any, key: str, handler: str | None = None, /
    ) -> ServiceClient[Any, Any]:
        """A client for a workflow's handler under the workflow ``key``:
        ``ctx.workflow("Signup", key, "run")`` or, typed, ``ctx.workflow(run, key)`` for a
        handler registered on a ``df.Workflow``. Calling its main handler starts the
        workflow; for a key that ran already, a call fails with a ``TerminalError`` (409)
        and a send gives the first run's invocation id."""
        if handler is not None:
            return ServiceClient(self, target, handler, key)
        return self._typed_client(
            target,
            key,
            "ctx.workflow(fn, key) takes a handler registered on a df.Workflow, "
            f"not {target!r}; or call ctx.workflow('Workflow', key, 'handler')",
        )

    # ---- other invocations -----------------------------------------------------------------------

    @overload
    def attach_invocation(self, invocation_id: str) -> DurableFuture[Any]: ...

    @overload
    def attach_invocation(self, invocation_id: str, type_: type[T]) -> DurableFuture[T]: ...

    @overload
    def attach_invocation(self, invocation_id: str, type_: Any) -> DurableFuture[Any]: ...

    def attach_invocation(self, invocation_id: str, type_: Any = Any) -> DurableFuture[Any]:
        """A durable future of another invocation's result (decoded as ``type_``): it
        completes when that invocation does, or at once if it has. An unknown id fails
        with a ``TerminalError`` (404)."""
        attempt = self._attempt
        h = attempt.sys_attach_invocation(invocation_id)
        return DurableFuture(attempt, h, serde_for(type_))

    @overload
    def invocation_output(self, invocation_id: str) -> DurableFuture[Any]: ...

    @overload
    def invocation_output(
        self, invocation_id: str, type_: type[T]
    ) -> DurableFuture[T | None]: ...

    @overload
    def invocation_output(self, invocation_id: str, type_: Any) -> DurableFuture[Any]: ...

    def invocation_output(self, invocation_id: str, type_: Any = Any) -> DurableFuture[Any]:
        """Another invocation's result as it is now: ``None`` while it runs, its value once
        it completed (its failure raises). Journaled, so a replay sees the same answer."""
        attempt = self._attempt
        h = attempt.sys_get_invocation_output(invocation_id)
        return DurableFuture(attempt, h, serde_for(type_))

    # ---- awakeables ------------------------------------------------------------------------------

    @overload
    def awakeable(self) -> tuple[str, AwakeableFuture[Any]]: ...

    @overload
    def awakeable(self, type_: type[T]) -> tuple[str, AwakeableFuture[T]]: ...

    @overload
    def awakeable(self, type_: Any) -> tuple[str, AwakeableFuture[Any]]: ...

    def awakeable(self, type_: Any = Any) -> tuple[str, AwakeableFuture[Any]]:
        """An id to hand to someone outside, and the future they complete, whose value is
        decoded as ``type_``."""
        attempt = self._attempt
        awk_id, h = attempt.sys_awakeable()
        return awk_id, AwakeableFuture(attempt, h, serde_for(type_))

    def resolve_awakeable(self, awakeable_id: str, value: Any) -> None:
        """Completes someone's awakeable with ``value``. A malformed id is a
        ``TerminalError`` (400): retrying the attempt could not fix it."""
        with _terminal_on_bad_request():
            self._attempt.sys_resolve_awakeable(awakeable_id, _JSON.serialize(value))

    def reject_awakeable(self, awakeable_id: str, message: str, code: int = 500) -> None:
        """Fails someone's awakeable with a terminal error."""
        with _terminal_on_bad_request():
            self._attempt.sys_reject_awakeable(awakeable_id, code, message)

    def cancel_invocation(self, invocation_id: str) -> None:
        """Cancels another invocation."""
        self._attempt.sys_cancel_invocation(invocation_id)

    # ---- waiting -------------------------------------------------------------------------------

    @overload
    def select(self, f1: F1, /) -> Selector[F1]: ...

    @overload
    def select(self, f1: F1, f2: F2, /) -> Selector[F1 | F2]: ...

    @overload
    def select(self, f1: F1, f2: F2, f3: F3, /) -> Selector[F1 | F2 | F3]: ...

    @overload
    def select(self, f1: F1, f2: F2, f3: F3, f4: F4, /) -> Selector[F1 | F2 | F3 | F4]: ...

    @overload
    def select(self, *futures: F1) -> Selector[F1]: ...

    def select(self, *futures: Any) -> Selector[Any]:
        """A selector handing out ``futures`` in completion order, typed by the futures it
        holds (``await sel.select()`` is one of them, or ``None`` when none remain)."""
        return Selector(self._attempt, futures)

    def all_completed(self, *futures: DurableFuture[Any]) -> CombinatorFuture[list[DurableFuture[Any]]]:
        """Completes when every future completed (failed or not); gives the futures back."""
        return CombinatorFuture(self._attempt, ALL_COMPLETED, futures, "all_completed()")

    def first_completed(self, *futures: DurableFuture[Any]) -> CombinatorFuture[DurableFuture[Any]]:
        """Completes with the first future to complete."""
        return CombinatorFuture(self._attempt, FIRST_COMPLETED, futures, "first_completed()")

    def first_succeeded(self, *futures: DurableFuture[T]) -> CombinatorFuture[T]:
        """The value of the first future to succeed; raises the last failure if all fail."""
        return CombinatorFuture(self._attempt, FIRST_SUCCEEDED, futures, "first_succeeded()")

    def all_succeeded(self, *futures: DurableFuture[T]) -> CombinatorFuture[list[T]]:
        """The values of all futures, or the first failure."""
        return CombinatorFuture(self._attempt, ALL_SUCCEEDED, futures, "all_succeeded()")

    def is_replaying(self) -> bool:
        """Whether the handler is re-executing journaled steps (useful to silence logs)."""
        return self._attempt.is_replaying()

    @property
    def logger(self) -> logging.Logger:
        """The handler's logger, ``durable_futures.handler.<Service>.<handler>``: a standard
        ``logging.Logger`` whose records are dropped while the handler replays, so a line
        appears once per real execution. Records carry ``invocation_id`` and ``target``."""
        return self._attempt.logger


class ObjectSharedContext(Context):
    """The context of a virtual object's shared handler (``kind="shared"``): reads the
    object's state (as last committed), runs alongside the object's other handlers, and
    cannot change the state."""

    @overload
    def get(self, key: str) -> DurableFuture[Any]: ...

    @overload
    def get(self, key: str, type_: type[T]) -> DurableFuture[T | None]: ...

    @overload
    def get(self, key: str, type_: Any) -> DurableFuture[Any]: ...

    def get(self, key: str, type_: Any = Any) -> DurableFuture[Any]:
        """The value under ``key`` decoded as ``type_``, or ``None`` if there is none."""
        attempt = self._attempt
        h = attempt.sys_state_get(key)
        return DurableFuture(attempt, h, serde_for(type_))

    def state_keys(self) -> DurableFuture[list[str]]:
        attempt = self._attempt
        h = attempt.sys_state_get_keys()
        return DurableFuture(attempt, h, _JSON)



class ObjectContext(ObjectSharedContext):
    """A virtual object's context (exclusive handlers): durable state under the object's
    key. One exclusive handler runs per key at a time."""

    def set(self, key: str, value: Any) -> None:
        self._attempt.sys_state_set(key, _JSON.serialize(value))

    def clear(self, key: str) -> None:
        self._attempt.sys_state_clear(key)

    def clear_all(self) -> None:
        self._attempt.sys_state_clear_all()


class DurablePromise(Generic[T]):
    """A durable promise of a workflow instance (``ctx.promise(name, type_)``): completed
    once, by any of the workflow's handlers (or by a later attempt), and read by all.

    Every method journals a command, so what a handler learns from a promise is replayed
    as it first happened."""

    __slots__ = ("_ctx", "_name", "_serde", "_value")

    def __init__(self, ctx: Context, name: str, serde: Serde[T]) -> None:
        self._ctx = ctx
        self._name = name
        self._serde = serde
        self._value: DurableFuture[T] | None = None

    @property
    def name(self) -> str:
        return self._name

    def value(self) -> DurableFuture[T]:
        """A durable future of the promise's value: it completes when the promise is
        resolved (or raises ``TerminalError`` when it is rejected). Works in
        ``ctx.select`` and the combinators like any other future. Made once per
        ``DurablePromise`` object."""
        if self._value is None:
            attempt = self._ctx._attempt
            h = attempt.sys_get_promise(self._name)
            self._value = DurableFuture(attempt, h, self._serde)
        return self._value

    def __await__(self) -> Generator[Any, None, T]:
        return self.value().__await__()

    def peek(self) -> DurableFuture[T | None]:
        """The value if the promise is resolved now, ``None`` if it is not completed yet
        (a rejected promise raises its ``TerminalError``)."""
        attempt = self._ctx._attempt
        h = attempt.sys_peek_promise(self._name)
        return DurableFuture(attempt, h, self._serde)

    def resolve(self, value: T) -> DurableFuture[None]:
        """Resolves the promise with ``value``, journaled at once. The returned future
        says whether it worked: awaiting it raises ``TerminalError`` (409) if the promise
        was already completed. Awaiting it is optional."""
        attempt = self._ctx._attempt
        h = attempt.sys_resolve_promise(self._name, self._serde.serialize(value))
        return DurableFuture(attempt, h, _JSON)

    def reject(self, message: str, code: int = 500) -> DurableFuture[None]:
        """Rejects the promise: whoever awaits its value gets ``TerminalError(message,
        code)``. Like :meth:`resolve`, the returned future fails if it was completed."""
        attempt = self._ctx._attempt
        h = attempt.sys_reject_promise(self._name, code, message)
        return DurableFuture(attempt, h, _JSON)

    def __repr__(self) -> str:
        return f"DurablePromise({self._name!r})"


class WorkflowSharedContext(ObjectSharedContext):
    """The context of a workflow's shared handlers (``@wf.handler()``): reads the
    workflow's state and completes or reads its durable promises. ``ctx.key`` is the
    workflow key."""

    @overload
    def promise(self, name: str) -> DurablePromise[Any]: ...

    @overload
    def promise(self, name: str, type_: type[T]) -> DurablePromise[T]: ...

    @overload
    def promise(self, name: str, type_: Any) -> DurablePromise[Any]: ...

    def promise(self, name: str, type_: Any = Any) -> DurablePromise[Any]:
        """The durable promise ``name`` of this workflow instance, its value encoded and
        decoded as ``type_``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a promise needs a non-empty name, not {name!r}")
        return DurablePromise(self, name, serde_for(type_))


class WorkflowContext(ObjectContext, WorkflowSharedContext):
    """The context of a workflow's main handler (``@wf.main()``): runs once per workflow
    key, writes the workflow's state and uses its durable promises."""


def context_type(service_ty: str, kind: str | None) -> type[Context]:
    """The context a handler gets: by its service's type and, in a virtual object or a
    workflow, its kind."""
    if service_ty == "VIRTUAL_OBJECT":
        return ObjectSharedContext if kind == "shared" else ObjectContext
    if service_ty == "WORKFLOW":
        return WorkflowContext if kind == "workflow" else WorkflowSharedContext
    return Context


@contextlib.contextmanager
def _terminal_on_bad_request() -> Iterator[None]:
    try:
        yield
    except BadRequestError as e:
        raise TerminalError(e.message, 400) from e


_SERDE_CACHE: weakref.WeakKeyDictionary[Any, Serde[Any]] = weakref.WeakKeyDictionary()

# Where a function keeps the serde of its result (an attribute: a lookup in a
# WeakKeyDictionary makes a weak reference per call, a cost a replay pays per run).
_SERDE_ATTR = "_durable_futures_return_serde"
_new_object = object.__new__


def _return_serde(fn: Callable[..., Any]) -> Serde[Any]:
    """The serde of a run's result, from ``fn``'s return annotation (cached per function:
    resolving type hints costs far more than the rest of a replayed run)."""
    try:
        serde: Serde[Any] = fn.__dict__[_SERDE_ATTR]
        return serde
    except (AttributeError, KeyError, TypeError):
        pass
    if not getattr(fn, "__annotations__", None) and not hasattr(fn, "__wrapped__"):
        serde = _JSON  # no hints at all (a lambda, most often): plain JSON, nothing to cache
        if not isinstance(fn, (functools.partial, type)):
            return serde
    try:
        return _SERDE_CACHE[fn]
    except (KeyError, TypeError):
        pass
    serde = _resolve_return_serde(fn)
    try:
        fn.__dict__[_SERDE_ATTR] = serde
        return serde
    except (AttributeError, TypeError):
        pass
    try:
        _SERDE_CACHE[fn] = serde
    except TypeError:  # not weak-referenceable (e.g. some builtins)
        pass
    return serde


def _resolve_return_serde(fn: Callable[..., Any]) -> Serde[Any]:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable hints fall back to plain JSON
        return _JSON
    ret = hints.get("return", Any)
    origin = typing.get_origin(ret)
    if origin is not None and getattr(origin, "__name__", "") in ("Coroutine", "Awaitable"):
        args = typing.get_args(ret)
        ret = args[-1] if args else Any
    return serde_for(ret)

