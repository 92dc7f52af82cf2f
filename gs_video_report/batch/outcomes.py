"""The worker's side of ``decide``: what the pool does with a task once its attempt is
over — apply a failure's outcome (a stored retry, a pause or park of a bucket, a stop,
a failure with its one-line reason), put it back in the queue, or finish it from an
answer already paid for (``batch.reuse``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from gs_video_report.batch import events as ev
from gs_video_report.batch.calls import CallLog
from gs_video_report.batch.cost import BudgetGate, Prices
from gs_video_report.batch.decide import (
    Fail,
    Offline,
    ParkBucket,
    PauseBucket,
    Requeue,
    RetryAt,
    Situation,
    StopBatch,
    decide,
)
from gs_video_report.batch.keyrouting import KeyRouter
from gs_video_report.batch.limiter import APILimiter
from gs_video_report.batch.network import Network
from gs_video_report.batch.pipeline import LessonWriter, PreparedVideo
from gs_video_report.batch.reuse import find_done
from gs_video_report.batch.uploads import check_unchanged
from gs_video_report.clock import Clock
from gs_video_report.config import PoolKey
from gs_video_report.errors import GsVideoReportError
from gs_video_report.models import Generation, StopReason
from gs_video_report.retry import RetryPolicy
from gs_video_report.storage.checkpoint import CheckpointManager, TaskRow

logger = logging.getLogger(__name__)


@dataclass
class Outcomes:
    store: CheckpointManager
    router: KeyRouter
    limiter: APILimiter
    network: Network
    writer: LessonWriter
    retry: RetryPolicy
    clock: Clock
    reporter: ev.Reporter
    request_stop: Callable[[StopReason, str], None]
    sent_at: dict[int, float]  # task -> when its generate call was let through
    budget: BudgetGate
    prices: Prices

    async def record_calls(self, task: TaskRow, log: CallLog, key: PoolKey | None = None) -> None:
        """The task's calls since the last time: paid for (the budget), reported, and in
        the attempts table with the key they ran on."""
        calls = log.take()
        if not calls:
            return
        view = ev.TaskView(task.id, task.seq, task.display_name, task.duration_s)
        for call in calls:
            if call.usage is not None:
                self.budget.budget.spend(self.prices.of_usage(call.model or task.model, call.usage))
            self.reporter.emit(ev.CallFinished(view, call))
        key = key or self.router.key_of(task.id)
        await self.store.record_attempts(
            task.id, calls, key_fingerprint=key.fingerprint if key else None, now=self.clock.time()
        )
        await self.router.save()

    async def requeue(
        self, task: TaskRow, view: ev.TaskView, at: float | None, reason: str
    ) -> None:
        """Back in the queue without using a try (``at``: not before then)."""
        await self.store.requeue(task.id, self.clock.time(), at=at)
        self.reporter.emit(ev.TaskRequeued(view, at, reason))

    async def failed(self, task: TaskRow, view: ev.TaskView, exc: Exception) -> None:
        """What ``exc`` means for the task (``decide``), applied."""
        key = self.router.key_of(task.id)
        self.router.failed(key, exc)
        situation = Situation(
            self.clock.time(), task.attempts, task.model, keys_usable=self.router.usable()
        )
        outcome = decide(exc, situation, self.retry)
        if isinstance(outcome, Offline):  # free while the network is down, else a retry
            # the claimed row's updated_at is when this attempt began
            outcome = await self.network.settle(outcome, attempt_started=task.updated_at)
        now = self.clock.time()
        bucket = self.limiter.bucket(key.project if key else "", task.model)
        match outcome:
            case RetryAt(at=at, delay_s=delay, reupload=reupload):
                if reupload:
                    await self.store.clear_upload(task.id, now)
                kind = exc.kind if isinstance(exc, GsVideoReportError) else "InternalError"
                await self.store.schedule_retry(
                    task.id, at=at, kind=kind, message=str(exc), now=now
                )
                self.reporter.emit(ev.RetryScheduled(view, at, delay, str(exc)))
            case PauseBucket(retry_after=retry_after):
                bucket.rate_limited(retry_after, sent_at=self.sent_at.get(task.id))
                self.reporter.emit(ev.BucketPaused(bucket.name, bucket.paused_until))
                await self.requeue(task, view, bucket.paused_until, "waiting for quota")
            case ParkBucket(resets_at=resets, stop=stop):
                bucket.park(f"the daily quota for {task.model} is used up", resets)
                self.reporter.emit(ev.BucketParked(bucket.name, resets))
                await self.requeue(task, view, None, "daily quota")
                if stop is not None:
                    self.request_stop(stop.reason, stop.message)
            case Requeue(reason=reason):
                await self.requeue(task, view, None, reason)
            case StopBatch(reason=reason, message=message):
                await self.requeue(task, view, None, reason.value)
                self.request_stop(reason, message)
            case Fail(kind=kind, message=message):
                await self.store.fail(task.id, kind, message, now)
                self.reporter.emit(ev.TaskFailed(view, kind, message))
                logger.info("%s failed: %s", task.display_name, message)  # the display says it
            case _:  # Adapt is applied by the pipeline, before an error reaches here
                raise AssertionError(f"unexpected outcome {outcome!r}")

    async def reuse(self, task: TaskRow, view: ev.TaskView, video: PreparedVideo) -> bool:
        """Finish the task from an answer already paid for, with no call, if there is one."""
        found = await find_done(self.store, task)
        if found is None:
            return False
        if video.source.path is not None:
            check_unchanged(video.source.path, task)  # the answer is for the video planned
        logger.info("%s: %s", task.display_name, found.note)
        usage = found.usage
        generation = Generation(found.answer, usage, "STOP", task.model, None, 0.0, (found.note,))
        self.reporter.emit(ev.TaskActivity(view, ev.Activity.WRITING))
        if found.same_as is not None or not video.files.answer_json.is_file():
            self.writer.answer(video, generation, [], task.done_key)
        self.writer.lesson(video, generation)
        # Its own answer was paid for by this task, and the state database never heard
        # of it (killed in between): counted now. Another task's answer cost this one 0.
        cost = self.prices.of_usage(task.model, usage) if found.same_as is None else 0.0
        if cost:
            self.budget.budget.spend(cost)
        await self.store.complete(
            task.id, usage, cost, self.clock.time(), same_as=found.same_as or "(on disk)"
        )
        self.reporter.emit(ev.TaskDone(view, cost, found.same_as))
        return True
