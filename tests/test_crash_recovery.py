"""Crash recovery of the embedded engine: a worker is SIGKILLed at random points, 20+ times.

tests/crash_worker.py runs a workload (fan-out runs, a call, a timer, an awakeable resolved
by another handler) on a file database with ``durability="fsync"``. This test kills it at
random moments, restarts it (the restart resubmits the same idempotency keys and waits),
and finally lets it finish. Between two incarnations nothing runs, so the database the test
reads then is exactly what the next incarnation starts from: a snapshot. The assertions:

* every job completes exactly once, with the right result (one invocation per idempotency
  key, exactly one callee per call and send, results identical wherever they were seen);
* journals: dense indexes, run names unique per invocation, exactly one completion for each
  run, sleep and call, each after its command; every snapshot's journal of an invocation
  is a prefix of its final journal (nothing written is ever lost or rewritten), and an
  outcome once stored never changes;
* a result a worker saw was stored before the kill (acknowledged means durable);
* a run closure runs again only if its completion had not been journaled: an incarnation
  never executes a run whose completion was in the snapshot it started from, and every
  journaled run was executed at least once.

Bounded (about 20 s here) and local: the worker talks to nothing but its files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .frames import Frame, frames

WORKER = Path(__file__).with_name("crash_worker.py")
JOBS = 24
STAGGER_MS = 250
KILLS = 20
BUDGET_S = 50.0

COMPLETED = 2


def expected(i: int) -> dict[str, Any]:
    fan = [10 * i + k for k in range(4)]
    return {"i": i, "fan": fan, "square": i * i, "awk": 3 * i, "total": sum(fan) + i * i + 3 * i}


@dataclass
class Snapshot:
    """The database between two incarnations."""

    journals: dict[str, list[bytes]] = field(default_factory=dict)
    # id -> (service, handler, status, outcome_kind, outcome_value)
    rows: dict[str, tuple[str, str, int, int | None, bytes | None]] = field(default_factory=dict)
    idempotency: dict[str, str] = field(default_factory=dict)

    def journaled_runs(self) -> set[tuple[str, str]]:
        """(invocation, run name) of every run whose completion is in the journal."""
        out = set()
        for inv, journal in self.journals.items():
            names: dict[int, str] = {}
            for f in map(decode, journal):
                if f.type_name == "RunCommand" and f.completion_id is not None:
                    names[f.completion_id] = f.name
                elif f.type_name == "RunCompletion" and f.completion_id in names:
                    out.add((inv, names[f.completion_id]))
        return out


def decode(raw: bytes) -> Frame:
    fs = frames(raw)
    assert len(fs) == 1, f"a journal entry holds one frame, not {len(fs)}"
    return fs[0]


def text_id(raw: bytes) -> str:
    return "inv_" + raw.hex()


def snapshot(db: Path) -> Snapshot:
    """Reads the database read-only (no checkpoint: the next incarnation finds the WAL as the
    kill left it)."""
    snap = Snapshot()
    if not db.exists():
        return snap
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "invocations" not in tables:
            return snap  # killed before the schema was committed
        rows = conn.execute("SELECT invocation, idx, frame FROM journal ORDER BY invocation, idx")
        indexes: dict[str, list[int]] = defaultdict(list)
        for inv, idx, frame in rows:
            indexes[text_id(inv)].append(idx)
            snap.journals.setdefault(text_id(inv), []).append(bytes(frame))
        for inv, idxs in indexes.items():
            assert idxs == list(range(len(idxs))), f"{inv}: journal indexes not dense: {idxs}"
        for inv, service, handler, status, kind, value in conn.execute(
            "SELECT id, service, handler, status, outcome_kind, outcome_value FROM invocations"
        ):
            snap.rows[text_id(inv)] = (
                service, handler, status, kind, None if value is None else bytes(value)
            )
        for key, inv in conn.execute("SELECT idempotency_key, invocation FROM idempotency"):
            snap.idempotency[key] = text_id(inv)
    finally:
        conn.close()
    return snap


def check_journal(inv: str, journal: list[bytes], complete: bool) -> None:
    """One invocation's journal: well formed, nothing duplicated; ``complete``: nothing
    missing either."""
    fs = [decode(raw) for raw in journal]
    assert fs and fs[0].type_name == "InputCommand", f"{inv}: the journal starts with its input"
    run_names: Counter[str] = Counter()
    # (completion type, completion id) of commands so far
    expect: set[tuple[str, int | None]] = set()
    ids: set[int | None] = set()
    completions: Counter[tuple[str, int | None]] = Counter()
    signals: Counter[int | None] = Counter()
    outputs = 0
    for pos, f in enumerate(fs):
        wanted: list[tuple[str, int | None]] = []
        if f.type_name == "RunCommand":
            run_names[f.name] += 1
            wanted = [("RunCompletion", f.completion_id)]
        elif f.type_name == "SleepCommand":
            wanted = [("SleepCompletion", f.completion_id)]
        elif f.type_name == "CallCommand":
            wanted = [
                ("CallInvocationIdCompletion", f.invocation_id_notification_idx),
                ("CallCompletion", f.completion_id),
            ]
        elif f.type_name == "OneWayCallCommand":
            wanted = [("CallInvocationIdCompletion", f.invocation_id_notification_idx)]
        elif f.type_name in (
            "RunCompletion",
            "SleepCompletion",
            "CallCompletion",
            "CallInvocationIdCompletion",
        ):
            key = (f.type_name, f.completion_id)
            assert key in expect, f"{inv}: entry {pos}: completion {key} before its command"
            completions[key] += 1
        elif f.type_name == "Signal":
            signals[f.signal_id] += 1
        elif f.type_name == "OutputCommand":
            outputs += 1
            assert pos == len(fs) - 1, f"{inv}: the output is the last entry"
        for key in wanted:
            assert key[1] not in ids, f"{inv}: entry {pos}: completion id {key[1]} reused"
            ids.add(key[1])
            expect.add(key)
    assert all(n == 1 for n in run_names.values()), f"{inv}: duplicated runs {run_names}"
    duplicated = {k: n for k, n in completions.items() if n > 1}
    assert not duplicated, f"{inv}: duplicated completions {duplicated}"
    assert all(n == 1 for n in signals.values()), f"{inv}: duplicated signals {signals}"
    assert outputs <= 1
    if complete:
        assert outputs == 1, f"{inv}: no output"
        missing = expect - set(completions)
        assert not missing, f"{inv}: commands without completion: {missing}"


def read_lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    # A line is written with one write() call: only a kill in the middle of that call could
    # leave a torn last line, which does not count (its fsync never returned).
    lines = path.read_text().split("\n")
    return [line.split(" ", 3) for line in lines[:-1]]


def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("DF_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    db = tmp_path / "crash.db"
    executions_log = tmp_path / "executions.log"
    results_log = tmp_path / "results.log"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    where = f"(seed {seed}: DF_CRASH_SEED={seed} repeats these kill delays)"

    snapshots: list[Snapshot] = []  # snapshots[k]: what incarnation k started from
    kills = 0
    incarnation = 0
    started = time.monotonic()
    final_output = ""
    while True:
        snapshots.append(snapshot(db))
        last = kills >= KILLS or time.monotonic() - started > BUDGET_S
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(db), str(executions_log), str(results_log),
             str(incarnation), str(JOBS), str(STAGGER_MS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            if last:
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, f"the last worker failed {where}:\n{err}"
                final_output = out
                break
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.0, 0.25))  # while starting: open, migrate, submit
            else:
                assert proc.stdout is not None
                line = proc.stdout.readline()  # "ready", or "" if it exited
                assert line in ("ready\n", ""), line
                time.sleep(rng.uniform(0.0, 0.35))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            _, err = proc.communicate(timeout=30)
            assert proc.returncode in (0, -signal.SIGKILL), f"worker failed {where}:\n{err}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        incarnation += 1
    assert "done" in final_output
    assert kills >= KILLS, f"only {kills} kills within the budget {where}"
    final = snapshot(db)
    snapshots.append(final)

    # ---- every job completed exactly once, with the right result ----------------------------
    assert sorted(final.idempotency) == sorted(f"job-{i}" for i in range(JOBS)), where
    jobs = {inv: int(key.removeprefix("job-")) for key, inv in final.idempotency.items()}
    by_handler = Counter(row[1] for row in final.rows.values())
    assert by_handler == {"job": JOBS, "square": JOBS, "resolve": JOBS}, f"{by_handler} {where}"
    for inv, (service, handler, status, kind, value) in final.rows.items():
        assert service == "Crash" and status == COMPLETED and kind == 0, (inv, handler, where)
        if handler == "job":
            assert value is not None
            assert json.loads(value) == expected(jobs[inv]), where
    results = read_lines(results_log)
    seen = {int(i) for _, i, _, _ in results}
    assert seen == set(range(JOBS)), where
    for k, i, inv, payload in results:
        assert final.idempotency[f"job-{i}"] == inv, where
        assert json.loads(payload) == expected(int(i)), where
        # Acknowledged means durable: what incarnation k saw was stored when it was killed.
        after = snapshots[int(k) + 1]
        assert after.rows[inv][2] == COMPLETED, f"result of {inv} seen by {k}, then lost {where}"

    # ---- journals: well formed; nothing lost, rewritten or duplicated across the kills -------
    for inv, journal in final.journals.items():
        check_journal(inv, journal, complete=True)
        if inv in jobs:  # its awakeable was resolved once
            assert [decode(raw).type_name for raw in journal].count("Signal") == 1, where
    for n, snap in enumerate(snapshots[:-1]):
        for inv, journal in snap.journals.items():
            check_journal(inv, journal, complete=False)
            assert final.journals[inv][: len(journal)] == journal, (
                f"{inv}: the journal of snapshot {n} is not a prefix of the final one {where}"
            )
        for inv, row in snap.rows.items():
            if row[2] == COMPLETED:
                assert final.rows[inv] == row, f"{inv}: its stored outcome changed {where}"

    # ---- run closures ran again only if their completion had not been journaled --------------
    executions = read_lines(executions_log)
    per_run: Counter[tuple[str, str]] = Counter()
    per_incarnation: Counter[tuple[int, str, str]] = Counter()
    for k, inv, name in (line[:3] for line in executions):
        run = (inv, name)
        per_run[run] += 1
        per_incarnation[(int(k), inv, name)] += 1
        assert run not in snapshots[int(k)].journaled_runs(), (
            f"incarnation {k} executed {run}, whose completion was journaled before it "
            f"started {where}"
        )
    journaled = final.journaled_runs()
    assert len(journaled) == 7 * JOBS
    missing = [run for run in journaled if per_run[run] == 0]
    assert not missing, f"journaled but never executed: {missing} {where}"
    again = {run: n for run, n in per_run.items() if n > 1}
    # Within one incarnation a run executes once (nothing fails in this workload).
    twice = {k: n for k, n in per_incarnation.items() if n > 1}
    assert not twice, f"executed more than once by one incarnation: {twice} {where}"
    # Not vacuous: the kills interrupted work, and some runs did run again.
    busy = {k for k, _, _ in per_incarnation}
    assert len(busy) >= 5, f"only incarnations {sorted(busy)} did any work {where}"
    print(
        f"{kills} kills, {incarnation + 1} incarnations, {len(busy)} did work, "
        f"{len(again)} runs executed again (completion not yet journaled) {where}"
    )
