"""Failure metadata (protocol V6+) travels with terminal errors, both ways."""

from __future__ import annotations

import durable_futures as df
from durable_futures._core import Failure

from .asgi_client import call
from .frames import Frame, frames
from .journal import Journal, notification, of_type, run_cmd, run_in_thread

svc = df.Service("Meta")
APP = df.asgi_app(svc)
V6 = "application/vnd.restate.invocation.v6"


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


def invoke(handler: str, body: bytes) -> list[Frame]:
    resp = run_in_thread(call(APP, f"/invoke/Meta/{handler}", body, headers=[("content-type", V6)]))
    return frames(resp.body)


def failure_of(f: Frame) -> Failure:
    assert f.failure is not None, f
    return f.failure


def test_run_failure_metadata_is_proposed() -> None:
    fs = invoke("run_fails", Journal().body())
    (propose,) = of_type(fs, "ProposeRunCompletion")
    failure = failure_of(propose)
    assert failure.code == 422
    assert dict(failure.metadata) == {"reason": "policy"}


def test_handler_failure_metadata_is_in_the_output() -> None:
    fs = invoke("handler_fails", Journal().body())
    (output,) = of_type(fs, "OutputCommand")
    assert dict(failure_of(output).metadata) == {"field": "name", "hint": "non-empty"}


def test_recorded_failure_metadata_reaches_the_handler() -> None:
    failure = Failure(422, "no", [("reason", "policy")])
    body = Journal().add(run_cmd(1, "refuse"), notification("RunCompletion", 1, err=failure)).body()
    fs = invoke("sees_metadata", body)
    (output,) = of_type(fs, "OutputCommand")
    assert output.value == b'{"reason":"policy"}'
