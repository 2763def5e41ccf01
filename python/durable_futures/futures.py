"""Durable futures, the selector and the combinators.

Futures follow ``concurrent.futures`` naming: ``done()``, ``result()`` (blocks, for sync
handlers), and ``await fut`` in async handlers. Awaiting a future whose result the journal
already holds returns at once, without a round trip through the event loop.

Only durable futures of the same invocation can be combined. ``asyncio.gather``,
``asyncio.wait`` or raw coroutines would make the order of completions depend on timing
instead of the journal, so the combinators refuse them.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

from . import _core
from ._attempt import FAILURE, INVOCATION_ID, READY, STATE_KEYS, VALUE, VOID, Attempt
from .errors import BadRequestError, TerminalError

__all__ = [
    "AwakeableFuture",
    "CombinatorFuture",
    "DurableFuture",
    "ResponseFuture",
    "RunFuture",
    "Selector",
    "TimerFuture",
]

T = TypeVar("T")
#: The futures a selector holds (a union when they differ).
F_co = TypeVar("F_co", bound="DurableFuture[Any]", covariant=True)

_UNSET: Any = object()


class Decoder(Protocol):
    """What a future needs of a serde: turning the journaled bytes into its value."""

    def deserialize(self, data: bytes) -> Any: ...


class _Text:
    """Invocation ids: UTF-8 text."""

    @staticmethod
    def deserialize(data: bytes) -> str:
        return data.decode()


TEXT: Decoder = _Text()


class DurableFuture(Generic[T]):
    """A result that completes durably: journaled, and replayed in journal order."""

    __slots__ = ("_attempt", "_handle", "_serde", "_value", "_error")

    # The serde itself, not its bound ``deserialize``: a bound method per future would be
    # one more object per run for the collector to track on a long replay.
    def __init__(self, attempt: Attempt, handle: int, serde: Decoder) -> None:
        self._attempt = attempt
        self._handle = handle
        self._serde = serde
        self._value: Any = _UNSET
        self._error: BaseException | None = None

    def _settle(self, raw: Any) -> T:
        if self._error is not None:
            raise self._error
        if self._value is not _UNSET:
            return self._value  # type: ignore[no-any-return]
        if raw is None:
            raise RuntimeError("the result of this future was already taken")
        kind, payload = raw
        if kind == VALUE:
            self._value = self._serde.deserialize(payload)
        elif kind == FAILURE:
            code, message, metadata = payload
            self._error = TerminalError(message, code, dict(metadata))
            raise self._error
        elif kind in (VOID, INVOCATION_ID, STATE_KEYS):
            self._value = payload
        return self._value  # type: ignore[no-any-return]

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        """Not offered (``asyncio.wait`` asks for it): it would pick among durable futures
        by timing, not by the journal. Use ``ctx.select(...)``, ``ctx.all_completed(...)``
        or ``ctx.first_completed(...)``."""
        raise TypeError(
            "durable futures cannot be waited on with asyncio.wait: which one finishes "
            "first would depend on timing, so a replay "
            "could take another path. Use ctx.select(...) (a `while selector.remaining()` "
            "loop collects them all), ctx.all_completed(...) or ctx.first_completed(...)."
        )

    def done(self) -> bool:
        """Whether the result is known (as far as the journal order allows now)."""
        if self._value is not _UNSET or self._error is not None:
            return True
        return self._attempt.is_completed(self._handle)

    def __await__(self) -> Generator[Any, None, T]:
        if self._value is not _UNSET or self._error is not None:
            return self._settle(None)
        raw = yield from self._attempt.wait(self._attempt.take, self._handle)
        return self._settle(raw)

    def result(self) -> T:
        """The result, blocking until it is known. For sync handlers (worker threads)."""
        if self._value is not _UNSET or self._error is not None:
            return self._settle(None)
        if self._attempt.on_loop():
            raise RuntimeError(
                "result() would block the event loop; use `await fut` in async handlers"
            )
        return self._settle(self._attempt.wait_blocking(self._attempt.take, self._handle))


class RunFuture(DurableFuture[T]):
    """The result of ``ctx.run_async``: the run started when the future was created."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, T]:
        if self._value is not _UNSET or self._error is not None:
            return self._settle(None)
        attempt = self._attempt
        if attempt.lock_free:
            # A replayed result, most often: take it without making a wait generator (and
            # a value as bytes alone, without tuples around it).
            got = attempt.vm.await_value(self._handle)
            if type(got) is bytes:
                value = self._value = self._serde.deserialize(got)
                return value  # type: ignore[no-any-return]
            code, raw = got
            if code == READY:
                return self._settle(raw)
        runs = attempt.runs
        run = runs.claim(self._handle)
        if run is not None:  # awaited before it started: run it right here
            yield from runs.run_inline(self._handle, run)
        else:  # a plain function on a thread: perhaps wait for it right here
            runs.wait_here(self._handle)
        raw = yield from attempt.wait(attempt.take, self._handle)
        return self._settle(raw)


