"""WorkerPool: asyncio workers pull tasks from the task table and run them stage by
stage, committing each stage before the next starts.

- generation has its own cap (``parallel`` calls in flight) and is paced by the
  APILimiter; uploads have theirs (``Uploader``); other workers upload and wait for
  processing ahead of generation, as far ahead as ``Lookahead`` measures is needed;
- every failure goes through ``decide`` and the pool applies the outcome (``_apply``):
  retries are rows (``schedule_retry``), so they survive restarts;
- a task holds nothing after it ends: one ``finally`` gives back its budget
  reservation, its key and its lookahead place, whatever happened; an exception the code
  did not expect fails that task alone, with a one-line reason;
- on a stop (Ctrl-C, quota, budget) a task that has not started its generate call goes
  back to the queue, its upload kept;
- a lost network holds every call and fails no video (``batch.network``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from gs_video_report.batch import events as ev
from gs_video_report.batch.adapt import MAX_OUTPUT_CEILING, Adjustments
from gs_video_report.batch.caching import CacheKeeper, sweep_caches, task_cost
from gs_video_report.batch.calls import CallLog
from gs_video_report.batch.cost import BudgetExceeded, BudgetGate, Prices
from gs_video_report.batch.decide import (
    call_timeout,
)
from gs_video_report.batch.estimates import Estimates
from gs_video_report.batch.idle import Idlers
from gs_video_report.batch.jobs import JobRunner
from gs_video_report.batch.keyrouting import KeyRouter
from gs_video_report.batch.limiter import APILimiter, Bucket
from gs_video_report.batch.lookahead import GENERATING, PREPARING, READY, Lookahead
from gs_video_report.batch.network import Network
from gs_video_report.batch.outcomes import Outcomes
from gs_video_report.batch.parts import StoredParts
from gs_video_report.batch.pipeline import LessonWriter, PreparedVideo, VideoPipeline, rebuild
from gs_video_report.batch.uploads import Uploader
from gs_video_report.clock import Clock
from gs_video_report.config import Settings
from gs_video_report.errors import GsVideoReportError, OutputError, StorageError
from gs_video_report.models import Generation, GenerationSettings, LessonFormat, StopReason
from gs_video_report.retry import RetryPolicy
from gs_video_report.services.gemini import GeminiService, VideoRef
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.storage.checkpoint import CheckpointManager, TaskRow, TaskStage

logger = logging.getLogger(__name__)

_IDLE_POLL_S = 1.0
FLEX_TIMEOUT_FACTOR = 3.0  # Flex answers in 1-15 minutes (the docs' target)


class _Stopping(Exception):
    """The pool is stopping: put the task back before its next paid call."""


class _LeaseLost(Exception):
    """Another process took the batch over: touch nothing of it any more."""


def view_of(task: TaskRow) -> ev.TaskView:
    return ev.TaskView(task.id, task.seq, task.display_name, task.duration_s)


@dataclass(frozen=True)
class PoolOptions:
    parallel: int = 4
    max_uploads: int = 2
    simulated: bool = False
    timeout_s: float | None = None  # per video generate call; None = api.request_timeout
    reuse: bool = True  # a lesson already paid for (by any task) is reused; False: --force
    lease_ttl_s: float = 30.0
    formats: tuple[LessonFormat, ...] = (LessonFormat.MD,)  # written beside the sidecar
    mode: str = "live"  # RunMode; batch: requests go into Gemini Batch jobs (batch.jobs)


class WorkerPool:
    def __init__(
        self,
        *,
        batch_id: str,
        store: CheckpointManager,
        services: Mapping[str, GeminiService],
        router: KeyRouter,
        settings: Settings,
        registry: TemplateRegistry,
        limiter: APILimiter,
        retry: RetryPolicy,
        options: PoolOptions,
        clock: Clock,
        budget: BudgetGate,
        owner: str,
        reporter: ev.Reporter | None = None,
    ) -> None:
        self.batch_id = batch_id
        self.owner = owner  # the batch's lease holder: this process
        self.store = store
        self.router = router
        self.settings = settings
        self.registry = registry
        self.limiter = limiter
        self.retry = retry
        self.options = options
        self.clock = clock
        self.budget = budget
        self.reporter: ev.Reporter = reporter or ev.NullReporter()
        self.prices = Prices(settings.prices, discounted=options.mode != "live")
        self.estimates = Estimates(registry, self.prices, clock)
        budget.calibrated = lambda: self.estimates.calibrated
        self.writer = LessonWriter(clock, options.simulated, options.formats)
        self.lease_lost = False
        self.stop_reason: StopReason | None = None
        self.stop_message: str | None = None
        self.aborted = False
        self.network = Network(
            clock,
            self.reporter,
            wait_s=settings.api.offline_wait,
            probe=self._reachable,
            on_give_up=lambda message: self.request_stop(StopReason.OFFLINE, message),
        )
        # by key fingerprint; every call waits at the network's gate while it is down
        self.services = {fp: s.gated(self.network.ready) for fp, s in services.items()}
        self._active = 0
        self._drained = False  # a claim found nothing pending (until a task ends)
        self._idle = Idlers(clock)
        self._generating = asyncio.Semaphore(options.parallel)
        self._lookahead = Lookahead(options.parallel, options.max_uploads)
        self.caches = CacheKeeper(store, clock, self.prices, settings)
        self.uploader = Uploader(
            store,
            clock,
            self.reporter,
            max_uploads=options.max_uploads,
            prepared=self._lookahead.prepared,
            before_upload=self._check_lease,
        )
        self._workers: list[asyncio.Task[None]] = []
        self.jobs: JobRunner | None = JobRunner(self) if options.mode == "batch" else None
        self._sent_at: dict[int, float] = {}  # task -> when its generate call was let through
        self.outcomes = Outcomes(
            store,
            router,
            limiter,
            self.network,
            self.writer,
            retry,
            clock,
            self.reporter,
            self.request_stop,
            self._sent_at,
            budget,
            self.prices,
        )

    # -- control -----------------------------------------------------------------
    def request_stop(self, reason: StopReason, message: str | None = None) -> None:
        """Stop claiming new work; in-flight tasks finish their current call."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message
            self._lookahead.close()
            self.budget.close()
            self.network.close()
            logger.warning("stopping batch %s: %s", self.batch_id, message or reason)
            self.reporter.emit(ev.BatchStopping(reason, message or reason.value))

    def abort(self, reason: StopReason, message: str | None = None) -> None:
        """Stop now, calls in flight included (``cancel`` from another terminal). Their
        tasks are left mid-stage for the caller to put back (``recover``)."""
        self.request_stop(reason, message)
        self.aborted = True
        for worker in self._workers:
            worker.cancel()

    def lose_lease(self) -> None:
        if not self.lease_lost:
            self.lease_lost = True
            self.request_stop(StopReason.LEASE_LOST, "another process took over this batch")

    async def _check_lease(self) -> None:
        """Before every paid call, and before writing what a call brought back: still
        ours? A process paused past its lease (SIGSTOP, a closed laptop) may have been
        taken over; then it stops, paying and writing nothing more. A `cancel` from
        another terminal is noticed here too, before the next call starts."""
        if self.lease_lost:
            raise _LeaseLost
        held, cancel = await self.store.lease_state(
            self.batch_id, self.owner, self.clock.time(), self.options.lease_ttl_s
        )
        if not held:
            self.lose_lease()
            raise _LeaseLost
        if cancel:
            self.abort(StopReason.CANCELLED, "cancelled from another terminal")
            raise _Stopping

    async def _still_ours(self) -> bool:
        """Before writing a task's outcome: a call that failed while the process was
        paused past its lease must not put back a task the new owner has finished."""
        if not self.lease_lost:
            held, _ = await self.store.lease_state(
                self.batch_id, self.owner, self.clock.time(), self.options.lease_ttl_s
            )
            if not held:
                self.lose_lease()
        return not self.lease_lost

    async def _reachable(self) -> bool:
        # any key will do: a key's own trouble (401, 429) is still an answer
        return await next(iter(self.services.values())).reachable()

    async def run(self) -> None:
        # Enough workers for every generate slot plus the lookahead's ceiling; the
        # lookahead decides how many of them hold a task.
        count = self.options.parallel + self._lookahead.ceiling
        await sweep_caches(self.store, self.batch_id, self.services, self.clock.time())
        self._workers = [asyncio.create_task(self._worker(n)) for n in range(count)]
        if self.jobs is not None:
            self._workers.append(asyncio.create_task(self._guarded(self.jobs.run())))
        try:
            results = await asyncio.gather(*self._workers, return_exceptions=True)
            if not self.lease_lost:
                await self.router.save(now=True)  # the successes counted since the last save
        finally:
            for worker in self._workers:
                worker.cancel()
            await self.network.aclose()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _worker(self, number: int) -> None:
        await self._guarded(self._work(number))

    async def _guarded(self, work: Awaitable[None]) -> None:
        try:
            await work
        except _LeaseLost:
            return
        except (sqlite3.Error, StorageError) as exc:
            # The state database failed (a full disk, a deleted file): nothing can be
            # recorded any more, so nothing more is paid for. Answers already paid for are
            # in their sidecars; a rerun finds them.
            self.abort(StopReason.INTERRUPTED, f"the state database failed: {exc}")
            raise StorageError(f"the state database failed: {exc}") from exc

    async def _work(self, number: int) -> None:
        placeholder = -1 - number  # holds the worker's place in the window while claiming
        while self.stop_reason is None:
            if self._drained and self._active > 0:
                # Nothing to claim until a task ends (a retry, a requeue): one worker's
                # empty claim said so. The others wait instead of each asking again —
                # hundreds of workers at high --parallel, whose statements queued ahead
                # of the last tasks' own on the database thread.
                await self._idle.wait(_IDLE_POLL_S)
                continue
            await self._lookahead.enter(placeholder)
            if self.stop_reason is not None:
                self._lookahead.move(placeholder, None)
                break
            try:
                task = await self.store.claim_next(self.batch_id, self.clock.time(), self.owner)
            finally:
                self._lookahead.move(placeholder, None)
            if task is None:
                next_retry = await self.store.next_retry_at(self.batch_id)
                if next_retry is None and self._active == 0:
                    if self.jobs is not None and await self.jobs.busy():
                        await self.clock.sleep(_IDLE_POLL_S)  # answers may requeue work
                        continue
                    now = self.clock.time()
                    if not await self.store.blocked_pending(self.batch_id, now, self.owner):
                        return  # nothing pending, nothing running: the batch is through
                    next_retry = self.clock.time() + _IDLE_POLL_S  # the same work runs elsewhere
                self._drained = next_retry is None
                wait = _IDLE_POLL_S if next_retry is None else next_retry - self.clock.time()
                await self._idle.wait(max(0.01, min(wait, _IDLE_POLL_S)))
                continue
            self._active += 1
            self._lookahead.move(task.id, PREPARING, task.size_bytes)
            try:
                await self._run_task(task)
            finally:
                self._active -= 1
                self._drained = False  # it may have left a retry or put itself back
                self._lookahead.move(task.id, None)
                if self._active == 0:
                    self._idle.wake_all()  # the batch may be through: they look now

    # -- one task -----------------------------------------------------------------
    def _show(self, view: ev.TaskView, activity: ev.Activity) -> None:
        self.reporter.emit(ev.TaskActivity(view, activity))

    async def _run_task(self, task: TaskRow) -> None:
        view = view_of(task)
        log = CallLog(task.display_name)
        try:
            await self._attempt(task, view, log)
        except _LeaseLost:
            return  # the task is the other process's now: no state written
        except _Stopping:
            if await self._still_ours():
                await self.outcomes.requeue(task, view, None, "stopping")
        except (sqlite3.Error, StorageError):
            raise  # not this task's failure: the pool stops
        except Exception as exc:
            if not isinstance(exc, GsVideoReportError | BudgetExceeded):
                logger.exception("%s: unexpected error", task.display_name)
            await self.outcomes.record_calls(task, log)
            if await self._still_ours():  # else the task is the other process's now
                await self.outcomes.failed(task, view, exc)
        finally:
            # Given back whatever happened, before the next await: once re-queued, another
            # worker may claim the task while this one still writes the attempt log.
            self.budget.release(task.id)
            held = self.router.unassign(task.id)
            self._sent_at.pop(task.id, None)
            await self.outcomes.record_calls(task, log, held)
            await self.store.release_claim(task.id, self.owner)

    async def _attempt(self, task: TaskRow, view: ev.TaskView, log: CallLog) -> None:
        video = rebuild(task, self.registry, datetime.fromtimestamp(self.clock.time(), UTC))
        if self.options.reuse and await self.outcomes.reuse(task, view, video):
            return

        def estimate() -> float:
            tokens_in, tokens_out = self.estimates.tokens(video)
            return self.prices.usd(task.model, tokens_in, tokens_out) or 0.0

        # Reserved before the (free) upload: a video the budget cannot pay for is not
        # uploaded either.
        await self._reserve(task, view, estimate)
        async with self.uploader.one_video(task):
            task = await self.store.task(task.id)  # another template's task may have uploaded
            task, key = await self.router.route(
                task, log, waiting=lambda: self._show(view, ev.Activity.WAITING_FOR_KEY)
            )
            if self.stop_reason is not None:
                raise _Stopping
            service = self.services[key.fingerprint].recording(log.record)
            parts = StoredParts(self.store, task.id, self.clock)
            stored = await parts.load()
            cache_usd = 0.0
            if stored and all(part.done for part in stored):
                ref = VideoRef("", None)  # answered before a crash: no upload, no call
            else:
                ref = await self.uploader.video_ref(task, view, video, service)
                ref, cache_usd = await self.caches.attach(task, video, ref, service)
        await self.outcomes.record_calls(task, log)
        if self.jobs is not None and ref.file_name:
            # Batch Mode: the request goes into a job (batch.jobs), the upload stays
            await self._check_lease()
            await self.store.set_stage(
                task.id, TaskStage.QUEUED, self.clock.time(), owner=self.owner
            )
            self._show(view, ev.Activity.IN_BATCH_JOB)
            return
        self._lookahead.move(task.id, READY)
        self._show(view, ev.Activity.WAITING_FOR_GENERATE)
        bucket = self.limiter.bucket(key.project, task.model)
        pipeline = VideoPipeline(
            service,
            self.settings,
            model=task.model,
            clock=self.clock,
            simulated=self.options.simulated,
        )
        generation = await self._generate(task, view, video, ref, pipeline, bucket, parts, log)
        pace = bucket.pace_rpm
        self._lookahead.rate_limit_per_s = None if pace is None else pace / 60
        await self._check_lease()  # what the call brought back is written only if still ours
        bucket.succeeded()
        self.router.succeeded(key)
        self.estimates.observe(video, generation.usage)
        self.budget.release(task.id)  # waiters go on at the corrected price
        # The paid answer goes to both its sidecar and the state database before anything
        # else: whatever stops the rest (a crash, a full disk on either side, a lost
        # database), the next run writes the lesson from one of them without a new call.
        # Both files are written off the event loop (their fsyncs wait for the disk, the
        # other tasks' calls need not); awaited in order, so the answer is on disk first.
        try:
            calls = list(log.stored)
            await asyncio.to_thread(self.writer.answer, video, generation, calls, task.done_key)
            unwritten = None
        except OutputError as exc:
            unwritten = exc
        await parts.keep(generation, video.duration_s or 0.0)
        if unwritten is not None:
            raise unwritten
        await self.store.set_stage(task.id, TaskStage.WRITING, self.clock.time(), owner=self.owner)
        self._show(view, ev.Activity.WRITING)
        await asyncio.to_thread(self.writer.lesson, video, generation)
        cost, saving = task_cost(self.prices, task.model, generation.usage, cache_usd)
        await self.store.complete(
            task.id, generation.usage, cost, self.clock.time(), saving_usd=saving
        )
        self.reporter.emit(ev.TaskDone(view, cost))
        if ref.file_name:
            await self._check_lease()  # another owner may be using the upload now
            async with self.uploader.one_video(task):  # one of its tasks at a time deletes
                await self.caches.release(task, ref, service)
                await self.uploader.release(task, ref, service)

    async def _reserve(
        self, task: TaskRow, view: ev.TaskView, estimate: Callable[[], float]
    ) -> None:
        waiting = lambda: self._show(view, ev.Activity.WAITING_FOR_BUDGET)  # noqa: E731
        if not await self.budget.reserve(task.id, estimate, waiting=waiting):
            raise _Stopping

    async def _generate(
        self,
        task: TaskRow,
        view: ev.TaskView,
        video: PreparedVideo,
        ref: VideoRef,
        pipeline: VideoPipeline,
        bucket: Bucket,
        parts: StoredParts,
        log: CallLog,
    ) -> Generation:
        tokens_in, tokens_out = self.estimates.tokens(video)
        sent: list[float] = []

        async def before_call(share: float, call: GenerationSettings, adapted: bool) -> None:
            if sent:  # a later call (an adaptation, a part) reserves its own estimate
                await self.outcomes.record_calls(task, log)
                self.budget.release(task.id)
                # after MAX_TOKENS the answer may fill its new budget: reserve all of it
                out = (call.max_output_tokens or MAX_OUTPUT_CEILING) if adapted else tokens_out
                usd = self.prices.usd(task.model, round(tokens_in * share), out) or 0.0
                await self._reserve(task, view, lambda: usd)
            # every call waits for the limiter, then checks the batch is still ours
            self._sent_at[task.id] = await bucket.acquire(tokens_in * share)
            await self._check_lease()
            sent.append(self.clock.time())

        async def adjusted(changed: Adjustments) -> None:
            # stored before the call it changes
            await self.store.set_adjustments(task.id, changed.to_json(), self.clock.time())
            log.note(changed.notes[-1])
            await self.outcomes.record_calls(task, log)

        try:
            # The slot is held for the call only: bookkeeping happens after it frees.
            async with self._generating:
                if self.stop_reason is not None:
                    raise _Stopping  # uploaded, not paid for: the resume reuses the upload
                self._lookahead.move(task.id, GENERATING)
                # No lease check of its own here (one round trip less while the slot is
                # held): the stage is written only while the task is still claimed by us,
                # and ``before_call`` checks the lease (and a cancel) before the paid call.
                await self.store.set_stage(
                    task.id, TaskStage.GENERATING, self.clock.time(), owner=self.owner
                )
                self._show(view, ev.Activity.GENERATING)
                base = self.options.timeout_s or self.settings.api.request_timeout
                if self.options.mode == "flex":
                    base *= FLEX_TIMEOUT_FACTOR  # best effort: minutes, not seconds
                generation = await pipeline.lesson(
                    video,
                    ref,
                    store=parts,
                    note=log.note,
                    timeout_s=call_timeout(base, task.attempts, task.last_error_kind),
                    adjustments=Adjustments.from_json(task.adjustments),
                    on_adjust=adjusted,
                    before_call=before_call,
                )
                if sent:
                    self._lookahead.generated(self.clock.time() - sent[0])
                return generation
        finally:
            # Spent now; the reservation is given back once the real usage has corrected
            # the estimates (or when the task ends): others reserve at the corrected price.
            await self.outcomes.record_calls(task, log)
