"""The ``durable-futures`` command.

``serve MODULE [--db PATH] [--port 8080] [--host 127.0.0.1] [--admin-port 9070]``
    runs the services of ``MODULE`` on the embedded engine (a SQLite file) behind a
    Restate-compatible HTTP ingress and admin API, until SIGINT/SIGTERM; unfinished
    invocations resume on the next start.
``invocation cancel|kill|pause|resume|purge ID [--admin URL]``
    manages one invocation through an admin API: ``serve``'s, or restate-server's.
``invoke SERVICE/HANDLER [JSON] [--key K] [--db PATH] --module MODULE``
    runs the embedded engine in this process, invokes once, prints the JSON result.
``journal list [--db PATH] [--limit N]`` / ``journal show ID [--db PATH]``
    the stored invocations / one invocation's journal, entry by entry.
``replay ID --module MODULE [--db PATH | --admin URL]``
    replays a stored journal against the current code, offline, and reports the first
    mismatch with the recorded entry and the line of code that made the call; with
    ``--admin`` the journal is read from restate-server's admin API (SQL over ``sys_journal``).
``replay --all [--status S] --module MODULE [--db PATH | --admin URL]``
    replays every unfinished invocation of the module's services (or those with status
    ``S``); exits non-zero on any mismatch: a check before deploying new code.
``endpoint MODULE [--port 9080] [--host 127.0.0.1] [--protocol bidi|request_response]``
    serves the services as a Restate deployment (for restate-server).

``MODULE`` is a dotted module path, or ``module:attribute`` naming one service or a list of
them; without an attribute every ``df.Service`` at the module's top level is served.

``--version`` prints the package version and the service protocol versions it speaks.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
from collections.abc import Coroutine, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from . import _core
from ._logging import configure_logging, log_level_argument
from .errors import DurableError

# The event loop, the handler API and the engine are imported by the commands that run them:
# `--version`, `journal` and `invocation` do without.
if TYPE_CHECKING:
    from .local.journal import JournalSource
    from .service import Service

__all__ = ["load_services", "main"]

DEFAULT_DB = "durable-futures.db"

T = TypeVar("T")


class CliError(Exception):
    """A usage or environment problem: printed as ``durable-futures: <message>``, exit 2."""


def _load(target: str) -> tuple[list[Service], ModuleType]:
    from .service import Service

    module_name, _, attr = target.partition(":")
    if not module_name or module_name.startswith(".") or (":" in target and not attr):
        raise CliError(f"{target!r}: expected a module (a.b.c) or module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:  # the module, or a module it imports, is missing
        raise CliError(f"cannot import module {module_name!r}: {e}") from e
    if attr:
        try:
            obj: Any = getattr(module, attr)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attr!r}") from None
        if isinstance(obj, Service):
            services = [obj]
        elif not isinstance(obj, (list, tuple)):
            raise CliError(
                f"{target!r} is not a df.Service or a list of them (its type is "
                f"{type(obj).__name__})"
            )
        elif not obj:
            raise CliError(f"{target!r} is an empty {type(obj).__name__}: no df.Service to serve")
        else:
            services = list(obj)
            for s in services:
                if not isinstance(s, Service):
                    raise CliError(
                        f"{target!r} holds a value of type {type(s).__name__}, not a df.Service"
                    )
    else:
        services = [v for v in vars(module).values() if isinstance(v, Service)]
        if not services:
            raise CliError(f"module {module_name!r} defines no df.Service at its top level")
    return services, module


def load_services(target: str) -> list[Service]:
    """The services named by ``module`` or ``module:attribute``. A module that cannot be
    imported, a missing attribute or no service is a :class:`CliError` (its message names
    what is wrong)."""
    return _load(target)[0]


# ---- endpoint (restate-server deployment) ------------------------------------------------------


async def _serve(app: Any, host: str, port: int) -> None:
    import asyncio

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.h2_max_concurrent_streams = 2**31 - 1
    config.keep_alive_timeout = 600
    config.accesslog = None
    stop = asyncio.Event()
    _stop_on_signals(stop)
    await serve(app, config, shutdown_trigger=stop.wait)


_HTTP1_MISSING = (
    "--http1-only serves with uvicorn and httptools, which are not installed: "
    "pip install 'durable-futures[http1]'"
)


def _http1_server(app: Any, host: str, port: int) -> Any:
    """An HTTP/1.1-only server for request/response deployments: uvicorn on httptools.

    restate-server sends an attempt's journal one frame per HTTP chunk. hypercorn takes each
    chunk through h11 and its app queue, about 8 µs a chunk on the machine that measured it;
    httptools (a C parser) hands the app whatever has arrived in one piece. Through
    restate-server, with every await suspending, 300 steps took less than half the time
    (benches/test_e2e.py). The import fails here, before anything is printed, when the extra
    is missing."""
    try:
        import httptools  # noqa: F401 -- http="httptools" below needs it
        import uvicorn
    except ImportError as e:
        raise CliError(_HTTP1_MISSING) from e

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # SIGINT and SIGTERM stop it through _stop_on_signals, as they stop hypercorn:
            # uvicorn's own handlers would re-raise the signal once it has stopped.
            yield

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        loop="asyncio",
        lifespan="off",
        # As on hypercorn (`_serve`): idle connections stay open 600 s, since closing one just
        # as restate-server sends on it would fail that request; on SIGINT or SIGTERM,
        # requests still open get 3 s (hypercorn's graceful_timeout) before they are cut.
        timeout_keep_alive=600,
        timeout_graceful_shutdown=3,
        access_log=False,
        log_config=None,
    )
    return Server(config)


async def _serve_http1(server: Any) -> None:
    import asyncio

    stop = asyncio.Event()
    _stop_on_signals(stop)
    await _serve_http1_until(server, stop)


async def _serve_http1_until(server: Any, stop: Any) -> None:
    """Runs ``server`` (from :func:`_http1_server`) until ``stop`` (an ``asyncio.Event``) is
    set, then lets it finish the requests it has."""
    import asyncio

    async def stop_when_asked() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.ensure_future(stop_when_asked())
    try:
        await server.serve()
    finally:
        watcher.cancel()


# ---- the embedded engine -----------------------------------------------------------------------


def _stop_on_signals(stop: Any) -> None:
    """SIGINT and SIGTERM set ``stop`` (an ``asyncio.Event``). Where the event loop cannot
    watch signals (Windows), plain signal handlers hand them to the loop instead."""
    import asyncio

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


@contextlib.contextmanager
def _exclusive(db: str) -> Iterator[None]:
    """One engine per database file: two would both run its unfinished invocations.
    (An advisory ``flock`` on the file; SQLite's own locks are POSIX record locks, which do
    not interact with it.)"""
    try:
        import fcntl
    except ImportError:  # not POSIX: no guard
        yield
        return
    fd = os.open(db, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(
                f"{db} is in use by another durable-futures engine (a running `serve`?); "
                "send requests to its ingress instead"
            ) from None
        yield
    finally:
        os.close(fd)


async def _serve_engine(
    services: list[Service],
    db: str,
    host: str,
    port: int,
    durability: str,
    admin: tuple[str, int] | None = None,
    max_body_bytes: int | None = None,
    max_in_flight: int | None = None,
) -> None:
    import asyncio

    from .local import LocalEngine
    from .local.admin import serve_admin
    from .local.ingress import serve

    stop = asyncio.Event()
    _stop_on_signals(stop)
    async with LocalEngine(*services, path=db, durability=durability) as engine:
        names = ", ".join(s.name for s in services)
        where = f"http://{host}:{port}"
        if admin is not None:
            where += f", admin API on http://{admin[0]}:{admin[1]}"
        print(
            f"durable-futures: {names} on {where} (database {db}); "
            "Ctrl-C stops, unfinished invocations resume on the next start",
            flush=True,
        )
        limit: dict[str, int] = {}
        if max_body_bytes is not None:
            limit["max_body_bytes"] = max_body_bytes
        if max_in_flight is not None:
            limit["max_in_flight"] = max_in_flight
        servers = [serve(engine, host, port, shutdown_trigger=stop.wait, **limit)]
        if admin is not None:
            servers.append(serve_admin(engine, *admin, shutdown_trigger=stop.wait))
        await asyncio.gather(*servers)
    print("durable-futures: stopped", flush=True)


def _split_target(target: str, key: str | None) -> tuple[str, str | None, str]:
    parts = target.strip("/").split("/")
    if len(parts) == 2 and all(parts):
        return parts[0], key, parts[1]
    if len(parts) == 3 and all(parts) and key is None:
        return parts[0], parts[1], parts[2]
    raise CliError(f"{target!r}: expected SERVICE/HANDLER (with --key K for a virtual object)")


async def _invoke(args: argparse.Namespace) -> int:
    from .local import LocalEngine

    service, key, handler = _split_target(args.target, args.key)
    payload = b""
    if args.input is not None:
        try:
            json.loads(args.input)
        except ValueError as e:
            raise CliError(f"the input is not valid JSON: {e}") from e
        payload = args.input.encode()
    services, _ = _load(args.module)
    with _exclusive(args.db):
        async with LocalEngine(*services, path=args.db, durability=args.durability) as engine:
            svc = engine.services.get(service)
            if svc is None or handler not in svc.handlers:
                raise CliError(f"no handler {service}/{handler} in {args.module}")
            if svc.ty == "VIRTUAL_OBJECT" and not key:
                raise CliError(f"{service} is a virtual object: pass --key K")
            inv_id, _ok, value = await engine.invoke_raw(
                service, handler, payload, key=key, idempotency_key=args.idempotency_key
            )
    print(f"invocation {inv_id}", file=sys.stderr)
    if isinstance(value, bytes):
        sys.stdout.write(value.decode("utf-8", "replace") + "\n")
        return 0
    code, message = value
    print(f"error [{code}]: {message}", file=sys.stderr)
    return 1


class _Store:
    """Read access to a database file without running anything (for journal and replay)."""

    def __init__(self, path: str) -> None:
        if not os.path.isfile(path):
            raise CliError(f"no database at {path} (use --db PATH)")
        self.path = path
        self._core = _core.Engine(path, "os")

    def journal(self, invocation_id: str) -> list[bytes]:
        return self._core.journal(invocation_id)

    def journal_len(self, invocation_id: str) -> int:
        return self._core.journal_len(invocation_id)

    def invocations(self, limit: int = 50) -> list[_core.InvocationRow]:
        return self._core.list_invocations(limit)

    def invocation(self, invocation_id: str) -> _core.InvocationRow | None:
        return self._core.invocation(invocation_id)

    def attempt_request(self, invocation_id: str) -> _core.AttemptRequest:
        return self._core.attempt_request(invocation_id)

    def existing(self, invocation_id: str) -> _core.InvocationRow:
        """The invocation, or a clear error for an unknown (or malformed) id."""
        try:
            row = self._core.invocation(invocation_id)
        except DurableError as e:
            raise CliError(e.message) from e
        if row is None:
            raise CliError(f"no invocation {invocation_id} in {self.path}")
        return row


def _journal_list(args: argparse.Namespace) -> int:
    from .local.journal import render_invocations

    store = _Store(args.db)
    rows = store.invocations(args.limit)
    if not rows:
        print(f"no invocations in {args.db}")
        return 0
    print(render_invocations(rows, [store.journal_len(r.id) for r in rows]))
    return 0


def show_journal(source: JournalSource, invocation_id: str) -> str:
    """``durable-futures journal show``: an invocation's journal as a table. ``source`` is a
    ``LocalEngine`` or anything with ``journal(id)`` and ``invocation(id)``."""
    from .local.journal import render

    return render(source.journal(invocation_id), source.invocation(invocation_id), invocation_id)


def _journal_show(args: argparse.Namespace) -> int:
    store = _Store(args.db)
    store.existing(args.id)
    print(show_journal(store, args.id))
    return 0


async def _replay(args: argparse.Namespace) -> int:
    from .local.replay import StartRequest, replay
    from .restate_journal import AdminError, RestateJournal

    if args.all == bool(args.id):
        raise CliError("replay needs an invocation ID or --all (not both)")
    store = None if args.admin else _Store(args.db)
    single = store.existing(args.id) if store is not None and not args.all else None
    services, module = _load(args.module)
    files = {os.path.abspath(f) for f in _module_files(module, services)}
    statuses = [s for arg in args.status for s in arg.split(",") if s] or None
    names = [s.name for s in services]
    keyed = {s.name for s in services if s.ty != "SERVICE"}
    jobs: list[tuple[_core.InvocationRow, StartRequest]] = []
    try:
        if args.admin:
            remote = RestateJournal(args.admin, timeout=args.timeout)
            if args.all:
                found = remote.invocations(names, statuses)
            else:
                one = remote.invocation(args.id)
                if one is None:
                    raise CliError(f"no invocation {args.id} at {remote.base}")
                found = [one]
            for row, version in found:
                if args.all and row.journal_size == 0:
                    continue  # not started yet: nothing recorded to replay
                jobs.append((row, remote.attempt_request(row, version, row.service in keyed)))
        else:
            assert store is not None
            if single is None:
                rows = [
                    r
                    for r in store.invocations(2**31 - 1)
                    if r.service in names
                    and (r.status in statuses if statuses else r.status != "completed")
                    and store.journal_len(r.id) > 0
                ]
            else:
                rows = [single]
            jobs = [(row, store.attempt_request(row.id)) for row in rows]
    except AdminError as e:
        raise CliError(str(e)) from None
    except ValueError as e:  # a malformed invocation id
        raise CliError(str(e)) from None
    failed = 0
    for row, request in jobs:
        report = await replay(services, row, request, user_files=files, timeout=args.timeout)
        print(report.render())
        failed += not report.ok
    if args.all:
        where = args.admin or args.db
        print(f"{len(jobs)} invocations replayed from {where}: {failed} failed")
    return 0 if failed == 0 else 1


DEFAULT_ADMIN = "http://127.0.0.1:9070"


def _invocation(args: argparse.Namespace) -> int:
    """``PATCH {admin}/invocations/{id}/{operation}``, as restate's admin API has it."""
    import urllib.error
    import urllib.parse
    import urllib.request

    base = args.admin.rstrip("/")
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise CliError(f"--admin must be an http(s) URL, not {args.admin!r}")
    url = f"{base}/invocations/{urllib.parse.quote(args.id, safe='')}/{args.operation}"
    request = urllib.request.Request(url, method="PATCH", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as e:
        print(f"durable-futures: {args.operation} {args.id}: {_admin_message(e)}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CliError(f"no admin API at {base}: {reason}") from None
    done = {"cancel": "cancellation requested", "kill": "killed", "pause": "paused",
            "resume": "resumed", "purge": "purged"}[args.operation]
    print(f"{args.id}: {done} ({status})")
    return 0


def _admin_message(e: Any) -> str:
    """The message of an admin API error answer (``{"message": ...}``), with its status."""
    body = e.read()
    try:
        message = json.loads(body).get("message") or body.decode(errors="replace")
    except (ValueError, AttributeError):
        message = body.decode(errors="replace")
    return f"[{e.code}] {message}".strip()


def _module_files(module: ModuleType, services: list[Service]) -> set[str]:
    import inspect

    files = set()
    if getattr(module, "__file__", None):
        files.add(str(module.__file__))
    for s in services:
        for h in s.handlers.values():
            files.add(inspect.getsourcefile(h.fn) or h.fn.__code__.co_filename)
    return files


# ---- arguments ---------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _version_line() -> str:
    """``durable-futures --version``: the package version and the service protocol
    versions it speaks, e.g. ``durable-futures 0.1.0 (service protocol V5-V7)``."""
    low, high = _core.PROTOCOL_VERSIONS
    return f"durable-futures {_core.__version__} (service protocol V{low}-V{high})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="durable-futures",
        description="Durable concurrency for Python handlers.",
        epilog="MODULE: a dotted module path, or module:attribute naming a service or a list.",
    )
    parser.add_argument("--version", action="version", version=_version_line())
    sub = parser.add_subparsers(dest="command", required=True)

    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--db", default=DEFAULT_DB, metavar="PATH", help=f"SQLite file (default ./{DEFAULT_DB})"
        )

    def durability_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--durability",
            choices=["fsync", "os"],
            default="fsync",
            help="fsync: a result is on disk before anyone sees it (default); os: leave it to the OS",
        )

    sv = sub.add_parser("serve", help="run services on the embedded engine with an HTTP ingress")
    sv.add_argument("module", help="module (or module:attribute) defining the services")
    db_option(sv)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8080)
    sv.add_argument(
        "--admin-port",
        type=int,
        default=9070,
        help="port of the admin API (default 9070; 0 turns it off)",
    )
    sv.add_argument(
        "--admin-host", default="127.0.0.1", help="address of the admin API (default 127.0.0.1)"
    )
    sv.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=None,
        metavar="N",
        help="largest request body the ingress accepts (default 32 MiB; larger: 413)",
    )
    sv.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=None,
        metavar="N",
        help="calls waiting plus invocations queued beyond which new ones get 503 with "
        "Retry-After (default 20000)",
    )
    durability_option(sv)
    log_level_argument(sv)

    iv = sub.add_parser("invoke", help="invoke a handler once on the embedded engine")
    iv.add_argument("target", metavar="SERVICE/HANDLER")
    iv.add_argument("input", nargs="?", metavar="JSON", help="the input (default: none)")
    iv.add_argument("--key", help="the virtual object's key")
    iv.add_argument("--idempotency-key", default=None)
    iv.add_argument(
        "--module",
        default=os.environ.get("DURABLE_FUTURES_MODULE"),
        help="module defining the services (default: $DURABLE_FUTURES_MODULE)",
    )
    db_option(iv)
    durability_option(iv)

    jr = sub.add_parser("journal", help="stored invocations and their journals")
    jsub = jr.add_subparsers(dest="journal_command", required=True)
    jl = jsub.add_parser("list", help="the newest invocations")
    db_option(jl)
    jl.add_argument("--limit", type=int, default=20)
    js = jsub.add_parser("show", help="one invocation's journal, entry by entry")
    js.add_argument("id", metavar="ID")
    db_option(js)

    rp = sub.add_parser("replay", help="replay a stored journal against the current code, offline")
    rp.add_argument("id", metavar="ID", nargs="?")
    rp.add_argument(
        "--module",
        default=os.environ.get("DURABLE_FUTURES_MODULE"),
        help="module defining the services (default: $DURABLE_FUTURES_MODULE)",
    )
    db_option(rp)
    rp.add_argument(
        "--admin",
        metavar="URL",
        help="read the journal from restate-server's admin API at URL instead of --db",
    )
    rp.add_argument(
        "--all", action="store_true", help="replay every unfinished invocation of the module"
    )
    rp.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="S",
        help="with --all: only invocations with this status (repeatable, or S1,S2)",
    )
    rp.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")

    inv = sub.add_parser("invocation", help="cancel, kill, pause, resume or purge an invocation")
    inv.add_argument("operation", choices=["cancel", "kill", "pause", "resume", "purge"])
    inv.add_argument("id", metavar="ID")
    inv.add_argument(
        "--admin",
        default=os.environ.get("DURABLE_FUTURES_ADMIN_URL", DEFAULT_ADMIN),
        metavar="URL",
        help=f"admin API of `serve` or restate-server (default $DURABLE_FUTURES_ADMIN_URL or {DEFAULT_ADMIN})",
    )
    inv.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")

    ep = sub.add_parser("endpoint", help="serve services as a Restate deployment")
    ep.add_argument("module", help="module (or module:attribute) defining the services")
    ep.add_argument("--host", default="127.0.0.1")
    ep.add_argument("--port", type=int, default=9080)
    ep.add_argument("--protocol", choices=["bidi", "request_response"], default=None)
    ep.add_argument(
        "--http1-only",
        action="store_true",
        help="serve HTTP/1.1 alone, on uvicorn and httptools (request/response mode; "
        "register with use_http_11)",
    )
    ep.add_argument(
        "--identity-key",
        action="append",
        default=[],
        help="accept only requests signed with this publickeyv1_… key (repeatable)",
    )
    log_level_argument(ep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except CliError as e:
        print(f"durable-futures: {e}", file=sys.stderr)
        return 2
    except DurableError as e:  # e.g. a damaged or foreign database file
        print(f"durable-futures: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("durable-futures: interrupted", file=sys.stderr)
        return 130


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    return asyncio.run(coro)


def _main(args: argparse.Namespace) -> int:
    if args.command == "endpoint":
        from .endpoint import asgi_app

        configure_logging(args.log_level)
        protocol = args.protocol
        if args.http1_only:
            if protocol == "bidi":
                raise CliError("--protocol bidi needs HTTP/2: drop --http1-only")
            protocol = "request_response"
        services = load_services(args.module)
        app = asgi_app(*services, protocol=protocol, identity_keys=args.identity_key)
        names = ", ".join(s.name for s in services)
        if args.http1_only:
            server = _http1_server(app, args.host, args.port)
            print(f"serving {names} on http://{args.host}:{args.port} (HTTP/1.1)", flush=True)
            _run(_serve_http1(server))
            return 0
        print(f"serving {names} on http://{args.host}:{args.port}", flush=True)
        _run(_serve(app, args.host, args.port))
        return 0
    if args.command == "serve":
        configure_logging(args.log_level)
        services = load_services(args.module)
        with _exclusive(args.db):
            try:
                admin = None if args.admin_port == 0 else (args.admin_host, args.admin_port)
                _run(
                    _serve_engine(
                        services,
                        args.db,
                        args.host,
                        args.port,
                        args.durability,
                        admin,
                        args.max_body_bytes,
                        args.max_in_flight,
                    )
                )
            except OSError as e:
                raise CliError(f"cannot serve on {args.host}:{args.port}: {e}") from e
        return 0
    if args.command == "invoke":
        if not args.module:
            raise CliError("invoke needs --module MODULE (or $DURABLE_FUTURES_MODULE)")
        return _run(_invoke(args))
    if args.command == "journal":
        if args.journal_command == "list":
            return _journal_list(args)
        return _journal_show(args)
    if args.command == "invocation":
        return _invocation(args)
    if args.command == "replay":
        if not args.module:
            raise CliError("replay needs --module MODULE (or $DURABLE_FUTURES_MODULE)")
        return _run(_replay(args))
    raise CliError(f"unknown command {args.command}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