class TimerFuture(DurableFuture[None]):
    """A durable timer from ``ctx.after``; completes with ``None``."""

    __slots__ = ()


class AwakeableFuture(DurableFuture[T]):
    """Completes when someone resolves (or rejects) the awakeable."""

    __slots__ = ()


class _InvocationIdFuture(DurableFuture[str]):
    __slots__ = ()


class ResponseFuture(DurableFuture[T]):
    """The response of a call from ``request_future``."""

    __slots__ = ("_id_handle", "_id_future")

    def __init__(
        self, attempt: Attempt, handle: int, id_handle: int, serde: Decoder
    ) -> None:
        super().__init__(attempt, handle, serde)
        self._id_handle = id_handle
        self._id_future: DurableFuture[str] | None = None

    def invocation_id(self) -> DurableFuture[str]:
        """The callee's invocation id (awaitable). One future per call: its value can be
        taken from the core only once."""
        if self._id_future is None:
            self._id_future = _InvocationIdFuture(self._attempt, self._id_handle, TEXT)
        return self._id_future


def _check_futures(attempt: Attempt, futures: Sequence[Any], what: str) -> list[DurableFuture[Any]]:
    out: list[DurableFuture[Any]] = []
    for f in futures:
        if isinstance(f, DurableFuture):
            if f._attempt is not attempt:
                raise ValueError(f"{what}: the futures belong to another invocation")
            out.append(f)
            continue
        if inspect.iscoroutine(f) or isinstance(f, asyncio.Future) or inspect.isawaitable(f):
            raise TypeError(
                f"{what} takes durable futures only (from ctx.run_async, ctx.after, "
                f"request_future, ctx.awakeable, ...), not {type(f).__name__}: the order in "
                "which plain coroutines or asyncio futures finish depends on timing, so a "
                "replay could take another path. Start concurrent work with ctx.run_async."
            )
        raise TypeError(f"{what} takes durable futures, not {type(f).__name__}")
    return out


class Selector(Generic[F_co]):
    """Hands out futures in the order they completed (the journal's order).

    ``await selector.select()`` returns the next completed future, or ``None`` when none
    remain. A cancellation of the invocation raises ``TerminalError`` (409) instead of
    blocking. Typed by the futures it holds: ``ctx.select(timer, call)`` is a
    ``Selector[TimerFuture | ResponseFuture[str]]``, so ``if first is timer`` narrows.
    """

    __slots__ = ("_attempt", "_handle", "_by_handle")

    def __init__(self, attempt: Attempt, futures: Sequence[Any]) -> None:
        futs = _check_futures(attempt, futures, "select()")
        self._attempt = attempt
        self._by_handle: dict[int, Any] = {f._handle: f for f in futs}
        self._handle: int = attempt.selector([f._handle for f in futs])

    def remaining(self) -> bool:
        """Whether futures remain to be handed out."""
        return bool(self._attempt.selector_remaining(self._handle))

    def __len__(self) -> int:
        return self._attempt.selector_remaining(self._handle)

    async def select(self) -> F_co | None:
        handle = await _SelectAwaitable(self)
        return None if handle is None else self._by_handle[handle]

    def select_blocking(self) -> F_co | None:
        """``select()`` for sync handlers."""
        if self._attempt.on_loop():
            raise RuntimeError(
                "select_blocking() would block the event loop; "
                "use `await selector.select()` in async handlers"
            )
        handle = self._attempt.wait_blocking(self._attempt.next_selected, self._handle)
        return None if handle is None else self._by_handle[handle]

    def __aiter__(self) -> AsyncIterator[F_co]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[F_co]:
        while True:
            f = await self.select()
            if f is None:
                return
            yield f

    def __iter__(self) -> Iterator[F_co]:
        while True:
            f = self.select_blocking()
            if f is None:
                return
            yield f


