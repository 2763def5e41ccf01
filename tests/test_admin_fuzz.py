"""The admin API under random requests: methods, paths, ids, query strings and bodies.

Properties: a client's mistake is answered with a 4xx and a JSON message, never a 5xx; no
request changes an invocation unless it names it with a valid operation; the engine keeps
serving valid requests throughout. Bounded in examples and time."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import durable_futures as df
from durable_futures.local.admin import OPERATIONS, Admin

from .asgi_client import call

svc = df.Service("AdminFuzz")


@svc.handler()
async def wait(ctx: df.Context) -> str:
    _, fut = ctx.awakeable(str)
    return await fut


SQL = st.sampled_from(
    [
        "SELECT * FROM sys_invocation",
        "SELECT id, status FROM sys_invocation WHERE status = 'suspended'",
        "SELECT count(*) AS n FROM sys_journal",
        "SELECT * FROM state",
        "DELETE FROM sys_invocation",
        "DROP VIEW sys_invocation",
        "INSERT INTO journal VALUES (1)",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "PRAGMA writable_schema = 1",
        "SELECT * FROM nowhere",
        "SELECT",
        "; ;",
        "SELECT 1; DELETE FROM invocations",
        "",
    ]
)

BODIES = st.one_of(
    st.binary(max_size=64),
    SQL.map(lambda q: json.dumps({"query": q}).encode()),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=6,
    ).map(lambda v: json.dumps(v).encode()),
)

SEGMENT = st.one_of(
    st.sampled_from(["invocations", "query", "health", "restate", *OPERATIONS, "", "..", "%2F"]),
    st.just("inv_" + "0" * 32),
    st.text(alphabet="abcdefinv_0123456789%", max_size=40),
)


async def _scenario(db: Path, cases: list[tuple[str, list[str], str, bytes]]) -> None:
    async with df.LocalEngine(svc, path=db, durability="os") as engine:
        waiting = engine.send(wait)
        await engine.flush()
        app = Admin(engine)
        for method, segments, query, body in cases:
            path = "/" + "/".join(segments)
            r = await call(app, f"{path}?{query}" if query else path, body, method=method)
            assert r.status < 500, (method, path, query, body, r.status, r.body)
            if r.status >= 400:
                assert "message" in json.loads(r.body), r.body
        # Nothing above named the waiting invocation: it still waits, and valid requests work.
        row = engine.invocation(waiting)
        assert row is not None and row.status in ("running", "suspended", "ready")
        ok = await call(
            app, "/query", json.dumps({"query": "SELECT id FROM sys_invocation"}).encode()
        )
        assert ok.status == 200 and waiting in ok.body.decode()
        assert (await call(app, f"/invocations/{waiting}/kill", method="PATCH")).status == 200


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cases=st.lists(
        st.tuples(
            st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"]),
            st.lists(SEGMENT, min_size=0, max_size=4),
            st.sampled_from(["", "mode=kill", "mode=purge", "mode=cancel", "mode=nope", "x=%zz"]),
            BODIES,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_admin_api_fuzz(tmp_path: Path, cases: list[Any]) -> None:
    db = tmp_path / f"fuzz-{abs(hash(str(cases))) % 10**9}.db"
    asyncio.run(asyncio.wait_for(_scenario(db, cases), 30))
