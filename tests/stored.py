"""Reads of an embedded engine's SQLite file through a connection of its own, as another
process would see it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def invocation_stored(db: Path, invocation_id: str) -> bool:
    """Whether the invocation's row is committed in the file."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT id FROM invocations").fetchall()
    finally:
        conn.close()
    return any("inv_" + bytes(r[0]).hex() == invocation_id for r in rows)
