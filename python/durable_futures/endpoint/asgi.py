"""ASGI 3 app: ``/discover``, ``/invoke/{service}/{handler}``, ``/health``.

Serve it with hypercorn: h2c (HTTP/2 without TLS) for bidirectional streaming, HTTP/1.1 for
request/response deployments.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any, Literal

from .. import _core, _tracing
from .._asgi import (
    SERVER_HEADER,
    App,
    HttpApp,
    Receive,
    Scope,
    Send,
    drain,
    header,
    respond,
)
from .._attempt import Attempt, LoopAttempt
from .._logging import endpoint_logger as _log
from ..context import context_type
from ..errors import DurableError
from ..service import Handler, Service

__all__ = ["asgi_app"]

_MANIFEST_VERSIONS = (4, 3, 2)
_MANIFEST_CT = "application/vnd.restate.endpointmanifest.v{}+json"


async def _text(send: Send, status: int, message: str) -> None:
    await respond(send, status, message.encode(), b"text/plain; charset=utf-8")


class _App(HttpApp):
    def __init__(
        self,
        services: Iterable[Service],
        protocol: Literal["bidi", "request_response"] | None,
        identity_keys: Iterable[str],
    ) -> None:
        self.services: dict[str, Service] = {}
        for s in services:
            if s.name in self.services:
                raise ValueError(f"two services are named {s.name!r}")
            self.services[s.name] = s
        self.protocol = protocol
        self.verifier = None
        keys = list(identity_keys)
        if keys:
            from .identity import IdentityVerifier

            self.verifier = IdentityVerifier(keys)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        parts = path.rstrip("/").split("/")
        # `/invoke/{service}/{handler}` first: a handler may be named `health` or `discover`.
        invoke = len(parts) >= 4 and parts[-3] == "invoke"
        if parts[-1] == "health" and not invoke:
            await respond(send, 200, b'{"status":"ok"}')
            return
        if self.verifier is not None:
            problem = self.verifier.verify(scope, path)
            if problem is not None:
                await drain(receive)
                _log.warning("refused an unsigned or badly signed request to %s: %s", path, problem)
                await _text(send, 401, problem)
                return
        if parts[-1] == "discover" and not invoke:
            await self._discover(scope, send)
            return
        if invoke:
            service = self.services.get(parts[-2])
            handler = service.handlers.get(parts[-1]) if service else None
            if service is None or handler is None:
                _log.warning("no handler %s/%s (is the deployment up to date?)", parts[-2], parts[-1])
                await drain(receive)
                await _text(send, 404, f"no handler {parts[-2]}/{parts[-1]}")
                return
            await self._invoke(scope, receive, send, service, handler)
            return
        await drain(receive)
        await _text(send, 404, f"not found: {path}")

    def manifest(self, protocol_mode: str, version: int = _MANIFEST_VERSIONS[0]) -> dict[str, Any]:
        """The endpoint manifest of ``version``: fields a version does not define (retention
        before v3, retry policies before v4) are left out, so a server that negotiated an
        older manifest can read it."""
        lo, hi = _core.PROTOCOL_VERSIONS
        return {
            "protocolMode": protocol_mode,
            "minProtocolVersion": lo,
            "maxProtocolVersion": hi,
            "services": [s.manifest(version) for s in self.services.values()],
        }

    async def _discover(self, scope: Scope, send: Send) -> None:
        accept = header(scope, b"accept")
        version = None
        if accept is not None:
            for v in _MANIFEST_VERSIONS:
                if _MANIFEST_CT.format(v) in accept:
                    version = v
                    break
        if version is None and (accept is None or "*/*" in accept):
            version = 2
        if version is None:
            await _text(send, 415, f"unsupported endpoint manifest version in accept: {accept}")
            return
        if self.protocol is not None:
            mode = "BIDI_STREAM" if self.protocol == "bidi" else "REQUEST_RESPONSE"
        else:
            mode = "REQUEST_RESPONSE" if scope.get("http_version") == "1.1" else "BIDI_STREAM"
        body = json.dumps(self.manifest(mode, version)).encode()
        await respond(send, 200, body, _MANIFEST_CT.format(version).encode())

    async def _invoke(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: Service,
        handler: Handler[Any, Any],
    ) -> None:
        content_type = header(scope, b"content-type") or ""
        try:
            vm = _core.Vm(content_type)
        except DurableError as e:
            await drain(receive)
            await _text(send, 415, e.message)
            return
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[bytes | None] = asyncio.Queue()

        def send_output(data: bytes) -> None:
            if inv.on_loop():
                out.put_nowait(data)
            else:
                loop.call_soon_threadsafe(out.put_nowait, data)

        inv = (LoopAttempt if handler.is_async else Attempt)(vm, loop, send_output)
        tracer = _tracing.tracer()
        if tracer is not None:
            # The attempt's span continues restate-server's (its `traceparent`), if it sent one.
            parent = _tracing.remote_context(scope.get("headers", []))
            inv.trace = _tracing.AttemptTrace(tracer, parent)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", vm.response_content_type().encode()), SERVER_HEADER],
            }
        )
        ready = asyncio.Event()
        input_done = asyncio.Event()

        async def read_input() -> None:
            try:
                while True:
                    msg = await receive()
                    if msg["type"] == "http.disconnect":
                        inv.disconnect()
                        return
                    body = msg.get("body", b"")
                    if body:
                        inv.feed(body)
                    if not msg.get("more_body", False):
                        inv.feed_closed()
                        return
                    if not ready.is_set() and (vm.is_closed() or vm.is_ready_to_execute()):
                        ready.set()
            except DurableError:
                pass  # the VM closed with an error; it is in the output
            finally:
                ready.set()
                input_done.set()

        async def write_output() -> None:
            while True:
                data = await out.get()
                if data is None:
                    return
                if inv.disconnected:
                    continue
                await send({"type": "http.response.body", "body": data, "more_body": True})

        reader = asyncio.create_task(read_input())
        writer = asyncio.create_task(write_output())
        try:
            await ready.wait()
            ok = False
            try:
                ok = bool(vm.is_ready_to_execute())
            except DurableError:
                ok = False
            if ok:
                ctx_type = context_type(service.ty, handler.kind)
                await inv.run_handler(
                    handler.call,
                    handler.is_async,
                    handler.decode_input,
                    handler.output_serde.serialize,
                    ctx_type,
                )
            inv.flush()
            # The runtime closes its side once it has our terminator (bidi); wait for it so
            # the response is not cut short.
            await input_done.wait()
        finally:
            out.put_nowait(None)
            await writer
            reader.cancel()
        if not inv.disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def asgi_app(
    *services: Service,
    protocol: Literal["bidi", "request_response"] | None = None,
    identity_keys: Iterable[str] = (),
) -> App:
    """The ASGI app serving ``services`` to restate-server.

    ``protocol`` fixes the mode announced at discovery; by default it follows the HTTP
    version of the discovery request (HTTP/1.1 → request/response, HTTP/2 → bidi).
    ``identity_keys`` (``publickeyv1_…``) make the endpoint accept only requests signed by
    the runtime (401 otherwise).

    Serve it with hypercorn (the app guards hypercorn against a peer that goes away
    mid-stream, :func:`durable_futures._asgi.guard_hypercorn`) or any ASGI server.
    """
    return _App(services, protocol, identity_keys)
