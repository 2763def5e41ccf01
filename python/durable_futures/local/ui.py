"""The embedded engine's timeline pages, served by the admin API (:mod:`.admin`).

| request | page |
|---|---|
| ``GET /ui?status=&target=&limit=`` | the newest invocations: status, target, age, failed attempts, outcome or last failure; filtered by status (exact) and target (substring) |
| ``GET /ui/invocation/{id}`` | one invocation: its journal as a timeline (SVG) and as a table, like ``durable-futures journal show`` |

The pages are server-rendered HTML with inline CSS and SVG: no script, nothing fetched when
they are viewed (their ``Content-Security-Policy`` allows no script and no other origin).
Every name and value from the store is escaped.

The timeline has one row per run, call, timer, awakeable and promise; its horizontal axis is
the **journal position** (an entry's index in the journal), because the journal stores no
time per entry (``sys_journal.appended_at`` is always NULL). A bar goes from its command's
position to its completion's; a row still open at the end of the journal is drawn dashed up
to the end. Completions are numbered in the order they were journaled (``#1``, ``#2``...).
A failed completion is marked ``✗``; the command the invocation's last failed attempt
stopped at is marked ``↻`` with the number of failed attempts. The only times the journal
holds, a timer's wake-up and the invocation's creation, are shown as text.
"""

from __future__ import annotations

import html
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .. import _core
from ..errors import DurableError
from .engine import LocalEngine
from .journal import JournalEntry, failure_lines, outcome_text, parse_journal, target

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "TimelineRow",
    "error_page",
    "index_page",
    "invocation_page",
    "timeline",
    "timeline_svg",
]

#: No script, no frame, nothing from another origin: the pages need only their inline CSS.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

#: How many of the newest invocations the list page filters.
SCANNED = 2000
#: How many it shows unless ``limit`` says otherwise (at most :data:`SCANNED`).
DEFAULT_LIMIT = 100

STATUSES = (
    "pending",
    "scheduled",
    "ready",
    "running",
    "backing-off",
    "suspended",
    "paused",
    "completed",
)

# Awakeables complete as signals with ids from 17 on (1 is cancel, 2..16 are reserved).
_FIRST_AWAKEABLE_SIGNAL = 17

# Command type -> (row kind, the word shown before its name or detail).
_ROW_COMMANDS = {
    "RunCommand": ("run", "run"),
    "CallCommand": ("call", "call"),
    "SleepCommand": ("timer", "timer"),
    "GetPromiseCommand": ("promise", "promise get"),
    "PeekPromiseCommand": ("promise", "promise peek"),
    "CompletePromiseCommand": ("promise", "promise complete"),
    "AttachInvocationCommand": ("call", "attach"),
    "GetInvocationOutputCommand": ("call", "output of"),
}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# ---- the timeline model -------------------------------------------------------------------------


@dataclass
class TimelineRow:
    """One row of the timeline: a command and its completion, or an awakeable."""

    kind: str
    """``run``, ``call``, ``timer``, ``awakeable`` or ``promise``."""
    label: str
    start: int
    """Journal position of the command (of the completion for an awakeable, whose creation
    is not journaled)."""
    end: int | None = None
    """Journal position of the completion; ``None`` while open."""
    command_index: int | None = None
    order: int | None = None
    """1 for the first completion journaled, 2 for the next..."""
    outcome: str = "open"
    """``value``, ``failure``, ``void``, ``invocation_id`` or ``open``."""
    detail: str = ""
    accepted_at: int | None = None
    """A call's invocation-id notification (the callee was started)."""
    retries: int = 0
    """Failed attempts stopped at this command (the invocation's last failure)."""
    retry_message: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.outcome == "failure"


