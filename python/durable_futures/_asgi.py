"""ASGI plumbing shared by the endpoint (:mod:`durable_futures.endpoint.asgi`) and the
embedded engine's ingress (:mod:`durable_futures.local.ingress`): the ASGI 3 types, reading
headers and bodies, whole responses, the lifespan protocol, and a guard for hypercorn.
"""

from __future__ import annotations

import functools
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from . import _core

__all__ = [
    "JSON",
    "SERVER_HEADER",
    "App",
    "HttpApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "body_chunks",
    "drain",
    "header",
    "guard_hypercorn",
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


class HttpApp(ABC):
    """Base of the package's ASGI apps: answers the lifespan protocol, ignores other scopes
    (websockets) and hands HTTP requests to :meth:`http`. Served by hypercorn, the server the
    apps are meant for, the first scope guards it (:func:`guard_hypercorn`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _guard.installed:
            guard_hypercorn()
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http":
            await self.http(scope, receive, send)

    @abstractmethod
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answers one HTTP request."""


# ---- hypercorn's HTTP/2 KeyError --------------------------------------------------------------


class _GoneStream:
    """Stands in for a stream that hypercorn has already closed: events for it go nowhere."""

    idle = True

    async def handle(self, event: object) -> None:
        pass


_GONE = _GoneStream()


class _Streams(dict[int, Any]):
    """hypercorn's table of open HTTP/2 streams, where a closed one reads as :data:`_GONE`."""

    def __missing__(self, stream_id: int) -> _GoneStream:
        return _GONE


class _Guard:
    installed = False


_guard = _Guard()


def guard_hypercorn() -> None:
    """Guards hypercorn's HTTP/2 protocol against data arriving for a stream it already
    closed, if hypercorn has loaded it, that is if hypercorn serves this process (the apps
    call this on their first scope, so it costs nothing to serve them with something else).
    Idempotent.

    ``hypercorn.protocol.h2.H2Protocol._handle_events`` (hypercorn 0.17 and 0.18, the latest)
    looks the stream of each ``DataReceived`` event up in ``self.streams`` without a guard.
    The stream is gone once the connection is closed: when restate-server is killed or loses
    leadership, a write fails, hypercorn closes every stream, and the request data still
    buffered from that connection is then handed over for streams that no longer exist. The
    ``KeyError`` kills the connection's task and asyncio logs it as "Unhandled exception in
    client_connected_cb". With the guard that data is dropped, as data for a stream that
    ended normally already is (the ``StreamEnded`` branch next to it catches the
    ``KeyError``); flow control is still acknowledged, since hypercorn does that after the
    lookup. Connections that are already open are guarded from their next read on.
    """
    h2 = sys.modules.get("hypercorn.protocol.h2")
    protocol: Any = getattr(h2, "H2Protocol", None)
    if protocol is None:
        return
    unguarded = protocol._handle_events
    if not getattr(unguarded, "_durable_futures_guard", False):

        @functools.wraps(unguarded)
        async def _handle_events(self: Any, events: list[Any]) -> None:
            if type(self.streams) is dict:
                self.streams = _Streams(self.streams)
            await unguarded(self, events)

        _handle_events._durable_futures_guard = True  # type: ignore[attr-defined]
        protocol._handle_events = _handle_events
    _guard.installed = True