class _SelectAwaitable:
    __slots__ = ("_sel",)

    def __init__(self, sel: Selector[Any]) -> None:
        self._sel = sel

    def __await__(self) -> Generator[Any, None, int | None]:
        attempt = self._sel._attempt
        return (yield from attempt.wait(attempt.next_selected, self._sel._handle))


# Combinator kinds, as the core numbers them.
FIRST_COMPLETED = _core.COMBINATOR_FIRST_COMPLETED
ALL_COMPLETED = _core.COMBINATOR_ALL_COMPLETED
FIRST_SUCCEEDED = _core.COMBINATOR_FIRST_SUCCEEDED_OR_ALL_FAILED
ALL_SUCCEEDED = _core.COMBINATOR_ALL_SUCCEEDED_OR_FIRST_FAILED


class CombinatorFuture(DurableFuture[T]):
    """A combinator over durable futures; itself a durable future, so they nest."""

    __slots__ = ("_kind", "_children")

    def __init__(self, attempt: Attempt, kind: int, futures: Sequence[Any], what: str) -> None:
        children = _check_futures(attempt, futures, what)
        if kind == FIRST_SUCCEEDED and not children:
            raise BadRequestError(f"{what} over no futures has no value to return")
        handle = attempt.combinator(kind, [f._handle for f in children])
        super().__init__(attempt, handle, TEXT)
        self._kind = kind
        self._children = children

    def done(self) -> bool:
        return self._attempt.is_completed(self._handle)

    def _resolve(self) -> T:
        outcome = self._attempt.outcome(self._handle)
        assert outcome is not None
        succeeded, decided_by = outcome
        by = {f._handle: f for f in self._children}
        if self._kind == ALL_COMPLETED:
            return list(self._children)  # type: ignore[return-value]
        if self._kind == FIRST_COMPLETED:
            return by[decided_by]  # type: ignore[index,return-value]
        return _CombinatorResult(self._kind, succeeded, decided_by, by, self._children)  # type: ignore[return-value]

    def __await__(self) -> Generator[Any, None, T]:
        yield from self._attempt.wait(self._attempt.combined, self._handle)
        result = self._resolve()
        if isinstance(result, _CombinatorResult):
            return (yield from result.values())  # type: ignore[no-any-return]
        return result

    def result(self) -> T:
        if self._attempt.on_loop():
            raise RuntimeError(
                "result() would block the event loop; use `await fut` in async handlers"
            )
        self._attempt.wait_blocking(self._attempt.combined, self._handle)
        result = self._resolve()
        if isinstance(result, _CombinatorResult):
            return result.values_blocking()  # type: ignore[no-any-return]
        return result


class _CombinatorResult:
    def __init__(
        self,
        kind: int,
        succeeded: bool,
        decided_by: int | None,
        by: dict[int, DurableFuture[Any]],
        children: list[DurableFuture[Any]],
    ) -> None:
        self.kind, self.succeeded, self.decided_by = kind, succeeded, decided_by
        self.by, self.children = by, children

    def values(self) -> Generator[Any, None, Any]:
        if self.kind == FIRST_SUCCEEDED or not self.succeeded:
            # The value of the winner, or the failure that decided (raised by its future).
            return (yield from self.by[self.decided_by].__await__())  # type: ignore[index]
        out = []
        for f in self.children:
            out.append((yield from f.__await__()))
        return out

    def values_blocking(self) -> Any:
        if self.kind == FIRST_SUCCEEDED or not self.succeeded:
            return self.by[self.decided_by].result()  # type: ignore[index]
        return [f.result() for f in self.children]

