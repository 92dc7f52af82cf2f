"""Batch Mode (``--mode batch``): the pool's workers upload as in live mode and leave each
task ``queued`` with its upload ACTIVE; ``JobRunner`` groups queued requests per (upload
key, model) into Gemini Batch jobs, waits for them (polling 30 s, backing off to 60 s on
the injected clock) and collects their answers through ``batch.collect``.

Exactly once across crashes: a job's row (display name ``gsvr-<batch>-<seq>``) and its
tasks are committed before anything is sent, its name the moment the API returns it,
and before every create the API is asked for a job with that display name, which is
adopted if found. A SIGKILL at any moment therefore never makes two jobs for the same
requests. The process may stop while jobs run; ``resume`` collects them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gs_video_report.batch.adapt import Adjustments
from gs_video_report.batch.collect import Collector, release_upload
from gs_video_report.batch.cost import BudgetExceeded
from gs_video_report.batch.events import JobStatus, TaskView
from gs_video_report.batch.pipeline import rebuild
from gs_video_report.errors import ApiError, StorageError
from gs_video_report.models import StopReason, TaskStage
from gs_video_report.services.gemini.batches import BatchClient, JobInfo
from gs_video_report.services.gemini.service import VideoRef
from gs_video_report.storage.checkpoint import TaskRow
from gs_video_report.storage.jobs import JobRow, JobStore

if TYPE_CHECKING:
    from gs_video_report.batch.workers import WorkerPool


logger = logging.getLogger(__name__)

MAX_JOB_REQUESTS = 500  # well inside 24 h and the 2 GB input file
SIMULATED_POLL_S = 0.5  # --simulate: its jobs end at once unless a test says otherwise
STILL_RUNNING = "job(s) keep running at Google; `resume` collects them"
GONE = "NOT_FOUND"  # a job Google no longer knows: ended, none of its requests answered
AGAIN = "its requests go into a new job"


class JobRunner:
    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.jobs = JobStore(pool.store)
        self.collector = Collector(pool, self.jobs)
        self.batch_id = pool.batch_id
        first = pool.settings.run.batch_poll
        self._first_poll_s = min(first, SIMULATED_POLL_S) if pool.options.simulated else first
        self._poll_s = self._first_poll_s

    def client(self, fingerprint: str) -> BatchClient:
        return BatchClient(self.pool.services[fingerprint])

    async def busy(self) -> bool:
        """Work the pool's workers must wait for: queued requests, jobs not collected."""
        counts = await self.pool.store.counts(self.batch_id)
        if counts.get(TaskStage.QUEUED, 0):
            return True
        return any(j.collected_at is None for j in await self.jobs.jobs(self.batch_id))

    async def run(self) -> None:
        """Until nothing is queued, running or pending, or the pool stops. What this did
        not expect stops the batch (resumable: every job is in the state database), since
        the workers wait for it."""
        try:
            await self._run()
        except Exception as exc:
            if self.pool.lease_lost or isinstance(exc, sqlite3.Error | StorageError):
                raise  # the pool's own handling: the batch is another's, or the db failed
            logger.exception("batch jobs: unexpected error")
            self.pool.request_stop(StopReason.INTERRUPTED, f"internal error in batch jobs: {exc}")

    async def _run(self) -> None:
        await self._reserve_open()
        while self._going():
            for job in await self.jobs.jobs(self.batch_id):
                if job.collected_at is not None:
                    continue
                await self._step(job)
            if not self._going():
                break
            if self.pool.stop_reason is StopReason.BUDGET:
                # No new job; those planned before the stop were reserved at planning,
                # so they are submitted, waited for and collected: a paid answer is
                # written and counted as spent, never left at Google.
                if all(j.collected_at is not None for j in await self.jobs.jobs(self.batch_id)):
                    break
                await self._wait(backoff=True)
                continue
            counts = await self.pool.store.counts(self.batch_id)
            preparing = self.pool._active > 0 or counts.get(TaskStage.PENDING, 0) > 0
            queued = counts.get(TaskStage.QUEUED, 0)
            ready = queued and (not preparing or queued >= MAX_JOB_REQUESTS)
            if ready and await self._plan_jobs():
                continue  # a new job: submitted at once. Else what is queued is in jobs
                # already (or waits for a copy's answer): polled after the sleep, never
                # in a busy loop
            if not preparing and not await self.busy():
                return
            await self._wait(backoff=not preparing)
        await self._say_still_running()

    def _going(self) -> bool:
        return self.pool.stop_reason in (None, StopReason.BUDGET)

    async def _wait(self, *, backoff: bool) -> None:
        """One poll interval: run.batch_poll, backing off to twice that."""
        await self.pool.clock.sleep(self._poll_s)
        if backoff:
            self._poll_s = min(2 * self._first_poll_s, self._poll_s * 1.25)

    async def cancel_open(self) -> None:
        """``cancel``: the batch's jobs still running at Google are cancelled there (their
        requests are cancelled tasks now; a resume submits them again in a new job)."""
        for job in await self.jobs.jobs(self.batch_id):
            if job.collected_at is not None:
                continue
            if job.name and not job.ended:
                try:
                    await self.client(job.key_fingerprint).cancel(job.name)
                except ApiError as exc:
                    logger.warning("could not cancel %s: %s", job.name, exc)
            await self.jobs.set_state(job.id, "CANCELLED", self.pool.clock.time())
            await self.jobs.collected(job.id, self.pool.clock.time())

    async def _say_still_running(self) -> None:
        open_jobs = [j for j in await self.jobs.jobs(self.batch_id) if not j.ended]
        if open_jobs and self.pool.stop_reason in (StopReason.INTERRUPTED, None):
            self.pool.stop_message = f"{len(open_jobs)} {STILL_RUNNING}"

    async def _reserve_open(self) -> None:
        """A resume holds the estimates of the jobs still running against the limit."""
        in_jobs = await self.jobs.tasks_in_open_jobs(self.batch_id)
        for task in await self.pool.store.tasks(self.batch_id):
            if task.id in in_jobs and task.stage is TaskStage.QUEUED:
                self.pool.budget.budget._in_flight[task.id] = self._estimate(task)

    def _estimate(self, task: TaskRow) -> float:
        video = rebuild(task, self.pool.registry, datetime.now(UTC))
        tokens_in, tokens_out = self.pool.estimates.tokens(video)
        return self.pool.prices.usd(task.model, tokens_in, tokens_out) or 0.0

    # -- planning and submitting -----------------------------------------------------
    async def _plan_jobs(self) -> bool:
        """Queued requests outside any job into new jobs; True if one was planned or a
        copy finished. A request whose work (done key) is in a job already — a
        byte-identical copy — is not sent again: it waits for that answer and then takes
        it with no request (cost 0, ``same_as``), as a live copy does."""
        in_jobs = await self.jobs.tasks_in_open_jobs(self.batch_id)
        tasks = await self.pool.store.tasks(self.batch_id)
        asked = {task.done_key for task in tasks if task.id in in_jobs}
        groups: dict[tuple[str, str], list[TaskRow]] = defaultdict(list)
        progressed = False
        for task in tasks:
            if task.stage is not TaskStage.QUEUED or task.id in in_jobs or not task.upload_key:
                continue
            if task.done_key in asked:
                continue  # the same work twice: the second waits for the first's answer
            if await self._take_answer(task):
                progressed = True
                continue
            asked.add(task.done_key)
            groups[(task.upload_key, task.model)].append(task)
        for (fingerprint, model), group in groups.items():
            for start in range(0, len(group), MAX_JOB_REQUESTS):
                chunk = group[start : start + MAX_JOB_REQUESTS]
                progressed = await self._plan_one(fingerprint, model, chunk) or progressed
                if self.pool.stop_reason is not None:
                    return progressed
        return progressed

    async def _take_answer(self, task: TaskRow) -> bool:
        """The task's work answered already (a copy's job collected): its lesson written
        from that answer, no request; its hold on the shared upload let go."""
        pool = self.pool
        if not pool.options.reuse:
            return False  # --force: every task is asked, as in live mode
        view = TaskView(task.id, task.seq, task.display_name, task.duration_s)
        video = rebuild(task, pool.registry, datetime.fromtimestamp(pool.clock.time(), UTC))
        if not await pool.outcomes.reuse(task, view, video):
            return False
        await release_upload(pool, task, pool.services[task.upload_key or ""])
        return True

    async def _plan_one(self, fingerprint: str, model: str, tasks: list[TaskRow]) -> bool:
        lines: list[tuple[int, str]] = []
        total = 0.0
        for task in tasks:
            estimate = self._estimate(task)
            try:  # reserved at submission: the limit holds for answers that come later
                self.pool.budget.budget.reserve(task.id, estimate)
            except BudgetExceeded as exc:
                self.pool.request_stop(StopReason.BUDGET, str(exc))
                break
            lines.append((task.id, task.done_key))
            total += estimate
        if not lines:
            return False
        await self.pool._check_lease()
        await self.jobs.plan(
            self.batch_id,
            key_fingerprint=fingerprint,
            model=model,
            lines=lines,
            estimate_usd=total,
            now=self.pool.clock.time(),
        )
        return True

    async def _step(self, job: JobRow) -> None:
        try:
            if job.name is None:
                await self._submit(job)
            elif not job.ended:
                await self._poll(job)
            else:
                await self.collector.collect(job, self.client(job.key_fingerprint))
        except ApiError as exc:
            # a failed create, poll or download is asked again at the next poll: the job's
            # row says where it got to (a create is never repeated without a look first)
            logger.warning("batch job %s: %s", job.display_name, exc)

    async def _submit(self, job: JobRow) -> None:
        client = self.client(job.key_fingerprint)
        found = await client.find(job.display_name)  # created before a crash?
        if found is None:
            input_file = job.input_file
            if input_file is None:
                lines = await self._lines(job, client)
                await self.pool._check_lease()
                uploaded = await client.upload_lines(lines, display_name=job.display_name)
                input_file = uploaded.name
                await self.jobs.set_input(job.id, input_file)
            await self.pool._check_lease()
            found = await client.create(job.model, input_file, job.display_name)
        await self.jobs.named(job.id, found.name, found.state, self.pool.clock.time())
        self.pool.reporter.emit(_job_event(job, found, 0.0))
        if found.ended:
            await self.jobs.set_state(
                job.id, found.state, self.pool.clock.time(), results_file=found.results_file
            )

    async def _lines(self, job: JobRow, client: BatchClient) -> list[dict[str, object]]:
        keys = await self.jobs.lines(job.id)
        lines = []
        now = datetime.fromtimestamp(self.pool.clock.time(), UTC)
        for key, task_id in keys.items():
            task = await self.pool.store.task(task_id)
            video = rebuild(task, self.pool.registry, now)
            adjustments = Adjustments.from_json(task.adjustments)
            ref = VideoRef(task.upload_uri or "", task.upload_mime, task.upload_name)
            lines.append(
                client.request_line(
                    key,
                    video=ref,
                    prompt=adjustments.prompt(video.prompt),
                    schema=video.template.schema,
                    settings=adjustments.settings(video.template.generation),
                    system_instruction=video.system_instruction,
                )
            )
        return lines

    async def _poll(self, job: JobRow) -> None:
        assert job.name is not None
        try:
            info = await self.client(job.key_fingerprint).get(job.name)
        except ApiError as exc:
            if exc.status != 404:
                raise
            # deleted at Google, or never there (another simulator): ended for good, so
            # the collection sends its requests again in a new job — not asked forever
            logger.warning("batch job %s is gone at Google (%s); %s", job.display_name, exc, AGAIN)
            await self.jobs.set_state(job.id, GONE, self.pool.clock.time())
            return
        now = self.pool.clock.time()
        if info.state != job.state or info.ended:
            await self.jobs.set_state(job.id, info.state, now, results_file=info.results_file)
        self.pool.reporter.emit(_job_event(job, info, now - (job.submitted_at or now)))
        if info.ended:
            self._poll_s = self._first_poll_s


def _job_event(job: JobRow, info: JobInfo, waited_s: float) -> JobStatus:
    return JobStatus(job.display_name, info.name, info.state, waited_s)
