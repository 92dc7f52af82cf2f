"""Collecting a Gemini Batch job that ended: its results file downloaded, each line
matched to its task by key (never by position), and every answer put through what a
live answer goes through — the same validation (``read_answer``), the same ``decide``
for what failed, the same writer (sidecar first, then the Markdown), the same
``complete``. A request with no line (EXPIRED, FAILED, a line missing) goes back to the
queue and into a later job; a task already done (a crash during an earlier collection)
is left as it is, so no answer is ever written or counted twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gs_video_report.batch import events as ev
from gs_video_report.batch.adapt import Adjustments
from gs_video_report.batch.decide import Adapt, Fail, RetryAt, Situation, decide
from gs_video_report.batch.parts import StoredParts
from gs_video_report.batch.pipeline import VideoPipeline, rebuild
from gs_video_report.errors import ApiError, GsVideoReportError, TransientError
from gs_video_report.models import CallRecord, Generation, TaskStage
from gs_video_report.services.gemini.batches import BatchClient, read_line
from gs_video_report.services.gemini.service import GeminiService, VideoRef
from gs_video_report.storage.checkpoint import TaskRow
from gs_video_report.storage.jobs import JobRow, JobStore

if TYPE_CHECKING:
    from gs_video_report.batch.workers import WorkerPool

logger = logging.getLogger(__name__)


class Collector:
    def __init__(self, pool: WorkerPool, jobs: JobStore) -> None:
        self.pool = pool
        self.jobs = jobs

    async def collect(self, job: JobRow, client: BatchClient) -> None:
        results = await self._results(job, client)
        for key, task_id in (await self.jobs.lines(job.id)).items():
            task = await self.pool.store.task(task_id)
            if task.stage is not TaskStage.QUEUED:
                continue  # collected before a crash (or cancelled): nothing twice
            await self.pool._check_lease()
            line = results.get(key)
            if line is None:
                missing = TransientError(f"batch job {job.state}: no answer for this request")
                await self._failed(task, missing, None)
                continue
            outcome = read_line(line, model=job.model, validate=self._validator(task))
            await self._record(task, job, outcome)
            if isinstance(outcome, Generation):
                await self._keep(task, outcome, client)
            else:
                await self._failed(task, outcome, outcome)
        await self.jobs.collected(job.id, self.pool.clock.time())
        pipeline = self._pipeline(client)
        for name in (job.input_file, job.results_file):
            if name:
                await pipeline.delete_quietly(name)

    async def _results(self, job: JobRow, client: BatchClient) -> dict[str, dict[str, Any]]:
        if not job.results_file:
            return {}
        try:
            return await client.results(job.results_file)
        except ApiError as exc:
            if exc.status != 404:
                raise  # asked again at the next poll
            # gone (deleted, or another simulator's): every request goes into a new job
            logger.warning(
                "batch job %s: its results file is gone (%s); its requests go into a new job",
                job.display_name,
                exc,
            )
            return {}

    def _validator(self, task: TaskRow):  # type: ignore[no-untyped-def]
        return self.pool.registry.get(task.template).validate_answer

    def _pipeline(self, client: BatchClient) -> VideoPipeline:
        return VideoPipeline(client.service, self.pool.settings, model="", clock=self.pool.clock)

    async def _record(
        self, task: TaskRow, job: JobRow, outcome: Generation | GsVideoReportError
    ) -> None:
        """The line as the task's generate call: its usage is billed (a rejected answer
        too), at batch prices."""
        if isinstance(outcome, Generation):
            call = CallRecord(
                "generate", job.model, 0.0, True, outcome.usage, outcome.finish_reason
            )
        else:
            call = CallRecord(
                "generate",
                job.model,
                0.0,
                False,
                error_kind=outcome.kind,
                error_message=str(outcome),
            )
        await self.pool.store.record_attempts(
            task.id, [call], key_fingerprint=job.key_fingerprint, now=self.pool.clock.time()
        )
        if call.usage is not None:
            self.pool.budget.budget.spend(self.pool.prices.of_usage(job.model, call.usage))

    async def _keep(self, task: TaskRow, generation: Generation, client: BatchClient) -> None:
        pool = self.pool
        video = rebuild(task, pool.registry, datetime.fromtimestamp(pool.clock.time(), UTC))
        view = ev.TaskView(task.id, task.seq, task.display_name, task.duration_s)
        notes = Adjustments.from_json(task.adjustments).notes
        generation = Generation(
            data=generation.data,
            usage=generation.usage,
            finish_reason=generation.finish_reason,
            model=generation.model,
            model_version=generation.model_version,
            latency_s=0.0,
            notes=notes,
        )
        calls = [CallRecord("generate", task.model, 0.0, True, generation.usage, "STOP")]
        pool.writer.answer(video, generation, calls, task.done_key)  # the paid answer first
        await StoredParts(pool.store, task.id, pool.clock).keep(generation, video.duration_s or 0)
        await pool.store.set_stage(task.id, TaskStage.WRITING, pool.clock.time())
        pool.writer.lesson(video, generation)
        cost = pool.prices.of_usage(task.model, generation.usage)
        await pool.store.complete(task.id, generation.usage, cost, pool.clock.time())
        pool.budget.release(task.id)
        pool.estimates.observe(video, generation.usage)
        pool.reporter.emit(ev.TaskDone(view, cost))
        await release_upload(pool, task, client.service)  # once no other task needs it

    async def _failed(
        self, task: TaskRow, error: BaseException, answer: GsVideoReportError | None
    ) -> None:
        """The same ``decide`` as a live call's failure; whatever it says short of a
        failure, the request goes into a later job."""
        pool = self.pool
        now = pool.clock.time()
        pool.budget.release(task.id)
        view = ev.TaskView(task.id, task.seq, task.display_name, task.duration_s)
        base = pool.registry.get(task.template).generation
        situation = Situation(
            now,
            task.attempts,
            task.model,
            adjustments=Adjustments.from_json(task.adjustments),
            base=base,
        )
        outcome = decide(error, situation, pool.retry)
        kind = error.kind if isinstance(error, GsVideoReportError) else "InternalError"
        match outcome:
            case Adapt(adjustments=changed):
                await pool.store.set_adjustments(task.id, changed.to_json(), now)
                await pool.store.requeue(task.id, now)
                pool.reporter.emit(ev.TaskRequeued(view, None, changed.notes[-1]))
            case RetryAt(reupload=reupload):
                if reupload:
                    await pool.store.clear_upload(task.id, now)
                # no wait: the next job is hours anyway
                await pool.store.schedule_retry(
                    task.id, at=now, kind=kind, message=str(error), now=now
                )
                pool.reporter.emit(ev.RetryScheduled(view, now, 0.0, str(error)))
            case Fail(kind=fail_kind, message=message):
                await pool.store.fail(task.id, fail_kind, message, now)
                pool.reporter.emit(ev.TaskFailed(view, fail_kind, message))
            case _:
                await pool.store.requeue(task.id, now)
                pool.reporter.emit(ev.TaskRequeued(view, None, str(error)))
        if isinstance(error, ApiError) and answer is None:
            logger.info("%s: %s", task.display_name, error)


async def release_upload(pool: WorkerPool, task: TaskRow, service: GeminiService) -> None:
    """After the task's "done": its upload deleted if no unfinished task (a copy or
    another template still waiting in a job) uses it, else only let go of — so an
    upload is never deleted under a job that still needs it."""
    if task.upload_name:
        ref = VideoRef(task.upload_uri or "", task.upload_mime, task.upload_name)
        async with pool.uploader.one_video(task):
            await pool.uploader.release(task, ref, service)
