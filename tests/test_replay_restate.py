"""``durable-futures replay`` against journals recorded by a real restate-server (read through
its admin API, ``--admin URL``), and ``replay --all`` as a pre-deploy check on both engines.

One restate-server serves the module below (imported in this process and served by
``AsgiServer``, registered in request/response mode, so a handler waiting on a long timer
suspends at once). Each test writes the module's source into its own directory, the working
directory of the CLI subprocesses, and may change it there, as a developer would before a
deploy: the recorded journals stay those of the original code.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import durable_futures as df
from durable_futures.restate_journal import entry_type_code, invocation_id_bytes, random_seed

from .restate_harness import (
    AsgiServer,
    RestateClient,
    RestateServer,
    ensure_restate_server,
    wait_until,
)
from .test_cli import Server, cli, http, line_of

APP = textwrap.dedent(
    '''
    """Services whose invocations stay unfinished: they wait on an hour-long timer."""

    from datetime import timedelta

    import durable_futures as df

    svc = df.Service("Waiter")
    holder = df.VirtualObject("Holder")


    def double(n: int) -> int:
        return n * 2


    @svc.handler()
    async def wait(ctx: df.Context, n: int) -> int:
        doubled = await ctx.run("double", double, n)
        await ctx.sleep(timedelta(hours=1))
        return doubled


    @svc.handler()
    async def quick(ctx: df.Context, n: int) -> int:
        return n


    @holder.handler()
    async def add(ctx: df.ObjectContext, n: int) -> int:
        total = (await ctx.get("total", int)) or 0
        ctx.set("total", total + n)
        return total + n


    @holder.handler()
    async def hold(ctx: df.ObjectContext, n: int) -> int:
        total = (await ctx.get("total", int)) or 0
        await ctx.sleep(timedelta(hours=1))
        return total + n
    '''
)

TWICE = 'ctx.run("twice"'
RENAMED = APP.replace('ctx.run("double"', TWICE)


def test_restate_ids_and_seeds() -> None:
    # Taken from a restate-server 1.7 StartMessage: the id's raw bytes and the random seed.
    raw = invocation_id_bytes("inv_12MHPQb7dKIZ0UojqsiRY5hp9a4FIyKLPJ")
    assert raw.hex() == "c57da72c35117220b3afcdb4fa4a9159d03b46090a8ee21d"
    assert random_seed(raw) == 1831155998328134059
    for bad in ("inv_0000", "inv_12MHPQb7dKIZ0UojqsiRY5hp9a4FIyKLP!", "x" * 38):
        with pytest.raises(ValueError):
            invocation_id_bytes(bad)
    assert entry_type_code("Command: Run") == 0x0411
    assert entry_type_code("Notification: Run") == 0x8011
    assert entry_type_code("Notification: CallInvocationId") == 0x800E
    assert entry_type_code("Notification: Signal") == 0xFBFF


# ---- restate-server -------------------------------------------------------------------------


@dataclass
class Recorded:
    server: RestateServer
    client: RestateClient
    waiting: str  # Waiter/wait, suspended on its timer
    holding: str  # Holder/k/hold, suspended on its timer, with state
    done: str  # Waiter/quick, completed

    @property
    def admin(self) -> str:
        return self.server.admin_url


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    where = tmp_path_factory.mktemp("replay-restate")
    (where / "app.py").write_text(APP)
    spec = importlib.util.spec_from_file_location("replay_restate_app", where / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    server = RestateServer(ensure_restate_server(), base_dir=where / "restate", name="replay")
    server.start()
    endpoint = AsgiServer(df.asgi_app(module.svc, module.holder), log_path=where / "endpoint.log")
    try:
        endpoint.start()
        client = RestateClient(server)
        client.register(endpoint.url, use_http_11=True)
        waiting = client.send("Waiter", "wait", 21)
        assert client.call("Holder", "add", 5, key="k").status == 200
        holding = client.send("Holder", "hold", 1, key="k")
        done_resp = client.call("Waiter", "quick", 3)
        assert done_resp.status == 200, done_resp
        for inv, commands in ((waiting, 3), (holding, 3)):
            wait_until(
                lambda inv=inv, commands=commands: client.query(
                    "SELECT journal_commands_size FROM sys_invocation WHERE id = "
                    f"'{inv}' AND status = 'suspended' AND journal_commands_size >= {commands}"
                ),
                30,
                what=f"{inv} suspended on its timer",
            )
        done = client.query(
            "SELECT id FROM sys_invocation WHERE target = 'Waiter/quick' AND status = 'completed'"
        )[0]["id"]
        yield Recorded(server, client, waiting, holding, str(done))
    finally:
        endpoint.stop()
        server.stop()
        sys.modules.pop("replay_restate_app", None)


@pytest.mark.e2e
def test_replay_of_a_restate_journal(recorded: Recorded, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    inv = recorded.waiting
    out = cli(tmp_path, "replay", inv, "--admin", recorded.admin, "--module", "app")
    assert out.returncode == 0, out
    assert out.stdout.startswith(f"replay OK — {inv} Waiter/wait: 4 journal entries matched"), out
    assert "the journal ends here: the code waits for a completion" in out.stdout
    assert f"at app.py:{line_of(app, 'ctx.sleep(')} in wait: " in out.stdout, out.stdout

    # A virtual object's journal, with its state read from the server.
    out = cli(tmp_path, "replay", recorded.holding, "--admin", recorded.admin, "--module", "app")
    assert out.returncode == 0, out
    assert f"replay OK — {recorded.holding} Holder/k/hold: " in out.stdout, out.stdout

    # A completed invocation: the code writes the recorded output.
    out = cli(tmp_path, "replay", recorded.done, "--admin", recorded.admin, "--module", "app")
    assert out.returncode == 0, out
    assert "the code wrote the recorded output" in out.stdout, out.stdout

    # The run renamed: the first difference, the recorded entry and the changed line.
    app.write_text(RENAMED)
    out = cli(tmp_path, "replay", inv, "--admin", recorded.admin, "--module", "app")
    assert out.returncode == 1, out
    text = out.stdout
    assert text.startswith(f"replay MISMATCH — {inv} Waiter/wait: 4 journal entries"), text
    assert "[570] journal mismatch at command index 1" in text, text
    assert 'recorded run "double", but the handler now attempts run "twice"' in text, text
    assert "recorded entry #1 (command 1): RunCommand 'double'" in text, text
    assert f"at app.py:{line_of(app, TWICE)} in wait: " in text, text


@pytest.mark.e2e
def test_replay_all_against_restate(recorded: Recorded, tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    base = ["replay", "--all", "--admin", recorded.admin, "--module", "app"]
    out = cli(tmp_path, *base)
    assert out.returncode == 0, out
    assert f"replay OK — {recorded.waiting} Waiter/wait" in out.stdout, out.stdout
    assert f"replay OK — {recorded.holding} Holder/k/hold" in out.stdout, out.stdout
    assert recorded.done not in out.stdout  # completed: not replayed by default
    assert out.stdout.endswith(f"2 invocations replayed from {recorded.admin}: 0 failed\n")

    out = cli(tmp_path, *base, "--status", "completed")
    assert out.returncode == 0, out
    assert recorded.done in out.stdout and recorded.waiting not in out.stdout, out.stdout

    app.write_text(RENAMED)
    out = cli(tmp_path, *base)
    assert out.returncode == 1, out
    assert f"replay MISMATCH — {recorded.waiting} Waiter/wait" in out.stdout, out.stdout
    assert f"replay OK — {recorded.holding} Holder/k/hold" in out.stdout, out.stdout
    assert out.stdout.endswith(f"2 invocations replayed from {recorded.admin}: 1 failed\n")

    # Only the services the module defines: another module's invocations are left alone.
    (tmp_path / "other.py").write_text("import durable_futures as df\nsvc = df.Service('Other')\n")
    out = cli(tmp_path, "replay", "--all", "--admin", recorded.admin, "--module", "other")
    assert out.returncode == 0, out
    assert out.stdout == f"0 invocations replayed from {recorded.admin}: 0 failed\n"


@pytest.mark.e2e
def test_replay_admin_errors(recorded: Recorded, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    missing = "inv_1" + "0" * 33
    out = cli(tmp_path, "replay", missing, "--admin", recorded.admin, "--module", "app")
    assert out.returncode == 2 and f"no invocation {missing} at " in out.stderr, out
    out = cli(tmp_path, "replay", "--admin", recorded.admin, "--module", "app")
    assert out.returncode == 2 and "an invocation ID or --all" in out.stderr, out
    out = cli(tmp_path, "replay", "--all", "--admin", "ftp://x", "--module", "app")
    assert out.returncode == 2 and "must be an http(s) URL" in out.stderr, out


# ---- the embedded engine ----------------------------------------------------------------------


def test_replay_all_on_the_embedded_engine(tmp_path: Path, servers: list[Server]) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    server = Server(tmp_path)
    servers.append(server)
    status, body = http(server.port, "POST", "/Waiter/wait/send", b"21")
    assert status == 202, body
    waiting = json.loads(body)["invocationId"]
    assert http(server.port, "POST", "/Waiter/quick", b"3") == (200, b"3")

    def journaled() -> bool:
        shown = cli(tmp_path, "journal", "show", waiting, "--db", "app.db").stdout
        return "SleepCommand" in shown

    wait_until(journaled, 30, what="the timer in the journal")
    assert server.terminate() == 0

    base = ["replay", "--all", "--db", "app.db", "--module", "app"]
    out = cli(tmp_path, *base)
    assert out.returncode == 0, out
    assert f"replay OK — {waiting} Waiter/wait" in out.stdout, out.stdout
    assert out.stdout.endswith("1 invocations replayed from app.db: 0 failed\n"), out.stdout

    app.write_text(RENAMED)
    out = cli(tmp_path, *base)
    assert out.returncode == 1, out
    assert f"replay MISMATCH — {waiting} Waiter/wait" in out.stdout, out.stdout
    assert f"at app.py:{line_of(app, TWICE)} in wait: " in out.stdout, out.stdout
    assert out.stdout.endswith("1 invocations replayed from app.db: 1 failed\n"), out.stdout
