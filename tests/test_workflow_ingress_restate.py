"""The embedded ingress against restate-server 1.7.12, request for request: workflows
(once per key, ``/send`` statuses), ``/restate/workflow/{name}/{key}/attach|output``,
``/restate/invocation/{id}/attach|output`` and its idempotency-key form, with their refusals.

The same services are registered on a real restate-server (one for the whole module) and
served by a ``LocalEngine`` behind its ingress; every request of ``SCRIPT`` goes to both, in
order, and the answers must agree: status, content type, JSON body, and which invocation
``x-restate-id`` names. Invocation ids differ between the two, so each side's ids are named
(``{run}``, ...) from its own answers and compared by name.

Known differences, left out of the comparison: restate-server adds ``"source"`` to an error
body (and an ``x-restate-error-source`` header) and ``idempotency-expires`` to a completed
invocation's answer; its 404 from ``/attach`` by workflow key or idempotency key names the
invocation id that key would have (the embedded engine has none to name); our 400 for a
missing key adds a hint after restate's message.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import durable_futures as df
from durable_futures.local.ingress import serve

from .restate_harness import (
    HOST,
    AsgiServer,
    RestateClient,
    RestateServer,
    free_port,
    http_request,
    wait_until,
)

pytestmark = pytest.mark.e2e

# ---- services -----------------------------------------------------------------------------

wf = df.Workflow("WfDiff")
plain = df.Service("PlainDiff")
obj = df.VirtualObject("ObjDiff")


@wf.main()
async def run(ctx: df.WorkflowContext, name: str) -> dict[str, str]:
    go = await ctx.promise("go", str).value()
    if go == "fail":
        raise df.TerminalError("told to fail", code=418)
    return {"hello": name, "go": go}


@wf.handler()
async def go(ctx: df.WorkflowSharedContext, value: str) -> str:
    await ctx.promise("go", str).resolve(value)
    return "ok"


@plain.handler()
async def echo(ctx: df.Context, s: str) -> str:
    return s


@obj.handler()
async def put(ctx: df.ObjectContext, s: str) -> str:
    return f"{ctx.key}={s}"


SERVICES = (wf, plain, obj)

# ---- the script ---------------------------------------------------------------------------


@dataclass
class Step:
    method: str
    path: str  # may name ids: {run}, {unknown}, ...
    body: Any = None  # JSON; None: no body and no content-type
    headers: dict[str, str] = field(default_factory=dict)
    save: str | None = None  # names the invocation this answer is about
    attach_404: bool = False  # restate names an id we cannot have: header not compared


def step(method: str, path: str, body: Any = None, **kw: Any) -> Step:
    return Step(method, path, body, **kw)


IK = {"idempotency-key": "ik1"}

SCRIPT = [
    # A workflow's run: once per key.
    step("POST", "/WfDiff/k1/run/send", "ann", save="run"),
    step("POST", "/WfDiff/k1/run/send", "bob"),
    step("GET", "/restate/workflow/WfDiff/k1/output"),
    step("GET", "/restate/invocation/{run}/output"),
    step("POST", "/WfDiff/k1/run", "cy"),
    step("POST", "/WfDiff/k1/run", "cy", headers=IK),
    step("POST", "/WfDiff/k1/run/send", "cy", headers=IK),
    step("PUT", "/WfDiff/k1/run", "cy", headers=IK),
    step("PUT", "/WfDiff/k1/run", "cy"),
    step("POST", "/WfDiff/run", "cy"),
    step("POST", "/WfDiff/k1/nohandler", "cy"),
    step("POST", "/WfDiff/k1/go", "yes", save="go"),
    step("GET", "/restate/workflow/WfDiff/k1/attach"),
    step("GET", "/restate/workflow/WfDiff/k1/output"),
    step("GET", "/restate/workflow/WfDiff/k1/output/ignored"),
    step("GET", "/restate/invocation/{run}/attach"),
    step("GET", "/restate/invocation/{run}/output"),
    step("POST", "/WfDiff/k1/run", "dan"),
    step("POST", "/WfDiff/k1/run/send", "dan"),
    # A key is percent-decoded; a shared handler runs before the run exists.
    step("POST", "/WfDiff/a%2Fb/go", "early"),
    step("GET", "/restate/workflow/WfDiff/a%2Fb/output"),
    step("POST", "/WfDiff/a%2Fb/run", "eve", save="early_run"),
    step("GET", "/restate/workflow/WfDiff/a%2Fb/output"),
    # A failed run.
    step("POST", "/WfDiff/k2/run/send", "zed", save="failed"),
    step("POST", "/WfDiff/k2/go", "fail"),
    step("GET", "/restate/workflow/WfDiff/k2/attach"),
    step("GET", "/restate/workflow/WfDiff/k2/output"),
    step("GET", "/restate/invocation/{failed}/output"),
    # Nothing there, and refusals.
    step("GET", "/restate/workflow/WfDiff/nobody/output"),
    step("GET", "/restate/workflow/WfDiff/nobody/attach", attach_404=True),
    step("GET", "/restate/workflow/Nope/k/output"),
    step("GET", "/restate/workflow/PlainDiff/k/output"),
    step("POST", "/restate/workflow/WfDiff/k1/output"),
    step("POST", "/restate/workflow/Nope/k/attach"),
    step("GET", "/restate/workflow/WfDiff/k1/other"),
    step("GET", "/restate/workflow/WfDiff/k1"),
    step("GET", "/restate/workflow/WfDiff"),
    step("GET", "/restate/invocation/{unknown}/output"),
    step("GET", "/restate/invocation/{unknown}/attach"),
    step("GET", "/restate/invocation/bogus/output"),
    step("POST", "/restate/invocation/bogus/attach"),
    step("GET", "/restate/invocation/foo_1234/attach"),
    step("GET", "/restate/invocation/inv_1234/output"),
    step("GET", "/restate/invocation//output"),
    step("GET", "/restate/invocation/{run}"),
    step("GET", "/restate/invocation/{run}/other"),
    step("DELETE", "/restate/invocation/{run}/output"),
    # Idempotent requests, by service, [key,] handler and idempotency key.
    step("POST", "/PlainDiff/echo/send", "v", headers=IK, save="plain"),
    step("POST", "/PlainDiff/echo/send", "v", headers=IK),
    step("GET", "/restate/invocation/PlainDiff/echo/ik1/attach"),
    step("GET", "/restate/invocation/PlainDiff/echo/ik1/output"),
    step("GET", "/restate/invocation/PlainDiff/echo/ik1/output/ignored"),
    step("POST", "/ObjDiff/o%2F1/put", "w", headers=IK, save="keyed"),
    step("GET", "/restate/invocation/ObjDiff/o%2F1/put/ik1/output"),
    step("POST", "/WfDiff/k3/go", "sure", headers=IK, save="shared"),
    step("GET", "/restate/invocation/WfDiff/k3/go/ik1/attach"),
    step("GET", "/restate/invocation/PlainDiff/echo/ik2/output"),
    step("GET", "/restate/invocation/PlainDiff/echo/ik2/attach", attach_404=True),
    step("GET", "/restate/invocation/PlainDiff/nohandler/ik1/output"),
    step("GET", "/restate/invocation/WfDiff/k1/run/ik1/output"),
    step("GET", "/restate/invocation/Nope/echo/ik1/output"),
    step("GET", "/restate/invocation/PlainDiff/echo/ik1"),
    step("GET", "/restate/invocation/ObjDiff/o/put/ik1"),
    step("GET", "/restate/invocation/PlainDiff/echo/ik1/other"),
    step("POST", "/restate/invocation/PlainDiff/echo/ik1/attach"),
]


# ---- the two sides ------------------------------------------------------------------------


class LocalIngress:
    """A LocalEngine with the services, behind its ingress on 127.0.0.1, in a thread."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = free_port()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with df.LocalEngine(*SERVICES, path=self.db, durability="os") as engine:
            await serve(engine, HOST, self.port, shutdown_trigger=self._stop.wait)

    def start(self) -> LocalIngress:
        self._thread.start()
        wait_until(
            lambda: http_request(self.port, "GET", "/restate/health", timeout=1).status == 200,
            15,
            what="the embedded ingress",
        )
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


