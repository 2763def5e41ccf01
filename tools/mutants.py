"""Mutation testing: inject one plausible bug at a time and see whether the tests notice.

``make mutants`` runs this script. Rust areas use cargo-mutants (installed by the Makefile into
``.cache/tools``); the Python area uses mutmut (``requirements-mutants.txt``). Each area is a
set of source files and the tests that guard them:

    vm        rust/core/src/vm/**/*.rs     replay check, notification order, ids, selectors
    protocol  rust/core/src/protocol/*.rs  frames, messages, versions
    core      retry.rs, util.rs, error.rs  retry policy, ids, error codes
    store     rust/engine/src/store.rs     SQLite store: commit, durability, recovery
    engine    engine.rs, model.rs, query.rs lifecycle: release, retries, idempotency, timers,
                                           operations on invocations, introspection
    python    the facade's driver, futures, context, serde and LocalEngine (mutmut)

Usage (from the repository root, after ``make develop``):

    python tools/mutants.py [--area A ...] [--shard K/N] [--diff REF] [--jobs J]

``--shard K/N`` runs the K-th of N slices of each Rust area (so one long area fits in a
session: run 0/4 … 3/4 one after another, or on several machines); ``--diff REF`` mutates
only the lines (Rust) or files (Python) changed since REF, for checking a change. Results go
to ``.cache/mutants/<area>/``; the summary at the end prints, per area, the mutants tested,
how many the tests caught, the kill rate, and every surviving mutant.

Survivors that cannot be killed because they do not change behaviour (equivalent mutants)
are listed in ``tools/mutants-equivalent.txt``, one per line with its reason; they are
reported separately and left out of the kill rate. An entry names the mutant as the tools
print it, without line and column, so it survives unrelated edits; it therefore covers
every identical mutation in the same function.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".cache" / "mutants"
TOOLS_BIN = ROOT / ".cache" / "tools" / "bin"
EQUIVALENT = ROOT / "tools" / "mutants-equivalent.txt"

RUST_AREAS: dict[str, list[str]] = {
    "vm": ["rust/core/src/vm/*.rs", "rust/core/src/vm/**/*.rs"],
    "protocol": ["rust/core/src/protocol/*.rs"],
    "core": ["rust/core/src/retry.rs", "rust/core/src/util.rs", "rust/core/src/error.rs"],
    "store": ["rust/engine/src/store.rs"],
    "engine": [
        "rust/engine/src/engine.rs",
        "rust/engine/src/model.rs",
        "rust/engine/src/query.rs",
    ],
}

PYTHON_FILES = [
    "durable_futures/_attempt.py",
    "durable_futures/_runs.py",
    "durable_futures/futures.py",
    "durable_futures/context.py",
    "durable_futures/serde.py",
    "durable_futures/local/engine.py",
]

# In-process tests only: the CLI, crash, e2e and example tests start subprocesses or a
# restate-server, which mutmut's per-mutant runs cannot see into and would make them slow.
PYTHON_TESTS = [
    "tests/test_facade.py",
    "tests/test_run_scheduling.py",
    "tests/test_selector_remaining.py",
    "tests/test_replayed_runs.py",
    "tests/test_virtual_time.py",
    "tests/test_input_decoding.py",
    "tests/test_local_engine.py",
    "tests/test_conformance.py",
    "tests/test_endpoint.py",
    "tests/test_ingress.py",
]

AREAS = [*RUST_AREAS, "python"]


@dataclass
class Result:
    area: str
    caught: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    timeout: list[str] = field(default_factory=list)
    unviable: list[str] = field(default_factory=list)


def without_position(name: str) -> str:
    """``path:12:5: replace …`` → ``path: replace …`` (cargo-mutants names carry line:col)."""
    return re.sub(r"^([^:]+):\d+:\d+:", r"\1:", name.strip())


def load_equivalent() -> dict[str, str]:
    entries: dict[str, str] = {}
    if not EQUIVALENT.exists():
        return entries
    for raw in EQUIVALENT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, reason = line.partition(" -- ")
        if not sep or not reason.strip():
            sys.exit(f"{EQUIVALENT.name}: every entry needs ' -- <reason>': {line}")
        entries[without_position(name)] = reason.strip()
    return entries


def run(cmd: list[str], **kw: object) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=kw.pop("cwd", ROOT), **kw)  # type: ignore[call-overload]


# ---- Rust: cargo-mutants --------------------------------------------------------------------


def rust_area(area: str, shard: str | None, diff: str | None, jobs: int) -> Result:
    out = OUT / area
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cmd = ["cargo", "mutants", "--output", str(out), "--profile", "mutants", "--no-shuffle"]
    cmd += ["--jobs", str(jobs), "--minimum-test-timeout", "60"]
    for f in RUST_AREAS[area]:
        cmd += ["--file", f]
    if shard:
        cmd += ["--shard", shard, "--sharding", "round-robin"]
    if diff:
        patch = out / "change.diff"
        patch.write_bytes(subprocess.check_output(["git", "diff", diff, "--", "rust"], cwd=ROOT))
        if not patch.read_bytes().strip():
            print(f"{area}: no Rust change since {diff}")
            return Result(area)
        cmd += ["--in-diff", str(patch)]
    # Unit and integration tests; doctests only repeat the API docs and cost a link each.
    cmd += ["--", "--lib", "--tests"]
    env = dict(os.environ, PATH=f"{TOOLS_BIN}:{os.environ['PATH']}")
    code = run(cmd, env=env)
    # 0: all caught; 2: some missed; 3: some timed out. Anything else is a failure to run.
    if code not in (0, 2, 3):
        sys.exit(f"cargo mutants failed for {area} (exit {code}); see {out}/mutants.out/")
    res = Result(area)
    base = out / "mutants.out"
    for kind in ("caught", "missed", "timeout", "unviable"):
        path = base / f"{kind}.txt"
        if path.exists():
            getattr(res, kind).extend(x for x in path.read_text().splitlines() if x.strip())
    return res


# ---- Python: mutmut ---------------------------------------------------------------------------


def python_area(diff: str | None, jobs: int) -> Result:
    files = PYTHON_FILES
    if diff:
        changed = subprocess.check_output(
            ["git", "diff", "--name-only", diff, "--", "python"], cwd=ROOT, text=True
        ).split()
        files = [f for f in files if f"python/{f}" in changed]
        if not files:
            print(f"python: no change since {diff} in the mutated files")
            return Result("python")
    # mutmut finds code under ./, src/ or source/; the package lives in python/, so the run
    # happens in a staging directory laid out as mutmut expects.
    stage = OUT / "python"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "src").mkdir(parents=True)
    shutil.copytree(
        ROOT / "python" / "durable_futures",
        stage / "src" / "durable_futures",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    if not list((stage / "src" / "durable_futures").glob("_core*.so")):
        sys.exit("the extension module is not built: run `make develop` first")
    shutil.copytree(ROOT / "tests", stage / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "examples", stage / "examples")
    only = ", ".join(f'"src/{f}"' for f in files)
    tests = ", ".join(f'"{t}"' for t in PYTHON_TESTS)
    (stage / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n"
        'testpaths = ["tests"]\n'
        'addopts = "-ra --strict-markers -p no:cacheprovider"\n'
        'filterwarnings = ["error"]\n'
        "xfail_strict = true\n"
        'markers = ["e2e: end-to-end tests against a real restate-server"]\n\n'
        "[tool.mutmut]\n"
        'source_paths = ["src/durable_futures"]\n'
        f"only_mutate = [{only}]\n"
        f"pytest_add_cli_args_test_selection = [{tests}]\n"
        'also_copy = ["examples"]\n'
    )
    mutmut = str(Path(sys.executable).parent / "mutmut")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    code = run([mutmut, "run", "--max-children", str(jobs)], cwd=stage, env=env)
    if code != 0:
        sys.exit(f"mutmut failed (exit {code}); see {stage}")
    run([mutmut, "export-cicd-stats"], cwd=stage, env=env)
    listing = subprocess.run(
        [mutmut, "results", "--all", "true"], cwd=stage, env=env, text=True, capture_output=True
    ).stdout
    res = Result("python")
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name:
            continue
        bucket = {
            "killed": res.caught,
            "survived": res.missed,
            "timeout": res.timeout,
            "no tests": res.missed,
            "suspicious": res.timeout,
            "segfault": res.caught,
        }.get(status)
        if bucket is not None:
            bucket.append(name)
    stats = json.loads((stage / "mutants" / "mutmut-cicd-stats.json").read_text())
    if stats["total"] and len(res.caught) + len(res.missed) + len(res.timeout) != stats["total"]:
        # `mutmut results --all` output changed shape: fall back to the counts, survivors
        # from the default listing.
        res.caught = ["?"] * (stats["killed"] + stats["segfault"])
        res.timeout = ["?"] * (stats["timeout"] + stats["suspicious"])
        survivors = subprocess.run(
            [mutmut, "results"], cwd=stage, env=env, text=True, capture_output=True
        ).stdout
        res.missed = [ln.strip().rpartition(": ")[0] for ln in survivors.splitlines() if ": " in ln]
    return res


# ---- summary ------------------------------------------------------------------------------------


def summarize(results: list[Result], equivalent: dict[str, str]) -> None:
    print("\n==== mutation testing summary ====")
    print(
        f"{'area':<10}{'tested':>8}{'caught':>8}{'timeout':>9}{'missed':>8}{'equiv.':>8}{'kill rate':>11}"
    )
    survivors: list[tuple[str, str]] = []
    accepted: list[tuple[str, str, str]] = []
    for r in results:
        missed, equiv = [], []
        for m in r.missed:
            reason = equivalent.get(without_position(m))
            if reason:
                equiv.append(m)
                accepted.append((r.area, m, reason))
            else:
                missed.append(m)
                survivors.append((r.area, m))
        killed = len(r.caught) + len(r.timeout)
        viable = killed + len(missed)
        rate = f"{100.0 * killed / viable:.1f}%" if viable else "-"
        tested = viable + len(equiv)
        print(
            f"{r.area:<10}{tested:>8}{len(r.caught):>8}{len(r.timeout):>9}{len(missed):>8}{len(equiv):>8}{rate:>11}"
        )
    if accepted:
        print("\nEquivalent (listed in tools/mutants-equivalent.txt):")
        for area, m, reason in accepted:
            print(f"  [{area}] {m}\n      -- {reason}")
    if survivors:
        print("\nSurviving mutants (no test noticed them):")
        for area, m in survivors:
            print(f"  [{area}] {m}")
    else:
        print("\nNo surviving mutants outside the equivalent list.")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--area", action="append", choices=AREAS, help="repeatable; default: all")
    ap.add_argument("--shard", help="K/N: the K-th (0-based) of N slices of each Rust area")
    ap.add_argument("--diff", help="only mutants in what changed since this git ref")
    ap.add_argument("--jobs", type=int, default=2, help="mutants built and tested at once")
    args = ap.parse_args()
    if args.shard and not re.fullmatch(r"\d+/\d+", args.shard):
        ap.error("--shard takes K/N, e.g. 0/4")
    equivalent = load_equivalent()
    results = []
    for area in args.area or AREAS:
        if area == "python":
            results.append(python_area(args.diff, args.jobs))
        else:
            results.append(rust_area(area, args.shard, args.diff, args.jobs))
    summarize(results, equivalent)


if __name__ == "__main__":
    main()
