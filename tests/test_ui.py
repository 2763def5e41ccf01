"""The timeline pages of the admin API (``/ui``, ``/ui/invocation/{id}``): ASGI-level tests of
their content, filters, 404s and escaping, and one test in a real headless Chromium."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import tempfile
import threading
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

import durable_futures as df
from durable_futures.local.admin import Admin, serve_admin
from durable_futures.local.journal import parse_journal
from durable_futures.local.ui import timeline
from examples import select_first

from .asgi_client import call
from .test_operations import until

T = TypeVar("T")

FAST = df.RetryPolicy(
    initial_interval=timedelta(milliseconds=5), max_interval=timedelta(milliseconds=20)
)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EVIL = "<script>alert(1)</script>"

svc = df.Service("Shop")
ATTEMPTS: dict[str, int] = {}
AWAKEABLES: dict[str, str] = {}


def double(n: int) -> int:
    return 2 * n


def refuse() -> int:
    raise df.TerminalError("out of stock", 409)


@svc.handler()
async def order(ctx: df.Context, n: int) -> str:
    """A run, a run that fails terminally (caught), a timer and an awakeable."""
    a = await ctx.run("double", double, n)
    try:
        await ctx.run("reserve", refuse)
    except df.TerminalError:
        pass
    await ctx.sleep(timedelta(milliseconds=1))
    awk_id, fut = ctx.awakeable(str)
    AWAKEABLES[ctx.invocation_id] = awk_id
    return f"{a} {await fut}"


@svc.handler()
async def flaky(ctx: df.Context, s: str) -> str:
    """Fails every attempt at its second run: retried forever."""
    await ctx.run("first", double, 1)

    def boom() -> int:
        ATTEMPTS[ctx.invocation_id] = ATTEMPTS.get(ctx.invocation_id, 0) + 1
        raise ValueError("the warehouse is down")

    await ctx.run("second", boom)
    return s


cart = df.VirtualObject("Cart")


@cart.handler()
async def evil(ctx: df.ObjectContext, s: str) -> str:
    await ctx.run(EVIL, double, 2)
    return s


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def page(app: Admin, path: str) -> tuple[int, str, dict[str, str]]:
    r = await call(app, path, method="GET")
    return r.status, r.body.decode(), r.headers


def race_id(e: df.LocalEngine) -> str:
    return next(r.id for r in e.invocations(100) if (r.service, r.handler) == ("Race", "race"))


def test_the_race_timeline_in_journal_positions(tmp_path: Path) -> None:
    async def body() -> None:
        async with df.LocalEngine(
            select_first.svc, select_first.echo_svc, path=tmp_path / "ui.db"
        ) as e:
            assert await e.invoke(select_first.race, "hi") == "call won with result: hi"
            inv = race_id(e)
            rows = timeline(parse_journal(e.journal(inv)), e.invocation(inv))
            assert [(r.kind, r.label, r.start, r.end, r.order) for r in rows] == [
                ("timer", "timer 30s", 1, None, None),
                ("call", "call Echo/echo", 2, 4, 1),
            ]
            assert rows[1].accepted_at == 3

            status, html, headers = await page(Admin(e), f"/ui/invocation/{inv}")
            assert status == 200
            assert headers["content-type"] == "text/html; charset=utf-8"
            assert "script-src" not in headers["content-security-policy"]
            assert "default-src 'none'" in headers["content-security-policy"]
            assert "<script" not in html and "http://" not in html.replace(
                'xmlns="http://www.w3.org/2000/svg"', ""
            )
            assert html.count('<rect class="bar') == 2
            assert '<rect class="bar timer open"' in html and '<rect class="bar call"' in html
            assert re.findall(r'class="order"[^>]*>([^<]*)<', html) == ["#1"]
            assert "journal position" in html and "Race/race" in html
            # The raw journal table, as `journal show` has it.
            for word in ("InputCommand", "SleepCommand", "CallCommand",
                         "CallInvocationIdCompletion", "CallCompletion", "OutputCommand"):
                assert f"<td>{word}</td>" in html
            assert "value &quot;hi&quot;" in html

    run(body())


def test_the_list_filters_by_status_and_target(tmp_path: Path) -> None:
    async def body() -> None:
        async with df.LocalEngine(
            svc, select_first.svc, select_first.echo_svc, path=tmp_path / "ui.db",
            retry_policy=FAST,
        ) as e:
            app = Admin(e)
            await e.invoke(select_first.race, "hi")
            waiting = e.send(order, 3)
            await until(lambda: waiting in AWAKEABLES, "the order to wait")
            info = e.invocation(waiting)
            assert info is not None and info.status != "completed"
            waits = info.status  # running (its attempt is open) or suspended

            status, html, _ = await page(app, "/ui")
            assert status == 200
            assert f'href="/ui/invocation/{waiting}"' in html
            assert f'href="/ui/invocation/{race_id(e)}"' in html
            assert "Echo/echo" in html and "Shop/order" in html
            assert "<th>age</th>" in html

            _, html, _ = await page(app, f"/ui?status={waits}")
            assert waiting in html and race_id(e) not in html and "Echo/echo" not in html
            assert f'<option value="{waits}" selected>' in html

            _, html, _ = await page(app, "/ui?target=race")
            assert race_id(e) in html and waiting not in html and "Echo/echo" not in html

            _, html, _ = await page(app, "/ui?status=completed&target=echo")
            assert "Echo/echo" in html and "Race/race" not in html

            _, html, _ = await page(app, "/ui?target=nothing-like-this")
            assert "No invocation matches." in html

            _, html, _ = await page(app, "/ui?limit=1")
            assert html.count('href="/ui/invocation/') == 1

            e.resolve_awakeable(AWAKEABLES[waiting], "paid")
            assert await e.result(waiting) == "6 paid"
            _, html, _ = await page(app, f"/ui/invocation/{waiting}")
            kinds = re.findall(r'<rect class="bar (\w+)', html)
            assert kinds == ["run", "run", "timer", "awakeable"]
            assert re.findall(r'class="order"[^>]*>([^<]*)<', html) == ["#1", "#2", "#3", "#4"]
            assert '<rect class="bar run failed"' in html and "✗ failed" in html
            assert "[409] out of stock" in html

    run(body())


def test_failed_attempts_are_marked_at_the_command_they_stopped_at(tmp_path: Path) -> None:
    async def body() -> None:
        async with df.LocalEngine(svc, path=tmp_path / "ui.db", retry_policy=FAST) as e:
            inv = e.send(flaky, "x")
            await until(lambda: ATTEMPTS.get(inv, 0) >= 3, "three failed attempts")
            await until(lambda: (e.invocation(inv).failed_attempts or 0) >= 2,  # type: ignore[union-attr]
                        "the failures to be stored")
            _, html, _ = await page(Admin(e), f"/ui/invocation/{inv}")
            assert re.findall(r'<text class="label"[^>]*>([^<]*)<', html) == [
                "run first", "run second"
            ]
            assert '<rect class="bar run open"' in html
            assert re.search(r'class="retry-mark"[^>]*>↻ \d+', html)
            assert "the warehouse is down" in html and "last failure" in html
            _, listing, _ = await page(Admin(e), "/ui")
            assert "last failure [500] ValueError" in listing or "the warehouse is down" in listing
            e.kill(inv)

    run(body())


def test_unknown_invocations_and_pages_are_404_and_other_methods_405(tmp_path: Path) -> None:
    async def body() -> None:
        async with df.LocalEngine(svc, path=tmp_path / "ui.db") as e:
            app = Admin(e)
            for path in ("/ui/invocation/inv_00000000000000000000000000000000",
                         "/ui/invocation/not-an-id", "/ui/nothing", "/ui/invocation/x/y"):
                status, html, headers = await page(app, path)
                assert status == 404, path
                assert headers["content-type"].startswith("text/html")
                assert "Not found" in html
            bad_id = "<img src=x onerror=alert(1)>"
            status, html, _ = await page(app, f"/ui/invocation/{bad_id}")
            assert status == 404 and bad_id not in html and "&lt;img src=x" in html
            r = await call(app, "/ui", method="POST")
            assert r.status == 405 and r.headers["allow"] == "GET, HEAD"
            r = await call(app, "/ui", method="HEAD")
            assert r.status == 200 and r.body == b""
            # The JSON API is unchanged.
            r = await call(app, "/nothing", method="GET")
            assert r.status == 404 and r.headers["content-type"] == "application/json"

    run(body())


def test_names_and_values_are_escaped(tmp_path: Path) -> None:
    async def body() -> None:
        async with df.LocalEngine(cart, path=tmp_path / "ui.db") as e:
            assert await e.invoke(evil, EVIL, key=EVIL) == EVIL
            inv = next(r.id for r in e.invocations(10) if r.handler == "evil")
            app = Admin(e)
            for path in ("/ui", f"/ui?target={EVIL}", f"/ui/invocation/{inv}"):
                status, html, _ = await page(app, path)
                assert status == 200, path
                assert "<script" not in html, path
                assert "&lt;script&gt;" in html, path
            _, html, _ = await page(app, f"/ui/invocation/{inv}")
            assert "run &lt;script&gt;alert(1)&lt;/script&gt;" in html  # the run's name
            assert "Cart/&lt;script&gt;alert(1)&lt;/script&gt;/evil" in html  # the key

    run(body())


# ---- a real browser ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chromium_missing() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed (`make chromium` installs it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (the dev dependency group has it)"
    return None


def _artifact_dir() -> Path:
    out = Path(os.environ.get("DF_UI_ARTIFACTS", tempfile.gettempdir())) / "durable-futures-ui"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_the_race_page_in_headless_chromium(tmp_path: Path) -> None:
    missing = _chromium_missing()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    port = _free_port()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None
    found: dict[str, Any] = {}
    errors: list[BaseException] = []

    async def serve() -> None:
        nonlocal stop, loop
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        async with df.LocalEngine(
            select_first.svc, select_first.echo_svc, path=tmp_path / "ui.db"
        ) as e:
            await e.invoke(select_first.race, "hi")
            found["id"] = race_id(e)
            server = asyncio.create_task(serve_admin(e, "127.0.0.1", port, shutdown_trigger=stop.wait))
            for _ in range(400):
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.02)
            ready.set()
            await server

    def thread() -> None:
        try:
            asyncio.run(serve())
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)
            ready.set()

    t = threading.Thread(target=thread, daemon=True)
    t.start()
    try:
        assert ready.wait(60) and not errors, errors
        shot = _artifact_dir() / "race-timeline.png"
        shot.unlink(missing_ok=True)
        requests: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                pg = browser.new_page(viewport={"width": 1280, "height": 800})
                pg.on("request", lambda r: requests.append(r.url))
                base = f"http://127.0.0.1:{port}"
                pg.goto(f"{base}/ui", wait_until="load")
                pg.click(f'a[href="/ui/invocation/{found["id"]}"]')
                pg.wait_for_url(f"**/ui/invocation/{found['id']}")
                assert pg.title().startswith(found["id"])
                bars = pg.locator("svg.timeline rect.bar")
                labels = pg.locator("svg.timeline text.label").all_text_contents()
                assert bars.count() == pg.locator("svg.timeline g.row").count() == 2
                assert labels == ["timer 30s", "call Echo/echo"]
                assert pg.locator("svg.timeline text.order").all_text_contents() == ["#1"]
                assert bars.nth(0).get_attribute("class") == "bar timer open"
                # The call's bar ends left of the timer's open one, which runs to the end.
                timer, call_bar = bars.nth(0).bounding_box(), bars.nth(1).bounding_box()
                assert timer is not None and call_bar is not None
                assert call_bar["x"] > timer["x"]
                assert timer["x"] + timer["width"] >= call_bar["x"] + call_bar["width"]
                assert pg.locator("table.journal tbody tr").count() == 6
                pg.screenshot(path=str(shot), full_page=True)
                # The list, filtered by status and target: only the race; no match: none.
                pg.goto(f"{base}/ui?status=completed&target=Race/race", wait_until="load")
                assert pg.locator('a[href^="/ui/invocation/"]').count() == 1
                assert pg.locator(f'a[href="/ui/invocation/{found["id"]}"]').count() == 1
                pg.goto(f"{base}/ui?target=NoSuchService", wait_until="load")
                assert pg.locator('a[href^="/ui/invocation/"]').count() == 0
                pg.goto(f"{base}/ui", wait_until="load")
                assert pg.locator('a[href^="/ui/invocation/"]').count() == 2  # race + echo
            finally:
                browser.close()
        assert all(u.startswith(f"http://127.0.0.1:{port}/") for u in requests), requests
        assert shot.stat().st_size > 10_000
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        t.join(30)
    assert not errors, errors

