"""One burst in a process of its own (so its peak RSS is its own): N invocations of a
3-step handler submitted at once to the embedded engine, directly or through its HTTP
ingress with C concurrent clients. Prints one JSON line.

    python -m benches.burst_worker DIR engine|http plain|async N [CLIENTS]
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time

import durable_futures as df
from durable_futures.local.ingress import Ingress

svc = df.Service("Burst")


def step(i: int) -> int:
    return i


async def astep(i: int) -> int:
    return i


@svc.handler()
async def plain(ctx: df.Context, i: int) -> int:
    a = await ctx.run_async("a", step, i)
    b = await ctx.run_async("b", step, a + 1)
    return await ctx.run_async("c", step, b + 1)


@svc.handler()
async def coroutine(ctx: df.Context, i: int) -> int:
    a = await ctx.run_async("a", astep, i)
    b = await ctx.run_async("b", astep, a + 1)
    return await ctx.run_async("c", astep, b + 1)


async def via_engine(engine: df.LocalEngine, handler: df.Handler, n: int) -> dict[str, object]:
    done: list[float] = []
    start = time.perf_counter()

    async def one(i: int) -> None:
        assert await engine.invoke(handler, i) == i + 2
        done.append(time.perf_counter() - start)

    await asyncio.gather(*(one(i) for i in range(n)))
    return {"elapsed": time.perf_counter() - start, "done": done, "errors": 0}


async def http_call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes
) -> tuple[int, bytes, dict[str, str]]:
    writer.write(
        b"POST %s HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
    )
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding") == "chunked":
        data = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            data += chunk[:-2]
    else:
        data = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, data, headers


async def via_http(
    engine: df.LocalEngine, handler: df.Handler, n: int, clients: int
) -> dict[str, object]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    app = Ingress(engine)
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    stop = asyncio.Event()
    sockets = config.create_sockets()
    port = sockets.insecure_sockets[0].getsockname()[1]
    config.bind = [f"127.0.0.1:{port}"]
    for s in sockets.insecure_sockets:
        s.close()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    path = f"/Burst/{handler.name}"
    todo = list(range(n))
    done: list[float] = []
    errors = {"other": 0, "503": 0}
    start = time.perf_counter()

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while todo:
                i = todo.pop()
                while True:
                    status, data, headers = await http_call(reader, writer, path, b"%d" % i)
                    if status == 503 and "retry-after" in headers:
                        errors["503"] += 1
                        await asyncio.sleep(float(headers["retry-after"]))
                        continue
                    break
                if status != 200 or json.loads(data) != i + 2:
                    errors["other"] += 1
                done.append(time.perf_counter() - start)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    stop.set()
    await server
    return {"elapsed": elapsed, "done": done, "errors": errors["other"], "retried": errors["503"]}


async def main() -> None:
    directory, how, kind, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    clients = int(sys.argv[5]) if len(sys.argv) > 5 else 256
    handler = plain if kind == "plain" else coroutine
    async with df.LocalEngine(svc, path=os.path.join(directory, f"{how}-{kind}.db")) as engine:
        await engine.invoke(handler, 0)
        if how == "engine":
            out = await via_engine(engine, handler, n)
        else:
            out = await via_http(engine, handler, n, clients)
    done = sorted(out.pop("done"))  # type: ignore[call-overload]
    out["n"] = len(done)
    out["p50"] = done[len(done) // 2]
    out["p99"] = done[int(len(done) * 0.99)]
    out["rss_mib"] = peak_rss_mib()
    print(json.dumps(out))


def peak_rss_mib() -> float:
    """This process's peak resident memory. On Linux, from ``VmHWM``: ``ru_maxrss`` keeps the
    size of the process it was forked from (a pytest process of 80 MiB under ``make bench``)
    across the ``exec``, so it reported the parent whenever the parent was larger."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    asyncio.run(main())
