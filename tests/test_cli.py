"""The ``durable-futures`` command, run as a subprocess: ``serve`` (HTTP on 127.0.0.1, stopped
with SIGTERM), ``invoke``, ``journal list|show``, ``replay``, ``endpoint --http1-only``; and
``examples/run_local.py``.

Every subprocess is bounded by a timeout and killed if it outlives its test. The services
live in a module written into the test's temporary directory (the working directory of the
commands), so a test can change the code between runs as a developer would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from http.client import HTTPConnection
from pathlib import Path

import pytest

from durable_futures._core import Message
from durable_futures.cli import CliError, _http1_server

from .frames import frames, output_value

CLI = str(Path(sys.executable).parent / "durable-futures")
V5 = "application/vnd.restate.invocation.v5"
MANIFEST_V3 = "application/vnd.restate.endpointmanifest.v3+json"
ROOT = Path(__file__).resolve().parent.parent

APP = textwrap.dedent(
    '''
    """Services for the CLI tests."""

    import asyncio
    import os
    from datetime import timedelta

    import durable_futures as df

    svc = df.Service("Greeter")


    def shout(name: str) -> str:
        return name.upper()


    @svc.handler()
    async def greet(ctx: df.Context, name: str) -> str:
        loud = await ctx.run("shout", shout, name)
        echoed = await ctx.service("Greeter", "echo").request(loud)
        return f"hello {echoed}"


    @svc.handler()
    def greet_sync(ctx: df.Context, name: str) -> str:
        loud = ctx.run_async("shout", shout, name).result()
        return f"hello {loud}"


    @svc.handler()
    async def echo(ctx: df.Context, s: str) -> str:
        return s


    @svc.handler()
    async def fail(ctx: df.Context, s: str) -> str:
        raise df.TerminalError(f"no {s}", 418)


    async def block_forever() -> str:
        with open("block-ran", "a") as f:
            f.write("ran\\n")
        await asyncio.sleep(3600)
        return "never"


    @svc.handler()
    async def blocked(ctx: df.Context, s: str) -> str:
        await ctx.run("first", shout, s)
        return await ctx.run("block", block_forever)


    def publish(awakeable_id: str) -> None:
        with open("awakeable-id", "w") as f:
            f.write(awakeable_id)


    @svc.handler()
    async def resumable(ctx: df.Context, s: str) -> str:
        awakeable_id, fut = ctx.awakeable(str)
        await ctx.run("publish", publish, awakeable_id)
        return f"{s} got {await fut}"


    counter = df.VirtualObject("Counter")

    broken = df.VirtualObject(
        "Broken",
        retry_policy=df.RetryPolicy(
            initial_interval=timedelta(milliseconds=20),
            max_interval=timedelta(milliseconds=50),
            max_attempts=3,
        ),
    )


    @broken.handler()
    async def explode(ctx: df.ObjectContext, n: int) -> int:
        await ctx.run("prepare", shout, "x")
        raise ValueError(f"bad input {n}")


    @broken.handler()
    async def fine(ctx: df.ObjectContext, n: int) -> int:
        return n + 1


    @counter.handler()
    async def add(ctx: df.ObjectContext, n: int) -> int:
        total = (await ctx.get("total", int)) or 0
        ctx.set("total", total + n)
        return total + n
    '''
)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONDONTWRITEBYTECODE"] = "1"  # the tests rewrite app.py between runs
    e.pop("DURABLE_FUTURES_MODULE", None)
    return e


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def cli(work: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        cwd=work,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method=method,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    """``durable-futures serve`` in a subprocess."""

    def __init__(self, work: Path, db: str = "app.db", extra: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.log = work / f"serve-{self.port}.log"
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                CLI, "serve", "app", "--db", db, "--port", str(self.port),
                "--admin-port", str(self.admin_port), "--durability", "os", *extra,
            ],
            cwd=work,
            env=env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {self.log.read_text()}")
            try:
                if http(self.port, "GET", "/restate/health")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"serve did not answer: {self.log.read_text()}")
            time.sleep(0.05)

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def invocation_id(work: Path, target: str, db: str = "app.db") -> str:
    out = cli(work, "journal", "list", "--db", db, "--limit", "100")
    assert out.returncode == 0, out
    for line in out.stdout.splitlines()[1:]:
        cols = line.split()
        if cols[1] == target:
            return cols[0]
    raise AssertionError(f"no {target} in {out.stdout}")


def wait_for_file(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)
    return path.read_text()


# ---- serve ----------------------------------------------------------------------------------


def test_serve_answers_http_and_stops_on_sigterm(work: Path, servers: list[Server]) -> None:
    server = Server(work)
    servers.append(server)
    assert http(server.port, "POST", "/Greeter/greet", b'"bob"') == (200, b'"hello BOB"')
    assert http(server.port, "POST", "/Counter/k/add", b"3") == (200, b"3")
    status, body = http(server.port, "POST", "/Greeter/fail", b'"x"')
    assert (status, json.loads(body)) == (418, {"code": 418, "message": "no x"})
    status, body = http(server.port, "POST", "/Nope/x", b"1")
    assert status == 404 and json.loads(body)["code"] == 404
    assert server.terminate() == 0
    assert "stopped" in server.log.read_text()
    # The results are in the database.
    assert "Greeter/greet" in cli(work, "journal", "list", "--db", "app.db").stdout


def test_unfinished_invocations_resume_after_a_restart(work: Path, servers: list[Server]) -> None:
    server = Server(work)
    servers.append(server)
    status, body = http(server.port, "POST", "/Greeter/resumable/send", b'"amy"')
    assert status == 202, body
    inv_id = json.loads(body)["invocationId"]
    awakeable_id = wait_for_file(work / "awakeable-id")
    # While it waits, a second engine on the same file is refused (it would run it twice).
    busy = cli(work, "invoke", "Greeter/echo", '"x"', "--module", "app", "--db", "app.db")
    assert busy.returncode == 2 and "in use" in busy.stderr, busy
    assert server.terminate() == 0

    server = Server(work)
    servers.append(server)
    status, _ = http(server.port, "POST", f"/restate/awakeables/{awakeable_id}/resolve", b'"news"')
    assert status == 202
    status, body = http(server.port, "GET", f"/restate/invocation/{inv_id}/attach")
    assert (status, body) == (200, b'"amy got news"')
    assert server.terminate() == 0


# ---- invoke ---------------------------------------------------------------------------------


def test_invoke(work: Path) -> None:
    out = cli(work, "invoke", "Greeter/greet", '"bob"', "--module", "app", "--db", "app.db")
    assert out.returncode == 0, out
    assert out.stdout == '"hello BOB"\n'
    assert "invocation inv_" in out.stderr
    assert (work / "app.db").exists()

    out = cli(work, "invoke", "Counter/add", "5", "--key", "k1", "--module", "app", "--db", "app.db")
    assert (out.returncode, out.stdout) == (0, "5\n"), out
    out = cli(work, "invoke", "Counter/add", "2", "--key", "k1", "--module", "app", "--db", "app.db")
    assert (out.returncode, out.stdout) == (0, "7\n"), out

    out = cli(work, "invoke", "Greeter/fail", '"x"', "--module", "app", "--db", "app.db")
    assert out.returncode == 1, out
    assert out.stdout == ""
    assert "error [418]: no x" in out.stderr

    for args, message in [
        (["Greeter/nope", "1"], "no handler Greeter/nope"),
        (["Counter/add", "1"], "Counter is a virtual object"),
        (["Greeter/greet", "{bad"], "not valid JSON"),
        (["greet", "1"], "expected SERVICE/HANDLER"),
    ]:
        out = cli(work, "invoke", *args, "--module", "app", "--db", "app.db")
        assert out.returncode == 2, (args, out)
        assert message in out.stderr, (args, out)
    out = cli(work, "invoke", "Greeter/echo", '"x"', "--db", "app.db")
    assert out.returncode == 2 and "--module" in out.stderr, out


# ---- --version and what MODULE names ----------------------------------------------------------


def test_version(work: Path) -> None:
    import durable_futures as df

    out = cli(work, "--version")
    assert out.returncode == 0, out
    low, high = df.PROTOCOL_VERSIONS
    assert out.stdout == f"durable-futures {df.__version__} (service protocol V{low}-V{high})\n"
    assert out.stderr == ""


def test_version_loads_no_event_loop_and_no_engine(work: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "durable_futures", "--version"],
        cwd=work,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out
    assert out.stdout.startswith("durable-futures ")
    loaded = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "durable_futures.cli" in loaded
    assert not loaded & {
        "asyncio",
        "hypercorn",
        "durable_futures.local",
        "durable_futures.endpoint",
        "durable_futures.service",
    }


PLAIN = "import os\n\nnot_a_service = 1\n"
BROKEN = "import durable_futures as df\nimport nosuch_dependency\n\nsvc = df.Service('S')\n"
LISTS = "import durable_futures as df\n\nnone = []\nmixed = [df.Service('S'), 'x']\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["serve", "nosuch.module"],
            "cannot import module 'nosuch.module': No module named 'nosuch'",
        ),
        (["serve", "app:nothing"], "module 'app' has no attribute 'nothing'"),
        (["endpoint", "app:nothing"], "module 'app' has no attribute 'nothing'"),
        (["serve", "plain"], "module 'plain' defines no df.Service at its top level"),
        (["endpoint", "plain"], "module 'plain' defines no df.Service at its top level"),
        (
            ["endpoint", "app", "--http1-only", "--protocol", "bidi"],
            "--protocol bidi needs HTTP/2: drop --http1-only",
        ),
        (
            ["serve", "app:shout"],
            "'app:shout' is not a df.Service or a list of them (its type is function)",
        ),
        (["serve", "lists:none"], "'lists:none' is an empty list: no df.Service to serve"),
        (["serve", "lists:mixed"], "'lists:mixed' holds a value of type str, not a df.Service"),
        (
            ["serve", "broken"],
            "cannot import module 'broken': No module named 'nosuch_dependency'",
        ),
        (["serve", ":svc"], "':svc': expected a module (a.b.c) or module:attribute"),
        (["serve", "app:"], "'app:': expected a module (a.b.c) or module:attribute"),
        (
            ["invoke", "Greeter/echo", '"x"', "--module", "nosuch"],
            "cannot import module 'nosuch': No module named 'nosuch'",
        ),
        (
            ["replay", "inv_00000000000000000000000000000000", "--module", "app:nothing"],
            "module 'app' has no attribute 'nothing'",
        ),
    ],
)
def test_an_unknown_module_or_attribute_is_a_one_line_error(
    work: Path, args: list[str], message: str
) -> None:
    (work / "plain.py").write_text(PLAIN)
    (work / "broken.py").write_text(BROKEN)
    (work / "lists.py").write_text(LISTS)
    if args[0] == "replay":  # replay opens the database before it loads the module
        cli(work, "invoke", "Greeter/echo", '"x"', "--module", "app")
        args = ["replay", invocation_id(work, "Greeter/echo", "durable-futures.db"), *args[2:]]
    out = cli(work, *args, timeout=30)
    assert out.returncode == 2, out
    assert out.stderr == f"durable-futures: {message}\n", out
    assert out.stdout == ""


# ---- endpoint --------------------------------------------------------------------------------


def test_endpoint_http1_only_serves_request_response_and_stops_on_sigterm(work: Path) -> None:
    port = free_port()
    log = (work / "endpoint.log").open("w")
    proc = subprocess.Popen(
        [CLI, "endpoint", "app", "--http1-only", "--port", str(port)],
        cwd=work,
        env=env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (work / "endpoint.log").read_text()
            try:
                conn = HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/discover", headers={"accept": MANIFEST_V3})
                break
            except OSError:
                assert time.monotonic() < deadline, (work / "endpoint.log").read_text()
                time.sleep(0.05)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.version == 11
        manifest = json.loads(resp.read())
        # Announced without being asked (the discovery request's HTTP version would say so
        # too): HTTP/1.1 alone cannot carry a bidirectional stream.
        assert manifest["protocolMode"] == "REQUEST_RESPONSE"
        assert "Greeter" in {s["name"] for s in manifest["services"]}
        # An attempt on the same connection: its journal is only the input, so the handler
        # runs to its end and the response carries its output.
        body = b"".join(
            m.encode()
            for m in (
                Message("Start", id=b"0123456789abcdef", debug_id="inv_cli", known_entries=1),
                Message("InputCommand", value=b'"amy"'),
            )
        )
        conn.request("POST", "/invoke/Greeter/echo", body=body, headers={"content-type": V5})
        resp = conn.getresponse()
        assert resp.status == 200
        assert output_value(frames(resp.read())) == b'"amy"'
        conn.close()
        # An attempt whose request never ends (its body is still open) does not hold the
        # stop for long: it gets uvicorn's graceful 3 s, then the process exits.
        hanging = socket.create_connection(("127.0.0.1", port), timeout=30)
        hanging.sendall(
            b"POST /invoke/Greeter/echo HTTP/1.1\r\nhost: x\r\ncontent-type: " + V5.encode()
            + b"\r\ntransfer-encoding: chunked\r\n\r\n%x\r\n" % len(body) + body + b"\r\n"
        )
        assert hanging.recv(12) == b"HTTP/1.1 200"  # the attempt has started
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        hanging.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    out = (work / "endpoint.log").read_text()
    assert "serving Greeter" in out and "(HTTP/1.1)" in out, out


def test_endpoint_http1_only_without_its_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn raises ImportError
    with pytest.raises(CliError) as info:
        _http1_server(object(), "127.0.0.1", 0)
    assert str(info.value) == (
        "--http1-only serves with uvicorn and httptools, which are not installed: "
        "pip install 'durable-futures[http1]'"
    )


# ---- journal --------------------------------------------------------------------------------


def test_journal_list_and_show(work: Path) -> None:
    for args in (["Greeter/greet", '"bob"'], ["Greeter/fail", '"x"']):
        cli(work, "invoke", *args, "--module", "app", "--db", "app.db")
    out = cli(work, "journal", "list", "--db", "app.db")
    assert out.returncode == 0, out
    header, *rows = out.stdout.splitlines()
    assert header.split() == [
        "id", "target", "status", "failed", "created", "entries", "result", "/", "last", "failure"
    ]
    targets = [r.split()[1] for r in rows]
    assert targets == ["Greeter/fail", "Greeter/echo", "Greeter/greet"], out.stdout  # newest first
    assert all(r.split()[2] == "completed" for r in rows)
    assert rows[0].endswith("failure [418] no x") and rows[2].endswith("success"), out.stdout
    limited = cli(work, "journal", "list", "--db", "app.db", "--limit", "1")
    assert len(limited.stdout.splitlines()) == 2

    inv_id = invocation_id(work, "Greeter/greet")
    out = cli(work, "journal", "show", inv_id, "--db", "app.db")
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"{inv_id}  Greeter/greet  completed  created ")
    assert lines[1] == "completed: success"
    table = [line.split() for line in lines[3:]]
    assert [row[0] for row in table] == [str(i) for i in range(7)]
    assert table[0][:3] == ["0", "0", "InputCommand"] and table[0][-1] == '"bob"'
    assert table[1] == ["1", "1", "RunCommand", "shout", "c1"]
    assert table[2] == ["2", "RunCompletion", "c1", "value", '"BOB"']
    assert table[3] == ["3", "2", "CallCommand", "c2", "c3", 'Greeter/echo("BOB")']
    assert table[4][:4] == ["4", "CallInvocationIdCompletion", "c2", "invocation_id"]
    assert table[5] == ["5", "CallCompletion", "c3", "value", '"BOB"']
    assert table[6] == ["6", "3", "OutputCommand", '"hello', 'BOB"']

    fail_id = invocation_id(work, "Greeter/fail")
    out = cli(work, "journal", "show", fail_id, "--db", "app.db")
    assert "OutputCommand" in out.stdout and "failure [418] no x" in out.stdout, out.stdout

    for bad, message in [
        ("inv_00000000000000000000000000000000", "no invocation"),
        ("bogus", "not an invocation id"),
    ]:
        out = cli(work, "journal", "show", bad, "--db", "app.db")
        assert out.returncode == 2 and message in out.stderr, out
    out = cli(work, "journal", "list", "--db", "missing.db")
    assert out.returncode == 2 and "no database at missing.db" in out.stderr, out
    assert not (work / "missing.db").exists()


# ---- replay ---------------------------------------------------------------------------------


def line_of(path: Path, text: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return i
    raise AssertionError(text)


@pytest.mark.parametrize("handler", ["greet", "greet_sync"])
def test_replay_ok_then_mismatch_after_a_change(work: Path, handler: str) -> None:
    out = cli(work, "invoke", f"Greeter/{handler}", '"bob"', "--module", "app", "--db", "app.db")
    assert out.returncode == 0, out
    inv_id = invocation_id(work, f"Greeter/{handler}")
    out = cli(work, "replay", inv_id, "--db", "app.db", "--module", "app")
    assert out.returncode == 0, out
    assert out.stdout.startswith(f"replay OK — {inv_id} Greeter/{handler}: ")
    assert "the code wrote the recorded output" in out.stdout

    # The run is renamed: the replay names the command, both versions, and the line.
    app = work / "app.py"
    app.write_text(APP.replace('ctx.run("shout"', 'ctx.run("yell"').replace(
        'ctx.run_async("shout"', 'ctx.run_async("yell"'
    ))
    out = cli(work, "replay", inv_id, "--db", "app.db", "--module", "app")
    assert out.returncode == 1, out
    text = out.stdout
    assert text.startswith(f"replay MISMATCH — {inv_id} Greeter/{handler}"), text
    assert "[570] journal mismatch at command index 1" in text
    assert 'recorded run "shout", but the handler now attempts run "yell"' in text
    assert "recorded entry #1 (command 1): RunCommand 'shout'" in text, text
    line = line_of(app, '"yell"') if handler == "greet" else line_of(app, 'run_async("yell"')
    function = "greet" if handler == "greet" else "greet_sync"
    assert f"at app.py:{line} in {function}: " in text, text


def test_replay_of_a_virtual_object_with_state(work: Path) -> None:
    for n in ("5", "2"):
        out = cli(work, "invoke", "Counter/add", n, "--key", "k1", "--module", "app", "--db", "app.db")
        assert out.returncode == 0, out
    out = cli(work, "journal", "list", "--db", "app.db")
    second, first = (line.split()[0] for line in out.stdout.splitlines()[1:3])
    for inv_id in (first, second):
        out = cli(work, "replay", inv_id, "--db", "app.db", "--module", "app")
        assert out.returncode == 0, out
        assert f"replay OK — {inv_id} Counter/k1/add" in out.stdout, out.stdout
    shown = cli(work, "journal", "show", second, "--db", "app.db").stdout
    assert "GetEagerStateCommand" in shown and "key 'total' = 5" in shown, shown
    assert "SetStateCommand" in shown and "key 'total' = 7" in shown, shown


def test_replay_reports_a_changed_call_and_a_changed_output(work: Path) -> None:
    cli(work, "invoke", "Greeter/greet", '"bob"', "--module", "app", "--db", "app.db")
    inv_id = invocation_id(work, "Greeter/greet")
    app = work / "app.py"

    app.write_text(APP.replace(".request(loud)", ".request(loud + '!')"))
    out = cli(work, "replay", inv_id, "--db", "app.db", "--module", "app")
    assert out.returncode == 1, out
    assert "journal mismatch at command index 2" in out.stdout
    assert "recorded entry #3 (command 2): CallCommand Greeter/echo" in out.stdout
    assert f"at app.py:{line_of(app, 'request(loud')} in greet: " in out.stdout, out.stdout

    app.write_text(APP.replace('f"hello {echoed}"', 'f"hi {echoed}"'))
    out = cli(work, "replay", inv_id, "--db", "app.db", "--module", "app")
    assert out.returncode == 1, out
    assert "journal mismatch at command index 3" in out.stdout
    assert "recorded entry #6 (command 3): OutputCommand" in out.stdout
    assert f"at app.py:{line_of(app, 'async def greet(')} in greet" in out.stdout, out.stdout


def test_replay_stops_where_the_journal_ends(work: Path, servers: list[Server]) -> None:
    server = Server(work)
    servers.append(server)
    status, body = http(server.port, "POST", "/Greeter/blocked/send", b'"x"')
    assert status == 202, body
    inv_id = json.loads(body)["invocationId"]
    wait_for_file(work / "block-ran")
    status, body = http(server.port, "POST", "/Greeter/resumable/send", b'"y"')
    waiting_id = json.loads(body)["invocationId"]
    wait_for_file(work / "awakeable-id")
    assert server.terminate() == 0
    (work / "block-ran").unlink()

    # The run "block" has no completion: the replay does not execute it.
    out = cli(work, "replay", inv_id, "--db", "app.db", "--module", "app")
    assert out.returncode == 0, out
    assert "replay OK" in out.stdout and "the journal ends here" in out.stdout, out.stdout
    assert "run 'block' has no completion in the journal" in out.stdout
    line = line_of(work / "app.py", 'ctx.run("block"')
    assert f"at app.py:{line} in blocked: " in out.stdout, out.stdout
    assert not (work / "block-ran").exists()

    # An awaited awakeable the journal does not complete: the journal ends there too.
    out = cli(work, "replay", waiting_id, "--db", "app.db", "--module", "app")
    assert out.returncode == 0, out
    assert "the journal ends here: the code waits for a completion" in out.stdout, out.stdout
    line = line_of(work / "app.py", "await fut")
    assert f"at app.py:{line} in resumable: " in out.stdout, out.stdout


def test_replay_errors(work: Path) -> None:
    cli(work, "invoke", "Greeter/echo", '"x"', "--module", "app", "--db", "app.db")
    inv_id = invocation_id(work, "Greeter/echo")
    out = cli(work, "replay", inv_id, "--db", "app.db")
    assert out.returncode == 2 and "--module" in out.stderr, out
    (work / "other.py").write_text("import durable_futures as df\nsvc = df.Service('Other')\n")
    out = cli(work, "replay", inv_id, "--db", "app.db", "--module", "other")
    assert out.returncode == 1, out
    assert "no handler Greeter/echo in the given module" in out.stdout
    out = cli(work, "replay", "inv_00000000000000000000000000000000", "--db", "app.db", "--module", "app")
    assert out.returncode == 2 and "no invocation" in out.stderr, out


# ---- the README's first command -------------------------------------------------------------


def test_run_local_example() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "run_local.py")],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out
    text = out.stdout
    for target in (
        "Orders/overview(42)",
        "Orders/overview_sync(42)",
        'Race/race("hi")',
        'Race/race_sync("hi")',
        "FanOut/all_of(4)",
        "FanOut/all_of_sync(4)",
    ):
        assert target in text, text
    assert text.count('-> "call won with result: hi"') == 2
    assert text.count('-> ["done 0", "done 1", "done 2", "done 3"]') == 2
    assert "The journal of Orders/overview" in text
    assert "RunCommand" in text and "fetch-user" in text and "OutputCommand" in text


# ---- a handler that keeps failing --------------------------------------------------------------


def query(port: int, sql: str) -> list[dict[str, object]]:
    status, body = http(port, "POST", "/query", json.dumps({"query": sql}).encode())
    assert status == 200, body
    rows: list[dict[str, object]] = json.loads(body)["rows"]
    return rows


def test_a_failing_handler_is_logged_shown_paused_and_cancelled(
    work: Path, servers: list[Server]
) -> None:
    server = Server(work, extra=["--log-level", "INFO"])
    servers.append(server)
    status, body = http(server.port, "POST", "/Broken/k1/explode/send", b"7")
    assert status == 202, body
    failing = json.loads(body)["invocationId"]
    status, body = http(server.port, "POST", "/Broken/k1/fine/send", b"1")
    assert status == 202, body
    queued = json.loads(body)["invocationId"]

    # Three attempts (the service's policy), then paused; the queued call waits for the key.
    deadline = time.monotonic() + 20
    while True:
        (row,) = query(server.admin_port, f"SELECT * FROM sys_invocation WHERE id = '{failing}'")
        if row["status"] == "paused":
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.05)
    assert row["target"] == "Broken/k1/explode"
    assert row["last_failure_error_code"] == 500
    assert "ValueError: bad input 7" in str(row["last_failure"])
    (queued_row,) = query(server.admin_port, f"SELECT status FROM sys_invocation WHERE id = '{queued}'")
    assert queued_row["status"] == "pending"

    # The failure is in the log with its traceback, and in journal show.
    log = server.log.read_text()
    assert log.count("ValueError: bad input 7") >= 3, log
    assert failing in log and "Traceback" in log
    shown = cli(work, "journal", "show", failing, "--db", "app.db")
    assert shown.returncode == 0, shown
    assert "paused" in shown.stdout and "ValueError: bad input 7" in shown.stdout
    listed = cli(work, "journal", "list", "--db", "app.db")
    assert "paused" in listed.stdout

    # Cancel ends it with 409 within a second; the queued call on the key then runs.
    admin = f"http://127.0.0.1:{server.admin_port}"
    started = time.monotonic()
    out = cli(work, "invocation", "cancel", failing, "--admin", admin)
    assert out.returncode == 0, out
    status, body = http(server.port, "GET", f"/restate/invocation/{failing}/attach")
    assert time.monotonic() - started < 5  # (a second on an idle machine; CI is loaded)
    assert status == 409, body
    status, body = http(server.port, "GET", f"/restate/invocation/{queued}/attach")
    assert (status, body) == (200, b"2")

    # Completed: cancelling again is a conflict, purging forgets it.
    out = cli(work, "invocation", "kill", failing, "--admin", admin)
    assert out.returncode == 1 and "[409]" in out.stderr, out
    assert cli(work, "invocation", "purge", failing, "--admin", admin).returncode == 0
    assert query(server.admin_port, f"SELECT id FROM sys_invocation WHERE id = '{failing}'") == []
    out = cli(work, "invocation", "purge", failing, "--admin", admin)
    assert out.returncode == 1 and "[404]" in out.stderr, out
    assert server.terminate() == 0


def test_invocation_without_an_admin_api_is_a_clear_error(work: Path) -> None:
    out = cli(work, "invocation", "kill", "inv_00", "--admin", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 2
    assert "no admin API at" in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_refuses_bodies_over_its_limit(work: Path, servers: list[Server]) -> None:
    server = Server(work, extra=["--max-body-bytes", "16"])
    servers.append(server)
    assert http(server.port, "POST", "/Greeter/echo", b'"short"') == (200, b'"short"')
    status, body = http(server.port, "POST", "/Greeter/echo", b'"' + b"x" * 32 + b'"')
    assert status == 413, body
    out = cli(work, "journal", "list", "--db", "app.db")
    assert out.stdout.count("Greeter/echo") == 1, out.stdout  # the refused one was not stored
    assert server.terminate() == 0
    bad = cli(work, "serve", "app", "--max-body-bytes", "0")
    assert bad.returncode == 2 and "must be at least 1" in bad.stderr
