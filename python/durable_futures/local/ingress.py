"""A Restate-compatible HTTP ingress over a :class:`LocalEngine`.

The same requests a client sends to restate-server's ingress (port 8080) work here:

| request | answer |
|---|---|
| ``POST /{service}/{handler}``, ``POST /{object}/{key}/{handler}`` (body: JSON input) | 200, the output |
| ``POST /{workflow}/{key}/{handler}`` | the same; the main handler once per key (409 after) |
| the same with ``/send`` appended (``?delay=10s`` optional) | 202, ``{"invocationId", "status"}`` |
| header ``idempotency-key: K`` | a repeat returns the first invocation's result |
| ``POST /restate/awakeables/{id}/resolve`` (JSON body), ``/reject`` (text body) | 202 |
| ``GET /restate/invocation/{id}/attach`` | waits, then the output |
| ``GET /restate/invocation/{id}/output`` | the output, or 470 while it runs |
| ``GET /restate/workflow/{workflow}/{key}/attach``, ``/output`` | the same, for the key's run |
| ``GET /restate/invocation/{service}/[{key}/]{handler}/{idempotency-key}/attach``, ``/output`` | the same, for an idempotent request |
| ``GET /restate/health`` | 200 |

Requests are refused the way restate-server 1.7's ingress refuses them (its
``crates/ingress-http``: ``handler/path_parsing.rs``, ``handler/service_handler.rs``,
``handler/error.rs``, and the input rules of ``types/src/schema/invocation_target.rs``),
checked in the same order: a body over ``max_body_bytes`` (413, from ``content-length`` before
anything is read, or once the streamed body passes it), a path of fewer than 2 or more than 7
``/`` (400), an unknown service (404), a path of the wrong shape for the service — a key for a
plain service, none for a virtual object, a last segment other than ``send`` (400), an unknown
handler (404), a handler that is ``ingress_private`` (400, ``the invoked service is not
public``; other handlers and ``LocalEngine`` still call it), a method other than GET and POST
(405), then the input against the handler's manifest ``input``
(:func:`durable_futures.service.input_manifest`; 400): a body or a content-type for a handler
without input, no content-type or a different one for an input, an empty body for a JSON input.
``?delay`` on a call (not a send) is 400, and so is a header value that is not visible ASCII.
Unlike restate-server, which hands such input to the handler (whose decoding then fails the
invocation with 400), input that does not decode — malformed JSON, ``null`` or a value of the
wrong type for a required input — is refused here with 400 before an invocation exists: a
refused request never stores anything.

A workflow's main handler runs once per key: calling it again (while it runs or after)
answers 409 ``the workflow method was already invoked``, sending it again 202
``PreviouslyAccepted`` with the first run's id, and an ``idempotency-key`` on it is refused
(400). Attach and output answer as restate-server does: 404 ``invocation not found`` from
``/output`` and ``not found`` from ``/attach`` when nothing is there (a workflow key that has
not run, an idempotency key never used), 470 from ``/output`` while it runs, 400 for a
malformed invocation id (even before the method is checked), 405 for a method other than GET.

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
    body_chunks,
    header,
    respond,
)
from .._logging import ingress_logger as _log
from ..errors import DurableError, TerminalError, UnknownInvocationError
from ..service import Handler, Service, _ct, input_manifest
from .engine import LocalEngine

__all__ = ["DEFAULT_MAX_BODY_BYTES", "Ingress", "serve"]

T = TypeVar("T")

# The engine's invocation ids (a malformed one is a client's mistake: 400).
_INVOCATION_ID = re.compile(r"inv_[0-9a-f]{32}")

# restate-server answers 470 ("not ready") to /output of an invocation still running.
NOT_READY = 470

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024

#: Calls waiting plus invocations queued for an attempt beyond which new invocations are
#: refused with 503 (see :class:`Ingress`).
DEFAULT_MAX_IN_FLIGHT = 20_000
"""The largest request body accepted by default: restate-server's ingress limit
(``ingress.request-size-limit``, by default ``networking.message-size-limit``, 32 MiB: the
largest message the cluster carries)."""

_BAD_SERVICE_PATH = (
    "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"
)
_BAD_AWAKEABLES_PATH = (
    "bad path, expected either /restate/awakeables/:id/resolve or /restate/awakeables/:id/reject"
)
_BAD_INVOCATION_PATH = (
    "bad path, expected either /restate/invocation/:invocation_id/output or "
    "/restate/invocation/:invocation_id/attach or "
    "/restate/invocation/:invocation_target/:idempotency_key/output or "
    "/restate/invocation/:invocation_target/:idempotency_key/attach"
)
_BAD_WORKFLOW_PATH = (
    "bad path, expected either /restate/workflow/:workflow_name/:workflow_key/output or "
    "/restate/workflow/:workflow_name/:workflow_key/attach"
)
_UNSUPPORTED_IDEMPOTENCY_KEY = (
    "cannot use the idempotency key with workflow handlers. The handler invocation will "
    "already be idempotent by the workflow key itself."
)


class HttpError(Exception):
    """An error answer: ``status`` and the JSON body ``{"code": status, "message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Overloaded(Exception):
    """Too much work in flight: the client should retry later."""


class _ShuttingDown(Exception):
    pass


def _status_for(code: int) -> int:
    return code if 400 <= code <= 599 else 500


def _error_body(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


class Ingress(HttpApp):
    """The ASGI app: routes ingress requests to ``engine`` (which must be started).

    A request body larger than ``max_body_bytes`` (default 32 MiB, restate-server's) is
    refused with 413 without being stored: at once when ``content-length`` announces it,
    otherwise as soon as that many bytes have arrived (the rest is not read).

    Work in flight is bounded: while calls waiting for their result plus invocations
    waiting for an attempt to start reach ``max_in_flight``, a new invocation is refused
    with 503 and ``Retry-After`` (nothing is stored; the client retries later) rather than
    queued without limit."""

    def __init__(
        self,
        engine: LocalEngine,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        for name, value in (("max_body_bytes", max_body_bytes), ("max_in_flight", max_in_flight)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        self.engine = engine
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        # Calls waiting for their result.
        self._waiting = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Requests waiting for a result answer 503 now (their invocations carry on, and
        resume after a restart); new requests are refused with 503."""
        self._stopping.set()

    # ---- ASGI ----------------------------------------------------------------------------------

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self._check_content_length(scope)
            await self._route(scope, receive, send)
        except HttpError as e:
            await respond(send, e.status, _error_body(e.status, e.message))
        except _Overloaded:
            message = (
                f"too much work in flight ({self.max_in_flight} invocations waiting or "
                "queued); retry later"
            )
            await respond(
                send, 503, _error_body(503, message), headers=[(b"retry-after", b"1")]
            )
        except _ShuttingDown:
            message = "the engine is shutting down; unfinished invocations resume when it restarts"
            await respond(send, 503, _error_body(503, message))
        except DurableError as e:  # storage failure, malformed id, ...
            if e.code >= 500:
                _log.warning("%s %s: %s", scope.get("method"), scope.get("path"), e)
            await respond(send, _status_for(e.code), _error_body(e.code, e.message))
        except Exception as e:  # noqa: BLE001 - a bug here must still answer in JSON
            _log.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=True)
            await respond(send, 500, _error_body(500, f"{type(e).__name__}: {e}"))

    def _check_content_length(self, scope: Scope) -> None:
        """413 for a body announced larger than the limit, before anything else (restate-server
        checks it in a layer in front of its routes). A length that does not parse is left to
        the streamed check."""
        value = header(scope, b"content-length")
        if value is not None and value.strip().isdigit() and int(value) > self.max_body_bytes:
            raise HttpError(
                413, f"length limit exceeded: the body may have at most {self.max_body_bytes} bytes"
            )

    async def _body(self, receive: Receive) -> bytes:
        """The whole body; 413 as soon as it passes the limit (nothing more is read)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in body_chunks(receive):
            size += len(chunk)
            if size > self.max_body_bytes:
                raise HttpError(
                    413,
                    "cannot read body: length limit exceeded: the body may have at most "
                    f"{self.max_body_bytes} bytes",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope.get("method", "GET").upper()
        path, raw = _path(scope)
        if not 2 <= path.count("/") <= 7:
            raise HttpError(400, f"bad path: {path}")
        parts = path.split("/")[1:]
        if parts[0] == "restate":
            await self._restate_api(method, parts[1:], scope, receive, send)
            return
        if parts[0] == "openapi":
            raise HttpError(404, "not found")
        service = self.engine.services.get(parts[0])
        if service is None:
            raise HttpError(404, _service_not_found(parts[0]))
        key, handler_name, is_send = _target(service, parts[1:], raw)
        handler = service.handlers.get(handler_name)
        if handler is None:
            raise HttpError(
                404,
                f"the service '{service.name}' exists, but the handler '{handler_name}' was not "
                "found, check that the handler exists in the latest registered service version.",
            )
        _check_public(service, handler)
        idempotency_key = _header_text(scope, b"idempotency-key") or None
        if idempotency_key is not None and handler.kind == "workflow":
            raise HttpError(400, _UNSUPPORTED_IDEMPOTENCY_KEY)
        if method not in ("GET", "POST"):
            raise HttpError(405, "method not allowed")
        body = await self._body(receive)
        _check_input(handler, _header_text(scope, b"content-type"), body)
        delay = _delay(scope)
        _check_headers(scope)
        if delay is not None and not is_send:
            raise HttpError(
                400,
                "cannot use the delay query parameter with calls. The delay is supported only "
                "with sends",
            )
        _decode_input(handler, body)
        if key is not None and not key:
            raise HttpError(400, f"{service.name} is a {_kind(service)}: the key must not be empty")
        self._check_capacity()
        if is_send:
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
            answer = {
                "invocationId": inv_id,
                "status": "PreviouslyAccepted" if existing else "Accepted",
            }
            headers = [(b"x-restate-id", inv_id.encode())]
            await respond(send, 202, json.dumps(answer).encode(), JSON, headers)
            return
        self._waiting += 1
        try:
            inv_id, ok, value = await self._wait(
                self.engine.invoke_raw(
                    service.name, handler.name, body, key=key, idempotency_key=idempotency_key
                )
            )
        finally:
            self._waiting -= 1
        await self._answer(send, inv_id, ok, value, handler)

    def _check_capacity(self) -> None:
        """503 + ``Retry-After`` while the work in flight is at its bound."""
        if self._waiting + self.engine.backlog() >= self.max_in_flight:
            raise _Overloaded()

    async def _restate_api(
        self, method: str, parts: list[str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        verb = parts[0]
        if verb == "health":
            if method != "GET":
                raise HttpError(405, "method not allowed")
            await respond(send, 200, b'{"status":"ok"}')
            return
        if verb in ("awakeables", "a"):
            if len(parts) < 3:
                raise HttpError(400, _BAD_AWAKEABLES_PATH)
            awakeable_id, action = parts[1], parts[2]
            if action not in ("resolve", "reject"):
                raise HttpError(404, "not found")
            if method != "POST":
                raise HttpError(405, "method not allowed")
            body = await self._body(receive)
            if action == "resolve":
                try:
                    value = json.loads(body) if body.strip() else None
                except ValueError as e:
                    raise HttpError(400, f"the awakeable's value is not valid JSON: {e}") from e
                self._call(self.engine.resolve_awakeable, awakeable_id, value)
            else:
                message = body.decode("utf-8", "replace")
                self._call(self.engine.reject_awakeable, awakeable_id, message)
            await self._wait(self._call(self.engine.flush))  # accepted means on disk
            await respond(send, 202, b"")
            return
        if verb == "invocation":
            await self._invocation_api(method, parts[1:], scope, send)
            return
        if verb == "workflow":
            await self._workflow_api(method, parts[1:], scope, send)
            return
        raise HttpError(404, "not found")

    async def _invocation_api(
        self, method: str, parts: list[str], scope: Scope, send: Send
    ) -> None:
        """``/restate/invocation/{id}/attach|output`` and, for an idempotent request,
        ``/restate/invocation/{service}/[{key}/]{handler}/{idempotency-key}/attach|output``;
        checked in restate-server's order: the shape of the path, the service (404), the verb
        (404), the invocation id (400), the method (405). Segments after the verb are
        ignored, as there."""
        if len(parts) < 2:
            raise HttpError(400, _BAD_INVOCATION_PATH)
        if len(parts) == 2:
            inv_id, action = parts
            if action not in ("attach", "output"):
                raise HttpError(404, "not found")
            problem = _bad_invocation_id(inv_id)
            if problem is not None:
                raise HttpError(400, f"bad invocation id '{inv_id}': {problem}")
            if method != "GET":
                raise HttpError(405, "method not allowed")
            await self._attach_or_output(send, action, inv_id, None, name_it=True)
            return
        service = self.engine.services.get(parts[0])
        if service is None:
            raise HttpError(404, _service_not_found(parts[0]))
        rest, key = parts[1:], ""
        if service.ty in ("VIRTUAL_OBJECT", "WORKFLOW"):
            key, rest = _key(scope, rest[0]), rest[1:]
        if len(rest) < 3:
            raise HttpError(400, _BAD_INVOCATION_PATH)
        handler_name, idempotency_key, action = rest[:3]
        if action not in ("attach", "output"):
            raise HttpError(404, "not found")
        if method != "GET":
            raise HttpError(405, "method not allowed")
        core = self._call(self.engine._require)
        found = core.idempotent_invocation(service.name, handler_name, key, idempotency_key)
        await self._attach_or_output(send, action, found, service.handlers.get(handler_name))

    async def _workflow_api(
        self, method: str, parts: list[str], scope: Scope, send: Send
    ) -> None:
        """``/restate/workflow/{workflow}/{key}/attach|output``: the key's run. As on
        restate-server, any name is looked up (one that is no workflow has no run: 404) and
        segments after the verb are ignored."""
        if len(parts) < 3:
            raise HttpError(400, _BAD_WORKFLOW_PATH)
        name, key, action = parts[0], _key(scope, parts[1]), parts[2]
        if action not in ("attach", "output"):
            raise HttpError(404, "not found")
        if method != "GET":
            raise HttpError(405, "method not allowed")
        core = self._call(self.engine._require)
        service = self.engine.services.get(name)
        main = None
        if service is not None:
            main = next((h for h in service.handlers.values() if h.kind == "workflow"), None)
        await self._attach_or_output(send, action, core.workflow_run(name, key), main)

    async def _attach_or_output(
        self,
        send: Send,
        action: str,
        inv_id: str | None,
        handler: Handler[Any, Any] | None,
        *,
        name_it: bool = False,
    ) -> None:
        """Answers ``attach`` (waits for the outcome) or ``output`` (470 until there is one)
        of ``inv_id`` (``None``: nothing found). A 404 of ``attach`` names the invocation
        in ``x-restate-id`` when the request did (``name_it``), as restate-server does."""
        missing = inv_id is None
        outcome: tuple[bool, Any] | None = None
        if inv_id is not None:
            try:
                outcome = self._call(self.engine.output_raw, inv_id)
            except UnknownInvocationError:
                missing = True
        if missing:
            if action == "output":
                raise HttpError(404, "invocation not found")
            named = [(b"x-restate-id", inv_id.encode())] if name_it and inv_id else []
            await respond(send, 404, _error_body(404, "not found"), JSON, named)
            return
        assert inv_id is not None
        if outcome is None:
            if action == "output":
                raise HttpError(NOT_READY, "the invocation exists but has not completed yet")
            outcome = await self._wait(self.engine._outcome(inv_id, known=True))
        if handler is None:
            handler = self._call(self.engine._handler_of, inv_id)
        ok, value = outcome
        await self._answer(send, inv_id, ok, value, handler)

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


def _path(scope: Scope) -> tuple[str, bool]:
    """The request path as sent (``raw``: percent-encoded, only a key is decoded) or, when the
    server gives no ``raw_path``, as decoded by it; trailing (and doubled leading) slashes
    trimmed, as restate-server does."""
    raw = scope.get("raw_path")
    if raw:
        path = bytes(raw).decode("latin-1").split("?", 1)[0]
    else:
        path = str(scope.get("path", "") or "/")
    if path.endswith("/") or path.startswith("//"):
        path = "/" + path.strip("/")
    return path, bool(raw)


def _target(service: Service, rest: list[str], raw: bool) -> tuple[str | None, str, bool]:
    """``(key, handler, is_send)`` of the path after the service name (restate-server's
    shapes: ``/{service}/{handler}[/send]``, ``/{object}/{key}/{handler}[/send]``)."""
    keyed = service.ty in ("VIRTUAL_OBJECT", "WORKFLOW")
    key: str | None = None
    if keyed:
        if not rest:
            raise HttpError(400, _BAD_SERVICE_PATH)
        key = _decode_key(rest[0]) if raw else rest[0]
        rest = rest[1:]
    if not rest:
        hint = ""
        if keyed and key in service.handlers:
            hint = (
                f": {service.name} is a {_kind(service)}: the key is missing "
                f"(POST /{service.name}/{{key}}/{key})"
            )
        raise HttpError(400, _BAD_SERVICE_PATH + hint)
    handler, tail = rest[0], rest[1:]
    if tail and (tail[0] != "send" or len(tail) > 1):
        hint = ""
        if not keyed and tail[0] in service.handlers:
            hint = (
                f": {service.name} is a service, not a virtual object: it takes no key "
                f"(POST /{service.name}/{tail[0]})"
            )
        raise HttpError(400, _BAD_SERVICE_PATH + hint)
    return key, handler, bool(tail)


def _decode_key(segment: str) -> str:
    try:
        return urllib.parse.unquote_to_bytes(segment.encode("latin-1")).decode("utf-8")
    except UnicodeDecodeError as e:
        raise HttpError(400, f"bad path, cannot decode key: {e}") from e


def _key(scope: Scope, segment: str) -> str:
    """A key segment of the path: percent-decoded when the server gave the raw path."""
    return _decode_key(segment) if _path(scope)[1] else segment


def _kind(service: Service) -> str:
    return "workflow" if service.ty == "WORKFLOW" else "virtual object"


def _service_not_found(name: str) -> str:
    return f"service '{name}' not found, make sure to register the service before calling it."


def _bad_invocation_id(text: str) -> str | None:
    """Why ``text`` is not one of this engine's invocation ids (``inv_`` and 32 hex digits),
    in the words restate-server uses for its own ids; ``None`` if it is one."""
    if _INVOCATION_ID.fullmatch(text):
        return None
    prefix, underscore, rest = text.partition("_")
    if not text:
        return "bad length"
    if not underscore:
        return "bad format"
    if prefix != "inv":
        return f"unrecognized resource type: {prefix}"
    return "bad length" if len(rest) != 32 else "bad format"


def _visible_ascii(value: bytes) -> bool:
    """What restate-server (``http::HeaderValue::to_str``) accepts as a header value."""
    return all(32 <= b < 127 or b == 9 for b in value)


def _header_text(scope: Scope, name: bytes) -> str | None:
    """A header's first value; 400 if it is not visible ASCII."""
    for k, v in scope.get("headers", ()):
        if bytes(k).lower() == name:
            if not _visible_ascii(bytes(v)):
                raise HttpError(400, f"bad header {name.decode()}: not visible ASCII")
            return bytes(v).decode("ascii")
    return None


def _check_public(service: Service, handler: Handler[Any, Any]) -> None:
    """A handler that is ``ingress_private`` (its own option, else its service's) is refused
    with restate-server's 400; other handlers and ``LocalEngine`` can still call it."""
    private = handler.ingress_private
    if private is None:
        private = service.ingress_private
    if private:
        raise HttpError(400, "the invoked service is not public")


def _check_headers(scope: Scope) -> None:
    """Every header value must be visible ASCII (restate-server copies them into the
    invocation and refuses one it cannot read as text)."""
    for k, v in scope.get("headers", ()):
        if not _visible_ascii(bytes(v)):
            name = bytes(k).decode("latin-1").lower()
            raise HttpError(400, f"bad header {name}: not visible ASCII")


def _check_input(handler: Handler[Any, Any], content_type: str | None, body: bytes) -> None:
    """restate-server's input rules for the handler's manifest ``input``: the request passes
    if one rule accepts it, else the last rule's complaint is the answer (400)."""
    spec = input_manifest(handler)
    rules: list[str] = []
    if not spec.get("required", False):
        rules.append("empty")
    if "contentType" in spec:
        rules.append("json" if "jsonSchema" in spec else "content-type")
    problem = "bad configuration of the input validation rules"
    for rule in rules:
        if rule == "empty":
            if not body and content_type is None:
                return
            shown = "None" if content_type is None else content_type
            problem = f"Expected body and content-type to be empty, but wasn't with content-type '{shown}'"
            continue
        if content_type is None:
            problem = "Empty content-type"
            continue
        mismatch = _content_type_mismatch(content_type, spec["contentType"])
        if mismatch is not None:
            problem = mismatch
            continue
        if rule == "json" and not body:
            problem = "Empty body not allowed"
            continue
        return
    raise HttpError(400, f"input validation error: {problem}")


def _content_type_mismatch(content_type: str, expected: str) -> str | None:
    """restate-server's content-type match: ``type/subtype`` (parameters ignored, case
    sensitive); ``type/*`` and ``*/*`` as wildcards."""
    problem = f"Content-type '{content_type}' does not match '{expected}'"
    want_type, _, want_sub = expected.strip().partition("/")
    if want_type == "*":
        return None
    got = content_type.split(";", 1)[0].strip()
    if "/" not in got:
        return problem
    got_type, _, got_sub = got.partition("/")
    if got_type != want_type or (want_sub != "*" and got_sub != want_sub):
        return problem
    return None


def _decode_input(handler: Handler[Any, Any], body: bytes) -> None:
    """Input the handler could not decode is refused before an invocation exists (400):
    malformed JSON, ``null`` for a required input, a value of the wrong type."""
    if not handler.takes_input or (not body and handler.input_has_default):
        return
    where = f"{handler.service_name}/{handler.name}"
    if body and getattr(handler.input_serde, "content_type", None) == "application/json":
        try:
            value = json.loads(body)
        except ValueError as e:
            raise HttpError(400, f"invalid JSON input for {where}: {e}") from e
        if value is None and handler.input_required:
            raise HttpError(400, f"{where} requires an input, got null")
    try:
        handler.input_serde.deserialize(body)
    except TerminalError as e:
        raise HttpError(400, e.message) from e
    except (ValueError, TypeError) as e:
        raise HttpError(400, f"cannot decode the input of {where}: {e}") from e


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
    """The ``delay`` query parameter (the first one, any case), as restate-server reads it."""
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name.lower() == "delay":
            try:
                return parse_duration(value)
            except ValueError as e:
                raise HttpError(
                    400, f"bad delay query parameter, must be a ISO8601 duration: {e}"
                ) from e
    return None


# ---- serving ---------------------------------------------------------------------------------


async def serve(
    engine: LocalEngine,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> None:
    """Serves the ingress of a started ``engine`` with hypercorn (HTTP/1.1 and h2c) until
    ``shutdown_trigger`` returns; then waiting requests answer 503 and the server stops.
    The engine is left running (close it afterwards). Bodies over ``max_body_bytes`` are
    refused with 413; past ``max_in_flight`` invocations waiting or queued, new ones with
    503 and ``Retry-After``."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    app = Ingress(engine, max_body_bytes=max_body_bytes, max_in_flight=max_in_flight)
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
