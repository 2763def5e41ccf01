"""The examples on the embedded engine: no server, one SQLite file.

Starts a ``df.LocalEngine`` with every example service on a temporary database, invokes each
example handler (async and sync), prints the results, then one invocation's journal as
``durable-futures journal show`` prints it.

Run:  python examples/run_local.py      (or `make run`, which builds and installs first)
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import durable_futures as df  # noqa: E402
from durable_futures.cli import show_journal  # noqa: E402
from examples import parallel_tasks, select_first, wait_all  # noqa: E402

SERVICES = [
    parallel_tasks.svc,
    parallel_tasks.analytics,
    select_first.svc,
    select_first.echo_svc,
    wait_all.svc,
    wait_all.worker,
]

# (handler, input): every example handler, async and sync.
CALLS: list[tuple[Any, Any]] = [
    (parallel_tasks.overview, 42),
    (parallel_tasks.overview_sync, 42),
    (select_first.race, "hi"),
    (select_first.race_sync, "hi"),
    (wait_all.all_of, 4),
    (wait_all.all_of_sync, 4),
]


async def main() -> int:
    with tempfile.TemporaryDirectory(prefix="durable-futures-") as tmp:
        db = Path(tmp) / "examples.db"
        print(f"durable-futures {df.__version__}: the examples on the embedded engine ({db})\n")
        async with df.LocalEngine(*SERVICES, path=db) as engine:
            for handler, arg in CALLS:
                target = f"{handler.service_name}/{handler.name}"
                started = time.perf_counter()
                result = await engine.invoke(handler, arg)
                ms = (time.perf_counter() - started) * 1000
                print(f"{target}({json.dumps(arg)})  [{ms:.0f} ms]")
                print(f"  -> {json.dumps(result)}")
            first = next(
                row[0]
                for row in engine.invocations(100)
                if (row[1], row[2]) == ("Orders", "overview")
            )
            print("\nThe journal of Orders/overview (durable-futures journal show):\n")
            print(show_journal(engine, first))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
