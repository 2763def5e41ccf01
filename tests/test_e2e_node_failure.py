"""A restate-server node that dies mid-invocation leaves the endpoint's log clean.

restate-server is SIGKILLed while an invocation streams (bidi, h2c) through hypercorn; the
endpoint must log nothing at ERROR: no unhandled exception from hypercorn's HTTP/2 protocol
(see ``durable_futures._asgi.guard_hypercorn``) nor from the endpoint itself.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest

import durable_futures as df

from . import conformance_service
from .restate_harness import AsgiServer, RestateClient, RestateServer, wait_until

pytestmark = pytest.mark.e2e

KILLS = 3


def test_killing_the_node_mid_invocation_leaves_a_clean_endpoint_log(
    restate_binary: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `sequence` journals one run after another: traffic both ways while the node lives.
    app = df.asgi_app(conformance_service.svc, protocol="bidi")
    endpoint = AsgiServer(app, log_path=tmp_path / "hypercorn.log")
    endpoint.start()
    try:
        with caplog.at_level(logging.WARNING):
            for n in range(KILLS):
                server = RestateServer(restate_binary, base_dir=tmp_path / f"node-{n}")
                server.start()
                try:
                    client = RestateClient(server, timeout=30)
                    client.register(endpoint.url, use_http_11=False)
                    conformance_service.executions.clear()
                    for _ in range(4):
                        client.send("Conformance", "sequence", 100_000)
                    wait_until(lambda: len(conformance_service.executions) > 100, 20)
                    time.sleep(0.5)
                    assert server.proc is not None
                    os.killpg(server.proc.pid, signal.SIGKILL)
                    server.proc.wait(10)
                    time.sleep(1.0)
                finally:
                    server.cleanup()
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        log = endpoint.log_tail(400)
    finally:
        endpoint.stop()
        conformance_service.executions.clear()
    assert errors == [], [r.getMessage() for r in errors]
    assert "Traceback" not in log and "KeyError" not in log, log
