"""Run an unmodified restate-server and our ASGI endpoint on loopback, for end-to-end tests.

Pieces (each usable alone):

- ``ensure_restate_server()``: path of the restate-server binary from the project-local npm
  install (``package.json`` pins the version); runs ``npm ci`` when ``node_modules`` is missing.
- ``RestateServer``: the server as a subprocess bound only to 127.0.0.1 on free ports, with a
  temporary base dir, its log in a file; ``start()`` waits for both health endpoints, ``stop()``
  sends SIGTERM then SIGKILL.
- ``AsgiServer``: hypercorn serving an ASGI app in a background thread on 127.0.0.1 (h2c and
  HTTP/1.1 on the same port); ``Http1Server``: the same with uvicorn on httptools, HTTP/1.1
  alone, configured as ``durable-futures endpoint --http1-only`` configures it.
- ``RestateClient``: the admin API (register a deployment, cancel, SQL queries) and the ingress
  (call, send, attach, awakeables) over plain ``http.client``; every request has a timeout.

Nothing here listens on or talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import atexit
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

# Applied to every server we start. Small and fast: one partition, little memory, a quick
# default retry policy (a failing attempt is retried after 20 ms, at most 500 ms apart, and
# the invocation is killed after 10 attempts so a broken handler fails fast instead of pausing).
BASE_ENV: dict[str, str] = {
    "RESTATE_LISTEN_MODE": "tcp",
    "RESTATE_DISABLE_TELEMETRY": "true",
    "RESTATE_NODE_NAME": "e2e",
    "RESTATE_DEFAULT_NUM_PARTITIONS": "1",
    "RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE": "64MB",
    "RESTATE_ADMIN__QUERY_ENGINE__MEMORY_SIZE": "64MB",
    "RESTATE_WORKER__INVOKER__IN_MEMORY_QUEUE_LENGTH_LIMIT": "64",
    "RESTATE_SHUTDOWN_TIMEOUT": "5s",
    "RESTATE_LOG_FILTER": "warn,restate=info",
    "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
    "RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL": "20ms",
    "RESTATE_DEFAULT_RETRY_POLICY__MAX_INTERVAL": "500ms",
    "RESTATE_DEFAULT_RETRY_POLICY__EXPONENTIATION_FACTOR": "2.0",
    "RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "10",
    "RESTATE_DEFAULT_RETRY_POLICY__ON_MAX_ATTEMPTS": "kill",
}

# Every await suspends the invocation and every resumption replays the journal.
ALWAYS_SUSPEND_ENV: dict[str, str] = {"RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT": "0s"}


class HarnessError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# The binary


def _native_binary() -> Path:
    plat = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, sys.platform)
    machine = os.uname().machine
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return (
        REPO_ROOT
        / "node_modules"
        / "@restatedev"
        / f"restate-server-{plat}-{arch}"
        / "bin"
        / "restate-server"
    )


def pinned_version() -> str:
    """The restate-server version package.json pins."""
    package = json.loads((REPO_ROOT / "package.json").read_text())
    version: str = package["devDependencies"]["@restatedev/restate-server"]
    return version


def _installed_version(binary: Path) -> str | None:
    if not binary.exists():
        return None
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.split()[-1] if out.strip() else None  # "restate-server 1.7.12"


def ensure_restate_server(timeout: float = 600.0) -> Path:
    """The restate-server binary of the pinned version; runs `npm ci` when it is missing or
    another version is installed."""
    binary = _native_binary()
    wanted = pinned_version()
    if _installed_version(binary) != wanted:
        npm = shutil.which("npm")
        if npm is None:
            raise HarnessError(
                f"restate-server {wanted} is not installed at {binary} and npm is not on PATH: "
                "install Node.js/npm, then run `npm ci` in the repository root"
            )
        # --ignore-scripts: the package's only install script is a usage ping we don't want.
        cmd = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
        env = dict(os.environ, SCARF_ANALYTICS="false")
        proc = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        installed = _installed_version(binary)
        if proc.returncode != 0 or installed != wanted:
            raise HarnessError(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}) or did not install "
                f"restate-server {wanted} at {binary} (found {installed}):\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
    return binary


# --------------------------------------------------------------------------------------------
# Ports and HTTP


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"Response(status={self.status}, body={self.text[:500]!r})"


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP/1.1 request to 127.0.0.1:port; raises TimeoutError/OSError on failure."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, data, {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Polls predicate until it returns a truthy value (returned) or timeout (TimeoutError)."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, http.client.HTTPException, ValueError) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def tail(path: Path | None, lines: int = 80) -> str:
    if path is None or not path.exists():
        return "<no log>"
    with open(path, "rb") as f:
        try:
            f.seek(-256 * 1024, os.SEEK_END)
        except OSError:
            f.seek(0)
        data = f.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# restate-server


_LIVE_PROCESSES: set[subprocess.Popen[bytes]] = set()


def _kill_leftovers() -> None:  # last resort at interpreter exit
    for proc in list(_LIVE_PROCESSES):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_leftovers)


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux only)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RestateServer:
    """restate-server as a subprocess on 127.0.0.1; ``with RestateServer(...) as s:``."""

    def __init__(
        self,
        binary: Path,
        extra_env: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
        startup_timeout: float = 60.0,
        name: str = "restate-server",
    ) -> None:
        self.name = name
        self.binary = binary
        self.extra_env = dict(extra_env or {})
        self._own_base_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="restate-e2e-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.base_dir / "restate-server.log"
        self.startup_timeout = startup_timeout
        self.ingress_port = 0
        self.admin_port = 0
        self.fabric_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ingress_url(self) -> str:
        return f"http://{HOST}:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    def env(self) -> dict[str, str]:
        # Inherit the environment minus any RESTATE_* settings, so nothing outside the test
        # changes the server's configuration.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTATE_")}
        env.update(BASE_ENV)
        env.update(self.extra_env)
        env.update(
            {
                "RESTATE_INGRESS__BIND_ADDRESS": f"{HOST}:{self.ingress_port}",
                "RESTATE_ADMIN__BIND_ADDRESS": f"{HOST}:{self.admin_port}",
                "RESTATE_BIND_ADDRESS": f"{HOST}:{self.fabric_port}",
                "RESTATE_ADVERTISED_ADDRESS": f"http://{HOST}:{self.fabric_port}/",
            }
        )
        return env

    def start(self) -> RestateServer:
        last_error: BaseException | None = None
        for _ in range(3):  # a free port can be taken between probing and binding: retry
            self.ingress_port, self.admin_port, self.fabric_port = (
                free_port(),
                free_port(),
                free_port(),
            )
            if len({self.ingress_port, self.admin_port, self.fabric_port}) < 3:
                continue
            data_dir = self.base_dir / f"data-{self.ingress_port}"
            log = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(
                    [str(self.binary), "--base-dir", str(data_dir), "--no-logo"],
                    env=self.env(),
                    cwd=self.base_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )
            finally:
                log.close()
            _LIVE_PROCESSES.add(self.proc)
            try:
                self._wait_healthy()
                return self
            except BaseException as e:
                last_error = e
                self.stop()
                if isinstance(e, KeyboardInterrupt):
                    raise
        raise HarnessError(
            f"restate-server did not become healthy: {last_error}\n--- log tail ({self.log_path}) ---\n"
            f"{tail(self.log_path)}"
        )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout

        def check(port: int, path: str) -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise HarnessError(f"restate-server exited with code {self.proc.returncode}")
            remaining = max(0.5, min(5.0, deadline - time.monotonic()))
            return http_request(port, "GET", path, timeout=remaining).status == 200

        wait_until(
            lambda: check(self.ingress_port, "/restate/health"),
            self.startup_timeout,
            what="ingress /restate/health",
        )
        wait_until(
            lambda: check(self.admin_port, "/health"),
            max(1.0, deadline - time.monotonic()),
            what="admin /health",
        )

        # Health answers before the partition processor has a leader; a query over
        # sys_invocation succeeds only once it does, and then invocations can be submitted.
        def partitions_ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise HarnessError(f"restate-server exited with code {self.proc.returncode}")
            body = json.dumps({"query": "SELECT count(*) AS n FROM sys_invocation"}).encode()
            resp = http_request(self.admin_port, "POST", "/query", body, JSON_HEADERS, timeout=5.0)
            return resp.status == 200

        wait_until(
            partitions_ready, max(1.0, deadline - time.monotonic()), what="partition processor"
        )

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        finally:
            _LIVE_PROCESSES.discard(proc)

    def cleanup(self) -> None:
        self.stop()
        if self._own_base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> RestateServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    def failure_logs(self) -> list[tuple[str, str]]:
        return [(f"restate-server log tail ({self.log_path})", self.log_tail())]

    def listening_addresses(self) -> set[tuple[str, int]]:
        """(ip, port) of every TCP socket the server listens on (Linux /proc; empty elsewhere)."""
        if self.proc is None:
            return set()
        return listening_addresses(self.proc.pid)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    fd_dir = Path(f"/proc/{pid}/fd")
    if not fd_dir.exists():
        return set()
    inodes = set()
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                continue
            hex_ip, hex_port = cols[1].split(":")
            raw = bytes.fromhex(hex_ip)
            if width == 8:
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:  # four little-endian 32-bit words
                ip = socket.inet_ntop(
                    socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                )
            found.add((ip, int(hex_port, 16)))
    return found


# --------------------------------------------------------------------------------------------
# hypercorn in a thread


class AsgiServer:
    """Serves an ASGI app with hypercorn on 127.0.0.1:<free port> in a daemon thread.

    hypercorn answers HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same plain TCP
    port, so one server covers both deployment modes.
    """

    server_name = "hypercorn"

    def __init__(
        self, app: Any, log_path: Path | None = None, startup_timeout: float = 15.0
    ) -> None:
        self.app = app
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._started = threading.Event()
        self._logger = logging.getLogger(__name__)
        self._log_handler: logging.Handler | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _config(self) -> Any:
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"{HOST}:{self.port}"]
        config.h2_max_concurrent_streams = 2**31 - 1
        config.h2_max_inbound_frame_size = 2**24 - 1
        config.keep_alive_max_requests = 2**31 - 1
        config.keep_alive_timeout = 60.0
        config.read_timeout = None
        config.graceful_timeout = 1.0
        config.accesslog = None
        config.errorlog = self._logger
        config.loglevel = "INFO"
        return config

    def _open_log(self) -> None:
        # A logger of our own (hypercorn would open a file handler it never closes).
        self._logger = logging.getLogger(f"{__name__}.hypercorn.{id(self):x}")
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False
        if self.log_path is not None:
            self._log_handler = logging.FileHandler(self.log_path, encoding="utf-8")
            self._log_handler.setFormatter(
                logging.Formatter("%(asctime)s [%(levelname)s] %(message)s")
            )
            self._logger.addHandler(self._log_handler)

    def _close_log(self) -> None:
        if self._log_handler is not None:
            self._logger.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    async def _serve(self, shutdown: asyncio.Event) -> None:
        from hypercorn.asyncio import serve

        await serve(self.app, self._config(), shutdown_trigger=shutdown.wait)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            asyncio.set_event_loop(loop)
            self._shutdown = asyncio.Event()
            self._started.set()
            loop.run_until_complete(self._serve(self._shutdown))
        except BaseException as e:  # noqa: BLE001 -- reported by start() and failure_logs()
            self._error = e
        finally:
            self._started.set()
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=2))
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception:  # noqa: BLE001 -- best-effort cleanup of a stopped loop
                pass
            loop.close()

    def start(self) -> AsgiServer:
        if self._log_handler is None:
            self._open_log()
        for _ in range(3):
            self.port = free_port()
            self._error = None
            self._started.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"{self.server_name}-{self.port}", daemon=True
            )
            self._thread.start()
            try:
                wait_until(
                    lambda: self._error is not None or _port_open(self.port),
                    self.startup_timeout,
                    what=f"{self.server_name} on port {self.port}",
                )
            except TimeoutError:
                self.stop()
                raise
            if self._error is None:
                return self
            self.stop()
        raise HarnessError(f"{self.server_name} failed to start: {self._error!r}")

    def stop(self, timeout: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._started.wait(timeout)
        loop, shutdown = self._loop, self._shutdown
        if loop is not None and shutdown is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(shutdown.set)
            except RuntimeError:  # loop already closed
                pass
        thread.join(timeout)
        if not thread.is_alive():
            self._close_log()
        if thread.is_alive():
            raise HarnessError(
                f"{self.server_name} thread on port {self.port} did not stop within {timeout}s"
            )

    def __enter__(self) -> AsgiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    def failure_logs(self) -> list[tuple[str, str]]:
        logs = []
        if self._error is not None:
            logs.append((f"endpoint ({self.server_name}) crashed", repr(self._error)))
        if self.log_path is not None:
            logs.append((f"endpoint ({self.server_name}) log tail ({self.log_path})", self.log_tail()))
        return logs


class Http1Server(AsgiServer):
    """Serves an ASGI app the way ``durable-futures endpoint --http1-only`` does: HTTP/1.1
    alone, uvicorn on httptools, same configuration (in a daemon thread, like AsgiServer)."""

    server_name = "uvicorn"

    async def _serve(self, shutdown: asyncio.Event) -> None:
        from durable_futures.cli import _http1_server, _serve_http1_until

        server = _http1_server(self.app, HOST, self.port)
        # uvicorn logs to its own loggers (the endpoint keeps the process's logging setup).
        uvicorn_log = logging.getLogger("uvicorn")
        if self._log_handler is not None:
            uvicorn_log.addHandler(self._log_handler)
        try:
            await _serve_http1_until(server, shutdown)
        finally:
            if self._log_handler is not None:
                uvicorn_log.removeHandler(self._log_handler)


# --------------------------------------------------------------------------------------------
# Admin and ingress client


JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}


class RestateClient:
    """Admin API and ingress of one RestateServer. Every call is bounded by ``timeout``."""

    def __init__(self, server: RestateServer, timeout: float = 30.0) -> None:
        self.server = server
        self.timeout = timeout

    # ---- admin

    def admin(
        self, method: str, path: str, body: Any = None, timeout: float | None = None
    ) -> Response:
        data = None if body is None else json.dumps(body).encode()
        return http_request(
            self.server.admin_port, method, path, data, JSON_HEADERS, timeout or self.timeout
        )

    def register(self, uri: str, use_http_11: bool, force: bool = True) -> dict[str, Any]:
        """POST /deployments; discovery runs during the call. Returns the response JSON."""
        resp = self.admin(
            "POST", "/deployments", {"uri": uri, "use_http_11": use_http_11, "force": force}
        )
        if resp.status not in (200, 201):
            raise HarnessError(f"registering {uri} (use_http_11={use_http_11}) failed: {resp!r}")
        result: dict[str, Any] = resp.json()
        return result

    def cancel(self, invocation_id: str) -> Response:
        """Graceful cancellation (PATCH /invocations/{id}/cancel, restate-server 1.7)."""
        return self.admin(
            "PATCH", f"/invocations/{urllib.parse.quote(invocation_id, safe='')}/cancel"
        )

    def kill(self, invocation_id: str) -> Response:
        return self.admin(
            "PATCH", f"/invocations/{urllib.parse.quote(invocation_id, safe='')}/kill"
        )

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Admin SQL (POST /query) over the sys_* tables; returns the rows."""
        resp = self.admin("POST", "/query", {"query": sql})
        if resp.status != 200:
            raise HarnessError(f"query failed: {sql}: {resp!r}")
        rows: list[dict[str, Any]] = resp.json()["rows"]
        return rows

    def invocation(self, invocation_id: str) -> dict[str, Any] | None:
        """The sys_invocation row of one invocation (None if not known yet)."""
        if not invocation_id.replace("_", "").isalnum():
            raise ValueError(f"not an invocation id: {invocation_id!r}")
        rows = self.query(
            "SELECT id, status, target, retry_count, completion_result, completion_failure, "
            f"last_failure FROM sys_invocation WHERE id = '{invocation_id}'"
        )
        return rows[0] if rows else None

    def invocation_status(self, invocation_id: str) -> str | None:
        row = self.invocation(invocation_id)
        return None if row is None else str(row["status"])

    def wait_for_status(
        self, invocation_id: str, statuses: Iterable[str], timeout: float = 20.0
    ) -> dict[str, Any]:
        wanted = set(statuses)

        def check() -> dict[str, Any] | None:
            row = self.invocation(invocation_id)
            return row if row is not None and row["status"] in wanted else None

        try:
            row: dict[str, Any] = wait_until(
                check, timeout, interval=0.05, what=f"{invocation_id} in {wanted}"
            )
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last row: {self.invocation(invocation_id)}") from None
        return row

    # ---- ingress

    def _ingress(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        return http_request(
            self.server.ingress_port, method, path, body, headers, timeout or self.timeout
        )

    @staticmethod
    def _json_body(arg: Any) -> bytes:
        return json.dumps(arg).encode()

    def call(
        self,
        service: str,
        handler: str,
        arg: Any = None,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Response:
        """POST /{service}[/{key}]/{handler} with a JSON body; waits for the result."""
        headers = {"content-type": "application/json"}
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        return self._ingress(
            "POST", self._path(service, key, handler), self._json_body(arg), headers, timeout
        )

    def send(
        self,
        service: str,
        handler: str,
        arg: Any = None,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        delay: str | None = None,
    ) -> str:
        """POST .../send; returns the invocation id."""
        headers = {"content-type": "application/json"}
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        path = self._path(service, key, handler) + "/send"
        if delay is not None:
            path += "?" + urllib.parse.urlencode({"delay": delay})
        resp = self._ingress("POST", path, self._json_body(arg), headers)
        if resp.status not in (200, 202):
            raise HarnessError(f"send {service}/{handler} failed: {resp!r}")
        invocation_id: str = resp.json()["invocationId"]
        return invocation_id

    def attach(self, invocation_id: str, timeout: float | None = None) -> Response:
        """GET /restate/invocation/{id}/attach: waits for the invocation's result."""
        return self._ingress(
            "GET",
            f"/restate/invocation/{urllib.parse.quote(invocation_id, safe='')}/attach",
            None,
            timeout=timeout,
        )

    def output(self, invocation_id: str) -> Response:
        """GET /restate/invocation/{id}/output: the result if completed (470 if not ready)."""
        return self._ingress(
            "GET", f"/restate/invocation/{urllib.parse.quote(invocation_id, safe='')}/output", None
        )

    def resolve_awakeable(self, awakeable_id: str, value: Any) -> Response:
        return self._ingress(
            "POST",
            f"/restate/awakeables/{urllib.parse.quote(awakeable_id, safe='')}/resolve",
            self._json_body(value),
            {"content-type": "application/json"},
        )

    def reject_awakeable(self, awakeable_id: str, message: str) -> Response:
        return self._ingress(
            "POST",
            f"/restate/awakeables/{urllib.parse.quote(awakeable_id, safe='')}/reject",
            message.encode(),
            {"content-type": "text/plain"},
        )

    @staticmethod
    def _path(service: str, key: str | None, handler: str) -> str:
        q = urllib.parse.quote
        if key is None:
            return f"/{q(service, safe='')}/{q(handler, safe='')}"
        return f"/{q(service, safe='')}/{q(key, safe='')}/{q(handler, safe='')}"
