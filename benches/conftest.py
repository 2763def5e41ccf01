"""Prints the summary table (``benches/summary.py``) at the end of ``make bench``."""

from __future__ import annotations

from typing import Any

from .summary import table


def pytest_terminal_summary(terminalreporter: Any) -> None:
    text = table()
    if text:
        terminalreporter.write_sep("=", "durable-futures benchmarks: summary")
        terminalreporter.write_line(text)
