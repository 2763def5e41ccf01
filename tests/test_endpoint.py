"""The ASGI endpoint: /health, /discover, /invoke routing and content types, and bad input.

Every bad request must get a clear protocol error or HTTP status, never a hang or a dead app:
each bad-input test is followed by a normal invocation on the same app.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

import durable_futures as df
from durable_futures._core import Message

from .asgi_client import Response, call
from .frames import Frame, encode_frame, error_of, frames, output_value
from .journal import (
    V5,
    V6,
    V7,
    Journal,
    Session,
    input_cmd,
    notification,
    of_type,
    output_failure,
    run_in_thread,
    signal,
    sleep_cmd,
    start,
)

svc = df.Service("Greeter")
obj = df.VirtualObject("Counter")


@svc.handler()
async def greet(ctx: df.Context, name: str) -> str:
    return f"hello {name}"


@svc.handler()
async def no_input(ctx: df.Context) -> int:
    return 1


@svc.handler()
async def raw(ctx: df.Context, data: bytes) -> bytes:
    return data[::-1]


@svc.handler()
async def wait_signal(ctx: df.Context, _: str) -> str:
    _, awk = ctx.awakeable(str)
    return await awk


@svc.handler()
async def crash(ctx: df.Context, _: str) -> str:
    raise KeyError("missing thing")


@svc.handler()
def sync_wait(ctx: df.Context, _: str) -> str:
    _, awk = ctx.awakeable(str)
    return awk.result()


@svc.handler()
async def waits_on_run(ctx: df.Context, _: str) -> str:
    await ctx.sleep(timedelta(hours=1))
    return "woke"


# Handlers whose names are also endpoint paths.
@svc.handler("health")
async def health_handler(ctx: df.Context, _: str) -> str:
    return "the health handler"


@svc.handler("discover")
async def discover_handler(ctx: df.Context, _: str) -> str:
    return "the discover handler"


@obj.handler()
async def add(ctx: df.ObjectContext, n: int) -> int:
    return n


@obj.handler(kind="shared")
async def get(ctx: df.ObjectContext) -> int:
    return 0


SERVER = "x-restate-server"
RUNTIME_ACCEPT = ", ".join(f"application/vnd.restate.endpointmanifest.v{v}+json" for v in (1, 2, 3, 4))


def request(
    app: Any,
    path: str,
    body: bytes = b"",
    *,
    method: str = "POST",
    headers: list[tuple[str, str]] | None = None,
    http_version: str = "2",
    chunks: tuple[int, ...] = (1 << 30,),
) -> Response:
    return run_in_thread(
        call(app, path, body, method=method, headers=headers or [], http_version=http_version, chunks=chunks, timeout=10),
        timeout=15,
    )


APP = df.asgi_app(svc, obj)


def greet_ok(app: Any = APP) -> None:
    """A normal invocation: the app still serves requests."""
    resp = request(app, "/invoke/Greeter/greet", Journal(b'"ann"').body(), headers=[("content-type", V6)])
    assert resp.status == 200
    fs = frames(resp.body)
    assert error_of(fs) is None
    assert json.loads(output_value(fs) or b"") == "hello ann"
    assert fs[-1].type_name == "End"


# ---- /health -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/some/prefix/health", "/health/"])
def test_health(path: str) -> None:
    resp = request(APP, path, method="GET")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    assert json.loads(resp.body) == {"status": "ok"}
    assert resp.headers[SERVER].startswith("durable-futures/")


# ---- /discover -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        (RUNTIME_ACCEPT, 4),
        ("application/vnd.restate.endpointmanifest.v4+json", 4),
        ("application/vnd.restate.endpointmanifest.v3+json", 3),
        ("application/vnd.restate.endpointmanifest.v2+json, application/vnd.restate.endpointmanifest.v3+json", 3),
        ("application/vnd.restate.endpointmanifest.v2+json", 2),
        (None, 2),
        ("*/*", 2),
        ("application/vnd.restate.endpointmanifest.v4+json, */*", 4),
        ("*/*, application/vnd.restate.endpointmanifest.v3+json", 3),
        ("application/vnd.restate.endpointmanifest.v1+json", None),
        ("application/json", None),
        ("", None),
    ],
)
def test_discover_picks_the_manifest_version_from_accept(accept: str | None, version: int | None) -> None:
    headers = [] if accept is None else [("accept", accept)]
    resp = request(APP, "/discover", method="GET", headers=headers)
    assert resp.headers[SERVER].startswith("durable-futures/")
    if version is None:
        assert resp.status == 415
        assert "manifest version" in resp.body.decode()
        return
    assert resp.status == 200
    assert resp.headers["content-type"] == f"application/vnd.restate.endpointmanifest.v{version}+json"
    manifest = json.loads(resp.body)
    assert manifest["minProtocolVersion"] == 5
    assert manifest["maxProtocolVersion"] == 7


@pytest.mark.parametrize(
    ("protocol", "http_version", "mode"),
    [
        (None, "2", "BIDI_STREAM"),
        (None, "1.1", "REQUEST_RESPONSE"),
        ("bidi", "1.1", "BIDI_STREAM"),
        ("bidi", "2", "BIDI_STREAM"),
        ("request_response", "2", "REQUEST_RESPONSE"),
        ("request_response", "1.1", "REQUEST_RESPONSE"),
    ],
)
def test_discover_protocol_mode(protocol: Any, http_version: str, mode: str) -> None:
    app = df.asgi_app(svc, protocol=protocol)
    resp = request(app, "/discover", method="GET", headers=[("accept", RUNTIME_ACCEPT)], http_version=http_version)
    assert resp.status == 200
    assert json.loads(resp.body)["protocolMode"] == mode


def test_discover_lists_services_and_handlers() -> None:
    resp = request(APP, "/discover", method="GET", headers=[("accept", RUNTIME_ACCEPT)])
    manifest = json.loads(resp.body)
    services = {s["name"]: s for s in manifest["services"]}
    assert set(services) == {"Greeter", "Counter"}
    assert services["Greeter"]["ty"] == "SERVICE"
    assert services["Counter"]["ty"] == "VIRTUAL_OBJECT"
    greeter = {h["name"]: h for h in services["Greeter"]["handlers"]}
    assert set(greeter) >= {"greet", "no_input", "raw", "health", "discover"}
    assert greeter["greet"]["input"]["contentType"] == "application/json"
    assert greeter["greet"]["output"]["contentType"] == "application/json"
    assert greeter["no_input"]["input"] == {}
    assert greeter["raw"]["input"]["contentType"] == "application/octet-stream"
    assert greeter["raw"]["output"]["contentType"] == "application/octet-stream"
    assert "ty" not in greeter["greet"]
    counter = {h["name"]: h for h in services["Counter"]["handlers"]}
    assert counter["add"]["ty"] == "EXCLUSIVE"
    assert counter["get"]["ty"] == "SHARED"


# ---- /invoke routing and content types -----------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/invoke/Unknown/x", "/invoke/Greeter/nope", "/invoke/Greeter", "/elsewhere", "/"]
)
def test_unknown_paths_are_404(path: str) -> None:
    resp = request(APP, path, Journal(b'"x"').body(), headers=[("content-type", V6)])
    assert resp.status == 404
    assert resp.headers[SERVER].startswith("durable-futures/")
    assert resp.body  # says what was not found
    greet_ok()


@pytest.mark.parametrize(
    ("content_type", "problem"),
    [
        ("application/json", "not a Restate protocol content type"),
        ("", "not a Restate protocol content type"),
        (None, "not a Restate protocol content type"),
        ("application/vnd.restate.invocation.v4", "unsupported protocol version"),
        ("application/vnd.restate.invocation.v99", "unsupported protocol version"),
    ],
)
def test_a_wrong_content_type_is_415(content_type: str | None, problem: str) -> None:
    headers = [] if content_type is None else [("content-type", content_type)]
    resp = request(APP, "/invoke/Greeter/greet", Journal(b'"x"').body(), headers=headers)
    assert resp.status == 415
    assert problem in resp.body.decode()
    assert resp.headers[SERVER].startswith("durable-futures/")
    greet_ok()


@pytest.mark.parametrize("ct", [V5, V6, V7])
def test_the_response_echoes_the_protocol_version(ct: str) -> None:
    resp = request(APP, "/invoke/Greeter/greet", Journal(b'"bo"').body(), headers=[("content-type", ct)])
    assert resp.status == 200
    assert resp.headers["content-type"] == ct
    assert resp.headers[SERVER].startswith("durable-futures/")
    assert json.loads(output_value(frames(resp.body)) or b"") == "hello bo"


@pytest.mark.parametrize(("path", "expected"), [("/invoke/Greeter/health", "the health handler"), ("/invoke/Greeter/discover", "the discover handler")])
def test_handlers_named_like_endpoint_paths_are_invoked(path: str, expected: str) -> None:
    resp = request(APP, path, Journal(b'""').body(), headers=[("content-type", V6)])
    assert resp.status == 200
    assert json.loads(output_value(frames(resp.body)) or b"") == expected


def test_raw_bytes_and_no_input_handlers() -> None:
    resp = request(APP, "/invoke/Greeter/raw", Journal(b"\x01\x02\xff").body(), headers=[("content-type", V6)])
    assert output_value(frames(resp.body)) == b"\xff\x02\x01"
    resp = request(APP, "/invoke/Greeter/no_input", Journal(b"").body(), headers=[("content-type", V6)])
    assert output_value(frames(resp.body)) == b"1"


def test_a_failing_handler_fails_the_attempt_and_the_app_goes_on() -> None:
    resp = request(APP, "/invoke/Greeter/crash", Journal().body(), headers=[("content-type", V6)])
    err = error_of(frames(resp.body))
    assert err is not None and err[0] == 500 and "KeyError" in err[1] and "missing thing" in err[1]
    greet_ok()


# ---- bad input -----------------------------------------------------------------------------------

GOOD = Journal(b'"x"').body()
# Type codes of frames built with a malformed payload.
START, INPUT = Message("Start").type, Message("InputCommand").type

BAD_INPUT: dict[str, tuple[bytes, int, str]] = {
    "garbage": (b"this is not a frame, just some text", 571, "unknown message type"),
    "garbage_after_start": (start(2) + b"\x7f\x7f\x7f\x7fgarbage-garbage", 571, "unknown message type 0x7f7f"),
    "undecodable_start": (encode_frame(START, b"\xff\xff\xff"), 571, "cannot decode Start"),
    # The value field (14) announces 16 bytes; 3 follow.
    "undecodable_input": (start(1) + encode_frame(INPUT, b"\x72\x10abc"), 571, "cannot decode"),
    "truncated_header": (GOOD + b"\x04\x00\x00", 571, "ended inside a frame"),
    "truncated_payload": (GOOD[:-3], 571, "ended inside a frame"),
    "unknown_message_type": (start(2) + input_cmd(b'"x"') + encode_frame(0x0300, b""), 571, "unknown message type 0x0300"),
    "unknown_type_after_replay": (GOOD + encode_frame(0x03FF, b"\x08\x01"), 571, "unknown message type 0x03ff"),
    "oversized_frame": (start(2) + input_cmd(b'"x"') + b"\x04\x01\x00\x00\xff\xff\xff\xff", 571, "over the limit"),
    "command_after_replay": (GOOD + sleep_cmd(1), 571, "after the journal was replayed"),
    "start_missing": (input_cmd(b'"x"'), 571, "expected a StartMessage"),
    "start_twice": (start(1) + start(1) + input_cmd(b'"x"'), 571, "got Start"),
    "fewer_entries_than_announced": (start(3) + input_cmd(b'"x"'), 571, "received 1 of 3 entries"),
    "no_entries": (start(0) + input_cmd(b'"x"'), 500, "known_entries is 0"),
    "empty_body": (b"", 571, "ended before a StartMessage arrived"),
}


@pytest.mark.parametrize("chunks", [(1 << 30,), (3,)], ids=["whole", "3-byte-chunks"])
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gets_a_protocol_error_and_the_app_goes_on(case: str, chunks: tuple[int, ...]) -> None:
    body, code, fragment = BAD_INPUT[case]
    resp = request(APP, "/invoke/Greeter/greet", body, headers=[("content-type", V6)], chunks=chunks)
    assert resp.status == 200  # the head went out before the body was read
    fs = frames(resp.body)
    err = error_of(fs)
    assert err is not None, [f.type_name for f in fs]
    assert err[0] == code
    assert fragment in err[1], err[1]
    assert fs[-1].type_name == "Error"
    assert not of_type(fs, "OutputCommand")
    greet_ok()


@pytest.mark.parametrize(
    ("handler", "payload"), [("greet", b"42"), ("greet", b"not json"), ("raw", None), ("no_input", None)]
)
def test_input_that_does_not_decode_is_a_terminal_400(handler: str, payload: bytes | None) -> None:
    if payload is None:  # raw and no-input handlers accept anything
        resp = request(APP, f"/invoke/Greeter/{handler}", Journal(b"\xff{").body(), headers=[("content-type", V6)])
        fs = frames(resp.body)
        assert error_of(fs) is None and output_failure(fs) is None and fs[-1].type_name == "End"
        return
    resp = request(APP, f"/invoke/Greeter/{handler}", Journal(payload).body(), headers=[("content-type", V6)])
    fs = frames(resp.body)
    assert error_of(fs) is None
    failure = output_failure(fs)
    assert failure is not None and failure[0] == 400 and "cannot decode" in failure[1]
    assert fs[-1].type_name == "End"
    greet_ok()


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    """The error goes out while the request is still open: the app did not wait for (or
    allocate) the announced 4 GiB."""

    async def scenario() -> list[Frame]:
        s = Session(APP, "/invoke/Greeter/greet")
        s.begin()
        s.send(start(2) + input_cmd(b'"x"') + b"\x04\x01\x00\x00\xff\xff\xff\xff")
        fs = await s.wait_for(lambda fs: bool(of_type(fs, "Error")), timeout=5)
        s.send(b"\x00" * 1024)  # the runtime keeps writing: ignored
        await s.finish()
        return fs

    fs = run_in_thread(scenario())
    err = error_of(fs)
    assert err is not None and err[0] == 571
    assert "4294967295 bytes" in err[1] and "over the limit of 33554432 bytes" in err[1]
    greet_ok()


@pytest.mark.parametrize("handler", ["wait_signal", "sync_wait"])
@pytest.mark.parametrize(
    "bad",
    [b"garbage!" * 3, sleep_cmd(1), encode_frame(0x0300, b""), b"\x80\x00\x00\x00\x7f\xff\xff\xff"],
    ids=["garbage", "command", "unknown_type", "oversized"],
)
def test_bad_input_while_a_handler_waits(handler: str, bad: bytes) -> None:
    """Bidi: the handler is blocked on an awakeable when bad bytes arrive; the attempt ends
    with a protocol error and the handler unwinds (sync handlers included)."""

    async def scenario() -> list[Frame]:
        s = Session(APP, f"/invoke/Greeter/{handler}")
        s.begin()
        s.send(Journal().body())
        await asyncio.sleep(0.02)  # the handler is now waiting
        s.send(bad)
        fs = await s.wait_for(lambda fs: bool(of_type(fs, "Error")))
        await s.finish()
        return fs

    fs = run_in_thread(scenario())
    err = error_of(fs)
    assert err is not None and err[0] == 571
    assert not of_type(fs, "OutputCommand")
    greet_ok()


@pytest.mark.parametrize("handler", ["wait_signal", "sync_wait", "waits_on_run"])
def test_a_runtime_that_disconnects_does_not_hang_the_app(handler: str) -> None:
    async def scenario() -> Response:
        s = Session(APP, f"/invoke/Greeter/{handler}")
        s.begin()
        s.send(Journal().body())
        await asyncio.sleep(0.02)
        s.disconnect()
        assert s._task is not None
        await asyncio.wait_for(s._task, 5)
        return s.response

    resp = run_in_thread(scenario())
    assert resp.status == 200
    assert not of_type(frames(resp.body), "OutputCommand")
    greet_ok()


def test_a_bidi_invocation_completes_when_notified() -> None:
    async def scenario() -> list[Frame]:
        s = Session(APP, "/invoke/Greeter/wait_signal")
        s.begin()
        s.send(Journal().body())
        await asyncio.sleep(0.02)
        s.send(signal(17, b'"hey"'))
        await s.wait_for(lambda fs: bool(of_type(fs, "End")))
        return await s.finish()

    fs = run_in_thread(scenario())
    assert json.loads(output_value(fs) or b"") == "hey"


def test_input_closing_mid_wait_suspends() -> None:
    async def scenario() -> list[Frame]:
        s = Session(APP, "/invoke/Greeter/waits_on_run")
        s.begin()
        s.send(Journal().body())
        await s.wait_for(lambda fs: bool(of_type(fs, "SleepCommand")))
        return await s.finish()

    fs = run_in_thread(scenario())
    assert fs[-1].type_name == "Suspension"
    body = Journal().add(sleep_cmd(1), notification("SleepCompletion", 1, void=True)).body()
    resp = request(APP, "/invoke/Greeter/waits_on_run", body, headers=[("content-type", V6)])
    assert json.loads(output_value(frames(resp.body)) or b"") == "woke"


def test_many_bad_requests_in_a_row_then_a_good_one() -> None:
    async def all_bad() -> list[Response]:
        return await asyncio.gather(
            *(
                call(APP, "/invoke/Greeter/greet", body, headers=[("content-type", V6)], timeout=10)
                for body, _, _ in BAD_INPUT.values()
            )
        )

    responses = run_in_thread(all_bad(), timeout=15)
    assert all(error_of(frames(r.body)) is not None for r in responses)
    greet_ok()


# ---- ASGI plumbing -------------------------------------------------------------------------------


def test_lifespan_and_other_scopes() -> None:
    async def scenario() -> list[str]:
        sent: list[str] = []
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict[str, Any]:
            return incoming.pop(0)

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg["type"])

        await asyncio.wait_for(APP({"type": "lifespan"}, receive, send), 5)
        await asyncio.wait_for(APP({"type": "websocket"}, receive, send), 5)
        return sent

    assert run_in_thread(scenario()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_two_services_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="two services are named 'Greeter'"):
        df.asgi_app(svc, df.Service("Greeter"))

