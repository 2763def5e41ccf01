"""Recorded and synthetic journals for the benchmarks, and a timing helper."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from durable_futures._core import Message
from tests.asgi_client import call
from tests.frames import frames, output_value

VECTORS = Path(__file__).parent.parent / "tests" / "conformance" / "vectors"
V6 = "application/vnd.restate.invocation.v6"


def recorded(name: str) -> tuple[str, bytes, Any]:
    """(path, body, expected output) of a vector's last attempt."""
    meta = json.loads((VECTORS / name / "vector.json").read_text())
    last = meta["attempts"][-1]
    return last["path"], (VECTORS / name / last["req"]).read_bytes(), meta["output"]


def runs_journal(n: int, input_json: bytes) -> bytes:
    """Start + Input + n RunCommands named r{i} + their completions in reverse order."""
    entries = 1 + 2 * n
    out = [
        Message("Start", id=b"0123456789abcdef", debug_id="inv_bench", known_entries=entries),
        Message("InputCommand", value=input_json),
    ]
    out += [Message("RunCommand", completion_id=i + 1, name=f"r{i}") for i in range(n)]
    out += [Message("RunCompletion", completion_id=i + 1, value=b"1") for i in reversed(range(n))]
    return b"".join(m.encode() for m in out)


def replay(app: Any, path: str, body: bytes) -> Any:
    """Replays ``body`` through ``app`` and returns the decoded output value."""

    async def go() -> Any:
        r = await call(app, path, body, headers=[("content-type", V6)])
        out = output_value(frames(r.body))
        assert out is not None, r.body[:300]
        return json.loads(out)

    return asyncio.run(go())


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int = 15) -> dict[str, float]:
    """Mean seconds per call of each function, measured alternately in the same run.

    Each call starts from a collected heap (``gc.collect()``, not timed): it pays for the
    collections its own allocations cause, not for a full pass over everything the
    process holds that the calls before it happened to leave due. Without that, whichever
    call a full pass lands in (one of 15 rounds, in a process that ran other benchmarks
    first) looked up to 75% slower, and the ratios swung with it."""
    totals = dict.fromkeys(fns, 0.0)
    for f in fns.values():
        f()
    for _ in range(rounds):
        for name, f in fns.items():
            gc.collect()
            t = time.perf_counter()
            f()
            totals[name] += time.perf_counter() - t
    return {k: v / rounds for k, v in totals.items()}
