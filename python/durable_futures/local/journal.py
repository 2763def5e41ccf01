"""Reading stored journals: service-protocol frames as readable entries.

A journal (``LocalEngine.journal(id)``, or a journal recorded by restate-server) is a list of
protocol frames: commands the handler wrote and the notifications that completed them, in the
order they were stored. This module decodes the few protobuf fields worth showing (message
type codes and field numbers from Restate's ``protocol.proto``) without any protobuf dependency;
``durable-futures journal show`` and ``examples/run_local.py`` print them with :func:`render`.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "InvocationInfo",
    "JournalEntry",
    "JournalSource",
    "find_invocation",
    "frame",
    "parse_entry",
    "parse_journal",
    "render",
    "render_invocations",
    "split_frames",
]

# Message type codes (Restate's service protocol, ``protocol.proto``).
START = 0x0000
INPUT = 0x0400
OUTPUT = 0x0401
GET_LAZY_STATE = 0x0402
SET_STATE = 0x0403
CLEAR_STATE = 0x0404
CLEAR_ALL_STATE = 0x0405
GET_LAZY_STATE_KEYS = 0x0406
GET_EAGER_STATE = 0x0407
GET_EAGER_STATE_KEYS = 0x0408
GET_PROMISE = 0x0409
PEEK_PROMISE = 0x040A
COMPLETE_PROMISE = 0x040B
SLEEP = 0x040C
CALL = 0x040D
ONE_WAY_CALL = 0x040E
SEND_SIGNAL = 0x0410
RUN = 0x0411
ATTACH_INVOCATION = 0x0412
GET_INVOCATION_OUTPUT = 0x0413
COMPLETE_AWAKEABLE = 0x0414
SIGNAL = 0xFBFF

TYPE_NAMES: dict[int, str] = {
    0x0000: "Start",
    0x0001: "Suspension",
    0x0002: "Error",
    0x0003: "End",
    0x0004: "CommandAck",
    0x0005: "ProposeRunCompletion",
    0x0006: "AwaitingOn",
    0x0007: "ProposeRunCompletionAck",
    INPUT: "InputCommand",
    OUTPUT: "OutputCommand",
    GET_LAZY_STATE: "GetLazyStateCommand",
    SET_STATE: "SetStateCommand",
    CLEAR_STATE: "ClearStateCommand",
    CLEAR_ALL_STATE: "ClearAllStateCommand",
    GET_LAZY_STATE_KEYS: "GetLazyStateKeysCommand",
    GET_EAGER_STATE: "GetEagerStateCommand",
    GET_EAGER_STATE_KEYS: "GetEagerStateKeysCommand",
    GET_PROMISE: "GetPromiseCommand",
    PEEK_PROMISE: "PeekPromiseCommand",
    COMPLETE_PROMISE: "CompletePromiseCommand",
    SLEEP: "SleepCommand",
    CALL: "CallCommand",
    ONE_WAY_CALL: "OneWayCallCommand",
    SEND_SIGNAL: "SendSignalCommand",
    RUN: "RunCommand",
    ATTACH_INVOCATION: "AttachInvocationCommand",
    GET_INVOCATION_OUTPUT: "GetInvocationOutputCommand",
    COMPLETE_AWAKEABLE: "CompleteAwakeableCommand",
    0x8002: "GetLazyStateCompletion",
    0x8006: "GetLazyStateKeysCompletion",
    0x8009: "GetPromiseCompletion",
    0x800A: "PeekPromiseCompletion",
    0x800B: "CompletePromiseCompletion",
    0x800C: "SleepCompletion",
    0x800D: "CallCompletion",
    0x800E: "CallInvocationIdCompletion",
    0x8011: "RunCompletion",
    0x8012: "AttachInvocationCompletion",
    0x8013: "GetInvocationOutputCompletion",
    SIGNAL: "Signal",
}

_PREVIEW = 60


def type_name(ty: int) -> str:
    """The message's name (``RunCommand``, ``RunCompletion``, …) or its hex code."""
    return TYPE_NAMES.get(ty, f"0x{ty:04X}")


def is_command(ty: int) -> bool:
    return 0x0400 <= ty < 0x8000


def is_notification(ty: int) -> bool:
    return 0x8000 <= ty < 0xFC00


