"""Calls an ASGI app in process, the way restate-server would."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def call(
    app: Any,
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    headers: Sequence[tuple[str, str]] = (),
    chunks: Sequence[int] = (1 << 30,),
    http_version: str = "2",
    timeout: float = 30.0,
) -> Response:
    """Sends ``body`` in chunks of the given sizes (cycled), then closes the request."""
    pieces: list[bytes] = []
    i = k = 0
    while i < len(body):
        n = max(1, chunks[k % len(chunks)])
        pieces.append(body[i : i + n])
        i += n
        k += 1
    queue: list[dict[str, Any]] = [
        {"type": "http.request", "body": p, "more_body": True} for p in pieces
    ]
    queue.append({"type": "http.request", "body": b"", "more_body": False})
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    resp = Response()

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            resp.status = msg["status"]
            resp.headers = {k.decode(): v.decode() for k, v in msg["headers"]}
        elif msg["type"] == "http.response.body":
            resp.body += msg.get("body", b"")
            if not msg.get("more_body", False):
                done.set()

    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }
    await asyncio.wait_for(app(scope, receive, send), timeout)
    done.set()
    return resp
