"""The ``durable-futures`` command.

``durable-futures endpoint MODULE [--port 9080] [--host 127.0.0.1] [--protocol bidi|request_response]``
serves every ``df.Service`` defined at the top level of ``MODULE`` (a dotted module path,
or ``module:attribute`` naming one service or a list of them) as a Restate deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .endpoint import asgi_app
from .service import Service

__all__ = ["load_services", "main"]


def load_services(target: str) -> list[Service]:
    """The services named by ``module`` or ``module:attribute``."""
    module_name, _, attr = target.partition(":")
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    if attr:
        obj: Any = getattr(module, attr)
        services = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    else:
        services = [v for v in vars(module).values() if isinstance(v, Service)]
    if not services or not all(isinstance(s, Service) for s in services):
        raise SystemExit(f"{target}: no df.Service found")
    return services


async def _serve(app: Any, host: str, port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.h2_max_concurrent_streams = 2**31 - 1
    config.keep_alive_timeout = 600
    config.accesslog = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="durable-futures", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ep = sub.add_parser("endpoint", help="serve services as a Restate deployment")
    ep.add_argument("module", help="module (or module:attribute) defining the services")
    ep.add_argument("--host", default="127.0.0.1")
    ep.add_argument("--port", type=int, default=9080)
    ep.add_argument("--protocol", choices=["bidi", "request_response"], default=None)
    ep.add_argument(
        "--identity-key",
        action="append",
        default=[],
        help="accept only requests signed with this publickeyv1_… key (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.command == "endpoint":
        services = load_services(args.module)
        app = asgi_app(*services, protocol=args.protocol, identity_keys=args.identity_key)
        names = ", ".join(s.name for s in services)
        print(f"serving {names} on http://{args.host}:{args.port}", flush=True)
        asyncio.run(_serve(app, args.host, args.port))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
