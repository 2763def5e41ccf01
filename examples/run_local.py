"""The examples on the embedded engine: no server, one SQLite file.

Starts a ``df.LocalEngine`` with every example service on a temporary database, invokes each
example handler (async and sync), prints the results and one invocation's journal as
``durable-futures journal show`` prints it, then walks a sign-up workflow through its
steps: start, query, confirm (twice), result, and a second start with the same key.

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
from examples import parallel_tasks, select_first, signup, wait_all  # noqa: E402

SERVICES = [
    parallel_tasks.svc,
    parallel_tasks.analytics,
    select_first.svc,
    select_first.echo_svc,
    wait_all.svc,
    wait_all.worker,
    signup.wf,
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
            await signup_walkthrough(engine)
    return 0


async def signup_walkthrough(engine: df.LocalEngine) -> None:
    print("\nA sign-up workflow (examples/signup.py), workflow key 'alice':\n")
    account = signup.Account("alice@example.com", "Alice")
    run_id = engine.send(signup.run, account, key="alice")
    print(f"Signup/alice/run started: {run_id}")
    state = "not started"
    for _ in range(200):  # until the run waits for the confirmation
        state = await engine.invoke(signup.status, key="alice")
        if state == "awaiting confirmation":
            break
        await asyncio.sleep(0.01)
    print(f"Signup/alice/status  -> {json.dumps(state)}")
    print(f"emails sent: {signup.OUTBOX}")
    for answer in ("yes", "no"):
        reply = await engine.invoke(signup.confirm, answer, key="alice")
        print(f"Signup/alice/confirm({json.dumps(answer)})  -> {json.dumps(reply)}")
    print(f"Signup/alice/run     -> {json.dumps(await engine.result(run_id))}")
    print(f"Signup/alice/status  -> {json.dumps(await engine.invoke(signup.status, key='alice'))}")
    again = engine.send(signup.run, account, key="alice")
    print(f"Signup/alice/run/send again -> {again} (the first run: it runs once per key)")
    try:
        await engine.invoke(signup.run, account, key="alice")
    except df.TerminalError as e:
        print(f"Signup/alice/run again -> {e.code} {e.message}")
    print(f"emails sent: {len(signup.OUTBOX)}")


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
