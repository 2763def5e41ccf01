"""``LocalEngine``: runs services durably in this process on SQLite.

The Rust engine (``durable_futures._core.Engine``) keeps the journals, timers and state and
decides what runs; this module runs the attempts on the event loop with the same
``Attempt`` driver the Restate endpoint uses. An attempt stays open (like a bidi stream)
and receives notifications as soon as they are committed; an attempt that has waited for
``inactivity_timeout`` without news has its input closed, suspends, and leaves memory until
its next notification. Every notification and result is on disk before anyone sees it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, overload

from .. import _core, _tracing
from .._attempt import Attempt, LoopAttempt
from .._logging import engine_logger as _log
from .._logging import target_of
from ..context import context_type
from ..errors import (
    JOURNAL_MISMATCH,
    BadRequestError,
    DurableError,
    InvocationStateError,
    JournalMismatchError,
    NotReadyError,
    StorageError,
    TerminalError,
    UnknownInvocationError,
)
from ..policy import DEFAULT_RETENTION, RetryPolicy, retention_ms
from ..serde import JsonSerde, Serde
from ..service import Handler, Service

__all__ = ["LocalEngine", "Sent"]

R = TypeVar("R")

# How long writes that nobody can observe yet may wait to share an fsync with what follows.
_GROUP_COMMIT_DELAY = 0.005

# Virtual time: how often to look whether busy sync handlers are done computing.
_BUSY_THREAD_POLL = 0.01

# How often (engine clock, ms) completed invocations past their retention are purged.
_PURGE_EVERY_MS = 1000

# How long commits made outside the driver (see LocalEngine._may_commit_now) may go on
# while the event loop does not get a turn.
# At the limit of attempts in flight, an attempt idle this long (seconds) is suspended to
# make room for ready ones.
_MAKE_ROOM_IDLE = 0.05

_INLINE_COMMIT_BUDGET = 0.002

_JSON: JsonSerde[Any] = JsonSerde()

#: ``invoke``/``send`` without an argument: the handler gets no input (an empty body).
_NO_ARG: Any = object()

#: What a second call of a workflow's main handler fails with (restate-server's words).
WORKFLOW_ALREADY_INVOKED = "the workflow method was already invoked"


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Sent(str):
    """What :meth:`LocalEngine.send` returns: the invocation id (a ``str``), and whether
    that invocation was there before (``previously_accepted``: a repeated idempotency key,
    or a workflow key whose run was submitted already, whose id this is), as
    restate-server's ``/send`` answers ``"PreviouslyAccepted"``."""

    previously_accepted: bool

    def __new__(cls, invocation_id: str, previously_accepted: bool = False) -> Sent:
        sent = super().__new__(cls, invocation_id)
        sent.previously_accepted = previously_accepted
        return sent


class VirtualClock:
    """A clock for tests: time stands still while anything can run, and jumps straight to
    the next timer when everything waits, so a handler sleeping for a day finishes at once.

    With ``manual=True`` time moves only when the test calls :meth:`advance`: timers due by
    then fire, the others wait (a test can resolve an awakeable before a deadline it races
    against)."""

    def __init__(self, start_ms: int = 1_700_000_000_000, *, manual: bool = False) -> None:
        self.now_ms = start_ms
        self.manual = manual
        # Engines using this clock: told when it is advanced.
        self._listeners: list[Callable[[], None]] = []

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, duration: timedelta) -> None:
        """Moves the clock forward by ``duration``; the timers due by then fire."""
        self.now_ms += int(duration.total_seconds() * 1000)
        for listener in list(self._listeners):
            listener()


@dataclass
class _Live:
    """An attempt the engine started that has not ended yet."""

    token: int
    inv: Attempt
    last_activity: float
    inactivity: float
    """Seconds without news after which its input is closed (it suspends at its next await
    that needs news)."""
    abort: float | None = None
    """Seconds more without progress after which it is abandoned and retried (``None``:
    never)."""
    task: asyncio.Task[None] | None = None