@dataclass
class Side:
    name: str
    port: int
    ids: dict[str, str] = field(default_factory=dict)

    def request(self, s: Step) -> dict[str, Any]:
        """Sends the step; the answer with this side's ids replaced by their names."""
        headers = dict(s.headers)
        body = None
        if s.body is not None:
            body = json.dumps(s.body).encode()
            headers["content-type"] = "application/json"
        resp = http_request(self.port, s.method, s.path.format(**self.ids), body, headers, 30)
        named = resp.headers.get("x-restate-id")
        if s.save is not None:
            assert named is not None, (self.name, s, resp)
            self.ids[s.save] = named
        try:
            content: Any = json.loads(resp.body) if resp.body else None
        except ValueError:
            content = resp.body.decode("utf-8", "replace")
        if isinstance(content, dict):
            content.pop("source", None)  # restate-server's; see the module's docstring
        return {
            "status": resp.status,
            "content-type": resp.headers.get("content-type"),
            "body": self._named(content),
            "x-restate-id": None if s.attach_404 else self._named(named),
        }

    def _named(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self._named(v) for k, v in value.items()}
        if isinstance(value, str):
            for name, inv_id in self.ids.items():
                if value == inv_id:
                    return "{" + name + "}"
            return "{another id}" if value.startswith("inv_") else value
        return value


