"""Replay of the recorded fanout-1000 and sequence-1000 journals through the ASGI app in
process: durable-futures vs restate-sdk 1.3.0, same bytes, same handler logic.

    make bench      (or: .venv/bin/python -m pytest benches/test_replay.py -s)
"""

from __future__ import annotations

from typing import Any

import pytest

import durable_futures as df
from tests import conformance_service

from . import peers
from .journals import interleaved, recorded, replay

OURS = df.asgi_app(conformance_service.svc)
THEIRS = peers.app()


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
    t = interleaved(
        {
            "ours": lambda: replay(OURS, path, body),
            "restate-sdk": lambda: replay(THEIRS, path, body),
        }
    )
    runs = 1000
    print(
        f"\n{vector}: durable-futures {t['ours'] * 1e6 / runs:.2f} µs/run, "
        f"restate-sdk {t['restate-sdk'] * 1e6 / runs:.2f} µs/run, "
        f"ratio {t['restate-sdk'] / t['ours']:.1f}x faster"
    )