class LocalEngine:
    """Runs ``services`` durably in this process.

    ``path`` is the SQLite file (``None``: in memory, not durable). ``durability`` is
    ``"fsync"`` (a completion is on disk before a handler or client sees it) or ``"os"``
    (handed to the OS; for tests). Failed attempts are retried as ``retry_policy`` says
    (default: restate-server's, 70 attempts then pause); a service's or a handler's own
    ``retry_policy`` wins. Completed invocations keep their journal and idempotency key for
    ``retention`` (one day; a service's or handler's ``journal_retention`` /
    ``idempotency_retention`` wins, the longer of the two), then are purged.

    At most ``max_attempts_in_flight`` attempts run at once; further invocations start in
    the order they were submitted as attempts end, so under a burst the first ones finish
    first and memory stays bounded. When every attempt in flight waits for something from
    outside (a call, a timer, an awakeable) and invocations wait for a slot, the attempts
    idle longest are suspended to make room, so invocations waiting for each other cannot
    hold every slot. The default, 256, keeps each turn of the event loop short and the set
    of live objects small, which a burst of quick steps finishes sooner with (measured: 10%
    over 512); raise it when many attempts await slow I/O in coroutine closures at once.

    ``max_db_bytes`` caps the database file (SQLite's ``max_page_count``): a write that
    would grow it further fails like a full disk (``StorageError`` in ``last_error``; nothing
    of it is saved, the invocations concerned retry from their journals).

    For tests: ``clock=VirtualClock()`` skips timers; ``always_replay=True`` ends every
    attempt at the first await that needs something new, so each step replays the whole
    journal from scratch; with ``fail_on_mismatch=True`` a journal mismatch ends the
    invocation at once (``invoke`` raises :class:`JournalMismatchError`, naming the
    handler's line) instead of being retried.
    """

    def __init__(
        self,
        *services: Service,
        path: str | os.PathLike[str] | None = None,
        durability: str = "fsync",
        retry_policy: RetryPolicy | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        inactivity_timeout: timedelta = timedelta(seconds=60),
        clock: Callable[[], int] | None = None,
        always_replay: bool = False,
        fail_on_mismatch: bool = False,
        max_db_bytes: int | None = None,
        max_attempts_in_flight: int = 256,
    ) -> None:
        if not isinstance(max_attempts_in_flight, int) or max_attempts_in_flight < 1:
            raise ValueError(
                f"max_attempts_in_flight must be a positive int, not {max_attempts_in_flight!r}"
            )
        self._max_in_flight = max_attempts_in_flight
        self.services: dict[str, Service] = {}
        for s in services:
            if s.name in self.services:
                raise ValueError(f"two services are named {s.name!r}")
            self.services[s.name] = s
        self._path = None if path is None else os.fspath(path)
        self._durability = durability
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise TypeError(f"retry_policy must be a RetryPolicy, not {type(retry_policy).__name__}")
        self._retry_policy = retry_policy or RetryPolicy()
        kept = retention_ms("retention", retention)
        if kept is None:
            raise TypeError("retention must be a datetime.timedelta")
        self._retention_ms = kept
        self._fail_on_mismatch = fail_on_mismatch
        # Journal mismatches of invocations that ended on one: id -> the error to raise.
        self._mismatches: dict[str, JournalMismatchError] = {}
        self._next_purge = 0
        self._inactivity = inactivity_timeout.total_seconds()
        self._clock = clock or _wall_clock_ms
        self._always_replay = always_replay
        self._max_db_bytes = max_db_bytes
        self._core: _core.Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._driver: asyncio.Task[None] | None = None
        self._attempts: dict[str, _Live] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._closing = False
        self._pending_since: float | None = None
        self._sleeper: asyncio.Future[None] | None = None
        self._group_timer: asyncio.TimerHandle | None = None
        # Submitted since the last commit: dropped if that commit fails.
        self._uncommitted: set[str] = set()
        # ``flush()`` callers: answered by the next commit.
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._runs_in_flight = [0]
        self._next_idle_check = 0.0
        # A commit's effects are being handed out (see _release).
        self._releasing = False
        self._loop_turn_pending = False
        self._inline_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._room_timer: asyncio.TimerHandle | None = None
        self._driver_wakeup: int | None = None
        # (service, handler) -> its attempts' timeouts (see _attempt_timeouts).
        self._timeouts: dict[tuple[str, str], tuple[float, float | None]] = {}
        self.last_error: BaseException | None = None
        # Exploring completion orders (``durable_futures.testing.explore``): holds finished
        # run closures' outcomes and decides, each time everything waits, what completes.
        self._explorer: Any = None
        # OpenTelemetry (``_tracing``): the tracer, looked up at ``start``, ``None`` without
        # a tracer provider; the spans of invocations not completed yet, by id.
        self._tracer: Any = None
        self._spans: dict[str, Any] = {}

    # ---- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> LocalEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Opens the database and starts running invocations (unfinished ones resume)."""
        if self._core is not None:
            return
        p = self._retry_policy
        core = self._core = _core.Engine(
            self._path,
            self._durability,
            p.initial_interval_ms,
            float(p.factor),
            p.max_interval_ms,
            p.max_attempts,
            self._max_db_bytes,
            retry_on_max_attempts=p.on_max_attempts,
            mismatch_is_terminal=self._fail_on_mismatch,
            retention_ms=self._retention_ms,
        )
        self._timeouts.clear()
        for svc in self.services.values():
            _configure(core, svc.name, None, svc)
            for h in svc.handlers.values():
                _configure(core, svc.name, h.name, h)
        self._core.set_shared_handlers(
            [
                (svc.name, h.name)
                for svc in self.services.values()
                if svc.ty in ("VIRTUAL_OBJECT", "WORKFLOW")
                for h in svc.handlers.values()
                if h.kind == "shared"
            ]
        )
        self._core.set_workflows(
            [
                (svc.name, h.name)
                for svc in self.services.values()
                if svc.ty == "WORKFLOW"
                for h in svc.handlers.values()
                if h.kind == "workflow"
            ]
        )
        self._tracer = _tracing.tracer()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._closing = False  # a closed engine can be started again
        self._driver = asyncio.create_task(self._drive(), name="durable-futures-engine")
        if isinstance(self._clock, VirtualClock):
            self._clock._listeners.append(self._poke)

    async def close(self) -> None:
        """Stops: running attempts are abandoned (they resume from the journal next time)."""
        if self._driver is None:
            return
        self._closing = True
        self._poke()
        if isinstance(self._clock, VirtualClock) and self._poke in self._clock._listeners:
            self._clock._listeners.remove(self._poke)
        await self._driver
        try:  # what was submitted (send() returned its id) is kept: write it
            self._commit(self._clock())
        except DurableError:
            pass  # in last_error
        for timer in (self._group_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._group_timer = self._idle_timer = None
        # Unblock sync handlers waiting on worker threads (cancelling their task does not
        # reach the thread; left blocked, it would hang interpreter exit).
        for live in self._attempts.values():
            live.inv.disconnect()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except BaseException:  # noqa: BLE001 - abandoned attempts end however they end
                pass
        for futures in [*self._waiters.values(), self._flush_waiters]:
            for f in futures:
                if not f.done():
                    f.cancel()
        self._waiters.clear()
        self._flush_waiters = []
        self._attempts.clear()
        for span in self._spans.values():  # they go on when the engine starts again
            span.set_attribute(_tracing.OUTCOME, "engine closed")
            span.end()
        self._spans.clear()
        self._driver = None
        self._core = None

    # ---- client API ------------------------------------------------------------------------------

    def _target(self, target: Any, handler: str | None) -> tuple[str, str, Serde[Any], Serde[Any]]:
        if isinstance(target, Handler):
            return target.service_name, target.name, target.input_serde, target.output_serde
        if handler is None:
            if not isinstance(target, str) or "/" not in target:
                raise TypeError("target is a handler, or 'Service/handler', or (service, handler)")
            service, handler = target.split("/", 1)
        else:
            service = target
        svc = self.services.get(service)
        h = svc.handlers.get(handler) if svc else None
        if h is None:
            raise BadRequestError(f"no handler {service}/{handler} in this engine")
        return service, handler, h.input_serde, h.output_serde

    def _submit(
        self,
        target: Any,
        handler: str | None,
        arg: Any,
        key: str | None,
        idempotency_key: str | None,
        delay: timedelta | None,
        raw_input: bytes | None = None,
    ) -> tuple[str, bool, Serde[Any]]:
        core = self._require()
        service, hname, in_serde, out_serde = self._target(target, handler)
        svc = self.services[service]
        if svc.ty == "VIRTUAL_OBJECT" and not key:
            raise BadRequestError(f"{service} is a virtual object: a key is required")
        if svc.ty == "WORKFLOW" and not key:
            raise BadRequestError(f"{service} is a workflow: a workflow key is required")
        if raw_input is not None:
            payload = raw_input
        elif arg is _NO_ARG:
            payload = b""  # no input: the parameter's default applies, as for an empty body
        else:
            payload = in_serde.serialize(arg)
        now = self._clock()
        at = 0 if delay is None else now + int(delay.total_seconds() * 1000)
        inv_id, existing = core.submit(service, hname, key or "", payload, idempotency_key, at, now)
        if self._tracer is not None and not existing and inv_id not in self._spans:
            self._spans[inv_id] = _tracing.start_invocation(
                self._tracer, f"{service}/{hname}", inv_id, None, target_of(service, hname, key or "")
            )
        self._uncommitted.add(inv_id)
        self._poke()
        return inv_id, existing, out_serde

    async def invoke(
        self,
        target: Any,
        arg: Any = _NO_ARG,
        *,
        handler: str | None = None,
        key: str | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Invokes and waits for the result. A repeated call with the same idempotency key
        returns the first invocation's result (waiting for it if needed). A workflow's main
        handler runs once per key: calling it again raises ``TerminalError`` (409), as on
        restate-server; ``send`` returns the first run's id, and ``result`` waits for it."""
        inv_id, existing, out_serde = self._submit(
            target, handler, arg, key, idempotency_key, None
        )
        if existing and self._is_workflow_run(inv_id):
            raise TerminalError(WORKFLOW_ALREADY_INVOKED, 409)
        found = self._outcome_or_future(inv_id, known=True, fresh=not existing)
        return self._decode(inv_id, found if isinstance(found, tuple) else await found, out_serde)

    async def invoke_raw(
        self, service: str, handler: str, payload: bytes, *, key: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[str, bool, bytes | tuple[int, str]]:
        """Invokes with raw input bytes; ``(invocation_id, ok, output bytes | (code, message))``.
        For the HTTP ingress."""
        inv_id, existing, _ = self._submit(
            service, handler, None, key, idempotency_key, None, payload
        )
        if existing and self._is_workflow_run(inv_id):
            return inv_id, False, (409, WORKFLOW_ALREADY_INVOKED)
        found = self._outcome_or_future(inv_id, known=True, fresh=not existing)
        ok, value = found if isinstance(found, tuple) else await found
        return inv_id, ok, value

    def _is_workflow_run(self, invocation_id: str) -> bool:
        """Whether ``invocation_id`` runs a workflow's main handler."""
        h = self._handler_of(invocation_id)
        return h is not None and h.kind == "workflow"

    def _handler_of(self, invocation_id: str) -> Handler[Any, Any] | None:
        """The registered handler an invocation runs (``None``: unknown, or not registered
        here). One submitted but not committed yet is committed first, to be read."""
        core = self._require()
        row = core.invocation(invocation_id, self._clock())
        if row is None and core.has_pending():
            self._flush_now(core)  # sent a moment ago: its row is written by this commit
            row = core.invocation(invocation_id, self._clock())
        svc = None if row is None else self.services.get(row.service)
        return None if svc is None or row is None else svc.handlers.get(row.handler)

    def send(
        self,
        target: Any,
        arg: Any = _NO_ARG,
        *,
        handler: str | None = None,
        key: str | None = None,
        idempotency_key: str | None = None,
        delay: timedelta | None = None,
    ) -> Sent:
        """Submits without waiting; returns the invocation id, a ``str`` whose
        ``previously_accepted`` is true when no new invocation was made: a repeated
        idempotency key, or a workflow's main handler under a key that ran already (the id
        is then the first run's: :meth:`attach` waits for its result). The submission is
        saved by the next group commit; should that fail (``last_error``), it is dropped
        and whoever waits for it gets a ``StorageError``."""
        inv_id, existing, _ = self._submit(target, handler, arg, key, idempotency_key, delay)
        return Sent(inv_id, existing)

    async def result(self, invocation_id: str) -> Any:
        """Waits for an invocation's result, decoded as its handler's return type says (the
        same value :meth:`invoke` returns: dataclasses, pydantic models, ...); plain JSON if
        the handler is not registered in this engine. A terminal failure raises
        :class:`TerminalError`; an unknown (or purged) id :class:`UnknownInvocationError`."""
        return await self._result(invocation_id, self._output_serde(invocation_id))

    async def attach(self, invocation_id: str) -> Any:
        """Waits for an invocation's result: :meth:`result` under restate's name (its
        ingress's ``GET /restate/invocation/{id}/attach``)."""
        return await self.result(invocation_id)

    async def output(self, invocation_id: str) -> Any:
        """An invocation's result if it has completed, decoded and raised like
        :meth:`result`, without waiting: :class:`NotReadyError` (470) while it runs,
        :class:`UnknownInvocationError` for an unknown id (restate's ``/output``)."""
        serde = self._output_serde(invocation_id)
        outcome = self.output_raw(invocation_id)
        if outcome is None:
            raise NotReadyError(f"invocation {invocation_id} has not completed yet")
        return self._decode(invocation_id, outcome, serde)

    def output_raw(self, invocation_id: str) -> tuple[bool, bytes | tuple[int, str]] | None:
        """A completed invocation's ``(ok, output bytes | (code, message))``, ``None``
        while it runs; :class:`UnknownInvocationError` for an unknown id. For the HTTP
        ingress."""
        core = self._require()
        done = core.outcome(invocation_id)
        if done is not None:
            return done
        if core.invocation(invocation_id) is None and core.has_pending():
            self._flush_now(core)  # submitted a moment ago: its row comes with this commit
            done = core.outcome(invocation_id)
            if done is not None:
                return done
        if core.invocation(invocation_id) is None:
            raise UnknownInvocationError(f"no invocation {invocation_id}")
        return None

    def workflow_run(self, workflow: Any, key: str) -> str | None:
        """The id of the invocation running ``workflow``'s main handler under ``key`` (from
        its submission until it is purged), ``None`` if that key has not run. ``workflow``
        is the main handler (``@wf.main()``), the ``df.Workflow`` or its name."""
        name, _ = self._workflow(workflow)
        return self._require().workflow_run(name, key)

    @overload
    async def attach_workflow(self, workflow: Callable[..., Awaitable[R]], key: str) -> R: ...

    @overload
    async def attach_workflow(self, workflow: Callable[..., R], key: str) -> R: ...

    @overload
    async def attach_workflow(self, workflow: str | Service, key: str) -> Any: ...

    async def attach_workflow(self, workflow: Any, key: str) -> Any:
        """Waits for the result of ``workflow``'s run under ``key`` (restate's
        ``GET /restate/workflow/{name}/{key}/attach``), decoded as the main handler's return
        type says. ``workflow`` is the main handler (``@wf.main()``: the result is typed),
        the ``df.Workflow`` or its name. :class:`UnknownInvocationError` if that key has not
        run."""
        inv_id, serde = self._run_of(workflow, key)
        return await self._result(inv_id, serde, known=True)

    @overload
    async def output_workflow(self, workflow: Callable[..., Awaitable[R]], key: str) -> R: ...

    @overload
    async def output_workflow(self, workflow: Callable[..., R], key: str) -> R: ...

    @overload
    async def output_workflow(self, workflow: str | Service, key: str) -> Any: ...

    async def output_workflow(self, workflow: Any, key: str) -> Any:
        """The result of ``workflow``'s run under ``key`` if it has completed, as
        :meth:`output` answers it: :class:`NotReadyError` while it runs,
        :class:`UnknownInvocationError` if that key has not run."""
        inv_id, serde = self._run_of(workflow, key)
        outcome = self.output_raw(inv_id)
        if outcome is None:
            raise NotReadyError(f"the run of workflow {key!r} has not completed yet")
        return self._decode(inv_id, outcome, serde)

    def _workflow(self, workflow: Any) -> tuple[str, Handler[Any, Any]]:
        """The name and main handler of a workflow registered here, given as its main
        handler, its ``df.Workflow`` or its name."""
        if isinstance(workflow, Handler):
            if workflow.kind != "workflow":
                raise BadRequestError(
                    f"{workflow.service_name}/{workflow.name} is not a workflow's main "
                    "handler (@wf.main())"
                )
            name = workflow.service_name
        elif isinstance(workflow, Service):
            name = workflow.name
        elif isinstance(workflow, str):
            name = workflow
        else:
            raise TypeError(
                "a workflow is its main handler (@wf.main()), its df.Workflow or its name, "
                f"not {workflow!r}"
            )
        svc = self.services.get(name)
        if svc is None:
            raise BadRequestError(f"no workflow {name} in this engine")
        main = next((h for h in svc.handlers.values() if h.kind == "workflow"), None)
        if svc.ty != "WORKFLOW" or main is None:
            raise BadRequestError(f"{name} is not a workflow with a main handler")
        return name, main

    def _run_of(self, workflow: Any, key: str) -> tuple[str, Serde[Any]]:
        name, main = self._workflow(workflow)
        inv_id = self._require().workflow_run(name, key)
        if inv_id is None:
            raise UnknownInvocationError(f"workflow {name} has not run with key {key!r}")
        return inv_id, main.output_serde

    def _output_serde(self, invocation_id: str) -> Serde[Any]:
        h = self._handler_of(invocation_id)
        return _JSON if h is None else h.output_serde

    async def _result(self, invocation_id: str, serde: Serde[Any], known: bool = False) -> Any:
        return self._decode(invocation_id, await self._outcome(invocation_id, known), serde)

    def _decode(self, invocation_id: str, outcome: tuple[bool, Any], serde: Serde[Any]) -> Any:
        """An outcome as its caller sees it: the decoded value, or the failure raised."""
        ok, value = outcome
        if ok:
            assert isinstance(value, bytes)
            return serde.deserialize(value) if value else None
        assert isinstance(value, tuple)
        code, message = value
        raise self._failure(invocation_id, code, message)

    def _failure(self, invocation_id: str, code: int, message: str) -> DurableError:
        """The error a failed invocation's caller gets: a journal mismatch as
        :class:`JournalMismatchError` (with the command and the handler's line when this
        engine saw it happen), anything else as the :class:`TerminalError` it ended with."""
        if code == JOURNAL_MISMATCH:
            return self._mismatches.get(invocation_id) or JournalMismatchError(message)
        return TerminalError(message, code)

    async def _outcome(self, invocation_id: str, known: bool = False) -> tuple[bool, Any]:
        found = self._outcome_or_future(invocation_id, known)
        return found if isinstance(found, tuple) else await found

    def _outcome_or_future(
        self, invocation_id: str, known: bool = False, fresh: bool = False
    ) -> tuple[bool, Any] | asyncio.Future[tuple[bool, Any]]:
        """The outcome if the invocation is completed, else a future for it (callers await
        it themselves: one coroutine less per waiting caller, which a burst of thousands
        feels). ``fresh``: submitted by the caller just now, so not completed (no lookup)."""
        core = self._require()
        if not fresh:
            done = core.outcome(invocation_id)
            if done is not None:
                return done
        if not known and core.invocation(invocation_id) is None:
            # A just-submitted invocation (send() then result()) reaches the store with the
            # next commit: commit now rather than calling it unknown.
            if core.has_pending():
                self._flush_now(core)
                done = core.outcome(invocation_id)
                if done is not None:
                    return done
            if core.invocation(invocation_id) is None:
                raise UnknownInvocationError(f"no invocation {invocation_id}")
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        waiters = self._waiters.get(invocation_id)
        if waiters is None:
            self._waiters[invocation_id] = [fut]
        else:
            waiters.append(fut)
        return fut

    def resolve_awakeable(self, awakeable_id: str, value: Any) -> None:
        self._require().resolve_awakeable(awakeable_id, _JSON.serialize(value))
        self._poke()

    def reject_awakeable(self, awakeable_id: str, message: str, code: int = 500) -> None:
        self._require().reject_awakeable(awakeable_id, code, message)
        self._poke()

    def cancel(self, invocation_id: str) -> None:
        """Cancels an invocation in any state but completed: its handler sees
        ``TerminalError`` 409 at its next await, and one that fails, backs off or is paused
        ends with 409 at its next attempt (which starts now). Its callers get the 409; calls
        it awaits are cancelled too. Raises :class:`UnknownInvocationError` or
        :class:`InvocationStateError` (already completed)."""
        self._operate("cancel", invocation_id, self._clock())

    def kill(self, invocation_id: str) -> None:
        """Ends an invocation at once with ``TerminalError`` 409 ``killed``, without running
        its handler again: its callers get that error, a virtual object's key is free for
        the next invocation, and calls it awaits are killed too. A running attempt is
        stopped (what it does from then on is ignored)."""
        self._operate("kill", invocation_id, self._clock())

    def pause(self, invocation_id: str) -> None:
        """Stops an invocation's attempts until :meth:`resume`: a running attempt receives
        nothing more and ends at its next await that needs news (what it journaled until
        then is kept); notifications arriving meanwhile are journaled for the resumed
        attempt. A paused exclusive handler keeps its virtual object's key."""
        self._operate("pause", invocation_id, self._clock())
        live = self._attempts.get(invocation_id)
        if live is not None and not live.inv.input_closed:
            # As restate-server does, the running attempt gets nothing more: it suspends at
            # its next await that needs news, and the invocation then waits paused.
            live.inv.feed_closed()

    def resume(self, invocation_id: str) -> None:
        """Runs a paused, suspended or backing-off invocation again now, with its full
        retry policy."""
        self._operate("resume", invocation_id, self._clock())

    def purge(self, invocation_id: str) -> None:
        """Forgets a completed invocation now (journal, result, idempotency key) instead of
        at the end of its retention."""
        self._operate("purge", invocation_id, None)

    def _operate(self, operation: str, invocation_id: str, now: int | None) -> None:
        core = self._require()
        if core.invocation(invocation_id) is None and core.has_pending():
            self._flush_now(core)  # a submission not committed yet is still the user's
        f = getattr(core, operation)
        try:
            if now is None:
                f(invocation_id)
            else:
                f(invocation_id, now)
        except KeyError:
            raise UnknownInvocationError(f"no invocation {invocation_id}") from None
        except ValueError as e:
            raise InvocationStateError(str(e)) from None
        _log.info("%s %s", operation, invocation_id, extra={"invocation_id": invocation_id})
        self._poke()

    def _flush_now(self, core: _core.Engine) -> None:
        now = self._clock()
        self._release(core, self._commit(now), now)
        self._poke()

    def query(self, sql: str) -> tuple[list[str], list[list[Any]]]:
        """Runs one read-only SQL statement over views shaped like restate-server's
        introspection tables (``sys_invocation``, ``sys_journal``, ``state``); returns the
        column names and the rows. A statement that would write is refused (``ValueError``)."""
        return self._require().query(sql, self._clock())

    def flush(self) -> asyncio.Future[None]:
        """``await engine.flush()`` waits until everything submitted before the call
        (``send``, ``resolve_awakeable``, ``reject_awakeable``, ``cancel``) is on disk, which
        the next group commit does anyway; it raises ``StorageError`` if that commit failed
        (what it held is then lost, and may be submitted again). The HTTP ingress answers
        ``/send`` and awakeable requests only after it."""
        core = self._require()
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        if core.has_pending():
            self._flush_waiters.append(fut)
            self._poke()
        else:
            fut.set_result(None)
        return fut

    def backlog(self) -> int:
        """Invocations submitted and waiting for an attempt to start (beyond
        ``max_attempts_in_flight``, or not picked up yet): what an ingress compares with its
        bound before taking more work."""
        core = self._core
        return 0 if core is None else core.ready_len()

    def journal(self, invocation_id: str) -> list[bytes]:
        """The stored journal of an invocation: protocol frames in order."""
        return self._require().journal(invocation_id)

    def invocations(self, limit: int = 50) -> list[_core.InvocationRow]:
        """The newest invocations, newest first, as :class:`durable_futures._core.InvocationRow`
        named tuples: status in restate's words (``pending``, ``scheduled``, ``ready``,
        ``running``, ``backing-off``, ``suspended``, ``paused``, ``completed``), the outcome
        and the last failure."""
        return self._require().list_invocations(limit, self._clock())

    def invocation(self, invocation_id: str) -> _core.InvocationRow | None:
        """One stored invocation (``None`` if unknown; submissions count once committed)."""
        return self._require().invocation(invocation_id, self._clock())

    def _require(self) -> _core.Engine:
        if self._core is None:
            raise RuntimeError("the engine is not started: use 'async with LocalEngine(...)'")
        return self._core

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()
        sleeper = self._sleeper
        if sleeper is not None and not sleeper.done():
            sleeper.set_result(None)

    # ---- the driver ----------------------------------------------------------------------------

    async def _drive(self) -> None:
        core = self._require()
        assert self._wake is not None
        while not self._closing:
            self._wake.clear()
            now = self._clock()
            core.fire_timers(now)
            if now >= self._next_purge:
                self._next_purge = now + _PURGE_EVERY_MS
                self._purge_expired(core, now)
            effects: list[_core.Deliver | _core.Completed] = []
            if self._should_commit(core):
                try:
                    effects = self._commit(now)
                    self._pending_since = None
                except DurableError:  # storage failure: nothing released; attempts rerun
                    await asyncio.sleep(0.05)
            self._release(core, effects, now)
            self._close_idle()
            wakeup = self._driver_wakeup = core.next_wakeup()
            timeout = None if wakeup is None else max(0.0, (wakeup - self._clock()) / 1000)
            if core.has_pending():
                # Held-back commands are written within GROUP_COMMIT_DELAY at the latest.
                timeout = _GROUP_COMMIT_DELAY if timeout is None else min(timeout, _GROUP_COMMIT_DELAY)
            self._arm_idle_timer()
            if self._wake.is_set():
                continue
            clock = self._clock
            if isinstance(clock, VirtualClock) and (
                (wakeup is not None and not clock.manual)
                or (self._explorer is not None and self._explorer.holding())
            ):
                if await self._settled():
                    due = None if clock.manual else wakeup
                    if self._explorer is not None:
                        self._explorer.decide(self, due)
                    elif due is not None:
                        clock.now_ms = max(clock.now_ms, due)
                    continue
                if self._threads_busy():
                    # A sync handler computing on its thread may block on a durable future
                    # without writing anything that would wake us: look again shortly.
                    timeout = _BUSY_THREAD_POLL if timeout is None else min(timeout, _BUSY_THREAD_POLL)
            await self._sleep(timeout)

    def _purge_expired(self, core: _core.Engine, now: int) -> None:
        try:
            purged = core.purge_expired(now)
        except DurableError as e:  # the next round tries again
            self.last_error = e
            _log.error("purging expired invocations failed: %s", e)
            return
        if purged:
            _log.debug("purged %d invocations past their retention", purged)

    def _release(
        self, core: _core.Engine, effects: list[_core.Deliver | _core.Completed], now: int
    ) -> None:
        """Hands out what a commit released, then starts the attempts it made ready.

        Meanwhile no commit happens (``_releasing``): one made by an attempt reacting to
        its delivery would hand out newer notifications before the older ones still in
        ``effects``, out of journal order."""
        outer, self._releasing = self._releasing, True
        try:
            for effect in effects:
                self._apply(effect)
            while len(self._attempts) < self._max_in_flight:
                attempt = core.next_attempt(now)
                if attempt is None:
                    break
                if self._explorer is not None and self._explorer.hold_attempt(self, attempt):
                    continue  # started when the explorer chooses it
                self._start_attempt(attempt)
            else:
                if core.has_ready() and not core.has_pending() and not self._runs_in_flight[0]:
                    self._make_room()
        finally:
            self._releasing = outer

    def _commit(self, now: int) -> list[_core.Deliver | _core.Completed]:
        """One group commit. On a storage error nothing of it was written: the error goes to
        ``last_error`` and is raised, and callers waiting for submissions it dropped get it."""
        core = self._require()
        flushing, self._flush_waiters = self._flush_waiters, []
        try:
            effects = core.commit(now)
        except DurableError as e:
            self.last_error = e
            _log.error("commit failed, nothing of it is saved: %s", e)
            self._fail_lost_submissions(e)
            for fut in flushing:
                if not fut.done():
                    fut.set_exception(StorageError(f"not saved: {e.message}"))
            raise
        self._uncommitted.clear()
        for fut in flushing:
            if not fut.done():
                fut.set_result(None)
        return effects

    def _fail_lost_submissions(self, error: DurableError) -> None:
        """Client submissions of a failed commit are gone (the engine forgets them rather
        than write them later): whoever waits for one gets a ``StorageError``."""
        core = self._require()
        uncommitted, self._uncommitted = self._uncommitted, set()
        for inv_id in uncommitted:
            try:
                stored = core.invocation(inv_id) is not None
            except DurableError:
                stored = False
            if stored:
                continue
            span = self._spans.pop(inv_id, None)
            if span is not None:
                _tracing.end_invocation(span, False, (None, "not saved"))
            for fut in self._waiters.pop(inv_id, []):
                if not fut.done():
                    fut.set_exception(
                        StorageError(f"invocation {inv_id} was not saved: {error.message}")
                    )

    async def _sleep(self, timeout: float | None) -> None:
        """Waits for a poke or the timeout; cheaper than ``asyncio.wait_for`` (no task)."""
        assert self._loop is not None and self._wake is not None
        fut = self._loop.create_future()
        self._sleeper = fut
        timer = None if timeout is None else self._loop.call_later(timeout, _wake_future, fut)
        try:
            if not self._wake.is_set():
                await fut
        finally:
            self._sleeper = None
            if timer is not None:
                timer.cancel()

    def _should_commit(self, core: _core.Engine) -> bool:
        """Group commit: write when something becomes observable (a notification, a result,
        an attempt to start), when nothing is in flight that would add to the batch, or
        when held-back writes have waited GROUP_COMMIT_DELAY. Commands alone are invisible
        until a notification is released, so holding them lets a run's command and its
        completion share one fsync."""
        if not core.has_pending():
            return False
        if core.commit_is_urgent() or self._flush_waiters or not self._runs_in_flight[0]:
            return True
        now = time.monotonic()
        if self._pending_since is None:
            self._pending_since = now
        return now - self._pending_since >= _GROUP_COMMIT_DELAY

    async def _settled(self) -> bool:
        """Virtual time: whether every attempt is waiting (nothing moved for a few loop turns)."""
        assert self._wake is not None
        for _ in range(20):
            await asyncio.sleep(0)
            if self._wake.is_set():
                return False
        if self._runs_in_flight[0] or self._threads_busy():
            return False
        return not self._wake.is_set()

    def _threads_busy(self) -> bool:
        """Whether a sync handler is working on its thread (not waiting for a future)."""
        return any(live.inv.busy_on_a_thread() for live in self._attempts.values())

    def _apply(self, effect: _core.Deliver | _core.Completed) -> None:
        if isinstance(effect, _core.Deliver):
            live = self._attempts.get(effect.id)
            # An attempt whose input is closed (idle, or always_replay) must not read more:
            # it suspends, and the engine starts a new attempt that replays these frames.
            if (
                live is None
                or live.token != effect.token
                or live.inv.is_closed()
                or live.inv.input_closed
            ):
                self._require().not_delivered(effect.id, effect.token)
                return
            live.last_activity = time.monotonic()
            live.inv.feed(effect.frames)
        elif isinstance(effect, _core.Completed):
            live = self._attempts.get(effect.id)
            if live is not None and not live.inv.is_closed():
                live.inv.disconnect()  # killed while it ran: stop it
            if self._explorer is not None:
                self._explorer.forget_attempt(effect.id)  # killed before it started
            for fut in self._waiters.pop(effect.id, []):
                if not fut.done():
                    fut.set_result(effect.outcome)
            if self._spans:
                span = self._spans.pop(effect.id, None)
                if span is not None:
                    _tracing.end_invocation(span, *effect.outcome)
        else:
            raise TypeError(f"unknown effect of a commit: {effect!r}")

    def _arm_idle_timer(self) -> None:
        """While attempts are open, wakes the driver for the next idle check (one timer at a
        time, rather than a deadline on every sleep; moved earlier when an attempt with a
        shorter timeout starts)."""
        if not self._attempts or self._next_idle_check == float("inf"):
            return
        assert self._loop is not None
        when = self._loop.time() + max(0.0, self._next_idle_check - time.monotonic())
        if self._idle_timer is not None:
            if self._idle_timer.when() <= when + 0.001:
                return
            self._idle_timer.cancel()
        self._idle_timer = self._loop.call_at(when, self._idle_check_due)

    def _idle_check_due(self) -> None:
        self._idle_timer = None
        self._poke()

    def _make_room(self) -> None:
        """At the limit of attempts, with more ready to start and nothing else to do (no
        write pending, no run executing: every attempt in flight waits for something from
        outside, such as a call to an invocation that has no slot): suspend those idle for
        ``_MAKE_ROOM_IDLE``, oldest activity first. A busy engine never suspends an
        attempt that only waits for its turn."""
        now = time.monotonic()
        idle = [
            live
            for live in self._attempts.values()
            if live.inv.fed
            and not live.inv.input_closed
            and now - live.last_activity > _MAKE_ROOM_IDLE
        ]
        idle.sort(key=lambda live: live.last_activity)
        for live in idle[: max(1, len(idle) // 2)]:
            live.inv.feed_closed()
        if not idle and self._loop is not None and self._room_timer is None:
            self._room_timer = self._loop.call_later(_MAKE_ROOM_IDLE, self._room_check_due)

    def _room_check_due(self) -> None:
        self._room_timer = None
        self._poke()

    def _close_idle(self) -> None:
        """Closes the input of attempts idle for their inactivity timeout, abandons those
        without progress for their inactivity and abort timeouts, and notes when to look
        next (the earliest deadline)."""
        now = time.monotonic()
        if now < self._next_idle_check:
            return
        next_check = float("inf")
        for inv_id, live in list(self._attempts.items()):
            # An attempt whose request has not arrived yet is waiting for the loop, not for
            # news: closing its input would fail it (no StartMessage). Look again later.
            if not live.inv.fed:
                next_check = min(next_check, now + live.inactivity)
                continue
            if not live.inv.input_closed:
                if now - live.last_activity < live.inactivity:
                    next_check = min(next_check, live.last_activity + live.inactivity)
                    continue
                # What the attempt writes in reply to the close (its suspension) is not
                # progress: the abort timeout still runs from its last real activity.
                since = live.last_activity
                live.inv.feed_closed()
                live.last_activity = since
            if live.abort is None or self._attempts.get(inv_id) is not live:
                continue
            deadline = live.last_activity + live.inactivity + live.abort
            if now >= deadline:
                self._abandon(inv_id, live)
            else:
                next_check = min(next_check, deadline)
        self._next_idle_check = next_check

    def _abandon(self, inv_id: str, live: _Live) -> None:
        """Gives up on an attempt that made no progress (no journal entry written or
        received) for its inactivity and abort timeouts: it fails like any failed attempt,
        with that reason as the invocation's last failure, and is retried as its retry
        policy says. The handler is cancelled where it waits; a sync handler's thread cannot
        be stopped: it runs on until its next durable call, and what it sends is ignored."""
        abort = live.abort or 0.0
        reason = (
            f"no progress for {_seconds_text(live.inactivity)} (inactivity timeout) + "
            f"{_seconds_text(abort)} (abort timeout): the attempt was abandoned"
        )
        _log.warning(
            "%s %s: %s; it is retried",
            live.inv.target,
            inv_id,
            reason,
            extra={"invocation_id": inv_id},
        )
        del self._attempts[inv_id]
        self._require().attempt_failed(inv_id, live.token, reason, self._clock())
        live.inv.disconnect()
        if live.task is not None:
            live.task.cancel()
        self._poke()

    def _attempt_timeouts(self, service: str, handler: str) -> tuple[float, float | None]:
        """The inactivity and abort timeouts of an attempt (seconds): the handler's, else
        its service's, else the engine's inactivity timeout and no abort. Worked out once
        per handler while the engine runs."""
        key = (service, handler)
        found = self._timeouts.get(key)
        if found is None:
            found = self._timeouts[key] = self._timeouts_of(service, handler)
        return found

    def _timeouts_of(self, service: str, handler: str) -> tuple[float, float | None]:
        svc = self.services.get(service)
        h = svc.handlers.get(handler) if svc is not None else None

        def pick(name: str) -> float | None:
            for owner in (h, svc):
                value = getattr(owner, name, None)
                if value is not None:
                    return float(value.total_seconds())
            return None

        inactivity = pick("inactivity_timeout")
        return (self._inactivity if inactivity is None else inactivity), pick("abort_timeout")

    def _output(self, inv_id: str, token: int, data: bytes) -> None:
        if threading.get_ident() != self._loop_thread:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._output, inv_id, token, data)
            return
        core = self._core
        if core is None:
            return
        core.on_output(inv_id, token, data, self._clock())
        live = self._attempts.get(inv_id)
        if live is not None and live.token == token:
            live.last_activity = time.monotonic()
        if core.commit_is_urgent():
            if self._may_commit_now():
                self._commit_now(core)
            else:
                self._poke()
        elif not self._runs_in_flight[0]:
            # A command alone is not observable: while a run is in flight its completion
            # will come and wake the driver; waking it now would only cost a loop turn.
            self._poke()
        elif self._group_timer is None and self._loop is not None:
            # But the driver may be asleep without a deadline, and the run counted in flight
            # may be one that just finished (its count drops in a done-callback, after the
            # handler already went on): write held-back commands within the delay anyway.
            self._group_timer = self._loop.call_later(_GROUP_COMMIT_DELAY, self._group_deadline)

    def _may_commit_now(self) -> bool:
        """Whether an urgent write may be committed right here rather than at the driver's
        next turn. Group commit gains nothing from waiting when no other attempt or run is
        active, or when nothing else is queued on the loop before that turn (nothing could
        join the batch); committing here saves the turn, and when the awaiting handler is
        the caller, it goes on without yielding at all. So that such a handler cannot keep
        the loop to itself, this stops once the loop has not turned for
        ``_INLINE_COMMIT_BUDGET``; the next commit then waits for the driver's turn."""
        if self._releasing or self._closing or self._driver is None:
            return False
        now = time.monotonic()
        if self._loop_turn_pending:
            if now - self._inline_since > _INLINE_COMMIT_BUDGET:
                return False
        else:
            self._loop_turn_pending = True
            self._inline_since = now
            assert self._loop is not None
            self._loop.call_soon(self._loop_turned)
        if len(self._attempts) <= 1 and not self._runs_in_flight[0]:
            return True
        ready = getattr(self._loop, "_ready", None)  # asyncio's run queue (absent on uvloop)
        return ready is not None and len(ready) <= 1  # only _loop_turned

    def _loop_turned(self) -> None:
        self._loop_turn_pending = False

    def _commit_now(self, core: _core.Engine) -> None:
        assert self._wake is not None
        self._wake.set()  # activity, for a virtual clock's settling check; no driver wake-up
        now = self._clock()
        try:
            effects = self._commit(now)
        except DurableError:
            self._poke()  # the driver backs off and carries on
            return
        self._pending_since = None
        self._release(core, effects, now)
        if core.next_wakeup() != self._driver_wakeup:
            self._poke()  # a new timer: the driver must sleep less

    def _group_deadline(self) -> None:
        self._group_timer = None
        self._poke()

    def _start_attempt(self, attempt: _core.Attempt) -> None:
        assert self._loop is not None
        inv_id, token = attempt.id, attempt.token
        old = self._attempts.get(inv_id)
        if old is not None:
            # The engine gave up on that attempt (a failed commit reloaded the invocation
            # from its journal): stop it rather than leave it waiting forever.
            old.inv.disconnect()
        vm = _core.Vm(attempt.content_type)
        svc = self.services.get(attempt.service)
        h = None if svc is None else svc.handlers.get(attempt.handler)
        # An async handler's VM is used from the loop only: no lock (see LoopAttempt).
        kind = LoopAttempt if h is not None and h.is_async else Attempt
        inv = kind(
            vm, self._loop, functools.partial(self._output, inv_id, token), self._runs_in_flight
        )
        inv.now_ms = self._clock  # timers and delayed sends use the engine's clock
        if self._explorer is not None:
            inv.runs.hold = functools.partial(self._explorer.hold, self, inv)
        if self._tracer is not None:
            inv.trace = self._attempt_trace(inv_id, attempt.service, attempt.handler)
        inactivity, abort = self._attempt_timeouts(attempt.service, attempt.handler)
        started = time.monotonic()
        live = self._attempts[inv_id] = _Live(token, inv, started, inactivity, abort)
        self._next_idle_check = min(self._next_idle_check, started + inactivity)
        task = live.task = self._loop.create_task(
            self._run_attempt(
                inv_id, token, attempt.service, attempt.handler, attempt.request, inv
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_attempt(
        self,
        inv_id: str,
        token: int,
        service: str,
        handler: str,
        request: bytes,
        inv: Attempt,
    ) -> None:
        core = self._require()
        try:
            inv.feed(request)
            if self._always_replay:
                inv.feed_closed()
            svc = self.services.get(service)
            h = svc.handlers.get(handler) if svc else None
            if h is None:
                missing = f"no handler {service}/{handler} in this engine"
                inv.sys_input()
                try:
                    inv.end_with_failure(404, missing)
                except DurableError:
                    # Not a fresh invocation: its journal has more than the input. Keep it
                    # (retried with backoff) until the handler is registered again.
                    raise LookupError(
                        f"{missing}; the invocation has journal entries and is retried "
                        "until the handler is registered again"
                    ) from None
                inv.flush()
            else:
                ctx_type = context_type(svc.ty if svc is not None else "SERVICE", h.kind)
                await inv.run_handler(
                    h.call, h.is_async, h.decode_input, h.output_serde.serialize, ctx_type
                )
                if self._fail_on_mismatch:
                    self._note_mismatch(inv_id, inv, h)
                inv.flush()
            if not inv.is_closed():
                core.attempt_failed(inv_id, token, "the attempt ended without a result", self._clock())
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - any escape fails the attempt; it is retried
            if self._core is not None:
                core.attempt_failed(inv_id, token, f"{type(e).__name__}: {e}", self._clock())
        finally:
            live = self._attempts.get(inv_id)
            if live is not None and live.token == token:
                del self._attempts[inv_id]
            self._poke()


    def _attempt_trace(self, inv_id: str, service: str, handler: str) -> _tracing.AttemptTrace:
        """The spans of an attempt, children of its invocation's span (started now for an
        invocation that a handler submitted, or that began before this engine started)."""
        span = self._spans.get(inv_id)
        if span is None:
            span = self._spans[inv_id] = _tracing.start_invocation(
                self._tracer, f"{service}/{handler}", inv_id, _tracing.root_context()
            )
        return _tracing.AttemptTrace(self._tracer, _tracing.context_of(span))

    def _note_mismatch(self, inv_id: str, inv: Attempt, h: Handler[Any, Any]) -> None:
        """Keeps the journal mismatch that ends this attempt, with the handler's line, for
        whoever waits for the invocation's result."""
        error = inv.vm.last_error()
        if error is None or error.code != JOURNAL_MISMATCH:
            return
        from .replay import handler_line, user_line

        files = {os.path.abspath(h.fn.__code__.co_filename)}
        where = (user_line(inv.error, files) if inv.error is not None else None) or handler_line(h)
        self._mismatches[inv_id] = JournalMismatchError.from_vm(error, str(where))


def _configure(core: _core.Engine, service: str, handler: str | None, owner: Any) -> None:
    """Hands a service's or a handler's own retry policy and retention to the core.

    A workflow's main handler with a ``workflow_retention`` (its own or its workflow's)
    keeps its runs that long: purging a run deletes the workflow's state and promises with
    it, so the retention of the run is the workflow's. (restate-server also caps the journal
    retention of a workflow run by it.)"""
    policy = getattr(owner, "retry_policy", None)
    if policy is not None:
        core.set_retry_policy(
            service,
            handler,
            policy.initial_interval_ms,
            float(policy.factor),
            policy.max_interval_ms,
            policy.max_attempts,
            policy.on_max_attempts,
        )
    workflow = retention_ms("workflow_retention", getattr(owner, "workflow_retention", None))
    if handler is not None and workflow is not None:
        core.set_retention(service, handler, workflow)
        return
    kept = [
        retention_ms(name, getattr(owner, name, None))
        for name in ("journal_retention", "idempotency_retention")
    ]
    longest = max((k for k in kept if k is not None), default=None)
    if longest is not None:
        core.set_retention(service, handler, longest)


def _seconds_text(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g} ms"
    return f"{seconds:g} s"


def _wake_future(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

