"""Failure metadata (protocol V6+) travels with terminal errors, both ways."""

from __future__ import annotations

import durable_futures as df

from .asgi_client import call
from .frames import encode, fields, frames
from .journal import Journal, f_bytes, f_int, of_type, run_cmd, run_in_thread

svc = df.Service("Meta")
APP = df.asgi_app(svc)
V6 = "application/vnd.restate.invocation.v6"
OUTPUT, PROPOSE = 0x0401, 0x0005


def refuse() -> None:
    raise df.TerminalError("no", 422, {"reason": "policy"})


@svc.handler()
async def run_fails(ctx: df.Context, _: str) -> str:
    await ctx.run_async("refuse", refuse)
    return "unreachable"


@svc.handler()
async def handler_fails(ctx: df.Context, _: str) -> str:
    raise df.TerminalError("bad input", 400, {"field": "name", "hint": "non-empty"})


@svc.handler()
async def sees_metadata(ctx: df.Context, _: str) -> dict[str, str]:
    try:
        await ctx.run_async("refuse", refuse)
    except df.TerminalError as e:
        return e.metadata
    return {}


def invoke(handler: str, body: bytes) -> list[object]:
    resp = run_in_thread(call(APP, f"/invoke/Meta/{handler}", body, headers=[("content-type", V6)]))
    return frames(resp.body)  # type: ignore[return-value]


def metadata_of(failure: bytes) -> dict[str, str]:
    out = {}
    for num, entry in fields(failure):
        if num == 3:
            kv = dict(fields(entry))
            out[kv[1].decode()] = kv[2].decode()
    return out


def test_run_failure_metadata_is_proposed() -> None:
    fs = invoke("run_fails", Journal().body())
    (propose,) = of_type(fs, PROPOSE)  # type: ignore[arg-type]
    failure = dict(fields(propose.payload))[15]
    assert dict(fields(failure))[1] == 422
    assert metadata_of(failure) == {"reason": "policy"}


def test_handler_failure_metadata_is_in_the_output() -> None:
    fs = invoke("handler_fails", Journal().body())
    (output,) = of_type(fs, OUTPUT)  # type: ignore[arg-type]
    failure = dict(fields(output.payload))[15]
    assert metadata_of(failure) == {"field": "name", "hint": "non-empty"}


def test_recorded_failure_metadata_reaches_the_handler() -> None:
    meta = f_bytes(3, f_bytes(1, "reason") + f_bytes(2, "policy"))
    failure = f_int(1, 422) + f_bytes(2, "no") + meta
    note = encode(0x8011, f_int(1, 1) + f_bytes(6, failure))
    body = Journal().add(run_cmd(1, "refuse"), note).body()
    fs = invoke("sees_metadata", body)
    (output,) = of_type(fs, OUTPUT)  # type: ignore[arg-type]
    value = dict(fields(dict(fields(output.payload))[14]))[1]
    assert value == b'{"reason":"policy"}'
