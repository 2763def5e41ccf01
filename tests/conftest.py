"""Session fixtures for the end-to-end tests against a real restate-server (tests/restate_harness.py).

Nothing is skipped: a missing server binary is installed with `npm ci` on first use.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .restate_harness import ALWAYS_SUSPEND_ENV, RestateServer, ensure_restate_server

# Server configurations the e2e suite runs under: the defaults, and one where the invoker
# suspends at every await so each resumption replays the journal.
SERVER_CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "always_suspend": ALWAYS_SUSPEND_ENV,
}


@pytest.fixture(scope="session")
def restate_binary() -> Path:
    return ensure_restate_server()


@pytest.fixture(scope="session", params=list(SERVER_CONFIGS))
def restate_server(
    request: pytest.FixtureRequest, restate_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RestateServer]:
    base_dir = tmp_path_factory.mktemp(f"restate-{request.param}")
    server = RestateServer(
        restate_binary, SERVER_CONFIGS[request.param], base_dir=base_dir, name=request.param
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the tails of the server and endpoint logs to the report."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            failure_logs = getattr(value, "failure_logs", None)
            if callable(failure_logs):
                for title, text in failure_logs():
                    report.sections.append((title, text))
    return report


@pytest.fixture
def servers() -> Iterator[list[Any]]:
    """Processes a test starts (``tests/test_cli.py``'s ``Server``): killed when it ends."""
    started: list[Any] = []
    try:
        yield started
    finally:
        for s in started:
            s.kill()
