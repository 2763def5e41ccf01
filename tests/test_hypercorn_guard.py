"""hypercorn's HTTP/2 protocol and a peer that goes away mid-stream (``_asgi.guard_hypercorn``).

What restate-server does when a node is killed or loses leadership, played by an HTTP/2
client on 127.0.0.1: it opens a stream, sends request data the app has not read yet, and
resets the connection while the app still sends on the stream. hypercorn's write fails, it
closes every stream, and then hands the request data it still holds to streams that no
longer exist. Unguarded, that is a ``KeyError`` in ``hypercorn/protocol/h2.py`` that asyncio
logs as an unhandled exception; guarded, the log stays clean.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.protocol.h2 import H2Protocol

import durable_futures as df
from durable_futures import _asgi
from durable_futures.local.ingress import Ingress

# More request messages than hypercorn queues for an app (``max_app_queue_size``, 10), so
# that hypercorn is still holding some when the connection goes.
DATA_FRAMES = 40
# What the app saw, per run.
seen: list[str] = []


class SlowReader(_asgi.HttpApp):
    """Answers at once, sends again after the client has gone, reads the request last."""

    async def http(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0.3)  # the client resets the connection meanwhile
        await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
        await asyncio.sleep(0.3)  # hypercorn's write fails: it closes the stream
        while (await receive())["type"] != "http.disconnect":
            pass
        seen.append("disconnect")


async def _unguarded_slow_reader(scope: Any, receive: Any, send: Any) -> None:
    """The same app, without the package's base class (that guards hypercorn)."""
    if scope["type"] == "lifespan":
        await _asgi.lifespan(receive, send)
    else:
        await SlowReader().http(scope, receive, send)


async def _peer_resets_mid_stream(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "127.0.0.1")],
    )
    for i in range(DATA_FRAMES):
        conn.send_data(stream, b"%d" % i)
    writer.write(conn.data_to_send())  # one write: hypercorn reads it in one batch
    await writer.drain()
    answered = False
    while not answered:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data, "the server closed the connection before answering"
        answered = any(isinstance(e, h2.events.DataReceived) for e in conn.receive_data(data))
    # Reset, not close: unread data and SO_LINGER 0 make the kernel send RST.
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _serve_one_reset(app: Any) -> None:
    seen.clear()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    try:
        for _ in range(100):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            w.close()
            break
        await _peer_resets_mid_stream(port)
        await asyncio.sleep(1.0)  # the app's two sleeps, then its read of the request
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)
    gc.collect()


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def _unguarded(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Takes the guard out of hypercorn for this test; returns the unguarded method."""
    _asgi.guard_hypercorn()
    guarded: Any = H2Protocol._handle_events
    monkeypatch.setattr(H2Protocol, "_handle_events", guarded.__wrapped__)
    monkeypatch.setattr(_asgi._guard, "installed", False)
    return guarded.__wrapped__


def _guarded() -> bool:
    return getattr(H2Protocol._handle_events, "_durable_futures_guard", False)


def test_without_the_guard_the_reset_is_logged_as_an_unhandled_key_error(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reproduction is real: unguarded hypercorn fails exactly there. (Once a hypercorn
    release handles it, this fails: drop the guard then.)"""
    _unguarded(monkeypatch)
    with caplog.at_level(logging.ERROR):
        asyncio.run(_serve_one_reset(_unguarded_slow_reader))
    assert not _guarded()
    errors = _errors(caplog)
    assert errors, "the peer's reset did not reproduce hypercorn's KeyError"
    # Python 3.11+ reports it from the streams callback; 3.10 as a task nobody awaited.
    assert any(
        m in errors[0].getMessage()
        for m in ("Unhandled exception in client_connected_cb", "Task exception was never retrieved")
    )
    exc = errors[0].exc_info[1] if errors[0].exc_info else None
    assert exc is not None
    text = "".join(traceback.format_exception(exc))
    assert "KeyError" in text and "protocol/h2.py" in text and "_handle_events" in text, text


def test_with_the_guard_the_reset_leaves_a_clean_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unguarded(monkeypatch)
    with caplog.at_level(logging.DEBUG):
        asyncio.run(_serve_one_reset(SlowReader()))
    assert _guarded()  # by the app itself, on hypercorn's lifespan scope
    assert _errors(caplog) == []
    assert seen == ["disconnect"]  # the app learnt that the client went away


async def _lifespan(app: Any) -> None:
    queue = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, str]:
        return queue.pop(0)

    async def send(msg: dict[str, str]) -> None:
        sent.append(msg["type"])

    await app({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_the_endpoint_and_the_ingress_guard_hypercorn_on_their_first_scope(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unguarded = _unguarded(monkeypatch)
    makers: list[Callable[[], Any]] = [
        lambda: df.asgi_app(df.Service("Guarded")),
        lambda: Ingress(df.LocalEngine()),
    ]
    for make in makers:
        monkeypatch.setattr(H2Protocol, "_handle_events", unguarded)
        monkeypatch.setattr(_asgi._guard, "installed", False)
        app = make()
        assert not _guarded()  # creating an app changes nothing
        asyncio.run(_lifespan(app))
        assert _guarded()
    _asgi.guard_hypercorn()  # idempotent: no second wrapper
    wrapped: Any = H2Protocol._handle_events
    assert wrapped.__wrapped__ is unguarded


def test_without_hypercorn_loaded_there_is_nothing_to_guard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unguarded = _unguarded(monkeypatch)
    monkeypatch.delitem(sys.modules, "hypercorn.protocol.h2")
    _asgi.guard_hypercorn()
    assert H2Protocol._handle_events is unguarded and not _asgi._guard.installed
