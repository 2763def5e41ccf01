"""The one table ``make bench`` ends with: every figure next to its peer or its limit.

A benchmark calls :func:`record` with what it measured; the table is printed after the
last benchmark (``benches/conftest.py``), in the order the figures were recorded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    figure: str
    ours: str
    against: str
    ratio: str
    target: str = ""


ROWS: list[Row] = []


def record(figure: str, ours: str, against: str, ratio: str, target: str = "") -> None:
    """One line of the summary: what, our figure, the peer's or the limit's, the ratio
    between them, and the target it is held to (if any)."""
    ROWS.append(Row(figure, ours, against, ratio, target))


def table() -> str:
    if not ROWS:
        return ""
    head = Row("figure", "durable-futures", "peer / limit", "ratio", "target")
    rows = [head, *ROWS]
    widths = [
        max(len(getattr(r, f)) for r in rows)
        for f in ("figure", "ours", "against", "ratio", "target")
    ]

    def line(r: Row) -> str:
        cells = (r.figure, r.ours, r.against, r.ratio, r.target)
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in ROWS)])
