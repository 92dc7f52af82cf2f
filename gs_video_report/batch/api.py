"""The engine's one door: every front-end (the CLI, scripts, next the dashboard) plans,
runs, resumes, inspects and cleans up batches through ``Engine`` — and runs one video
(the legacy ``main``) as a one-task batch through the same lifecycle.

Async at the core; ``engine.sync.NAME(...)`` runs any of the coroutine methods to
completion for callers without an event loop. Results are typed values (``views``),
progress arrives as typed events (``events``), time comes from one injected ``Clock``.
See docs/python-api.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from gs_video_report.batch.cost import Prices
from gs_video_report.batch.events import Reporter
from gs_video_report.batch.housekeeping import Housekeeping
from gs_video_report.batch.inputs import InputEntry
from gs_video_report.batch.lesson_files import LessonOutputs
from gs_video_report.batch.requests import (
    PlannedBatch,
    PlanRequest,
    RunChanges,
    RunControl,
    RunOptions,
    new_batch_id,
    read_inputs,
)
from gs_video_report.batch.stored import (
    list_templates,
    parse_params,
    read_stored_run,
    state_db_path,
    stored_run_of,
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
    TaskStatus,
)
from gs_video_report.services.writer import FileWriter, atomic_write_text, check_writable
from gs_video_report.storage import CheckpointManager

# Every front-end imports this module at start-up, so it loads only what ``--help``,
# ``status`` or ``list-batches`` need. What plans and runs (the planner, the runner and
# the SDK behind it, PyAV, the templates' Jinja, pydantic's settings) is imported by the
# methods that use it.
if TYPE_CHECKING:
    from gs_video_report.batch.planner import Plan

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


class Engine(Housekeeping, LessonOutputs):
    """The one door (module docstring); the parts it is made of: ``engine_core``,
    ``housekeeping``, ``lesson_files``."""

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

        stored = await stored_run_of(store, batch_id)  # the store is open: no second connection
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
