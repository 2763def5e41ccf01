"""The real-server harness on its own, with a stand-in endpoint instead of our facade.

Checks what the e2e suite relies on: the server starts bound to loopback only, answers health,
admin SQL and the admin API; hypercorn serves h2c and HTTP/1.1 on one port; registration runs
discovery over each; send/attach/kill work; the server stops on teardown.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from .restate_harness import (
    AsgiServer,
    RestateClient,
    RestateServer,
    _installed_version,
    http_request,
    pinned_version,
)

pytestmark = pytest.mark.e2e


class ProbeEndpoint:
    """Minimal ASGI endpoint: answers discovery with one handler; every invocation fails with 500."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (http_version, method, path)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "http"
        self.seen.append((scope["http_version"], scope["method"], scope["path"]))
        if scope["path"] == "/discover":
            mode = "REQUEST_RESPONSE" if scope["http_version"] == "1.1" else "BIDI_STREAM"
            manifest = {
                "protocolMode": mode,
                "minProtocolVersion": 5,
                "maxProtocolVersion": 6,
                "services": [
                    {"name": "HarnessProbe", "ty": "SERVICE", "handlers": [{"name": "noop"}]}
                ],
            }
            body = json.dumps(manifest).encode()
            headers = [(b"content-type", b"application/vnd.restate.endpointmanifest.v2+json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"probe endpoint: no handlers"})


def test_server_lifecycle_and_admin(restate_binary: Path, tmp_path: Path) -> None:
    server = RestateServer(restate_binary, base_dir=tmp_path / "restate")
    endpoint = ProbeEndpoint()
    asgi = AsgiServer(endpoint, log_path=tmp_path / "hypercorn.log")
    assert pinned_version() == "1.7.12"
    assert _installed_version(restate_binary) == "1.7.12"
    started = time.monotonic()
    try:
        server.start()
        startup = time.monotonic() - started
        assert startup < 30, startup

        # Bound to loopback only (node-to-node, ingress, admin).
        addresses = server.listening_addresses()
        assert {port for _, port in addresses} >= {
            server.ingress_port,
            server.admin_port,
            server.fabric_port,
        }
        assert {ip for ip, _ in addresses} == {"127.0.0.1"}, addresses

        assert http_request(server.ingress_port, "GET", "/restate/health").status == 200
        assert http_request(server.admin_port, "GET", "/health").status == 200
        paths = http_request(server.admin_port, "GET", "/openapi").json()["paths"]
        assert "/invocations/{invocation_id}/cancel" in paths

        client = RestateClient(server, timeout=20)
        assert client.query("SELECT count(*) AS n FROM sys_invocation") == [{"n": 0}]

        asgi.start()
        for use_http_11 in (False, True):
            endpoint.seen.clear()
            deployment = client.register(asgi.url, use_http_11=use_http_11)
            assert [s["name"] for s in deployment["services"]] == ["HarnessProbe"]
            assert endpoint.seen == [("1.1" if use_http_11 else "2", "GET", "/discover")]

        # The probe fails every attempt: the invocation backs off until killed.
        invocation_id = client.send("HarnessProbe", "noop", {"x": 1})
        assert invocation_id.startswith("inv_")
        row = client.wait_for_status(invocation_id, {"backing-off"}, timeout=20)
        assert "500" in str(row["last_failure"]) or row["last_failure"], row
        assert ("1.1", "POST", "/invoke/HarnessProbe/noop") in endpoint.seen
        assert client.kill(invocation_id).status in (200, 202)
        attached = client.attach(invocation_id, timeout=20)
        assert attached.status >= 400, attached
        client.wait_for_status(invocation_id, {"completed"}, timeout=20)

        unknown = client.cancel("inv_1aBcDeFgHiJk1lMnOpQrStUvWxYz0AbCdE")
        assert 400 <= unknown.status < 500, unknown
    finally:
        asgi.stop()
        proc = server.proc
        server.stop()
    assert proc is not None and proc.poll() is not None
    assert server.log_path.exists()