# ---- protobuf, just enough -------------------------------------------------------------------


def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def _fields(b: bytes) -> Iterator[tuple[int, Any]]:
    """Top-level fields: ``(number, int | bytes)`` (fixed-width fields are skipped)."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
            yield num, v
        elif wire == 2:
            n, i = _varint(b, i)
            yield num, bytes(b[i : i + n])
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _f_int(num: int, v: int) -> bytes:
    return _varint_bytes(num << 3) + _varint_bytes(v)


def _f_bytes(num: int, v: bytes) -> bytes:
    return _varint_bytes((num << 3) | 2) + _varint_bytes(len(v)) + v


def frame(ty: int, payload: bytes, flags: int = 0) -> bytes:
    """One frame: the 8-byte big-endian header (type, flags, length) and the payload."""
    return struct.pack(">Q", (ty << 48) | (flags << 32) | len(payload)) + payload


def split_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(type, flags, payload)`` of every frame in ``data``."""
    out = []
    i = 0
    while i < len(data):
        if len(data) - i < 8:
            raise ValueError("truncated frame header")
        (h,) = struct.unpack(">Q", data[i : i + 8])
        n = h & 0xFFFFFFFF
        if len(data) - i - 8 < n:
            raise ValueError("truncated frame payload")
        out.append((h >> 48, (h >> 32) & 0xFFFF, data[i + 8 : i + 8 + n]))
        i += 8 + n
    return out


def start_message(
    invocation_id: str, known_entries: int, *, key: str = "", retry_count: int = 0
) -> bytes:
    """The ``StartMessage`` frame the embedded engine sends before an invocation's journal
    (``rust/engine/src/engine.rs``, ``start_attempt``): raw id, printable id, entry count,
    complete (empty) eager state, key, and the random seed taken from the id."""
    raw = invocation_id_bytes(invocation_id)
    seed = int.from_bytes(raw[:8], "big")
    p = _f_bytes(1, raw) + _f_bytes(2, invocation_id.encode()) + _f_int(3, known_entries)
    if key:
        p += _f_bytes(6, key.encode())
    if retry_count:
        p += _f_int(7, retry_count)
    p += _f_int(9, seed)
    return frame(START, p)


def invocation_id_bytes(invocation_id: str) -> bytes:
    """The 16 raw bytes of an embedded-engine id (``inv_`` + 32 hex digits)."""
    hexpart = invocation_id.removeprefix("inv_")
    if not invocation_id.startswith("inv_") or len(hexpart) != 32:
        raise ValueError(f"{invocation_id!r} is not an invocation id (inv_ + 32 hex digits)")
    return bytes.fromhex(hexpart)


# ---- entries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    """One journal entry, decoded for display."""

    index: int
    """Position in the journal (commands and notifications together)."""
    type: int
    type_name: str
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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if is_command(self.type):
            return "command"
        if is_notification(self.type):
            return "notification"
        return "other"


