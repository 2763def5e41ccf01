"""ASGI plumbing shared by the endpoint (:mod:`durable_futures.endpoint.asgi`) and the
embedded engine's ingress (:mod:`durable_futures.local.ingress`): the ASGI 3 types, reading
headers and bodies, whole responses, the lifespan protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from . import _core

__all__ = [
    "JSON",
    "SERVER_HEADER",
    "App",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "body_chunks",
    "drain",
    "header",
    "lifespan",
    "read_body",
    "respond",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

SERVER_HEADER = (b"x-restate-server", f"durable-futures/{_core.__version__}".encode())
JSON = b"application/json"


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the header ``name`` (lower case), or ``None``."""
    for k, v in scope.get("headers", ()):
        if bytes(k).lower() == name:
            return bytes(v).decode("latin-1")
    return None


async def body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives, up to its end or the client's disconnect."""
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        yield bytes(msg.get("body", b""))
        if not msg.get("more_body", False):
            return


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    return b"".join([chunk async for chunk in body_chunks(receive)])


async def drain(receive: Receive) -> None:
    """Reads the request body to its end without keeping it (before answering early)."""
    async for _ in body_chunks(receive):
        pass


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A whole response: status, ``content-type``, ``x-restate-server``, ``headers``, body."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), SERVER_HEADER, *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def lifespan(receive: Receive, send: Send) -> None:
    """The lifespan protocol: nothing to start or stop."""
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