def timeline(
    entries: Sequence[JournalEntry], info: _core.InvocationRow | None = None
) -> list[TimelineRow]:
    """The timeline rows of a decoded journal, in the order of their commands."""
    rows: list[TimelineRow] = []
    by_completion: dict[int, TimelineRow] = {}
    accepted: dict[int, TimelineRow] = {}
    order = 0
    for e in entries:
        if e.kind == "command" and e.type_name in _ROW_COMMANDS:
            kind, word = _ROW_COMMANDS[e.type_name]
            label = f"{word} {e.name}".strip() if e.name else word
            if kind == "call":
                label = f"{word} {e.detail.split('(')[0]}" if e.detail else word
            elif kind == "promise" and e.detail:
                label = f"{word} {e.detail.removeprefix('promise ')}"
            row = TimelineRow(kind, label, e.index, command_index=e.command_index)
            row.detail = e.detail
            if kind == "timer" and e.time_ms is not None:
                when = _clock(e.time_ms)
                if info is not None:
                    when += f" (+{(e.time_ms - info.created_at_ms) / 1000:.3f}s)"
                    row.label = f"timer {_duration_ms(e.time_ms - info.created_at_ms)}"
                row.notes.append(f"wakes at {when}")
            if e.type_name == "CallCommand" and len(e.completion_ids) == 2:
                accepted[e.completion_ids[0]] = row
                by_completion[e.completion_ids[1]] = row
            else:
                for c in e.completion_ids:
                    by_completion[c] = row
            rows.append(row)
        elif e.kind == "notification":
            cid = e.completion_ids[0] if e.completion_ids else None
            if cid is not None and cid in accepted:
                accepted.pop(cid).accepted_at = e.index
                continue
            target_row: TimelineRow | None = None
            if cid is not None and cid in by_completion:
                target_row = by_completion.pop(cid)
            elif isinstance(e.signal, int) and e.signal >= _FIRST_AWAKEABLE_SIGNAL:
                target_row = TimelineRow("awakeable", f"awakeable {e.signal}", e.index)
                target_row.notes.append("created without a journal entry")
                rows.append(target_row)
            if target_row is None or target_row.end is not None:
                continue
            order += 1
            target_row.end = e.index
            target_row.order = order
            target_row.outcome = e.result or "void"
            if e.detail:
                target_row.notes.append(f"{target_row.outcome} {e.detail}")
    rows.sort(key=lambda r: (r.start, r.kind != "awakeable"))
    f = info.last_failure if info is not None else None
    if info is not None and f is not None and info.failed_attempts > 0:
        for row in rows:
            if row.command_index is not None and row.command_index == f.related_command_index:
                row.retries = info.failed_attempts
                row.retry_message = f"[{f.code}] {f.message}"
    return rows


# ---- formatting -----------------------------------------------------------------------------------


