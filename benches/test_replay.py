"""Replay of the recorded fanout-1000 and sequence-1000 journals through the ASGI app in
process: durable-futures vs restate-sdk 1.3.0, same bytes, same handler logic. The peer is
measured in two forms: its fastest (``ctx.run_typed(name, closure)``) and with a
``RunOptions`` per call (how its docs write a run with options).

The ratios run every call on one event loop, as an ASGI server does. They are also reported
with an event loop per call (``asyncio.run``): its setup and teardown cost both sides the
same quarter millisecond, which no deployment pays per request.

    make bench      (or: .venv/bin/python -m pytest benches/test_replay.py -s)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import durable_futures as df
from tests import conformance_service

from . import peers
from .journals import interleaved, recorded, replay
from .summary import record

OURS = df.asgi_app(conformance_service.svc)
THEIRS = peers.app()
THEIRS_FAST = peers.fast_app()


@pytest.mark.parametrize("vector", ["fanout-1000", "sequence-1000"])
@pytest.mark.parametrize("sdk", ["durable-futures", "restate-sdk"])
def test_replay(benchmark: Any, vector: str, sdk: str) -> None:
    path, body, expected = recorded(vector)
    app = OURS if sdk == "durable-futures" else THEIRS
    benchmark.group = f"replay {vector}"
    assert benchmark(replay, app, path, body) == expected


@pytest.mark.parametrize("vector", ["fanout-1000", "sequence-1000"])
def test_replay_ratio(vector: str) -> None:
    path, body, expected = recorded(vector)
    loop = asyncio.new_event_loop()
    try:
        assert replay(THEIRS_FAST, path, body, loop) == expected
        t = interleaved(
            {
                "ours": lambda: replay(OURS, path, body, loop),
                "fastest": lambda: replay(THEIRS_FAST, path, body, loop),
                "options": lambda: replay(THEIRS, path, body, loop),
                # The same with an event loop per call: its setup and teardown (about
                # 0.25 ms, the same for both) weigh on the shorter call.
                "ours, own loop": lambda: replay(OURS, path, body),
                "fastest, own loop": lambda: replay(THEIRS_FAST, path, body),
            }
        )
    finally:
        loop.close()
    runs = 1000
    fast, slow = t["fastest"] / t["ours"], t["options"] / t["ours"]
    own = t["fastest, own loop"] / t["ours, own loop"]
    print(
        f"\n{vector}: durable-futures {t['ours'] * 1e6 / runs:.2f} µs/run, "
        f"restate-sdk {t['fastest'] * 1e6 / runs:.2f} µs/run written its fastest way "
        f"({fast:.1f}x faster), {t['options'] * 1e6 / runs:.2f} µs/run with RunOptions "
        f"({slow:.1f}x); with an event loop per call {own:.1f}x"
    )
    record(
        f"replay {vector} (ASGI)",
        f"{t['ours'] * 1e6 / runs:.2f} µs/run",
        f"restate-sdk fastest {t['fastest'] * 1e6 / runs:.2f}",
        f"{fast:.1f}x faster",
        ">= 15x",
    )
    record(
        f"replay {vector} (ASGI)",
        f"{t['ours'] * 1e6 / runs:.2f} µs/run",
        f"restate-sdk + RunOptions {t['options'] * 1e6 / runs:.2f}",
        f"{slow:.1f}x faster",
    )
    record(
        f"replay {vector} (ASGI), an event loop per call",
        f"{t['ours, own loop'] * 1e6 / runs:.2f} µs/run",
        f"restate-sdk fastest {t['fastest, own loop'] * 1e6 / runs:.2f}",
        f"{own:.1f}x faster",
    )
