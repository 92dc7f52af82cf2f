"""The engine's one door: every front-end (the CLI, scripts, next the dashboard) plans,
runs, resumes, inspects and cleans up batches through ``Engine`` — and runs one video
(the legacy ``main``) as a one-task batch through the same lifecycle.

Async at the core; ``engine.sync.NAME(...)`` runs any of the coroutine methods to
completion for callers without an event loop. Results are typed values (``views``),
progress arrives as typed events (``events``), time comes from one injected ``Clock``.
See docs/python-api.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gs_video_report.batch.cost import Prices
from gs_video_report.batch.events import Reporter
from gs_video_report.batch.inputs import InputEntry
from gs_video_report.batch.requests import (
    PlannedBatch,
    PlanRequest,
    RunChanges,
    RunControl,
    RunOptions,
    SyncEngine,
    new_batch_id,
    read_inputs,
)
from gs_video_report.batch.views import (
    BatchOutcome,
    BatchView,
    Cancelled,
    CancelResult,
    CostSummary,
    KeyView,
    OneResult,
    PresetView,
    RenderResult,
    StoredRun,
    TaskStatus,
)
from gs_video_report.clock import REAL, Clock
from gs_video_report.errors import InputError, UnknownBatchError
from gs_video_report.models import BatchStatus, LessonFormat, TaskStage, parse_formats
from gs_video_report.services.sources import printable
from gs_video_report.services.writer import FileWriter, atomic_write_text, check_writable
from gs_video_report.storage import CheckpointManager, open_db
from gs_video_report.storage.db import DB_NAME
from gs_video_report.storage.jobs import JobStore

# Every front-end imports this module at start-up, so it loads only what ``--help``,
# ``status`` or ``list-batches`` need. What plans and runs (the planner, the runner and
# the SDK behind it, PyAV, the templates' Jinja, pydantic's settings) is imported by the
# methods that use it.
if TYPE_CHECKING:
    from gs_video_report.batch.cleanup import CleanupReport
    from gs_video_report.batch.planner import Plan
    from gs_video_report.config import PoolKey, Settings
    from gs_video_report.services.templates import (
        LessonTemplate,
        TemplateEntry,
        TemplateRegistry,
    )

logger = logging.getLogger(__name__)

__all__ = [
    "BatchOutcome",
    "BatchView",
    "CancelResult",
    "Cancelled",
    "CostSummary",
    "Engine",
    "KeyView",
    "OneResult",
    "PlanRequest",
    "PlannedBatch",
    "PresetView",
    "RenderResult",
    "RunChanges",
    "RunControl",
    "RunOptions",
    "atomic_write_text",
    "list_templates",
    "new_batch_id",
    "parse_params",
    "read_stored_run",
    "state_db_path",
]


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """``--param key=value`` strings to a dict; a malformed pair is a ``TemplateError``
    (the templates' own rule, loaded with them when first used)."""
    from gs_video_report.services.templates import parse_params as parse

    return parse(pairs)


def state_db_path(home: Path | None = None) -> Path:
    if home is None:
        from gs_video_report.config import home_dir  # pydantic, for the one call

        home = home_dir()
    return home / DB_NAME


def list_templates(settings: Settings) -> list[TemplateEntry]:
    """Every template the settings can see, broken ones with the reason."""
    from gs_video_report.services.templates import TemplateRegistry

    return TemplateRegistry.with_builtins(settings.templates.dirs).entries()


async def read_stored_run(batch_id: str, home: Path | None = None) -> StoredRun:
    """What ``batch_id`` was started with (its options, config file, progress file)."""
    path = state_db_path(home)
    if not path.exists():
        raise UnknownBatchError(batch_id)
    async with open_db(path) as conn:
        return await _stored_run(CheckpointManager(conn), batch_id)


async def _stored_run(store: CheckpointManager, batch_id: str) -> StoredRun:
    """``read_stored_run`` on a store that is open already."""
    batch = await store.batch(batch_id)
    if batch is None:
        raise UnknownBatchError(batch_id)
    snapshot: dict[str, Any] = json.loads(batch["settings_json"])
    known = {f.name for f in fields(RunOptions)}
    return StoredRun(
        RunOptions(**{k: v for k, v in snapshot.items() if k in known}),
        Path(snapshot["config"]) if snapshot.get("config") else None,
        Path(snapshot["progress_file"]) if snapshot.get("progress_file") else None,
        str(snapshot.get("model", "")),
        tuple(Path(p) for p in snapshot.get("template_files", [])),
    )


class Engine:
    def __init__(
        self,
        settings: Settings,
        *,
        keys: Sequence[PoolKey] = (),
        home: Path | None = None,
        clock: Clock = REAL,
        config_file: Path | None = None,
        progress_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.keys = list(keys)
        self.db_path = state_db_path(home)
        self.clock = clock
        self.config_file = config_file  # stored with a batch, so a resume reads it again
        self.progress_file = progress_file
        self.sync = SyncEngine(self)
        self._registry: tuple[object, TemplateRegistry] | None = None

    def registry(self, extra: Sequence[Path] = ()) -> TemplateRegistry:
        from gs_video_report.services.templates import (
            TemplateRegistry,
            builtin_templates_dir,
            load_template,
        )

        if extra:  # given by path: loaded afresh, onto a registry of its own
            registry = TemplateRegistry.with_builtins(self.settings.templates.dirs)
            for file in extra:
                registry.add(load_template(file))
            return registry
        # One batch asks three times (plan, record, run) and loading parses every
        # template: kept while no template file changed (a long-lived caller sees edits).
        dirs = [builtin_templates_dir(), *self.settings.templates.dirs]
        seen = tuple(
            (str(f), f.stat().st_mtime_ns, f.stat().st_size)
            for d in dirs
            if d.is_dir()
            for f in sorted(d.glob("*.y*ml"))
        )
        if self._registry is None or self._registry[0] != (dirs, seen):
            self._registry = ((dirs, seen), TemplateRegistry.with_builtins(dirs[1:]))
        return self._registry[1]

    @asynccontextmanager
    async def _store(self) -> AsyncIterator[CheckpointManager]:
        async with open_db(self.db_path) as conn:
            yield CheckpointManager(conn)

    def check_template(self, name: str | None) -> None:
        """Raises ``TemplateError`` unless ``name`` (default: the configured one) loads;
        a typo's error names the closest template."""
        from gs_video_report.batch.planner import find_template

        find_template(self.registry(), name or self.settings.templates.default)

    # -- planning -------------------------------------------------------------------
    async def plan(self, request: PlanRequest) -> PlannedBatch:
        """Every local check for every input, with nothing spent. A template given for
        the whole batch is checked first, before any input is read or probed."""
        for name in dict.fromkeys([*request.templates, request.template]):
            if name is not None:
                self.check_template(name)
        from gs_video_report.batch.planner import build_plan

        output = request.output.expanduser().resolve()
        ledger = None
        if request.skip_existing and not request.force and self.db_path.exists():
            async with self._store() as store:
                ledger = await store.done_ledger()
        from gs_video_report.storage.probecache import ProbeCache

        probes = ProbeCache.open(self.db_path.parent)
        try:
            plan = build_plan(
                read_inputs(request, output),
                settings=self.settings,
                registry=self.registry(),
                writer=FileWriter(output),
                template=request.template,
                params=dict(request.params or {}),
                ledger=ledger,
                force=request.force,
                probes=probes,
                templates=request.templates,
            )
        finally:
            probes.close()
        return PlannedBatch(request, output, plan)

    # -- running --------------------------------------------------------------------
    async def start(
        self,
        planned: PlannedBatch,
        options: RunOptions,
        *,
        reporter: Reporter | None = None,
        control: RunControl | None = None,
        batch_id: str | None = None,
    ) -> BatchOutcome:
        """Commit the plan as a new batch, then run it."""
        batch_id = batch_id or new_batch_id()
        if planned.plan.to_run:
            check_writable(planned.output)
        async with self._store() as store:
            await self._record(store, planned.plan, batch_id, planned, options)
            return await self._run(store, batch_id, options, reporter, control)

    async def record(self, planned: PlannedBatch, options: RunOptions) -> str:
        """Commit the plan as a new batch and run nothing (``resume`` runs it): a
        front-end that runs it in the background can show it at once."""
        batch_id = new_batch_id()
        if planned.plan.to_run:
            check_writable(planned.output)
        async with self._store() as store:
            await self._record(store, planned.plan, batch_id, planned, options)
        return batch_id

    async def resume(
        self,
        batch_id: str,
        changes: RunChanges | None = None,
        *,
        reporter: Reporter | None = None,
        control: RunControl | None = None,
    ) -> BatchOutcome:
        """Carry on where ``batch_id`` stopped, with its own settings unless changed."""
        stored = await read_stored_run(batch_id, self.db_path.parent)
        changes = changes or RunChanges()
        options = changes.apply(stored.options)
        async with self._store() as store:
            if changes.given:  # kept: a later resume or retry-failed runs with them too
                await store.update_batch_settings(batch_id, changes.given, self.clock.time())
            return await self._run(store, batch_id, options, reporter, control)

    async def requeue_failed(self, batch_id: str) -> int:
        """Put the batch's failed videos back in the queue (``resume`` then runs them)."""
        await self.status(batch_id)  # UnknownBatchError
        async with self._store() as store:
            return await store.requeue_failed(batch_id, self.clock.time())

    async def retry_failed(
        self,
        batch_id: str,
        changes: RunChanges | None = None,
        *,
        reporter: Reporter | None = None,
        control: RunControl | None = None,
    ) -> tuple[int, BatchOutcome]:
        """Put the batch's failed videos back in the queue and run them."""
        queued = await self.requeue_failed(batch_id)
        return queued, await self.resume(batch_id, changes, reporter=reporter, control=control)

    async def retry_task(self, batch_id: str, task_id: int) -> bool:
        """One failed video of the batch back in the queue (``resume`` then runs it);
        False when it is no failed video of the batch."""
        await self.status(batch_id)  # UnknownBatchError
        async with self._store() as store:
            return await store.requeue_task(batch_id, task_id, self.clock.time())

    def priced(self, model: str) -> bool:
        """Whether the price table (or the config) knows ``model``'s price."""
        return Prices(self.settings.prices).on(model) is not None

    async def run_one(
        self,
        video: str,
        *,
        template: str | None = None,
        params: Mapping[str, str] | None = None,
        output: Path | None = None,
        options: RunOptions | None = None,
        force: bool = False,
        reporter: Reporter | None = None,
        control: RunControl | None = None,
    ) -> OneResult:
        """One video to one lesson (the legacy ``main``), as a one-task batch: a rerun
        after an interruption resumes it (an answer already paid for is not paid again),
        and a video already done with the same settings is not generated again unless
        ``force``."""
        from gs_video_report.batch.planner import Plan, plan_entry

        settings = self.settings
        folder = (output or settings.output.dir).expanduser().resolve()
        writer = FileWriter(folder, template_subfolders=settings.output.template_subfolders)
        entry = InputEntry(text=video, origin=video)
        planned = plan_entry(entry, settings, self.registry(), writer, template, params or {})
        files = planned.video.files
        check_writable(files.markdown.parent)
        result = OneResult(None, None, files.markdown, files.answer_json, settings.model)
        options = replace(
            options or RunOptions(parallel=1, max_uploads=1), reports=False, reuse=not force
        )
        async with self._store() as store:
            previous = (await store.done_ledger()).get(planned.done_key)
            same = previous is not None and Path(previous.output_md) == files.markdown
            if same and not force and files.markdown.is_file():
                return replace(result, skipped_reason=f"already done: {files.markdown}")
            batch_id = await store.unfinished_single(planned.done_key)
            if batch_id is None:
                batch_id = new_batch_id()
                request = PlanRequest(output=folder)
                one = PlannedBatch(request, folder, Plan(tasks=[planned]))
                await self._record(store, one.plan, batch_id, one, options, single=video)
            outcome = await self._run(store, batch_id, options, reporter, control)
            task = (await store.tasks(batch_id))[0]
        return replace(result, outcome=outcome, task=TaskStatus.of(task))

    async def _record(
        self,
        store: CheckpointManager,
        plan: Plan,
        batch_id: str,
        planned: PlannedBatch,
        options: RunOptions,
        single: str | None = None,
    ) -> None:
        from gs_video_report.batch.runner import record_plan

        names = set(self.registry().names())
        # templates given by path: stored, so a resume finds them by name
        files = sorted(
            {
                str(t.video.template.path.resolve())
                for t in plan.to_run
                if t.video.template.name not in names
            }
        )
        snapshot: dict[str, object] = {
            "model": self.settings.model,
            "source": f"main {single}" if single else planned.request.source_desc,
            "input_dir": str(d.resolve()) if (d := planned.request.input_dir) else None,
            # what the history shows (a CSV's rows may name their own)
            "template": ", ".join(sorted({t.video.template.name for t in plan.to_run}))
            or planned.request.template,
            **{f.name: getattr(options, f.name) for f in fields(RunOptions)},
            "config": str(self.config_file.resolve()) if self.config_file else None,
            "progress_file": str(self.progress_file.resolve()) if self.progress_file else None,
            "template_files": files,
            "single": single is not None,
            # what planning turned away and skipped belongs to the batch: every report
            # and exit code of it, a resume's too, counts them
            "rejected": [{"input": p.origin, "reason": p.message} for p in plan.problems],
            "skipped": len(plan.skipped),
        }
        await record_plan(
            store,
            plan,
            batch_id=batch_id,
            source_desc=str(snapshot["source"]),
            output_dir=str(planned.output),
            snapshot=snapshot,
            now=self.clock.time(),
        )

    async def _run(
        self,
        store: CheckpointManager,
        batch_id: str,
        options: RunOptions,
        reporter: Reporter | None,
        control: RunControl | None,
    ) -> BatchOutcome:
        from gs_video_report.batch.runner import run_batch

        stored = await _stored_run(store, batch_id)  # the store is open: no second connection
        return await run_batch(
            store,
            batch_id,
            settings=self.settings,
            keys=self.keys,
            options=options,
            registry=self.registry(stored.template_files),
            clock=self.clock,
            reporter=reporter,
            on_pool=control.attach if control is not None else None,
        )

    # -- looking after batches ------------------------------------------------------
    async def status(self, batch_id: str) -> BatchView:
        if not self.db_path.exists():
            raise UnknownBatchError(batch_id)
        async with self._store() as store:
            row = await store.batch(batch_id)
            if row is None:
                raise UnknownBatchError(batch_id)
            tasks = await store.tasks(batch_id)
            counts = await store.counts(batch_id)
            jobs = await JobStore(store).summary(batch_id)
        keep = ("display_name", "name", "state", "requests", "submitted_at", "ended_at")
        view = BatchView.of(row, counts, self.clock.time(), tasks)
        return replace(view, jobs=[{k: j[k] for k in keep} for j in jobs])

    async def batches(self, limit: int | None = 10) -> list[BatchView]:
        """Newest first."""
        if not self.db_path.exists():
            return []
        async with self._store() as store:
            now = self.clock.time()
            return [
                BatchView.of(row, await store.counts(row["id"]), now)
                for row in await store.batches(limit)
            ]

    async def cancel(self, batch_id: str) -> Cancelled:
        """Stop a batch: a running one (another process) stops within seconds, an idle one
        at once (resumable); a finished one is left as it is."""
        view = await self.status(batch_id)
        if view.status.final:
            return Cancelled(CancelResult.ALREADY_FINISHED, view.status)
        now = self.clock.time()
        async with self._store() as store:
            await store.request_cancel(batch_id, now)
            if view.running_pid is not None:
                return Cancelled(CancelResult.REQUESTED, view.status, view.running_pid)
            await store.cancel_pending(batch_id, now)
            await store.set_batch_status(batch_id, BatchStatus.CANCELLED, now)
        return Cancelled(CancelResult.CANCELLED, BatchStatus.CANCELLED)

    async def uploads_need_keys(self) -> bool:
        """Whether ``cleanup`` has uploads of real (not simulated) batches to delete."""
        from gs_video_report.batch.cleanup import simulated_batches

        if not self.db_path.exists():
            return False
        async with self._store() as store:
            simulated = await simulated_batches(store)
            return any(t.batch_id not in simulated for t in await store.owned_uploads())

    async def cleanup(
        self, *, older_than_days: float, all_uploads: bool, dry_run: bool
    ) -> CleanupReport:
        from gs_video_report.batch.cleanup import CleanupReport, cleanup

        if not self.db_path.exists():
            return CleanupReport()
        async with self._store() as store:
            return await cleanup(
                store,
                older_than_days=older_than_days,
                now=self.clock.time(),
                all_uploads=all_uploads,
                keys=self.keys,
                api=self.settings.api,
                dry_run=dry_run,
            )

    async def key_health(self) -> dict[str, dict[str, Any]]:
        if not self.db_path.exists():
            return {}
        async with self._store() as store:
            return await store.key_health()

    async def key_pool(self) -> list[KeyView]:
        """The engine's keys as the batches see them: health from the state database."""
        from gs_video_report.services.gemini.keypool import KeyPool, KeyState

        known = {fp: KeyState(**row) for fp, row in (await self.key_health()).items()}
        pool = KeyPool(self.keys, states=known, clock=self.clock.time)
        now = self.clock.time()
        views = []
        for key in self.keys:
            state = pool.states[key.fingerprint]
            views.append(
                KeyView(
                    key.fingerprint,
                    key.label,
                    key.project,
                    key.key.source,
                    state.describe(now),
                    state.usable(now),
                    state.cooldown_until,
                    state.successes,
                    dict(state.failures),
                    state.last_error,
                )
            )
        return views

    # -- lessons ----------------------------------------------------------------------
    async def render(
        self,
        target: str | Path,
        *,
        formats: Sequence[LessonFormat] | None = None,
        output: Path | None = None,
    ) -> RenderResult:
        """Rebuild lessons from their JSON sidecars, with no API call: every lesson under
        a folder, or a batch's (by id) — in place, or at the same places under ``output``.
        ``formats``: default ``output.formats``. ``InputError`` for a folder that is not
        there or holds no lesson; ``UnknownBatchError`` for a batch id that is unknown."""
        from gs_video_report.batch.render import existing_folder, render_lessons

        wanted = parse_formats(list(formats or self.settings.output.formats))
        folder = await asyncio.to_thread(existing_folder, target)
        if folder is not None:
            return await asyncio.to_thread(
                render_lessons, folder, None, output, self.registry(), wanted
            )
        text = str(target)
        if not (text.startswith("batch_") and self.db_path.exists()):
            raise InputError(f"no such folder or batch: {printable(text)}")
        view = await self.status(text)  # UnknownBatchError
        stored = await read_stored_run(text, self.db_path.parent)
        done = [t for t in view.tasks if t.stage is TaskStage.DONE]
        sidecars = [Path(t.output).with_suffix(".json") for t in done]
        registry = self.registry(stored.template_files)
        return await asyncio.to_thread(
            render_lessons,
            Path(view.output_dir),
            sidecars,
            output,
            registry,
            wanted,
            len(view.tasks) - len(done),
        )

    def format_notes(
        self, templates: Iterable[str | LessonTemplate], formats: Sequence[LessonFormat]
    ) -> list[str]:
        """One line per template whose answers cannot give the subtitles asked for (said
        before a run: the lessons are then written without them)."""
        from gs_video_report.batch.planner import find_template
        from gs_video_report.services.outputs import untimed_note

        registry = self.registry()
        found = [t if not isinstance(t, str) else find_template(registry, t) for t in templates]
        unique = {t.name: t for t in found}
        notes = (untimed_note(unique[name], formats) for name in sorted(unique))
        return [note for note in notes if note]

    def lesson_page(self, lesson: Path, *, page_path: Path | None = None) -> str:
        """A lesson's HTML page (its ``.json`` sidecar or any of its files), rendered in
        memory with nothing written — what the dashboard serves. The video link is made
        relative to ``page_path`` (default: the ``.html`` beside the sidecar)."""
        from gs_video_report.batch.render import page_for

        return page_for(lesson.with_suffix(".json"), self.registry(), page_path)

    async def enable_key(self, fingerprint: str) -> bool:
        async with self._store() as store:
            return await store.enable_key(fingerprint, self.clock.time())

    # -- the dashboard's summaries and presets --------------------------------------
    async def costs(self, batch_id: str | None = None) -> CostSummary:
        """What was billed, per batch and per UTC day (of one batch, with ``batch_id``)."""
        if not self.db_path.exists():
            return CostSummary({}, {})
        async with self._store() as store:
            rows = await store.usage_by_day(batch_id)
        by_batch, by_day = Prices(self.settings.prices).of_grouped_usage(rows)
        return CostSummary(by_batch, dict(sorted(by_day.items(), reverse=True)))

    async def presets(self) -> list[PresetView]:
        """The config file's presets, then those saved here (a saved one of the same name
        wins)."""
        found = {
            name: PresetView(name, p.template, dict(p.params), "config")
            for name, p in self.settings.presets.items()
        }
        if self.db_path.exists():
            async with self._store() as store:
                for name, template, params in await store.presets():
                    found[name] = PresetView(name, template, params, "saved")
        return sorted(found.values(), key=lambda p: p.name)

    async def save_preset(self, name: str, template: str | None, params: Mapping[str, str]) -> None:
        from gs_video_report.errors import UsageError

        if not name.strip() or len(name) > 80:
            raise UsageError("a preset needs a name (at most 80 characters)")
        if template:
            self.check_template(template)
        async with self._store() as store:
            await store.save_preset(name.strip(), template or None, params, self.clock.time())

    async def delete_preset(self, name: str) -> bool:
        async with self._store() as store:
            return await store.delete_preset(name)
