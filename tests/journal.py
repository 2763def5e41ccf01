"""Hand-built service-protocol traffic for in-process tests of the ASGI app.

Protobuf encoding of the few messages the tests need (field numbers from Restate's
``protocol.proto``, condensed in PROTOCOL.md §1.4 in ../shared/, outside this repository), a
``Journal`` builder that fills in ``StartMessage.known_entries``, and a ``Session`` that talks
to the app the way restate-server does in bidi mode: frames can be sent after reading output.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from .asgi_client import Response
from .frames import Frame, encode, fields, frames

V5 = "application/vnd.restate.invocation.v5"
V6 = "application/vnd.restate.invocation.v6"
V7 = "application/vnd.restate.invocation.v7"

# Control messages.
START = 0x0000
SUSPENSION = 0x0001
ERROR = 0x0002
END = 0x0003
PROPOSE_RUN = 0x0005
# Commands.
INPUT = 0x0400
OUTPUT = 0x0401
GET_LAZY_STATE = 0x0402
SET_STATE = 0x0403
CLEAR_STATE = 0x0404
CLEAR_ALL_STATE = 0x0405
GET_LAZY_STATE_KEYS = 0x0406
GET_EAGER_STATE = 0x0407
GET_EAGER_STATE_KEYS = 0x0408
SLEEP = 0x040C
CALL = 0x040D
ONE_WAY_CALL = 0x040E
SEND_SIGNAL = 0x0410
RUN = 0x0411
COMPLETE_AWAKEABLE = 0x0414
# Notifications.
GET_LAZY_STATE_DONE = 0x8002
GET_LAZY_STATE_KEYS_DONE = 0x8006
SLEEP_DONE = 0x800C
CALL_DONE = 0x800D
CALL_ID_DONE = 0x800E
RUN_DONE = 0x8011
SIGNAL = 0xFBFF

INVOCATION_ID = bytes(range(1, 23))
DEBUG_ID = "inv_1testinvocation000000000000000"


# ---- protobuf ---------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_int(num: int, v: int) -> bytes:
    return varint(num << 3) + varint(v)


def f_bytes(num: int, v: bytes | str) -> bytes:
    b = v.encode() if isinstance(v, str) else v
    return varint((num << 3) | 2) + varint(len(b)) + b


def value(content: bytes) -> bytes:
    """``Value{content}``."""
    return f_bytes(1, content)


def failure(code: int, message: str) -> bytes:
    """``Failure{code, message}``."""
    return f_int(1, code) + f_bytes(2, message)


def header(key: str, val: str) -> bytes:
    return f_bytes(1, key) + f_bytes(2, val)


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
    p = f_bytes(1, invocation_id) + f_bytes(2, debug_id) + f_int(3, known_entries)
    for k, v in (state or {}).items():
        p += f_bytes(4, f_bytes(1, k) + f_bytes(2, v))
    if partial_state:
        p += f_int(5, 1)
    if key:
        p += f_bytes(6, key)
    if retry_count:
        p += f_int(7, retry_count)
    p += f_int(9, seed)
    return encode(START, p)


def input_cmd(payload: bytes, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    p = b"".join(f_bytes(1, header(k, v)) for k, v in headers) + f_bytes(14, value(payload))
    return encode(INPUT, p)


def run_cmd(cid: int, name: str) -> bytes:
    return encode(RUN, f_int(11, cid) + (f_bytes(12, name) if name else b""))


def sleep_cmd(cid: int, wake_up_time: int = 1, name: str = "") -> bytes:
    return encode(SLEEP, f_int(1, wake_up_time) + f_int(11, cid) + (f_bytes(12, name) if name else b""))


def call_cmd(
    service: str, handler: str, parameter: bytes, id_idx: int, result_idx: int, key: str = ""
) -> bytes:
    p = f_bytes(1, service) + f_bytes(2, handler) + f_bytes(3, parameter)
    if key:
        p += f_bytes(5, key)
    return encode(CALL, p + f_int(10, id_idx) + f_int(11, result_idx))


def get_lazy_state_cmd(key: str, cid: int) -> bytes:
    return encode(GET_LAZY_STATE, f_bytes(1, key) + f_int(11, cid))


def _result(
    ok: bytes | None, err: tuple[int, str] | None, void: bool, invocation_id: str | None
) -> bytes:
    if ok is not None:
        return f_bytes(5, value(ok))
    if err is not None:
        return f_bytes(6, failure(*err))
    if invocation_id is not None:
        return f_bytes(16, invocation_id)
    assert void
    return f_bytes(4, b"")


def notification(
    ty: int,
    cid: int,
    ok: bytes | None = None,
    *,
    err: tuple[int, str] | None = None,
    void: bool = False,
    invocation_id: str | None = None,
) -> bytes:
    """A completion notification: ``ok`` value, ``err=(code, message)``, ``void`` or an id."""
    return encode(ty, f_int(1, cid) + _result(ok, err, void, invocation_id))


def signal(idx: int, ok: bytes | None = None, *, err: tuple[int, str] | None = None) -> bytes:
    """An unnamed signal (1 = cancel, 17.. = awakeables); void unless ``ok``/``err``."""
    return encode(SIGNAL, f_int(2, idx) + _result(ok, err, ok is None and err is None, None))


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


def of_type(fs: list[Frame], ty: int) -> list[Frame]:
    return [f for f in fs if f.ty == ty]


def decoded(f: Frame) -> dict[int, Any]:
    """Top-level fields of a frame (the last occurrence of repeated ones)."""
    return dict(fields(f.payload))


def proposals(fs: list[Frame]) -> dict[int, tuple[str, Any]]:
    """``ProposeRunCompletion`` frames: completion id → ("value", bytes) | ("failure", (code, msg))."""
    out: dict[int, tuple[str, Any]] = {}
    for f in of_type(fs, PROPOSE_RUN):
        d = decoded(f)
        if 14 in d:
            out[d[1]] = ("value", d[14])
        else:
            fd = dict(fields(d[15]))
            out[d[1]] = ("failure", (fd.get(1, 0), fd.get(2, b"").decode()))
    return out


def output_failure(fs: list[Frame]) -> tuple[int, str] | None:
    for f in of_type(fs, OUTPUT):
        d = decoded(f)
        if 15 in d:
            fd = dict(fields(d[15]))
            return fd.get(1, 0), fd.get(2, b"").decode()
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
                    raise AssertionError(f"the app ended without that; frames {[hex(f.ty) for f in fs]}")
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(loop(), timeout)

    async def finish(self, timeout: float = 5.0) -> list[Frame]:
        """Closes the request body and waits for the app to end the response."""
        self.close_input()
        assert self._task is not None
        await asyncio.wait_for(self._task, timeout)
        return self.frames()