@pytest.fixture(scope="module")
def sides(
    restate_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Side, Side]]:
    base = tmp_path_factory.mktemp("workflow-ingress-restate")
    server = RestateServer(restate_binary, base_dir=base / "restate", name="workflow-ingress")
    server.start()
    endpoint = AsgiServer(df.asgi_app(*SERVICES, protocol="request_response"))
    ours = LocalIngress(base / "local.db")
    try:
        endpoint.start()
        RestateClient(server).register(endpoint.url, use_http_11=True)
        ours.start()
        theirs = Side("restate-server", server.ingress_port)
        mine = Side("embedded", ours.port)
        # An id each side does not know: ours is fixed, restate's is a real one altered.
        mine.ids["unknown"] = "inv_" + "0" * 32
        probe = json.loads(http_request(theirs.port, "POST", "/PlainDiff/echo/send", b'"p"', {
            "content-type": "application/json"}).body)["invocationId"]
        theirs.ids["unknown"] = probe[:-1] + ("a" if probe[-1] != "a" else "b")
        yield theirs, mine
    finally:
        ours.stop()
        endpoint.stop()
        server.stop()


def _agrees(theirs: dict[str, Any], ours: dict[str, Any]) -> bool:
    if theirs == ours:
        return True
    # Our 400 for a path without the key adds a hint after restate's message.
    t, o = theirs["body"], ours["body"]
    return (
        {**theirs, "body": None} == {**ours, "body": None}
        and isinstance(t, dict)
        and isinstance(o, dict)
        and t.get("code") == o.get("code") == 400
        and str(o.get("message", "")).startswith(str(t.get("message")) + ": ")
    )


def test_the_ingress_answers_as_restate_server_does(sides: tuple[Side, Side]) -> None:
    theirs, ours = sides
    differences = []
    for s in SCRIPT:
        expected, got = theirs.request(s), ours.request(s)
        if not _agrees(expected, got):
            differences.append(f"{s.method} {s.path}\n  restate:  {expected}\n  embedded: {got}")
    assert not differences, "\n".join(differences)
