"""A Restate-compatible HTTP ingress over a :class:`LocalEngine`.

The same requests a client sends to restate-server's ingress (port 8080) work here:

| request | answer |
|---|---|
| ``POST /{service}/{handler}``, ``POST /{object}/{key}/{handler}`` (body: JSON input) | 200, the output |
| the same with ``/send`` appended (``?delay=10s`` optional) | 202, ``{"invocationId", "status"}`` |
| header ``idempotency-key: K`` | a repeat returns the first invocation's result |
| ``POST /restate/awakeables/{id}/resolve`` (JSON body), ``/reject`` (text body) | 202 |
| ``GET /restate/invocation/{id}/attach`` | waits, then the output |
| ``GET /restate/invocation/{id}/output`` | the output, or 470 while it runs |
| ``GET /restate/health`` | 200 |

A terminal failure answers with its code as the HTTP status (500 if the code is outside
400..599) and ``{"code", "message"}``, like restate-server; so does every other error.
Serve it with :func:`serve` (hypercorn, 127.0.0.1:8080 by default) or any ASGI server.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from .._asgi import (
    JSON,
    HttpApp,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    respond,
)
from ..errors import DurableError
from ..service import Handler, Service, _ct
from .engine import LocalEngine

__all__ = ["Ingress", "serve"]

T = TypeVar("T")

# restate-server answers 470 ("not ready") to /output of an invocation still running.
NOT_READY = 470


class HttpError(Exception):
    """An error answer: ``status`` and the JSON body ``{"code": status, "message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ShuttingDown(Exception):
    pass


def _status_for(code: int) -> int:
    return code if 400 <= code <= 599 else 500


def _error_body(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


class Ingress(HttpApp):
    """The ASGI app: routes ingress requests to ``engine`` (which must be started)."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Requests waiting for a result answer 503 now (their invocations carry on, and
        resume after a restart); new requests are refused with 503."""
        self._stopping.set()

    # ---- ASGI ----------------------------------------------------------------------------------

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._route(scope, receive, send)
        except HttpError as e:
            await respond(send, e.status, _error_body(e.status, e.message))
        except _ShuttingDown:
            message = "the engine is shutting down; unfinished invocations resume when it restarts"
            await respond(send, 503, _error_body(503, message))
        except DurableError as e:  # storage failure, malformed id, ...
            await respond(send, _status_for(e.code), _error_body(e.code, e.message))
        except Exception as e:  # noqa: BLE001 - a bug here must still answer in JSON
            await respond(send, 500, _error_body(500, f"{type(e).__name__}: {e}"))

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope.get("method", "GET").upper()
        parts = _segments(scope)
        if not parts:
            raise HttpError(404, "not found: /")
        if parts[0] == "restate":
            await self._restate_api(method, parts[1:], scope, receive, send)
            return
        service = self.engine.services.get(parts[0])
        if service is None:
            raise HttpError(404, f"service '{parts[0]}' not found")
        key, handler_name, is_send = _target(service, parts[1:])
        handler = service.handlers.get(handler_name)
        if handler is None:
            raise HttpError(404, f"handler '{service.name}/{handler_name}' not found")
        if method != "POST":
            raise HttpError(405, f"use POST to invoke {service.name}/{handler_name}")
        body = await read_body(receive)
        _check_input(handler, body)
        idempotency_key = header(scope, b"idempotency-key") or None
        if is_send:
            delay = _delay(scope)
            inv_id, existing, _ = self._call(
                self.engine._submit,
                service.name,
                handler.name,
                None,
                key,
                idempotency_key,
                delay,
                body,
            )
            await self._wait(self._call(self.engine.flush))  # accepted means on disk
            answer = {"invocationId": inv_id, "status": "PreviouslyAccepted" if existing else "Accepted"}
            await respond(send, 202, json.dumps(answer).encode())
            return
        inv_id, ok, value = await self._wait(
            self.engine.invoke_raw(
                service.name, handler.name, body, key=key, idempotency_key=idempotency_key
            )
        )
        await self._answer(send, inv_id, ok, value, handler)

    async def _restate_api(
        self, method: str, parts: list[str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        if parts == ["health"]:
            await respond(send, 200, b'{"status":"ok"}')
            return
        if len(parts) == 3 and parts[0] == "awakeables" and parts[2] in ("resolve", "reject"):
            if method != "POST":
                raise HttpError(405, f"use POST to {parts[2]} an awakeable")
            body = await read_body(receive)
            if parts[2] == "resolve":
                try:
                    value = json.loads(body) if body.strip() else None
                except ValueError as e:
                    raise HttpError(400, f"the awakeable's value is not valid JSON: {e}") from e
                self._call(self.engine.resolve_awakeable, parts[1], value)
            else:
                message = body.decode("utf-8", "replace")
                self._call(self.engine.reject_awakeable, parts[1], message)
            await self._wait(self._call(self.engine.flush))  # accepted means on disk
            await respond(send, 202, b"")
            return
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("attach", "output"):
            if method != "GET":
                raise HttpError(405, f"use GET for /restate/invocation/{{id}}/{parts[2]}")
            inv_id = parts[1]
            if parts[2] == "output":
                ok, value = await self._now(inv_id)
            else:
                ok, value = await self._wait(self.engine._outcome(inv_id))
            await self._answer(send, inv_id, ok, value, None)
            return
        raise HttpError(404, "not found: /restate/" + "/".join(parts))

    # ---- helpers -------------------------------------------------------------------------------

    def _call(self, f: Callable[..., T], *args: Any) -> T:
        """Calls the engine; a stopped engine (shutting down) answers 503."""
        if self._stopping.is_set():
            raise _ShuttingDown()
        try:
            return f(*args)
        except RuntimeError as e:  # "the engine is not started"
            if "not started" in str(e):
                raise _ShuttingDown() from e
            raise

    async def _wait(self, coro: Coroutine[Any, Any, T] | asyncio.Future[T]) -> T:
        """Awaits an engine result, giving up (503) when the ingress stops."""
        if self._stopping.is_set():
            if asyncio.iscoroutine(coro):
                coro.close()
            raise _ShuttingDown()
        task = asyncio.ensure_future(coro)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            stopping.cancel()
        if task not in done:
            task.cancel()
            raise _ShuttingDown()
        if task.cancelled():  # the engine closed under us
            raise _ShuttingDown()
        try:
            return task.result()
        except RuntimeError as e:
            if "not started" in str(e):
                raise _ShuttingDown() from e
            raise

    async def _now(self, inv_id: str) -> tuple[bool, Any]:
        """The outcome if the invocation completed; 470 if it still runs (404: unknown)."""
        self._call(self.engine._require)
        task = asyncio.ensure_future(self.engine._outcome(inv_id))
        await asyncio.sleep(0)  # the task's first step: answers at once, or starts waiting
        if not task.done():
            task.cancel()
            raise HttpError(NOT_READY, f"invocation '{inv_id}' has not completed yet")
        return task.result()

    async def _answer(
        self, send: Send, inv_id: str, ok: bool, value: Any, handler: Handler[Any, Any] | None
    ) -> None:
        headers = [(b"x-restate-id", inv_id.encode())]
        if ok:
            ct = _ct(handler.output_serde).encode() if handler is not None else JSON
            await respond(send, 200, bytes(value), ct, headers)
            return
        code, message = value
        await respond(send, _status_for(code), _error_body(code, message), JSON, headers)


# ---- request parsing -----------------------------------------------------------------------------


def _segments(scope: Scope) -> list[str]:
    """Path segments, each percent-decoded on its own (a key may contain an encoded ``/``)."""
    raw = scope.get("raw_path")
    if raw:
        path = bytes(raw).decode("latin-1").split("?", 1)[0]
        parts = [urllib.parse.unquote(p) for p in path.split("/")]
    else:
        parts = str(scope.get("path", "")).split("/")
    while parts and parts[0] == "":
        parts.pop(0)
    if parts and parts[-1] == "":
        parts.pop()
    return parts


def _target(service: Service, rest: list[str]) -> tuple[str | None, str, bool]:
    """``(key, handler, is_send)`` of the path after the service name."""
    is_send = False
    if service.ty == "VIRTUAL_OBJECT":
        if len(rest) == 3 and rest[2] == "send":
            rest, is_send = rest[:2], True
        if len(rest) == 1:
            raise HttpError(
                400,
                f"{service.name} is a virtual object: the key is missing "
                f"(POST /{service.name}/{{key}}/{rest[0]})",
            )
        if len(rest) != 2:
            raise HttpError(404, f"no route: {service.name} takes /{service.name}/{{key}}/{{handler}}")
        if not rest[0]:
            raise HttpError(400, f"{service.name} is a virtual object: the key is empty")
        return rest[0], rest[1], is_send
    if len(rest) == 2 and rest[1] == "send":
        rest, is_send = rest[:1], True
    if len(rest) == 2 and rest[0] and rest[1] in service.handlers:
        raise HttpError(
            400,
            f"{service.name} is a service, not a virtual object: it takes no key "
            f"(POST /{service.name}/{rest[1]})",
        )
    if len(rest) != 1:
        raise HttpError(404, f"no route: {service.name} takes /{service.name}/{{handler}}")
    return None, rest[0], is_send


def _check_input(handler: Handler[Any, Any], body: bytes) -> None:
    """Malformed JSON is refused before any invocation exists (400). Well-formed JSON of the
    wrong shape fails the invocation terminally with 400 when the handler decodes it."""
    if not handler.takes_input or not body.strip():
        return
    if getattr(handler.input_serde, "content_type", None) != "application/json":
        return
    try:
        json.loads(body)
    except ValueError as e:
        raise HttpError(
            400, f"invalid JSON input for {handler.service_name}/{handler.name}: {e}"
        ) from e


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: str) -> timedelta:
    """``10s``, ``1m30s``, ``500ms``, ``2h``, ``1d`` or ISO 8601 ``PT10S`` / ``P1DT2H``."""
    s = text.strip()
    iso = re.fullmatch(
        r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?",
        s.upper(),
    )
    if iso and s.upper() not in ("P", "PT"):
        d, h, m, sec = (float(g) if g else 0.0 for g in iso.groups())
        return timedelta(days=d, hours=h, minutes=m, seconds=sec)
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(s):
        if s[pos : match.start()].strip():
            break
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos == 0 or s[pos:].strip():
        raise ValueError(f"not a duration: {text!r} (use e.g. 10s, 1m30s, 500ms or PT10S)")
    return timedelta(milliseconds=total)


def _delay(scope: Scope) -> timedelta | None:
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    values = urllib.parse.parse_qs(query).get("delay")
    if not values:
        return None
    try:
        return parse_duration(values[-1])
    except ValueError as e:
        raise HttpError(400, str(e)) from e


# ---- serving ---------------------------------------------------------------------------------


async def serve(
    engine: LocalEngine,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Serves the ingress of a started ``engine`` with hypercorn (HTTP/1.1 and h2c) until
    ``shutdown_trigger`` returns; then waiting requests answer 503 and the server stops.
    The engine is left running (close it afterwards)."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    app = Ingress(engine)
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.keep_alive_timeout = 75
    config.accesslog = None
    config.graceful_timeout = 5

    async def trigger() -> None:
        if shutdown_trigger is None:
            await asyncio.Event().wait()
        else:
            await shutdown_trigger()
        app.stop()

    asgi: Any = app
    await hypercorn_serve(asgi, config, shutdown_trigger=trigger)
