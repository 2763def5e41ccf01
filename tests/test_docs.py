"""The code samples of the documentation (docs/) run here, so a page cannot drift from the API.

- The ```python blocks of a page run in order in one namespace (a module per page), as a
  reader pastes them one after another into one file. A sample checks what it shows with
  ``assert``; a wrong sample fails its page's test with a traceback pointing into the page.
- A block whose first line is ``# docs: pytest`` is a test module of its own: it runs in a
  fresh pytest session (with the package's pytest plugin, as in a user's project), and each
  of its tests must pass.
- A block whose first line is ``# docs: not run: <reason>`` is shown and not run. Such blocks
  are counted (a few at most) and must say why.
- ``durable-futures ...`` command lines in ```sh blocks are parsed with the CLI's own parser,
  so a misspelt subcommand or option fails here too.

Other fence languages (``sh``, ``text``, ``c``, ...) are not Python and are not run.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

PYTEST_MARKER = "# docs: pytest"
NOT_RUN_MARKER = "# docs: not run:"
MAX_NOT_RUN = 3

# Pages whose samples are the point of the page: each must have at least one that runs.
GUIDE_PAGES = [
    "index.md",
    "concepts.md",
    "guide/handlers.md",
    "guide/runs.md",
    "guide/calls.md",
    "guide/timers.md",
    "guide/awakeables.md",
    "guide/select.md",
    "guide/objects.md",
    "guide/workflows.md",
    "guide/deterministic.md",
    "engines.md",
    "testing.md",
    "operating.md",
]

# Pages whose samples use files of the repository: they run from its root, after the setup.
FROM_ROOT = {"embedding.md"}

# embedding.md loads the C ABI through cffi: the header in rust/ffi/include and the library
# cargo builds (as tests/test_ffi.py does; without cargo on the PATH, a built one is used).
FFI_LIBRARY = ROOT / "target" / "debug" / "libdurable_futures_ffi.so"

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the first line of code, 1-based
    lang: str
    code: str

    @property
    def first_line(self) -> str:
        return self.code.lstrip("\n").split("\n", 1)[0].strip()

    @property
    def kind(self) -> str:
        if self.lang not in ("python", "py"):
            return "other"
        if self.first_line.startswith(NOT_RUN_MARKER):
            return "not-run"
        if self.first_line == PYTEST_MARKER:
            return "pytest"
        return "run"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (also those indented in admonitions)."""
    lines = page.read_text().split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        lang = (m["info"].strip().split() or [""])[0]
        start = i + 1
        i += 1
        body: list[str] = []
        while i < len(lines) and not re.match(rf"^ *{re.escape(fence)}\s*$", lines[i]):
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page}:{start}: a code block is not closed")
        i += 1
        found.append(Block(str(page.relative_to(DOCS)), start + 1, lang, "\n".join(body)))
    return found


PAGES = sorted(DOCS.rglob("*.md"))
ALL = [b for page in PAGES for b in blocks(page)]


def _page_ids(kind: str) -> list[str]:
    return sorted({b.page for b in ALL if b.kind == kind})


@pytest.fixture
def clean_logging() -> object:
    """Samples may attach handlers to loggers: put the logging setup back afterwards."""
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name, lg in [("", logging.getLogger())]
        + [
            (n, lg)
            for n, lg in logging.Logger.manager.loggerDict.items()
            if isinstance(lg, logging.Logger)
        ]
    }
    yield
    for name, lg in [("", logging.getLogger()), *logging.Logger.manager.loggerDict.items()]:
        if isinstance(lg, logging.Logger):
            handlers, level, propagate = saved.get(name, ([], logging.NOTSET, True))
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


@pytest.mark.parametrize("page", _page_ids("run"))
def test_samples_run(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_logging: object
) -> None:
    """A page's Python samples, in order, in one namespace; in a scratch directory, so a
    sample's ``path="app.db"`` lands there."""
    if page in FROM_ROOT:
        if shutil.which("cargo") is not None:
            subprocess.run(
                ["cargo", "build", "--quiet", "-p", "durable-futures-ffi"], cwd=ROOT, check=True
            )
        assert FFI_LIBRARY.exists(), f"{FFI_LIBRARY} is missing: cargo build -p durable-futures-ffi"
        monkeypatch.chdir(ROOT)
    else:
        monkeypatch.chdir(tmp_path)
    name = "docs_" + re.sub(r"\W", "_", page.removesuffix(".md"))
    module = types.ModuleType(name)
    module.__file__ = str(DOCS / page)
    sys.modules[name] = module  # dataclasses and type hints look their module up
    try:
        for block in (b for b in ALL if b.page == page and b.kind == "run"):
            # Line numbers of tracebacks are the page's.
            source = "\n" * (block.line - 1) + block.code
            exec(compile(source, str(DOCS / page), "exec"), module.__dict__)
    finally:
        del sys.modules[name]


@pytest.mark.parametrize("page", _page_ids("pytest"))
def test_pytest_samples_pass(page: str, pytester: pytest.Pytester) -> None:
    """A ``# docs: pytest`` block is a test module: every test in it passes."""
    pytester.makeini("[pytest]\naddopts = --strict-markers\nfilterwarnings = error\n")
    expected = 0
    for n, block in enumerate(b for b in ALL if b.page == page and b.kind == "pytest"):
        pytester.makepyfile(**{f"test_sample_{n}": block.code})
        expected += len(re.findall(r"^def test_", block.code, re.M))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert outcomes.get("passed", 0) >= expected, outcomes  # parametrized tests count more


def test_guide_pages_have_samples_that_run() -> None:
    missing = [p for p in GUIDE_PAGES if not any(b.page == p and b.kind == "run" for b in ALL)]
    assert not missing, f"pages without a running sample: {missing}"
    assert {str(p.relative_to(DOCS)) for p in PAGES} >= set(GUIDE_PAGES)


def test_blocks_not_run_are_few_and_say_why() -> None:
    not_run = [b for b in ALL if b.kind == "not-run"]
    assert len(not_run) <= MAX_NOT_RUN, [f"{b.page}:{b.line}" for b in not_run]
    for b in not_run:
        reason = b.first_line.removeprefix(NOT_RUN_MARKER).strip()
        assert len(reason) > 10, f"{b.page}:{b.line}: say why the block is not run"


def test_cli_command_lines_parse() -> None:
    """Each ``durable-futures`` command shown in a shell block is one the CLI accepts."""
    from durable_futures import cli

    parser = cli._parser()
    commands = [
        (b, line)
        for b in ALL
        if b.lang in ("sh", "bash", "console")
        for line in _command_lines(b.code)
    ]
    assert commands, "no durable-futures command in the docs"
    for block, line in commands:
        args = shlex.split(line, comments=True)[1:]
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"{block.page}:{block.line}: the CLI refuses {line!r}")


def _command_lines(code: str) -> list[str]:
    """``durable-futures ...`` lines of a shell block, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [
        line.strip().removeprefix("$ ")
        for line in joined.split("\n")
        if line.strip().removeprefix("$ ").startswith("durable-futures ")
    ]
