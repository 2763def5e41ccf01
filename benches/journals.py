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


def replay(
    app: Any, path: str, body: bytes, loop: asyncio.AbstractEventLoop | None = None
) -> Any:
    """Replays ``body`` through ``app`` and returns the decoded output value: on ``loop``, as
    a server runs every request on its one event loop, or else in an event loop of its own
    (``asyncio.run``), whose setup and teardown then count as part of the call."""

    async def go() -> Any:
        r = await call(app, path, body, headers=[("content-type", V6)])
        out = output_value(frames(r.body))
        assert out is not None, r.body[:300]
        return json.loads(out)

    if loop is not None:
        return loop.run_until_complete(go())
    return asyncio.run(go())


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int = 15) -> dict[str, float]:
    """Mean seconds per call of each function, measured alternately in the same run.

    After one untimed call of each, everything the process holds is frozen out of the
    collector (``gc.freeze()``): a full pass then walks only what the calls themselves left,
    and each call pays for the collections its own allocations cause, not for a walk over
    whatever the process (pytest, the benchmarks before) happens to hold.

    Two earlier ways were unfair to the shorter call. With nothing done, a full pass over the
    whole heap landed in whichever call crossed the threshold: one in our 15 rounds made our
    replay up to 75% slower. A ``gc.collect()`` before every call fixed that, but walking the
    whole heap right before the call evicts the CPU caches it would have found warm: in a
    process holding 200,000 more objects that cost our 2 ms fanout replay 0.45 ms (+23%) and
    the peer's 30 ms one about the same absolute time, a few percent of it."""
    totals = dict.fromkeys(fns, 0.0)
    for f in fns.values():
        f()
    gc.collect()
    gc.freeze()
    try:
        for _ in range(rounds):
            for name, f in fns.items():
                t = time.perf_counter()
                f()
                totals[name] += time.perf_counter() - t
    finally:
        gc.unfreeze()
    return {k: v / rounds for k, v in totals.items()}
