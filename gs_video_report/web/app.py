"""The dashboard's HTTP face (aiohttp): pages, a server-sent event stream per batch, the
batch's files and its zip, and the buttons — all through the engine's API.

Safe by default: it binds 127.0.0.1; every request needs the random token printed at
start (in the URL once, then a same-site cookie); a request that changes anything needs
it in the form or an ``X-Token`` header too (a cookie alone is what a forged cross-site
form would carry); a ``Host`` that is not this server's is refused (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gs_video_report.batch.api import Engine
from gs_video_report.errors import GsVideoReportError, UnknownBatchError
from gs_video_report.web.files import FILE_CSP
from gs_video_report.web.pages import Pages, capability
from gs_video_report.web.runs import Runs

logger = logging.getLogger(__name__)

COOKIE = "gs_videoreport_token"
STATIC = Path(__file__).parent / "static"
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_DASHBOARD_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
    " frame-ancestors 'none'; form-action 'self'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Dashboard:
    def __init__(
        self, engine: Engine, *, simulated: bool, token: str | None = None, parallel: int = 4
    ) -> None:
        self.engine = engine
        self.token = token or secrets.token_urlsafe(18)
        self.runs = Runs(engine, simulated, parallel)
        self.pages = Pages(engine, self.runs, self.token)
        self.hosts: set[str] = set(_LOOPBACK)  # empty: any (listening beyond loopback)
        self._runner: web.AppRunner | None = None
        self.app = self._build()

    def _build(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        p = self.pages
        app.add_routes(
            [
                web.get("/", p.index),
                web.post("/batches", p.start),
                web.get("/api/batches", p.api_batches),
                web.get("/api/batches/{batch}", p.api_batch),
                web.get("/api/keys", p.api_keys),
                web.get("/batches/{batch}", p.batch),
                web.get("/batches/{batch}/events", p.events),
                web.post("/batches/{batch}/cancel", p.cancel),
                web.post("/batches/{batch}/resume", p.resume),
                web.post("/batches/{batch}/render", p.render),
                web.post("/batches/{batch}/tasks/{task}/retry", p.retry),
                web.get("/batches/{batch}/lessons/{task}", p.lesson),
                web.get("/batches/{batch}/files/{path:.*}", p.file, name="file"),
                web.get("/batches/{batch}/c/{cap}/files/{path:.*}", p.file, name="cap_file"),
                web.get("/batches/{batch}/download.zip", p.download),
                web.post("/presets", p.save_preset),
                web.post("/presets/delete", p.delete_preset),
                web.static("/static", STATIC),
            ]
        )
        app.on_shutdown.append(lambda _app: self.pages.close_streams())
        app.on_shutdown.append(lambda _app: self.runs.close())
        return app

    def _given(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token.encode())

    def _capable(self, request: web.Request) -> bool:
        """A lesson page's own requests (its video): the batch's read-only capability."""
        info = request.match_info
        if info.route.name != "cap_file":
            return False
        wanted = capability(self.token, info.get("batch", ""))
        return hmac.compare_digest(info.get("cap", "").encode(), wanted.encode())

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0]
        if self.hosts and host not in self.hosts:
            return web.Response(status=403, text="forbidden: unknown host\n")
        by_url = self._given(request.query.get("token"))
        if request.method in ("GET", "HEAD"):
            allowed = by_url or self._given(request.cookies.get(COOKIE)) or self._capable(request)
        else:
            form = await request.post() if request.content_type.endswith("form-urlencoded") else {}
            field = form.get("token")
            allowed = self._given(request.headers.get("X-Token")) or (
                isinstance(field, str) and self._given(field)
            )
        if not allowed:
            return web.Response(
                status=403,
                text="forbidden: open the dashboard with the URL `gs_videoreport serve` printed\n",
            )
        try:
            response = await self._answer(request, handler)
        except web.HTTPException as exc:  # a redirect, a 404: the same headers
            self._finish(request, exc, by_url)
            raise
        self._finish(request, response, by_url)
        return response

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The handler's answer; a refused input or a failure is one line, never a
        traceback on the terminal (that goes to the log file, and to stderr with -v)."""
        form = await request.post() if request.method == "POST" else {}
        values = [*request.query.values(), *(v for v in form.values() if isinstance(v, str))]
        if "\0" in request.path:
            return web.Response(status=404, text="no such page\n")
        if any("\0" in v for v in values):
            return web.Response(status=400, text="error: a NUL byte in the request\n")
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except UnknownBatchError as exc:
            return web.Response(status=404, text=f"{exc}\n")
        except GsVideoReportError as exc:
            return web.Response(status=400, text=f"error: {self.runs.redact(str(exc))}\n")
        except Exception as exc:
            what = self.runs.redact(f"{type(exc).__name__}: {exc}")
            logger.warning("%s %s: internal error: %s", request.method, request.path, what)
            logger.info("the internal error's traceback", exc_info=exc)
            return web.Response(status=500, text=f"internal error: {what}\n")

    def _finish(self, request: web.Request, response: web.StreamResponse, by_url: bool) -> None:
        if by_url:
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        file = request.match_info.route.name in ("file", "cap_file")
        response.headers.setdefault("Content-Security-Policy", FILE_CSP if file else _DASHBOARD_CSP)

    # -- running ----------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen; the URL to open (with the token)."""
        if host not in _LOOPBACK:
            self.hosts.clear()  # reached by this machine's names and addresses: the token guards
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{bound}/?token={quote(self.token)}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def serve(
    dashboard: Dashboard,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
    stop: asyncio.Event | None = None,
) -> None:
    """Run until ``stop`` is set (or the task is cancelled); batches running here stop
    resumable."""
    url = await dashboard.start(host, port)
    on_ready(url)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await dashboard.stop()


@contextlib.contextmanager
def in_thread(dashboard: Dashboard, host: str = "127.0.0.1") -> Iterator[str]:
    """The dashboard on its own event loop in a thread (a browser test, the screenshot
    script); yields its URL and stops it on exit."""
    loop = asyncio.new_event_loop()
    ready: list[Any] = []
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready.append(loop.run_until_complete(dashboard.start(host, 0)))
        except BaseException as exc:
            ready.append(exc)
        started.set()
        if isinstance(ready[0], str):
            loop.run_forever()

    thread = threading.Thread(target=main, name="dashboard", daemon=True)
    thread.start()
    started.wait(30)
    if not isinstance(ready[0], str):
        raise ready[0]
    try:
        yield ready[0]
    finally:
        asyncio.run_coroutine_threadsafe(dashboard.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
