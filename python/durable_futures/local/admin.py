"""The embedded engine's admin API, on restate-server's paths (its port 9070).

| request | answer |
|---|---|
| ``PATCH /invocations/{id}/cancel`` | 202: the handler sees 409 at its next await (a failing or paused invocation ends with 409 at its next attempt) |
| ``PATCH /invocations/{id}/kill`` | 200: ended at once with 409 ``killed``; callers get it, its object's key is free |
| ``PATCH /invocations/{id}/pause``, ``/resume`` | 200: no more attempts until resumed; resumed ones retry now |
| ``PATCH /invocations/{id}/purge`` | 200: a completed invocation is forgotten (journal, idempotency key) |
| ``DELETE /invocations/{id}?mode=cancel\\|kill\\|purge`` | the older form of the same |
| ``POST /query`` (``{"query": "SELECT ..."}``) | 200, ``{"rows": [{column: value, ...}, ...]}`` |
| ``GET /health`` | 200 |
| ``GET /ui``, ``GET /ui/invocation/{id}`` | HTML: the invocations, and one invocation's journal as a timeline (:mod:`.ui`) |

Errors answer ``{"message": ...}`` with 404 (no such invocation), 409 (it is completed, or
not completed for a purge), 400 (a malformed id, body or query), 405 (wrong method).
``/query`` reads SQLite views named and shaped like restate's introspection tables:
``sys_invocation``, ``sys_journal`` and ``state``. Binary columns are hex strings.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from .._asgi import HttpApp, Receive, Scope, Send, body_chunks, header, respond
from .._logging import admin_logger as _log
from ..errors import DurableError, UnknownInvocationError
from . import ui
from .engine import LocalEngine

__all__ = ["OPERATIONS", "Admin", "serve_admin"]

#: The operations on one invocation, as the last path segment of ``PATCH /invocations/{id}/…``.
OPERATIONS = ("cancel", "kill", "pause", "resume", "purge")

# A query is a line of SQL: nobody sends a megabyte of it.
_MAX_QUERY_BYTES = 64 * 1024


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _cell(value: Any) -> Any:
    return value.hex() if isinstance(value, (bytes, bytearray, memoryview)) else value


class Admin(HttpApp):
    """The ASGI app of the admin API over a started ``engine``."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = [p for p in str(scope.get("path", "/")).split("/") if p]
        if parts[:1] == ["ui"]:
            await self._ui(scope, parts, send)
            return
        try:
            status, body = await self._route(scope, receive)
        except _Refused as e:
            status, body = e.status, _json({"message": e.message})
        except UnknownInvocationError as e:
            status, body = 404, _json({"message": e.message})
        except DurableError as e:
            status = e.code if 400 <= e.code <= 599 else 500
            body = _json({"message": e.message})
        except Exception as e:  # noqa: BLE001 - a bug here must still answer in JSON
            _log.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=True)
            status, body = 500, _json({"message": f"{type(e).__name__}: {e}"})
        await respond(send, status, body)

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        method = str(scope.get("method", "GET")).upper()
        path = str(scope.get("path", "/"))
        parts = [p for p in path.split("/") if p]
        if parts in (["health"], ["restate", "health"]):
            _allow(method, "GET", "HEAD")
            return 200, b"{}"
        if parts == ["query"]:
            _allow(method, "POST")
            return 200, await self._query(scope, receive)
        if len(parts) == 3 and parts[0] == "invocations" and parts[2] in OPERATIONS:
            _allow(method, "PATCH")
            return await self._operate(parts[2], parts[1])
        if len(parts) == 2 and parts[0] == "invocations":
            _allow(method, "DELETE")
            mode = _query_param(scope, "mode") or "cancel"
            if mode not in ("cancel", "kill", "purge"):
                raise _Refused(400, f"mode must be cancel, kill or purge, not {mode!r}")
            return await self._operate(mode, parts[1])
        raise _Refused(404, f"not found: {path}")

    async def _ui(self, scope: Scope, parts: list[str], send: Send) -> None:
        """The HTML pages: ``/ui`` and ``/ui/invocation/{id}``."""
        method = str(scope.get("method", "GET")).upper()
        status, body = 200, b""
        headers = [
            (b"content-security-policy", ui.CONTENT_SECURITY_POLICY.encode()),
            (b"cache-control", b"no-store"),
        ]
        try:
            if method not in ("GET", "HEAD"):
                status, body = 405, ui.error_page(405, f"use GET here, not {method}")
                headers.append((b"allow", b"GET, HEAD"))
            elif parts == ["ui"]:
                limit = _query_param(scope, "limit") or ""
                body = ui.index_page(
                    self.engine,
                    status=_query_param(scope, "status") or "",
                    target_filter=_query_param(scope, "target") or "",
                    limit=int(limit) if limit.isdigit() else ui.DEFAULT_LIMIT,
                )
            elif len(parts) == 3 and parts[1] == "invocation":
                page = ui.invocation_page(self.engine, parts[2])
                if page is None:
                    status, body = 404, ui.error_page(404, f"no invocation {parts[2]}")
                else:
                    body = page
            else:
                status, body = 404, ui.error_page(404, "no such page")
        except Exception as e:  # noqa: BLE001 - a bug here must still answer a page
            _log.error("%s %s failed", method, scope.get("path"), exc_info=True)
            status, body = 500, ui.error_page(500, f"{type(e).__name__}: {e}")
        await respond(
            send, status, b"" if method == "HEAD" else body, b"text/html; charset=utf-8", headers
        )

    async def _operate(self, operation: str, invocation_id: str) -> tuple[int, bytes]:
        run: Callable[[str], None] = getattr(self.engine, operation)
        run(invocation_id)
        await self.engine.flush()  # answered once on disk
        return (202 if operation == "cancel" else 200), b"{}"

    async def _query(self, scope: Scope, receive: Receive) -> bytes:
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > _MAX_QUERY_BYTES:
            raise _Refused(413, f"a query body is at most {_MAX_QUERY_BYTES} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in body_chunks(receive):
            size += len(chunk)
            if size > _MAX_QUERY_BYTES:
                raise _Refused(413, f"a query body is at most {_MAX_QUERY_BYTES} bytes")
            chunks.append(chunk)
        try:
            request = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as e:
            raise _Refused(400, f'the body must be JSON {{"query": "SELECT ..."}}: {e}') from None
        sql = request.get("query") if isinstance(request, dict) else None
        if not isinstance(sql, str) or not sql.strip():
            raise _Refused(400, 'the body must be JSON {"query": "SELECT ..."}')
        try:
            columns, rows = self.engine.query(sql)
        except ValueError as e:
            raise _Refused(400, str(e)) from None
        return _json({"rows": [dict(zip(columns, map(_cell, row), strict=True)) for row in rows]})


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _Refused(405, f"use {' or '.join(allowed)} here, not {method}")


def _query_param(scope: Scope, name: str) -> str | None:
    raw = bytes(scope.get("query_string", b"")).decode("latin-1")
    values = urllib.parse.parse_qs(raw).get(name)
    return values[0] if values else None


async def serve_admin(
    engine: LocalEngine,
    host: str = "127.0.0.1",
    port: int = 9070,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Serves the admin API of a started ``engine`` with hypercorn until ``shutdown_trigger``
    returns. Binds loopback unless told otherwise."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.graceful_timeout = 2

    async def trigger() -> None:
        if shutdown_trigger is None:
            await asyncio.Event().wait()
        else:
            await shutdown_trigger()

    app: Any = Admin(engine)
    await hypercorn_serve(app, config, shutdown_trigger=trigger)
