"""Hand-built service-protocol traffic for in-process tests of the ASGI app.

Messages are built and encoded by the compiled core (``_core.Message``); this module adds a
``Journal`` builder that fills in ``StartMessage.known_entries``, and a ``Session`` that talks
to the app the way restate-server does in bidi mode: frames can be sent after reading output.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from durable_futures._core import Failure, Message

from .asgi_client import Response
from .frames import Frame, frames

V5 = "application/vnd.restate.invocation.v5"
V6 = "application/vnd.restate.invocation.v6"
V7 = "application/vnd.restate.invocation.v7"

INVOCATION_ID = bytes(range(1, 23))
DEBUG_ID = "inv_1testinvocation000000000000000"


# ---- messages ---------------------------------------------------------------------------------


def start(
    known_entries: int,
    *,
    key: str = "",
    state: dict[str, bytes] | None = None,
    partial_state: bool = True,
    retry_count: int = 0,
    seed: int = 7,
    invocation_id: bytes = INVOCATION_ID,
    debug_id: str = DEBUG_ID,
) -> bytes:
    return Message(
        "Start",
        id=invocation_id,
        debug_id=debug_id,
        known_entries=known_entries,
        state_map=[(k.encode(), v) for k, v in (state or {}).items()],
        partial_state=partial_state,
        key=key,
        retry_count=retry_count,
        random_seed=seed,
    ).encode()


def input_cmd(payload: bytes, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    return Message("InputCommand", headers=list(headers), value=payload).encode()


def run_cmd(cid: int, name: str) -> bytes:
    return Message("RunCommand", completion_id=cid, name=name).encode()


def sleep_cmd(cid: int, wake_up_time: int = 1, name: str = "") -> bytes:
    return Message("SleepCommand", wake_up_time=wake_up_time, completion_id=cid, name=name).encode()


def call_cmd(
    service: str, handler: str, parameter: bytes, id_idx: int, result_idx: int, key: str = ""
) -> bytes:
    return Message(
        "CallCommand",
        service=service,
        handler=handler,
        parameter=parameter,
        key=key,
        invocation_id_notification_idx=id_idx,
        completion_id=result_idx,
    ).encode()


def one_way_call_cmd(service: str, handler: str, parameter: bytes, id_idx: int) -> bytes:
    return Message(
        "OneWayCallCommand",
        service=service,
        handler=handler,
        parameter=parameter,
        invocation_id_notification_idx=id_idx,
    ).encode()


def get_lazy_state_cmd(key: str, cid: int) -> bytes:
    return Message("GetLazyStateCommand", state_key=key.encode(), completion_id=cid).encode()


def notification(
    ty: str,
    cid: int,
    ok: bytes | None = None,
    *,
    err: tuple[int, str] | Failure | None = None,
    void: bool = False,
    invocation_id: str | None = None,
) -> bytes:
    """A completion notification of type ``ty`` (``"RunCompletion"``, ...): ``ok`` value,
    ``err=(code, message)`` (or a ``Failure``), ``void`` or an invocation id."""
    failure = Failure(*err) if isinstance(err, tuple) else err
    return Message(
        ty, completion_id=cid, value=ok, failure=failure, void=void, invocation_id=invocation_id
    ).encode()


def signal(idx: int, ok: bytes | None = None, *, err: tuple[int, str] | None = None) -> bytes:
    """An unnamed signal (1 = cancel, 17.. = awakeables); void unless ``ok``/``err``."""
    return Message(
        "Signal",
        signal_id=idx,
        value=ok,
        failure=None if err is None else Failure(*err),
        void=ok is None and err is None,
    ).encode()


CANCEL = signal(1)


class Journal:
    """``StartMessage`` + ``InputCommand`` + recorded entries, ``known_entries`` filled in."""

    def __init__(self, payload: bytes = b'""', **start_kw: Any) -> None:
        self.entries = [input_cmd(payload)]
        self.start_kw = start_kw

    def add(self, *entries: bytes) -> Journal:
        self.entries.extend(entries)
        return self

    def body(self) -> bytes:
        return start(len(self.entries), **self.start_kw) + b"".join(self.entries)


# ---- reading output ---------------------------------------------------------------------------


def of_type(fs: list[Frame], ty: str) -> list[Frame]:
    """The frames of type ``ty`` (``"RunCommand"``, ``"ProposeRunCompletion"``, ...)."""
    return [f for f in fs if f.type_name == ty]


def proposals(fs: list[Frame]) -> dict[int, tuple[str, Any]]:
    """``ProposeRunCompletion`` frames: completion id → ("value", bytes) | ("failure", (code, msg))."""
    out: dict[int, tuple[str, Any]] = {}
    for f in of_type(fs, "ProposeRunCompletion"):
        assert f.completion_id is not None
        if f.failure is None:
            out[f.completion_id] = ("value", f.value)
        else:
            out[f.completion_id] = ("failure", (f.failure.code, f.failure.message))
    return out


def output_failure(fs: list[Frame]) -> tuple[int, str] | None:
    for f in of_type(fs, "OutputCommand"):
        if f.failure is not None:
            return f.failure.code, f.failure.message
    return None


def run_in_thread(coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
    """``asyncio.run(coro)`` on a daemon thread, failing after ``timeout`` seconds even if the
    event loop itself is blocked (a deadlocked loop cannot time itself out)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name="test-loop")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"the event loop did not finish within {timeout}s (hang or deadlock)")
    if "error" in box:
        raise box["error"]
    return box["value"]


class Session:
    """A bidi invocation: the request body stays open, so the test can read the app's frames
    and answer with notifications, the way restate-server does over HTTP/2."""

    def __init__(self, app: Any, path: str, content_type: str = V6) -> None:
        self.app = app
        self.path = path
        self.content_type = content_type
        self.response = Response()
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        return await self._incoming.get()

    async def _send(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            self.response.status = msg["status"]
            self.response.headers = {k.decode(): v.decode() for k, v in msg["headers"]}
        elif msg["type"] == "http.response.body":
            self.response.body += msg.get("body", b"")
            if not msg.get("more_body", False):
                self._done.set()
        self._changed.set()

    def begin(self) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "2",
            "method": "POST",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": b"",
            "headers": [(b"content-type", self.content_type.encode())],
        }
        self._task = asyncio.create_task(self.app(scope, self._receive, self._send))
        self._task.add_done_callback(lambda _: self._changed.set())

    def send(self, data: bytes) -> None:
        self._incoming.put_nowait({"type": "http.request", "body": data, "more_body": True})

    def close_input(self) -> None:
        self._incoming.put_nowait({"type": "http.request", "body": b"", "more_body": False})

    def disconnect(self) -> None:
        self._incoming.put_nowait({"type": "http.disconnect"})

    def frames(self) -> list[Frame]:
        return frames(self.response.body)

    async def wait_for(
        self, pred: Callable[[list[Frame]], bool], timeout: float = 5.0
    ) -> list[Frame]:
        """Waits until ``pred`` holds for the frames written so far."""

        async def loop() -> list[Frame]:
            while True:
                fs = self.frames()
                if pred(fs):
                    return fs
                assert self._task is not None
                if self._task.done():
                    self._task.result()
                    raise AssertionError(f"the app ended without that; frames {[f.type_name for f in fs]}")
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(loop(), timeout)

    async def finish(self, timeout: float = 5.0) -> list[Frame]:
        """Closes the request body and waits for the app to end the response."""
        self.close_input()
        assert self._task is not None
        await asyncio.wait_for(self._task, timeout)
        return self.frames()
