"""Offline replay: a stored journal against the current code, with nothing executed.

The handler runs through a fresh VM that receives the request the embedded engine would start
an attempt with (``Engine.attempt_request``: ``StartMessage`` + the stored journal) and then has
its input closed. Every command the
code makes is checked against the journal by the core (error 570 names the command index, the
recorded and the attempted command); this module adds the line of the user's code that made
the mismatching call, taken from the traceback. Runs never execute: a run whose completion is
not in the journal ends the replay ("the journal ends here"), and so does an await that the
journal cannot satisfy.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import traceback
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import _core
from .._attempt import Attempt, Suspended
from .._runs import RunSpec
from ..context import context_type
from ..errors import JOURNAL_MISMATCH
from ..service import Handler, Service
from .journal import JournalEntry, describe, describe_journal, target

__all__ = ["ReplayReport", "SourceLine", "replay"]


@dataclass(frozen=True)
class SourceLine:
    """A line of the user's code."""

    filename: str
    lineno: int
    function: str
    text: str

    def __str__(self) -> str:
        where = f"{_relative(self.filename)}:{self.lineno} in {self.function}"
        return f"{where}: {self.text}" if self.text else where


@dataclass
class ReplayReport:
    """What an offline replay found. ``outcome`` is one of:

    - ``"ok"``: the code made exactly the recorded commands and, if the journal holds the
      output, wrote the same output;
    - ``"journal-ends"``: everything recorded matched, then the code needed something the
      journal does not hold (a run to execute, a completion to wait for): nothing more can
      be checked offline — still a successful replay;
    - ``"mismatch"``: the first difference (570), with the recorded entry and the line;
    - ``"error"``: the replay itself failed (the handler raised, a protocol error, ...).
    """

    invocation_id: str
    target: str
    entries: int
    outcome: str
    message: str = ""
    code: int | None = None
    entry: JournalEntry | None = None
    source: SourceLine | None = None
    beyond: list[JournalEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome in ("ok", "journal-ends")

    def render(self) -> str:
        head = f"{self.invocation_id} {self.target}: {self.entries} journal entries"
        lines = []
        if self.outcome == "ok":
            lines.append(f"replay OK — {head}; {self.message}")
        elif self.outcome == "journal-ends":
            lines.append(f"replay OK — {head} matched; the journal ends here: {self.message}")
        elif self.outcome == "mismatch":
            lines.append(f"replay MISMATCH — {head}")
            lines.append(f"  [{self.code}] {self.message}")
        else:
            lines.append(f"replay FAILED — {head}")
            lines.append(f"  [{self.code}] {self.message}" if self.code else f"  {self.message}")
        if self.entry is not None:
            e = self.entry
            name = f" {e.name!r}" if e.name else ""
            detail = f" {e.detail}" if e.detail else ""
            lines.append(
                f"  recorded entry #{e.index} (command {e.command_index}): {e.type_name}{name}{detail}"
            )
        if self.source is not None:
            lines.append(f"  at {self.source}")
        if self.beyond:
            lines.append("  beyond the journal the code would write:")
            for e in self.beyond:
                name = f" {e.name!r}" if e.name else ""
                detail = f" {e.detail}" if e.detail else ""
                lines.append(f"    {e.type_name}{name}{detail}")
        return "\n".join(lines)


class StartRequest(Protocol):
    """The request an attempt starts with: ``_core.AttemptRequest`` (embedded engine) or
    ``restate_journal.RemoteRequest`` (a journal read from restate-server)."""

    @property
    def body(self) -> bytes: ...
    @property
    def entries(self) -> int: ...
    @property
    def content_type(self) -> str: ...


class _JournalEnds(BaseException):
    """Stops the handler where the journal runs out (a ``BaseException``, like
    ``Suspended``, so that handler code catching ``Exception`` does not swallow it)."""


class _ReplayAttempt(Attempt):
    """The attempt driver with runs disabled: a run to execute ends the replay."""

    def start_run(self, name: str, handle: int, spec: RunSpec) -> None:
        raise _JournalEnds(
            f"run {name!r} has no completion in the journal (not executed during a replay)"
        )


async def replay(
    services: Sequence[Service],
    invocation: _core.InvocationRow,
    request: StartRequest,
    *,
    user_files: Collection[str] = (),
    timeout: float = 60.0,
) -> ReplayReport:
    """Replays the stored journal of ``invocation`` against ``services``, starting the VM
    with ``request`` (``Engine.attempt_request``, or a request rebuilt from restate-server's
    journal by ``restate_journal.RestateJournal.attempt_request``).

    ``user_files`` are the source files whose lines are reported (default: the files
    defining the services' handlers).
    """
    # The journal: what follows the StartMessage.
    entries = describe_journal(_core.decode_frames(request.body)[1:])
    report = ReplayReport(invocation.id, target(invocation), request.entries, "error")
    svc = next((s for s in services if s.name == invocation.service), None)
    h = svc.handlers.get(invocation.handler) if svc is not None else None
    if svc is None or h is None:
        report.message = (
            f"no handler {invocation.service}/{invocation.handler} in the given module"
        )
        return report
    files = {os.path.abspath(f) for f in user_files} or {
        os.path.abspath(inspect.getsourcefile(x.fn) or x.fn.__code__.co_filename)
        for s in services
        for x in s.handlers.values()
    }

    loop = asyncio.get_running_loop()
    out = bytearray()
    vm = _core.Vm(request.content_type)
    inv = _ReplayAttempt(vm, loop, out.extend)
    captured: list[BaseException] = []
    call = _capturing(h, captured)
    ctx_type = context_type(svc.ty, h.kind)
    stopped: _JournalEnds | None = None
    try:
        inv.feed(request.body)
        inv.feed_closed()
        await asyncio.wait_for(
            inv.run_handler(call, h.is_async, h.decode_input, h.output_serde.serialize, ctx_type),
            timeout,
        )
    except _JournalEnds as e:
        stopped = e
    except asyncio.TimeoutError:
        report.message = f"the handler did not finish within {timeout:g}s of replay"
        return report
    finally:
        inv.disconnect()

    written = _core.decode_frames(bytes(out))
    ends = {m.type_name for m in written if m.kind == "control"}
    exc = captured[-1] if captured else None
    source = user_line(exc, files) if exc is not None else None
    report.beyond = [describe(-1, m) for m in written if m.kind == "command"]
    error = vm.last_error()

    if error is not None:
        report.code = error.code
        report.message = error.message
        report.outcome = "mismatch" if error.code == JOURNAL_MISMATCH else "error"
        if error.related_command_index is not None:
            index = error.related_command_index
            report.entry = next((e for e in entries if e.command_index == index), None)
        report.source = source or (handler_line(h) if report.outcome == "mismatch" else None)
        if report.outcome == "mismatch" and source is None:
            report.message += " (at the handler's result)"
        report.beyond = []
        return report
    if stopped is not None:
        report.outcome = "journal-ends"
        report.message = str(stopped)
        report.source = source
        return report
    if "Suspension" in ends:
        report.outcome = "journal-ends"
        report.message = "the code waits for a completion the journal does not hold"
        report.source = source if isinstance(exc, Suspended) else None
        return report
    if "End" in ends:
        recorded_output = any(e.type_name == "OutputCommand" for e in entries)
        report.outcome = "ok"
        if recorded_output:
            report.message = "the code wrote the recorded output"
        else:
            report.message = "the code finished after the journal (no output was recorded)"
        return report
    report.message = "the handler ended without a result"
    if exc is not None:
        report.message = f"{type(exc).__name__}: {exc}"
        report.source = source
    return report


def _capturing(h: Handler[Any, Any], captured: list[BaseException]) -> Callable[[Any, Any], Any]:
    """The handler's call, recording whatever escapes it (with its traceback)."""
    if h.is_async:

        async def call_async(ctx: Any, arg: Any) -> Any:
            try:
                return await h.call(ctx, arg)
            except BaseException as e:
                captured.append(e)
                raise

        return call_async

    def call_sync(ctx: Any, arg: Any) -> Any:
        try:
            return h.call(ctx, arg)
        except BaseException as e:
            captured.append(e)
            raise

    return call_sync


def user_line(exc: BaseException, files: Collection[str]) -> SourceLine | None:
    """The innermost traceback frame in one of ``files``."""
    found = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(fs.filename) in files:
            found = SourceLine(fs.filename, fs.lineno or 0, fs.name, (fs.line or "").strip())
    return found


def handler_line(h: Handler[Any, Any]) -> SourceLine:
    code = h.fn.__code__
    try:
        lines, start = inspect.getsourcelines(h.fn)
        text = next((ln.strip() for ln in lines if ln.lstrip().startswith(("def ", "async def "))), "")
        lineno = start + next(
            (i for i, ln in enumerate(lines) if ln.lstrip().startswith(("def ", "async def "))), 0
        )
    except (OSError, TypeError):
        text, lineno = "", code.co_firstlineno
    return SourceLine(code.co_filename, lineno, h.fn.__name__, text)


def _relative(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
