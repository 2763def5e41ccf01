"""Reading stored journals: service-protocol frames as readable entries.

A journal (``LocalEngine.journal(id)``, or a journal recorded by restate-server) is a list of
protocol frames: commands the handler wrote and the notifications that completed them, in the
order they were stored. The compiled core decodes them (``_core.decode_frame``: a typed
``Message`` per frame); this module only words them: ``durable-futures journal show`` and
``examples/run_local.py`` print them with :func:`render`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .. import _core

__all__ = [
    "JournalEntry",
    "JournalSource",
    "describe",
    "describe_journal",
    "parse_journal",
    "render",
    "render_invocations",
]

_PREVIEW = 60


@dataclass(frozen=True)
class JournalEntry:
    """One journal entry, worded for display."""

    index: int
    """Position in the journal (commands and notifications together)."""
    type_name: str
    """``RunCommand``, ``RunCompletion``, ``Signal``, ... (``_core.Message.type_name``)."""
    kind: str
    """``command``, ``notification``, ``control`` or ``custom``."""
    command_index: int | None
    """Index among commands only (Input = 0), as 570 journal-mismatch errors count."""
    name: str = ""
    """The entry name (``ctx.run_async("fetch", …)``, ``ctx.after(d, name=…)``)."""
    completion_ids: tuple[int, ...] = ()
    signal: int | str | None = None
    result: str | None = None
    """For notifications (and commands with an inline result): ``value``, ``failure``,
    ``void``, ``invocation_id`` or ``state_keys``."""
    detail: str = ""
    """A short preview: the value, the failure, the call's target, the timer's wake-up."""
    time_ms: int | None = None
    """A wall-clock time carried by the entry: a timer's wake-up, a delayed send's time."""

    @property
    def what(self) -> str:
        """The detail as shown: a notification's result kind before it, or ``failure``."""
        if self.result is not None and self.kind == "notification":
            return f"{self.result} {self.detail}".rstrip()
        if self.result == "failure":
            return f"failure {self.detail}"
        return self.detail

    @property
    def ids(self) -> str:
        """The ids as shown: ``c<n>`` per completion id, else ``s<n>`` / ``s:<name>`` for a
        signal; empty when it has none."""
        if self.completion_ids:
            return " ".join(f"c{c}" for c in self.completion_ids)
        if self.signal is not None:
            return f"s{self.signal}" if isinstance(self.signal, int) else f"s:{self.signal}"
        return ""


