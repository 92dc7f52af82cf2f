"""The dashboard's request handlers: each reads or acts through the engine's API (or the
runs this server holds) and answers a page, JSON, an event stream or a file."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import jinja2.sandbox
from aiohttp import web

from gs_video_report.batch.api import (
    Engine,
    PlanRequest,
    PresetView,
    list_templates,
    parse_params,
)
from gs_video_report.errors import GsVideoReportError, UsageError
from gs_video_report.web.files import FILE_CSP, LESSON_CSP, BatchFiles, KeyScrub, stream_zip
from gs_video_report.web.runs import Runs
from gs_video_report.web.views import batch_row, batch_snapshot, key_rows, when

logger = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
OTHER_PROCESS_TICK_S = 1.0  # a batch run elsewhere changes only in the database
IDLE_TICK_S = 5.0  # an idle batch: another terminal may resume it
COALESCE_S = 0.2  # at most five updates a second


def capability(token: str, batch_id: str) -> str:
    """The batch's read-only capability: its files, nothing else (derived from the token,
    so a restart with a new token ends it)."""
    digest = hmac.new(token.encode(), f"files:{batch_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def _jinja() -> jinja2.Environment:
    # Our own page templates, but they render untrusted answer text: sandboxed anyway, so
    # a value can never reach attributes or methods it should not.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["usd"] = lambda v: "unknown" if v is None else f"${v:.4f}"
    env.filters["eta"] = lambda s: "" if s is None else f"{int(s) // 60}:{int(s) % 60:02d}"
    return env


class Pages:
    def __init__(self, engine: Engine, runs: Runs, token: str) -> None:
        self.engine = engine
        self.runs = runs
        self.token = token
        self.scrub = KeyScrub([k.key.reveal() for k in engine.keys])
        self.env = _jinja()
        self.streams: set[asyncio.Task[Any]] = set()  # ended at shutdown, not waited for

    async def close_streams(self) -> None:
        for task in list(self.streams):
            task.cancel()

    def _page(self, name: str, status: int = 200, **values: Any) -> web.Response:
        html = self.env.get_template(name).render(token=self.token, **values)
        return web.Response(text=html, status=status, content_type="text/html")

    async def _snapshot(self, batch_id: str) -> dict[str, Any]:
        view = await self.engine.status(batch_id)
        costs = await self.engine.costs(batch_id)  # this batch's calls only: 5 times a second
        return batch_snapshot(view, self.runs, costs, BatchFiles(view), self.engine.clock.time())

    # -- pages ------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        costs = await self.engine.costs()
        batches = [batch_row(v, costs) for v in await self.engine.batches(limit=200)]
        return self._page(
            "index.html",
            batches=batches,
            by_day=costs.by_day,
            keys=key_rows(await self.engine.key_pool(), self.runs),
            presets=await self.engine.presets(),
            templates=[t for t in list_templates(self.engine.settings) if t.error is None],
            default_template=self.engine.settings.templates.default,
            error=request.query.get("error", ""),
            form=dict(request.query),
        )

    async def batch(self, request: web.Request) -> web.Response:
        snapshot = await self._snapshot(request.match_info["batch"])
        return self._page("batch.html", b=snapshot, snapshot_json=json.dumps(snapshot))

    async def lesson(self, request: web.Request) -> web.StreamResponse:
        view = await self.engine.status(request.match_info["batch"])
        files = BatchFiles(view)
        task = next((t for t in view.tasks if str(t.id) == request.match_info["task"]), None)
        page = files.lesson(task.output) if task is not None else None
        if page is None:
            raise web.HTTPNotFound(text="no lesson for this video yet\n")
        raise web.HTTPSeeOther(files.url(page, cap=capability(self.token, view.id)))

    # -- JSON and the live stream -----------------------------------------------------
    async def api_batches(self, request: web.Request) -> web.Response:
        costs = await self.engine.costs()
        rows = [batch_row(v, costs) for v in await self.engine.batches(limit=200)]
        return web.json_response({"batches": rows, "by_day": costs.by_day})

    async def api_batch(self, request: web.Request) -> web.Response:
        return web.json_response(await self._snapshot(request.match_info["batch"]))

    async def api_keys(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": key_rows(await self.engine.key_pool(), self.runs)})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the batch's snapshot whenever it changes (the engine's
        events wake it; a batch another process runs is read again every second, here,
        once per stream) — one connection per tab, no polling from the browser."""
        batch_id = request.match_info["batch"]
        seen = self.runs.live.version(batch_id)
        snapshot = await self._snapshot(batch_id)  # 404 before the stream opens
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self.streams.add(task)
        try:
            return await self._stream(batch_id, seen, snapshot, response)
        except asyncio.CancelledError:
            return response  # the server stops
        finally:
            self.streams.discard(task)

    async def _stream(
        self, batch_id: str, seen: int, snapshot: dict[str, Any], response: web.StreamResponse
    ) -> web.StreamResponse:
        live = self.runs.live
        loop = asyncio.get_running_loop()
        last, sent_at = "", loop.time()
        while True:
            data = json.dumps(snapshot, separators=(",", ":"))
            try:
                if data != last:
                    await response.write(f"event: batch\ndata: {data}\n\n".encode())
                    last, sent_at = data, loop.time()
                elif loop.time() - sent_at >= HEARTBEAT_S:
                    await response.write(b": still here\n\n")  # proxies keep it open
                    sent_at = loop.time()
            except (ConnectionResetError, RuntimeError):
                return response  # the tab went away
            busy = snapshot["here"] or snapshot["running"]
            await live.wait(batch_id, seen, OTHER_PROCESS_TICK_S if busy else IDLE_TICK_S)
            await asyncio.sleep(COALESCE_S)  # what happens meanwhile is one update
            seen = live.version(batch_id)
            snapshot = await self._snapshot(batch_id)

    # -- buttons ----------------------------------------------------------------------
    async def start(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        values = {k: str(v) for k, v in form.items() if k != "token"}
        try:
            presets = {p.name: p for p in await self.engine.presets()}
            batch_id = await self.runs.start(*self._request(values, presets))
        except GsVideoReportError as exc:  # a bad folder or template: one line on the page
            raise self._back(values, str(exc)) from None
        raise web.HTTPSeeOther(f"/batches/{batch_id}")

    def _request(
        self, values: dict[str, str], presets: dict[str, PresetView]
    ) -> tuple[PlanRequest, int | None]:
        folder = values.get("input_dir", "").strip()
        if not folder:
            raise UsageError("give the folder of videos to run")
        preset = presets.get(values.get("preset", ""))
        if values.get("preset") and preset is None:
            raise UsageError(f"no preset named {values['preset']!r}")
        template = self._template_name(values.get("template", "")) or (
            preset.template if preset else None
        )
        output = values.get("output_dir", "").strip() or str(Path(folder) / "lessons")
        try:
            parallel = int(values.get("parallel") or 0) or None
        except ValueError:
            raise UsageError("parallel must be a whole number") from None
        if parallel is not None and not 1 <= parallel <= 32:
            raise UsageError("parallel must be between 1 and 32")
        request = PlanRequest(
            output=Path(output).expanduser(),
            input_dir=Path(folder).expanduser(),
            template=template or None,
            params=dict(preset.params) if preset else {},
        )
        return request, parallel

    def _template_name(self, value: str) -> str:
        """A template the page may name: one of the listed ones, never a path (a form
        field must not make the server open any file it can read)."""
        value = value.strip()
        names = {t.template.name for t in list_templates(self.engine.settings) if t.template}
        if value and value not in names:
            raise UsageError(f"no template named {value[:80]!r} (the page takes names only)")
        return value

    def _back(self, values: dict[str, str], message: str) -> web.HTTPSeeOther:
        query = "&".join(f"{k}={quote(v)}" for k, v in values.items())
        return web.HTTPSeeOther(f"/?error={quote(self.runs.redact(message))}&{query}")

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        batch_id = request.match_info["batch"]
        await self.runs.cancel(batch_id)
        raise web.HTTPSeeOther(f"/batches/{batch_id}")

    async def resume(self, request: web.Request) -> web.StreamResponse:
        batch_id = request.match_info["batch"]
        await self.runs.resume(batch_id)
        raise web.HTTPSeeOther(f"/batches/{batch_id}")

    async def render(self, request: web.Request) -> web.StreamResponse:
        batch_id = request.match_info["batch"]
        await self.runs.render_html(batch_id)
        raise web.HTTPSeeOther(f"/batches/{batch_id}")

    async def retry(self, request: web.Request) -> web.StreamResponse:
        batch_id = request.match_info["batch"]
        try:
            task_id = int(request.match_info["task"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not await self.runs.retry(batch_id, task_id):
            raise UsageError(f"video {task_id} is not a failed video of batch {batch_id}")
        raise web.HTTPSeeOther(f"/batches/{batch_id}")

    async def save_preset(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        text = str(form.get("params", ""))
        pairs = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
        template = self._template_name(str(form.get("template", ""))) or None
        await self.engine.save_preset(str(form.get("name", "")), template, parse_params(pairs))
        raise web.HTTPSeeOther("/#presets")

    async def delete_preset(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        await self.engine.delete_preset(str(form.get("name", "")))
        raise web.HTTPSeeOther("/#presets")

    # -- files ------------------------------------------------------------------------
    async def file(self, request: web.Request) -> web.StreamResponse:
        view = await self.engine.status(request.match_info["batch"])
        wanted = Path("/" + request.match_info["path"])
        files = BatchFiles(view)
        real = files.allowed(wanted)
        if real is None or not await self.scrub.clean(real):
            # the same answer for "missing" and "not yours": nothing learnt by probing
            raise web.HTTPNotFound(text="no such file in this batch\n")
        response = web.FileResponse(real)
        suffix = real.suffix.lower()
        if suffix in (".md", ".srt", ".vtt", ".txt", ".json"):
            # shown in the tab, not downloaded; and never sniffed into HTML
            kind = "application/json" if suffix == ".json" else "text/plain"
            response.content_type = kind
            response.charset = "utf-8"
        lesson_page = suffix == ".html" and real in files.lesson_pages()
        # a lesson page runs its own seek script, on an opaque origin (it cannot read the
        # dashboard's pages or cookie); anything else runs nothing at all
        response.headers["Content-Security-Policy"] = LESSON_CSP if lesson_page else FILE_CSP
        return response

    async def download(self, request: web.Request) -> web.StreamResponse:
        view = await self.engine.status(request.match_info["batch"])
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="{view.id}.zip"',
            }
        )
        await response.prepare(request)

        async def send(data: bytes) -> None:
            if data:
                await response.write(data)

        wanted = [(name, path) for name, path in BatchFiles(view).for_zip()]
        clean = [(name, path) for name, path in wanted if await self.scrub.clean(path)]
        count = await stream_zip(iter(clean), send)
        logger.info("batch %s: zip of %d files sent", view.id, count)
        await response.write_eof()
        return response


__all__ = ["Pages", "when"]
