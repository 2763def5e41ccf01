"""The public API as a type checker sees it: mypy --strict over a small handler module.

The design notes (DESIGN.md in ../shared/, outside this repository) promise typed futures:
``run_async`` typed with ParamSpec, ``ctx.service(handler_fn)`` giving a typed client, typed
awakeables and state. Each ``reveal_type`` below is checked.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from mypy import api

SNIPPET = '''
from __future__ import annotations

from datetime import timedelta

import durable_futures as df

svc = df.Service("Typed")
obj = df.VirtualObject("TypedObject")


def fetch(user_id: int, *, verbose: bool = False) -> dict[str, int]:
    return {"id": user_id}


async def fetch_async(user_id: int) -> list[str]:
    return []


@svc.handler()
async def greet(ctx: df.Context, name: str) -> str:
    return name


@svc.handler()
def count(ctx: df.Context, n: int) -> int:
    return n


@svc.handler()
async def ping(ctx: df.Context) -> bool:
    return True


@svc.handler()
async def main(ctx: df.Context, user_id: int) -> None:
    reveal_type(ctx.run_async("a", fetch, user_id, verbose=True))  # R1
    reveal_type(ctx.run_async("b", fetch_async, user_id))  # R2
    reveal_type(await ctx.run("c", fetch_async, user_id))  # R3
    reveal_type(ctx.run_async_with(df.RunOptions(max_attempts=2), "d", fetch, user_id))  # R4
    reveal_type(ctx.service(greet))  # R5
    reveal_type(ctx.service(count))  # R6
    reveal_type(ctx.service(greet).request_future("x"))  # R7
    reveal_type(ctx.service("Other", "h"))  # R8
    reveal_type(ctx.awakeable(str))  # R9
    reveal_type(ctx.awakeable())  # R10
    reveal_type(ctx.after(timedelta(seconds=1)))  # R11
    reveal_type(await ctx.all_succeeded(ctx.run_async("e", fetch, 1)))  # R12
    reveal_type(ctx.service(ping))  # R13
    timer = ctx.after(timedelta(seconds=1))
    call = ctx.service(greet).request_future("x")
    sel = ctx.select(timer, call)
    reveal_type(sel)  # R17
    first = await sel.select()
    reveal_type(first)  # R18
    if isinstance(first, df.ResponseFuture):
        reveal_type(await first)  # R19
    reveal_type(ctx.select(*[call, call]))  # R20
    async for f in ctx.select(call):
        reveal_type(f)  # R21


@obj.handler()
async def state(ctx: df.ObjectContext, _: str) -> None:
    reveal_type(ctx.get("k", int))  # R14
    reveal_type(ctx.get("k"))  # R15
    reveal_type(await ctx.state_keys())  # R16
'''

EXPECTED = {
    "R1": "durable_futures.futures.RunFuture[builtins.dict[builtins.str, builtins.int]]",
    "R2": "durable_futures.futures.RunFuture[builtins.list[builtins.str]]",
    "R3": "builtins.list[builtins.str]",
    "R4": "durable_futures.futures.RunFuture[builtins.dict[builtins.str, builtins.int]]",
    "R5": "durable_futures.context.ServiceClient[builtins.str, builtins.str]",
    "R6": "durable_futures.context.ServiceClient[builtins.int, builtins.int]",
    "R7": "durable_futures.futures.ResponseFuture[builtins.str]",
    "R8": "durable_futures.context.ServiceClient[Any, Any]",
    "R9": "tuple[builtins.str, durable_futures.futures.AwakeableFuture[builtins.str]]",
    "R10": "tuple[builtins.str, durable_futures.futures.AwakeableFuture[Any]]",
    "R11": "durable_futures.futures.TimerFuture",
    "R12": "builtins.list[builtins.dict[builtins.str, builtins.int]]",
    "R13": "durable_futures.context.ServiceClient[None, builtins.bool]",
    "R14": "durable_futures.futures.DurableFuture[builtins.int | None]",
    "R15": "durable_futures.futures.DurableFuture[Any]",
    "R16": "builtins.list[builtins.str]",
    "R17": "durable_futures.futures.Selector[durable_futures.futures.TimerFuture"
    " | durable_futures.futures.ResponseFuture[builtins.str]]",
    "R18": "durable_futures.futures.TimerFuture"
    " | durable_futures.futures.ResponseFuture[builtins.str] | None",
    "R19": "builtins.str",
    "R20": "durable_futures.futures.Selector[durable_futures.futures.ResponseFuture[builtins.str]]",
    "R21": "durable_futures.futures.ResponseFuture[builtins.str]",
}


def test_the_public_api_is_typed(tmp_path: Path) -> None:
    module = tmp_path / "typed_handlers.py"
    module.write_text(textwrap.dedent(SNIPPET))
    stdout, stderr, _ = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), "--show-error-codes", str(module)]
    )
    lines = stdout.splitlines()
    errors = [line for line in lines if ": error:" in line]
    assert errors == [], "\n".join(errors) + stderr
    source = module.read_text().splitlines()
    revealed: dict[str, str] = {}
    for line in lines:
        m = re.match(r".*:(\d+): note: Revealed type is \"(.*)\"$", line)
        if m:
            tag = source[int(m.group(1)) - 1].rsplit("# ", 1)[1]
            revealed[tag] = m.group(2)
    assert revealed == EXPECTED