def preview(data: bytes, limit: int = _PREVIEW) -> str:
    """A one-line preview of a payload (UTF-8 text, else hex)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "0x" + data[: limit // 2].hex()
        return text + ("…" if len(data) > limit // 2 else "")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(b: bytes | None) -> str:
    return "" if b is None else b.decode("utf-8", "replace")


def _failure_text(f: _core.Failure) -> str:
    return f"[{f.code}] {preview(f.message.encode())}"


def _keys_text(keys: Sequence[bytes] | None) -> str:
    return preview(", ".join(_text(k) for k in keys or ()).encode())


def _call_target(m: _core.Message) -> str:
    if m.key:
        return f"{m.service}/{m.key}/{m.handler}"
    return f"{m.service}/{m.handler}"


def describe(index: int, m: _core.Message, command_index: int | None = None) -> JournalEntry:
    """Words one decoded journal entry."""
    ty = m.type_name
    name = m.name
    ids: tuple[int, ...] = ()
    result: str | None = None
    detail = ""
    time_ms: int | None = None
    signal: int | str | None = None

    if m.kind == "notification":
        name = ""
        if m.completion_id is not None:
            ids = (m.completion_id,)
        elif m.signal_id is not None:
            signal = m.signal_id
        elif m.signal_name is not None:
            signal = m.signal_name
        if m.value is not None:
            result, detail = "value", preview(m.value)
        elif m.failure is not None:
            result, detail = "failure", _failure_text(m.failure)
        elif m.invocation_id is not None:
            result, detail = "invocation_id", m.invocation_id
        elif m.state_keys is not None:
            result, detail = "state_keys", _keys_text(m.state_keys)
        elif m.void:
            result = "void"
        if ty == "Signal" and signal == 1:
            detail = "cancel" + (f" {detail}" if detail else "")
    elif ty == "InputCommand":
        detail = preview(m.value or b"")
    elif ty == "OutputCommand":
        if m.value is not None:
            result, detail = "value", preview(m.value)
        elif m.failure is not None:
            result, detail = "failure", _failure_text(m.failure)
    elif ty == "CallCommand":
        ids = (m.invocation_id_notification_idx or 0, m.completion_id or 0)
        detail = _call_target(m) + f"({preview(m.parameter, 30)})"
        if m.idempotency_key is not None:
            detail += f" idempotency-key={m.idempotency_key}"
    elif ty == "OneWayCallCommand":
        ids = (m.invocation_id_notification_idx or 0,)
        detail = "send " + _call_target(m) + f"({preview(m.parameter, 30)})"
        if m.invoke_time:
            time_ms = m.invoke_time
    elif ty == "SleepCommand":
        ids = (m.completion_id or 0,)
        if m.wake_up_time:
            time_ms = m.wake_up_time
    elif ty in ("GetLazyStateCommand", "GetEagerStateCommand", "SetStateCommand", "ClearStateCommand"):
        if m.completion_id is not None:
            ids = (m.completion_id,)
        detail = f"key {_text(m.state_key)!r}"
        if ty == "SetStateCommand" and m.value is not None:
            detail += f" = {preview(m.value, 40)}"
        elif ty == "GetEagerStateCommand":
            if m.value is not None:
                result = "value"
                detail += f" = {preview(m.value, 40)}"
            else:
                result = "void"
    elif ty == "GetEagerStateKeysCommand":
        result = "state_keys"
        detail = _keys_text(m.state_keys)
    elif ty in ("GetPromiseCommand", "PeekPromiseCommand", "CompletePromiseCommand"):
        ids = (m.completion_id or 0,)
        detail = f"promise {m.promise_key or ''!r}"
    elif ty == "SendSignalCommand":
        target = m.target_invocation_id or ""
        sig = m.signal_id if m.signal_id is not None else m.signal_name
        detail = f"signal {sig} to {target}" if sig != 1 else f"cancel {target}"
    elif ty in ("AttachInvocationCommand", "GetInvocationOutputCommand"):
        ids = (m.completion_id or 0,)
        detail = m.target_invocation_id or "(by idempotency key or workflow)"
    elif ty == "CompleteAwakeableCommand":
        awakeable = m.awakeable_id or ""
        if m.value is not None:
            result, detail = "value", f"{awakeable} = {preview(m.value, 40)}"
        elif m.failure is not None:
            result, detail = "failure", f"{awakeable} {_failure_text(m.failure)}"
        else:
            detail = awakeable
    elif m.kind == "command" and m.completion_id is not None:
        ids = (m.completion_id,)

    return JournalEntry(
        index=index,
        type_name=ty,
        kind=m.kind,
        command_index=command_index,
        name=name,
        completion_ids=ids,
        signal=signal,
        result=result,
        detail=detail,
        time_ms=time_ms,
    )


def describe_journal(messages: Iterable[_core.Message]) -> list[JournalEntry]:
    """Decoded journal entries, worded, with command indexes counted."""
    out = []
    commands = 0
    for i, m in enumerate(messages):
        cmd: int | None = None
        if m.kind == "command":
            cmd = commands
            commands += 1
        out.append(describe(i, m, cmd))
    return out


def parse_journal(frames: Sequence[bytes]) -> list[JournalEntry]:
    """Every stored frame of a journal, decoded and worded."""
    return describe_journal(_core.decode_frame(data) for data in frames)


# ---- rendering -------------------------------------------------------------------------------


def target(row: _core.InvocationRow) -> str:
    """``Service/handler``, or ``Object/key/handler``."""
    if row.key:
        return f"{row.service}/{row.key}/{row.handler}"
    return f"{row.service}/{row.handler}"


class JournalSource(Protocol):
    """What :func:`durable_futures.cli.show_journal` reads: a ``LocalEngine`` (or the CLI's
    store reader)."""

    def journal(self, invocation_id: str) -> list[bytes]: ...

    def invocation(self, invocation_id: str) -> _core.InvocationRow | None: ...


def _clock(ms: int) -> str:
    t = time.localtime(ms / 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{ms % 1000:03d}"


def render(
    frames: Sequence[bytes], info: _core.InvocationRow | None = None, invocation_id: str = ""
) -> str:
    """The journal as a table: index, command index, type, entry name, completion ids, and
    the result kind / a preview; timers show their wake-up time (and its offset from the
    invocation's creation when known)."""
    entries = parse_journal(frames)
    lines = []
    if info is not None:
        lines.append(
            f"{info.id}  {target(info)}  {info.status}  created {_clock(info.created_at_ms)}"
            f"  failed attempts {info.failed_attempts}  entries {len(entries)}"
        )
        lines.extend(failure_lines(info))
    elif invocation_id:
        lines.append(f"{invocation_id}  entries {len(entries)}")
    rows = [("#", "cmd", "type", "name", "ids", "detail")]
    for e in entries:
        what = e.what
        if e.time_ms is not None:
            when = _clock(e.time_ms)
            if info is not None:
                offset = (e.time_ms - info.created_at_ms) / 1000
                when += f" (+{offset:.3f}s)" if offset >= 0 else f" ({offset:.3f}s)"
            label = "wakes at" if e.type_name == "SleepCommand" else "at"
            what = f"{what} {label} {when}".strip()
        rows.append(
            (
                str(e.index),
                "" if e.command_index is None else str(e.command_index),
                e.type_name,
                e.name,
                e.ids,
                what,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        cells = [r[i].rjust(widths[i]) if i < 2 else r[i].ljust(widths[i]) for i in range(5)]
        lines.append("  " + "  ".join(cells) + "  " + r[5])
    return "\n".join(line.rstrip() for line in lines)


def render_invocations(
    rows: Sequence[_core.InvocationRow], entries: Sequence[int] | None = None
) -> str:
    """The ``journal list`` table: newest first."""
    table = [("id", "target", "status", "failed", "created", "entries", "result / last failure")]
    for i, r in enumerate(rows):
        table.append(
            (
                r.id,
                target(r),
                r.status,
                str(r.failed_attempts),
                _clock(r.created_at_ms),
                str(r.journal_size if entries is None else entries[i]),
                _short(outcome_text(r), 80),
            )
        )
    n = len(table[0])
    widths = [max(len(t[i]) for t in table) for i in range(n)]
    return "\n".join(
        "  ".join(t[i].ljust(widths[i]) for i in range(n)).rstrip() for t in table
    )


def outcome_text(r: _core.InvocationRow) -> str:
    """How an invocation ended (``success``, ``failure [code] message``), or else its last
    failure (``last failure [code] message``), or nothing."""
    if r.completion_result == "success":
        return "success"
    if r.completion_result == "failure":
        return f"failure {r.completion_failure or ''}".rstrip()
    f = r.last_failure
    if f is None:
        return ""
    return f"last failure [{f.code}] {f.message}"


def failure_lines(r: _core.InvocationRow) -> list[str]:
    """``journal show``: the invocation's outcome or last failure, with the command it
    failed at, the next retry and the stack trace."""
    lines = []
    if r.completion_result is not None:
        lines.append(f"completed: {outcome_text(r)}")
    f = r.last_failure
    if f is not None:
        lines.append(f"last failure: [{f.code}] {f.message}")
        if f.related_command_index is not None:
            name = f" {f.related_command_name!r}" if f.related_command_name else ""
            kind = f.related_command_type or "command"
            lines.append(f"  at command {f.related_command_index}: {kind}{name}")
        if r.status == "backing-off" and r.next_retry_at_ms:
            lines.append(f"  next attempt at {_clock(r.next_retry_at_ms)}")
        if f.stacktrace:
            lines.extend("  " + ln for ln in f.stacktrace.rstrip().splitlines())
    return lines


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
