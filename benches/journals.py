"""Recorded and synthetic journals for the benchmarks, and a timing helper."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.asgi_client import call
from tests.frames import encode, frames, output_value

VECTORS = Path(__file__).parent.parent / "tests" / "conformance" / "vectors"
V6 = "application/vnd.restate.invocation.v6"


def recorded(name: str) -> tuple[str, bytes, Any]:
    """(path, body, expected output) of a vector's last attempt."""
    meta = json.loads((VECTORS / name / "vector.json").read_text())
    last = meta["attempts"][-1]
    return last["path"], (VECTORS / name / last["req"]).read_bytes(), meta["output"]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(num: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    return _varint((num << 3) | 2) + _varint(len(value)) + value


def runs_journal(n: int, input_json: bytes) -> bytes:
    """Start + Input + n RunCommands named r{i} + their completions in reverse order."""
    entries = 1 + 2 * n
    start = _field(1, b"0123456789abcdef") + _field(2, b"inv_bench") + _field(3, entries)
    out = [encode(0x0000, start), encode(0x0400, _field(14, _field(1, input_json)))]
    out += [encode(0x0411, _field(11, i + 1) + _field(12, f"r{i}".encode())) for i in range(n)]
    out += [encode(0x8011, _field(1, i + 1) + _field(5, _field(1, b"1"))) for i in reversed(range(n))]
    return b"".join(out)


def replay(app: Any, path: str, body: bytes) -> Any:
    """Replays ``body`` through ``app`` and returns the decoded output value."""

    async def go() -> Any:
        r = await call(app, path, body, headers=[("content-type", V6)])
        out = output_value(frames(r.body))
        assert out is not None, r.body[:300]
        return json.loads(out)

    return asyncio.run(go())


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int = 15) -> dict[str, float]:
    """Mean seconds per call of each function, measured alternately in the same run."""
    totals = dict.fromkeys(fns, 0.0)
    for f in fns.values():
        f()
    for _ in range(rounds):
        for name, f in fns.items():
            t = time.perf_counter()
            f()
            totals[name] += time.perf_counter() - t
    return {k: v / rounds for k, v in totals.items()}