def _clock(ms: int) -> str:
    t = time.gmtime(ms / 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{ms % 1000:03d} UTC"


def _duration_ms(ms: int) -> str:
    s = ms / 1000
    if s < 0:
        return f"-{_duration_ms(-ms)}"
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {s}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2330;background:#fff}
h1{font-size:1.3em;margin:0 0 .6em}
h2{font-size:1.1em;margin:1.4em 0 .5em}
a{color:#1a5fb4}
table{border-collapse:collapse;font-size:13px}
th,td{border-bottom:1px solid #dde1e8;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f8}
td.num{text-align:right}
code,pre,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f6f7f9;padding:8px;overflow:auto}
form{margin:0 0 1em}
form label{margin-right:1em}
.status{padding:1px 6px;border-radius:3px;background:#e8ebf0}
.status-completed{background:#dff3e4}
.status-backing-off,.status-paused{background:#fde7d4}
.status-running{background:#dbe8fb}
.failure{color:#b3261e}
.muted{color:#667}
.legend span{margin-right:1.2em}
svg text{font:12px ui-monospace,Menlo,Consolas,monospace;fill:#1d2330}
svg .axis{fill:#667;font-size:10px}
svg .grid{stroke:#eceef2}
svg .bar{stroke-width:1}
svg .run{fill:#8fb8ef;stroke:#3b74c4}
svg .call{fill:#a7d8b0;stroke:#3c8a4c}
svg .timer{fill:#f3d38b;stroke:#b5861c}
svg .awakeable{fill:#d2b7ef;stroke:#7a4cb3}
svg .promise{fill:#f2b6cf;stroke:#b3457a}
svg .open{fill-opacity:.35;stroke-dasharray:4 3}
svg .failed{stroke:#b3261e;stroke-width:2}
svg .order{font-weight:bold}
svg .fail-mark,svg .retry-mark{fill:#b3261e;font-weight:bold}
svg .accepted{stroke:#3c8a4c;stroke-width:2}
"""


def _page(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    ).encode()


_REASONS = {404: "Not found", 405: "Method not allowed", 500: "Server error"}


def error_page(status: int, message: str) -> bytes:
    """The page of an error answer (404, 405, 500)."""
    reason = _REASONS.get(status, "Error")
    return _page(
        reason.lower(),
        f'<h1>{_e(reason)}</h1><p>{_e(message)}</p><p><a href="/ui">invocations</a></p>',
    )


# ---- GET /ui --------------------------------------------------------------------------------------


def index_page(
    engine: LocalEngine, status: str = "", target_filter: str = "", limit: int = DEFAULT_LIMIT
) -> bytes:
    """The list of invocations, newest first, filtered by ``status`` and ``target``."""
    limit = max(1, min(limit, SCANNED))
    now = engine._clock()  # noqa: SLF001 - the engine's clock (virtual in tests)
    rows = engine.invocations(SCANNED)
    needle = target_filter.strip().lower()
    shown = [
        r
        for r in rows
        if (not status or r.status == status) and (not needle or needle in target(r).lower())
    ][:limit]
    options = "".join(
        f'<option value="{_e(s)}"{" selected" if s == status else ""}>{_e(s or "any")}</option>'
        for s in ("", *STATUSES)
    )
    form = (
        '<form method="get" action="/ui">'
        f'<label>status <select name="status">{options}</select></label>'
        f'<label>target <input name="target" value="{_e(target_filter)}" '
        'placeholder="Service/handler"></label>'
        f'<label>limit <input name="limit" type="number" min="1" max="{SCANNED}" '
        f'value="{limit}" size="5"></label>'
        '<button type="submit">filter</button></form>'
    )
    lines = []
    for r in shown:
        outcome = outcome_text(r)
        cls = ' class="failure"' if "failure" in outcome else ""
        link = "/ui/invocation/" + urllib.parse.quote(r.id, safe="")
        lines.append(
            "<tr>"
            f'<td class="mono"><a href="{_e(link)}">{_e(r.id)}</a></td>'
            f"<td>{_e(target(r))}</td>"
            f'<td><span class="status status-{_e(r.status)}">{_e(r.status)}</span></td>'
            f'<td class="num" title="{_e(_clock(r.created_at_ms))}">'
            f"{_e(_duration_ms(now - r.created_at_ms))}</td>"
            f'<td class="num">{r.failed_attempts}</td>'
            f"<td{cls}>{_e(_short(outcome, 160))}</td>"
            "</tr>"
        )
    table = (
        "<table><thead><tr><th>invocation</th><th>target</th><th>status</th><th>age</th>"
        "<th>failed attempts</th><th>outcome / last failure</th></tr></thead>"
        f"<tbody>{''.join(lines)}</tbody></table>"
        if lines
        else '<p class="muted">No invocation matches.</p>'
    )
    scanned = min(len(rows), SCANNED)
    summary = (
        f'<p class="muted">{len(shown)} shown, of the {scanned} newest invocations '
        f"(newest first).</p>"
    )
    return _page("invocations", f"<h1>Invocations</h1>{form}{summary}{table}")


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ---- GET /ui/invocation/{id} ----------------------------------------------------------------------

_LABEL_W = 260
_ROW_H = 26
_TOP = 28
_RIGHT = 190


def timeline_svg(rows: Sequence[TimelineRow], entries: int, finished: bool = False) -> str:
    """The timeline as inline SVG: x is the journal position. A row without completion is
    ``pending``, or ``never completed`` once the invocation is ``finished``."""
    pending = "never completed" if finished else "pending"
    span = max(entries, 1)
    step = max(8, min(48, 900 // span))
    width = _LABEL_W + span * step + _RIGHT
    height = _TOP + max(len(rows), 1) * _ROW_H + 8

    def x(pos: int) -> int:
        return _LABEL_W + pos * step

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="journal timeline">'
    ]
    every = max(1, 30 // step)
    for pos in range(span + 1):
        parts.append(
            f'<line class="grid" x1="{x(pos)}" y1="{_TOP - 6}" x2="{x(pos)}" y2="{height - 4}"/>'
        )
        if pos < span and pos % every == 0:
            parts.append(
                f'<text class="axis" x="{x(pos) + step // 2}" y="{_TOP - 10}" '
                f'text-anchor="middle">{pos}</text>'
            )
    parts.append(f'<text class="axis" x="4" y="{_TOP - 10}">journal position →</text>')
    if not rows:
        parts.append(
            f'<text class="axis" x="{_LABEL_W}" y="{_TOP + 16}">no run, call, timer, '
            "awakeable or promise in this journal</text>"
        )
    for i, row in enumerate(rows):
        y = _TOP + i * _ROW_H
        mid = y + _ROW_H // 2
        end = row.end if row.end is not None else span - 1
        x0 = x(row.start) + 2
        x1 = x(end + 1) - 2
        classes = ["bar", row.kind]
        if row.end is None:
            classes.append("open")
        if row.failed:
            classes.append("failed")
        tip = [row.label]
        if row.command_index is not None:
            tip.append(f"command {row.command_index} at position {row.start}")
        if row.end is not None:
            tip.append(f"completed at position {row.end} (#{row.order})")
        else:
            tip.append("not completed")
        tip.extend(row.notes)
        if row.retries:
            tip.append(f"{row.retries} failed attempt(s): {row.retry_message}")
        parts.append(
            f'<g class="row" data-kind="{_e(row.kind)}">'
            f'<text class="label" x="4" y="{mid + 4}">{_e(_short(row.label, 34))}</text>'
            f'<rect class="{" ".join(classes)}" x="{x0}" y="{y + 5}" '
            f'width="{max(x1 - x0, 4)}" height="{_ROW_H - 10}" rx="3">'
            f"<title>{_e(chr(10).join(tip))}</title></rect>"
        )
        if row.accepted_at is not None:
            ax = x(row.accepted_at) + step // 2
            parts.append(
                f'<line class="accepted" x1="{ax}" y1="{y + 5}" x2="{ax}" y2="{y + _ROW_H - 5}">'
                f"<title>callee started at position {row.accepted_at}</title></line>"
            )
        tx = x1 + 6
        if row.order is not None:
            parts.append(f'<text class="order" x="{tx}" y="{mid + 4}">#{row.order}</text>')
            tx += 8 * len(f"#{row.order}") + 6
        else:
            parts.append(f'<text class="axis" x="{tx}" y="{mid + 4}">{_e(pending)}</text>')
            tx += 7 * len(pending) + 6
        if row.failed:
            parts.append(f'<text class="fail-mark" x="{tx}" y="{mid + 4}">✗ failed</text>')
            tx += 70
        if row.retries:
            parts.append(
                f'<text class="retry-mark" x="{tx}" y="{mid + 4}">↻ {row.retries}'
                f"<title>{_e(row.retry_message)}</title></text>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _journal_table(entries: Iterable[JournalEntry], info: _core.InvocationRow) -> str:
    lines = []
    for e in entries:
        what = e.what
        if e.time_ms is not None:
            offset = (e.time_ms - info.created_at_ms) / 1000
            label = "wakes at" if e.type_name == "SleepCommand" else "at"
            what = f"{what} {label} {_clock(e.time_ms)} (+{offset:.3f}s)".strip()
        cls = ' class="failure"' if e.result == "failure" else ""
        lines.append(
            f"<tr{cls}><td class=\"num\">{e.index}</td>"
            f'<td class="num">{"" if e.command_index is None else e.command_index}</td>'
            f"<td>{_e(e.type_name)}</td><td>{_e(e.name)}</td>"
            f'<td class="mono">{_e(e.ids)}</td><td class="mono">{_e(what)}</td></tr>'
        )
    return (
        '<table class="journal"><thead><tr><th>#</th><th>cmd</th><th>type</th><th>name</th>'
        f"<th>ids</th><th>detail</th></tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )


def invocation_page(engine: LocalEngine, invocation_id: str) -> bytes | None:
    """One invocation's timeline and journal; ``None`` if the engine does not know it."""
    try:
        info = engine.invocation(invocation_id)
    except (ValueError, DurableError):
        return None
    if info is None:
        return None
    entries = parse_journal(engine.journal(invocation_id))
    rows = timeline(entries, info)
    facts = [
        ("target", target(info)),
        ("status", info.status),
        ("created", _clock(info.created_at_ms)),
    ]
    if info.completed_at_ms is not None:
        facts.append(("completed", _clock(info.completed_at_ms)))
    facts.append(("failed attempts", str(info.failed_attempts)))
    if info.idempotency_key is not None:
        facts.append(("idempotency key", info.idempotency_key))
    facts.append(("journal entries", str(len(entries))))
    dl = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    failures = failure_lines(info)
    failed = info.last_failure is not None or info.completion_result == "failure"
    pre = '<pre class="failure">' if failed else "<pre>"
    failure_block = f"{pre}{_e(chr(10).join(failures))}</pre>" if failures else ""
    legend = (
        '<p class="legend muted">'
        "<span>x axis: journal position (the journal stores no time per entry)</span>"
        "<span>bar: command → completion</span><span>#n: completion order</span>"
        "<span>dashed: pending at the end of the journal</span><span>✗: failed</span>"
        "<span>↻ n: failed attempts stopped at this command</span>"
        "<span>green tick: callee started</span></p>"
    )
    svg = timeline_svg(rows, len(entries), finished=info.status == "completed")
    body = (
        '<p><a href="/ui">← invocations</a></p>'
        f'<h1 class="mono">{_e(info.id)}</h1>'
        f"<table>{dl}</table>{failure_block}"
        f"<h2>Timeline</h2>{legend}{svg}"
        f"<h2>Journal</h2>{_journal_table(entries, info)}"
    )
    return _page(f"{info.id} {target(info)}", body)