def preview(data: bytes, limit: int = _PREVIEW) -> str:
    """A one-line preview of a payload (UTF-8 text, else hex)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "0x" + data[: limit // 2].hex()
        return text + ("…" if len(data) > limit // 2 else "")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(b: bytes) -> bytes:
    """``Value{1: content}``."""
    for n, v in _fields(b):
        if n == 1 and isinstance(v, bytes):
            return v
    return b""


def _failure(b: bytes) -> tuple[int, str]:
    code, message = 0, ""
    for n, v in _fields(b):
        if n == 1 and isinstance(v, int):
            code = v
        elif n == 2 and isinstance(v, bytes):
            message = v.decode("utf-8", "replace")
    return code, message


def _failure_text(b: bytes) -> str:
    code, message = _failure(b)
    return f"[{code}] {preview(message.encode())}"


def _state_keys(b: bytes) -> list[str]:
    return [v.decode("utf-8", "replace") for n, v in _fields(b) if n == 1 and isinstance(v, bytes)]


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else ""


def parse_entry(index: int, data: bytes, command_index: int | None = None) -> JournalEntry:
    """Decodes one stored journal frame (header and payload)."""
    frames = split_frames(data)
    if len(frames) != 1:
        raise ValueError(f"journal entry {index} holds {len(frames)} frames, not one")
    ty, _flags, payload = frames[0]
    fields = list(_fields(payload))
    d: dict[int, Any] = {}
    for n, v in fields:
        d[n] = v  # last occurrence wins, as in protobuf
    name = _s(d.get(12))
    ids: list[int] = []
    result: str | None = None
    detail = ""
    time_ms: int | None = None
    signal: int | str | None = None
    extra: dict[str, Any] = {}

    if is_notification(ty):
        if 1 in d:
            ids.append(int(d[1]))
        elif 2 in d:
            signal = int(d[2])
        elif 3 in d:
            signal = _s(d[3])
        name = ""
        if 5 in d:
            result, detail = "value", preview(_value(d[5]))
        elif 6 in d:
            result, detail = "failure", _failure_text(d[6])
        elif 16 in d:
            result, detail = "invocation_id", _s(d[16])
        elif 17 in d:
            result, detail = "state_keys", preview(", ".join(_state_keys(d[17])).encode())
        elif 4 in d:
            result = "void"
        if ty == SIGNAL and signal == 1:
            detail = "cancel" + (f" {detail}" if detail else "")
    elif ty == INPUT:
        detail = preview(_value(d.get(14, b"")))
        headers = [v for n, v in fields if n == 1]
        if headers:
            extra["headers"] = len(headers)
    elif ty == OUTPUT:
        if 14 in d:
            result, detail = "value", preview(_value(d[14]))
        elif 15 in d:
            result, detail = "failure", _failure_text(d[15])
    elif ty == CALL:
        ids = [int(d.get(10, 0)), int(d.get(11, 0))]
        detail = _target(d, 5) + f"({preview(d.get(3, b''), 30)})"
        if 6 in d:
            detail += f" idempotency-key={_s(d[6])}"
    elif ty == ONE_WAY_CALL:
        ids = [int(d.get(10, 0))]
        detail = "send " + _target(d, 6) + f"({preview(d.get(3, b''), 30)})"
        if d.get(4):
            time_ms = int(d[4])
    elif ty == SLEEP:
        ids = [int(d.get(11, 0))]
        if d.get(1):
            time_ms = int(d[1])
    elif ty in (GET_LAZY_STATE, GET_EAGER_STATE, SET_STATE, CLEAR_STATE):
        if 11 in d:
            ids = [int(d[11])]
        detail = f"key {_s(d.get(1))!r}"
        if ty == SET_STATE and 3 in d:
            detail += f" = {preview(_value(d[3]), 40)}"
        elif ty == GET_EAGER_STATE:
            if 14 in d:
                result = "value"
                detail += f" = {preview(_value(d[14]), 40)}"
            else:
                result = "void"
    elif ty == GET_EAGER_STATE_KEYS:
        result = "state_keys"
        detail = preview(", ".join(_state_keys(d.get(14, b""))).encode())
    elif ty in (GET_PROMISE, PEEK_PROMISE, COMPLETE_PROMISE):
        ids = [int(d.get(11, 0))]
        detail = f"promise {_s(d.get(1))!r}"
    elif ty == SEND_SIGNAL:
        target = _s(d.get(1))
        sig = d.get(2, _s(d.get(3)))
        detail = f"signal {sig} to {target}" if sig != 1 else f"cancel {target}"
    elif ty in (ATTACH_INVOCATION, GET_INVOCATION_OUTPUT):
        ids = [int(d.get(11, 0))]
        detail = _s(d.get(1)) or "(by idempotency key or workflow)"
    elif ty == COMPLETE_AWAKEABLE:
        awakeable = _s(d.get(1))
        if 2 in d:
            result, detail = "value", f"{awakeable} = {preview(_value(d[2]), 40)}"
        elif 3 in d:
            result, detail = "failure", f"{awakeable} {_failure_text(d[3])}"
        else:
            detail = awakeable
    elif is_command(ty) and 11 in d:
        ids = [int(d[11])]

    return JournalEntry(
        index=index,
        type=ty,
        type_name=type_name(ty),
        command_index=command_index,
        name=name,
        completion_ids=tuple(ids),
        signal=signal,
        result=result,
        detail=detail,
        time_ms=time_ms,
        extra=extra,
    )


def _target(d: dict[int, Any], key_field: int) -> str:
    service, handler, key = _s(d.get(1)), _s(d.get(2)), _s(d.get(key_field))
    return f"{service}/{key}/{handler}" if key else f"{service}/{handler}"


def parse_journal(frames: Sequence[bytes]) -> list[JournalEntry]:
    """Every stored frame of a journal, decoded, with command indexes counted."""
    out = []
    commands = 0
    for i, data in enumerate(frames):
        ty = split_frames(data)[0][0] if len(data) >= 8 else -1
        cmd: int | None = None
        if is_command(ty):
            cmd = commands
            commands += 1
        out.append(parse_entry(i, data, cmd))
    return out


# ---- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvocationInfo:
    """An invocation as ``LocalEngine.invocations()`` lists it."""

    id: str
    service: str
    handler: str
    key: str
    status: str
    failed_attempts: int
    created_at_ms: int

    @property
    def target(self) -> str:
        if self.key:
            return f"{self.service}/{self.key}/{self.handler}"
        return f"{self.service}/{self.handler}"


class JournalSource(Protocol):
    """What :func:`render` reads: a ``LocalEngine`` (or the CLI's store reader)."""

    def journal(self, invocation_id: str) -> list[bytes]: ...

    def invocations(self, limit: int = 50) -> Sequence[tuple[str, str, str, str, str, int, int]]: ...


def find_invocation(source: JournalSource, invocation_id: str, scan: int = 100_000) -> InvocationInfo | None:
    """The listing row of ``invocation_id`` among the newest ``scan`` invocations."""
    for row in source.invocations(scan):
        if row[0] == invocation_id:
            return InvocationInfo(*row)
    return None


def _clock(ms: int) -> str:
    t = time.localtime(ms / 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{ms % 1000:03d}"


def _ids(e: JournalEntry) -> str:
    if e.completion_ids:
        return " ".join(f"c{c}" for c in e.completion_ids)
    if e.signal is not None:
        return f"s{e.signal}" if isinstance(e.signal, int) else f"s:{e.signal}"
    return ""


def render(
    frames: Sequence[bytes], info: InvocationInfo | None = None, invocation_id: str = ""
) -> str:
    """The journal as a table: index, command index, type, entry name, completion ids, and
    the result kind / a preview; timers show their wake-up time (and its offset from the
    invocation's creation when known)."""
    entries = parse_journal(frames)
    lines = []
    if info is not None:
        lines.append(
            f"{info.id}  {info.target}  {info.status}  created {_clock(info.created_at_ms)}"
            f"  failed attempts {info.failed_attempts}  entries {len(entries)}"
        )
    elif invocation_id:
        lines.append(f"{invocation_id}  entries {len(entries)}")
    rows = [("#", "cmd", "type", "name", "ids", "detail")]
    for e in entries:
        what = e.detail
        if e.result is not None and e.kind == "notification":
            what = f"{e.result} {e.detail}".rstrip()
        elif e.result == "failure":
            what = f"failure {e.detail}"
        if e.time_ms is not None:
            when = _clock(e.time_ms)
            if info is not None:
                offset = (e.time_ms - info.created_at_ms) / 1000
                when += f" (+{offset:.3f}s)" if offset >= 0 else f" ({offset:.3f}s)"
            label = "wakes at" if e.type == SLEEP else "at"
            what = f"{what} {label} {when}".strip()
        rows.append(
            (
                str(e.index),
                "" if e.command_index is None else str(e.command_index),
                e.type_name,
                e.name,
                _ids(e),
                what,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        cells = [r[i].rjust(widths[i]) if i < 2 else r[i].ljust(widths[i]) for i in range(5)]
        lines.append("  " + "  ".join(cells) + "  " + r[5])
    return "\n".join(line.rstrip() for line in lines)


def render_invocations(rows: Sequence[InvocationInfo], entries: Sequence[int] | None = None) -> str:
    """The ``journal list`` table: newest first."""
    table = [("id", "target", "status", "failed", "created", "entries")]
    for i, r in enumerate(rows):
        table.append(
            (
                r.id,
                r.target,
                r.status,
                str(r.failed_attempts),
                _clock(r.created_at_ms),
                "" if entries is None else str(entries[i]),
            )
        )
    widths = [max(len(t[i]) for t in table) for i in range(6)]
    return "\n".join(
        "  ".join(t[i].ljust(widths[i]) for i in range(6)).rstrip() for t in table
    )
