"""WorkerPool: asyncio workers pull tasks from the task table and run them stage by
stage, committing each stage before the next starts.

- generation has its own cap (``parallel`` calls in flight) and is paced by the
  APILimiter; uploads have theirs (``max_uploads``, default 2: parallel uploads choke a
  teacher's link); other workers upload and wait for processing ahead of generation,
  as far ahead as ``Lookahead`` measures is needed;
- on a stop (Ctrl-C, quota, budget) a task that has not started its generate call goes
  back to the queue, its upload kept;
- a resumed task whose upload is still ACTIVE on the server, with the same key, is not
  uploaded again; a done task is never claimed again;
- keys: a task stays on the key that uploaded its video (another key gets 403 on the
  file); it moves — uploading again, with the reason in the attempt log — only when its
  key is disabled or its project's daily quota is gone. New tasks go to the usable key
  whose project has the fewest tasks in flight. Quotas are per project: one limiter
  bucket per (project, model);
- retries are rows, not sleeps: ``schedule_retry`` stores when, so they survive restarts;
- a per-minute 429 pauses the bucket once and re-queues the task without burning an
  attempt; a per-day 429 or a bad key takes the key (project) out of the pool, and
  stops scheduling (``stop_reason``) only when no usable key is left;
- one failing video never stops the batch.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gs_video_report.batch.adapt import Adjustments
from gs_video_report.batch.cost import (
    Budget,
    BudgetExceeded,
    Estimator,
    Prices,
    estimate_input_tokens,
)
from gs_video_report.batch.limiter import APILimiter, QuotaParked
from gs_video_report.batch.lookahead import GENERATING, PREPARING, READY, Lookahead
from gs_video_report.batch.parts import Part, PartStore
from gs_video_report.batch.pipeline import PreparedVideo, VideoPipeline, prompt_builtins
from gs_video_report.config import PoolKey, Settings
from gs_video_report.errors import (
    ApiError,
    ApiTimeoutError,
    AuthError,
    FileAccessError,
    GsVideoReportError,
    QuotaScope,
    RateLimitError,
)
from gs_video_report.models import (
    CallRecord,
    Generation,
    GenerationSettings,
    LessonFiles,
    Usage,
    VideoInfo,
)
from gs_video_report.retry import RetryPolicy
from gs_video_report.services.gemini import GeminiService, VideoRef
from gs_video_report.services.gemini.keypool import (
    KeyPool,
    KeyState,
    NoUsableKey,
    daily_reset_at,
    is_key_level,
)
from gs_video_report.services.sources import parse_source, printable
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.storage.checkpoint import (
    CheckpointManager,
    TaskRow,
    TaskStage,
)

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
# (task, stage, fraction done or None) -> None; for the progress display
StageListener = Callable[[TaskRow, str, float | None], None]

_CALLS: contextvars.ContextVar[list[CallRecord]] = contextvars.ContextVar("calls")
# Calls already stored, kept for the lesson's JSON sidecar.
_STORED_CALLS: contextvars.ContextVar[list[CallRecord]] = contextvars.ContextVar("stored_calls")
# What changed before the task's next call, and why: stored with that call.
_NOTES: contextvars.ContextVar[list[str]] = contextvars.ContextVar("notes")
_UPLOAD_REUSE_MARGIN_S = 3600.0  # reuse an upload only if it lives at least this much longer
_IDLE_POLL_S = 1.0
_MAX_TIMEOUT_GROWTH = 3.0
# A task waits for a cooling key only this long; a longer wait (a daily quota) stops the
# batch, resumable.
_MAX_KEY_WAIT_S = 900.0
_KEY_SAVE_EVERY_S = 5.0  # successes are saved this often; failures at once


def record_call(call: CallRecord) -> None:
    """``GeminiService.on_call`` for the pool: each worker (its own asyncio task, so its own
    context) collects its calls, then flushes them to the attempts table."""
    calls = _CALLS.get(None)
    if calls is not None:
        notes = _NOTES.get(None)
        if notes:
            call = dataclasses.replace(call, note="; ".join(notes))
            notes.clear()
        calls.append(call)


def add_note(note: str) -> None:
    """Attach ``note`` to the running task's next API call (the attempt log says why)."""
    notes = _NOTES.get(None)
    if notes is not None:
        notes.append(note)
    logger.info("%s", note)


class StoredParts(PartStore):
    """A task's parts in the state database: each part's answer is committed as it
    arrives, so a resume asks only for the missing ones."""

    def __init__(self, store: CheckpointManager, task_id: int, clock: Callable[[], float]):
        super().__init__()
        self.store, self.task_id, self.clock = store, task_id, clock

    async def load(self) -> list[Part]:
        return [
            Part(
                row["idx"],
                row["start_s"],
                row["end_s"],
                json.loads(row["answer_json"]) if row["answer_json"] else None,
                Usage(**json.loads(row["usage_json"])) if row["usage_json"] else None,
            )
            for row in await self.store.parts(self.task_id)
        ]

    async def plan(self, bounds: Sequence[tuple[float, float]]) -> list[Part]:
        await self.store.plan_parts(self.task_id, bounds)
        return await self.load()

    async def keep(self, generation: Generation, duration_s: float) -> None:
        """A whole-video answer, stored as the task's only part (parts already hold
        theirs)."""
        await self.store.keep_answer(
            self.task_id,
            duration_s,
            json.dumps(generation.data, ensure_ascii=False),
            json.dumps(dataclasses.asdict(generation.usage)),
            self.clock(),
        )

    async def finish(self, part: Part, answer: dict[str, Any], usage: Usage) -> Part:
        await self.store.finish_part(
            self.task_id,
            part.index,
            json.dumps(answer, ensure_ascii=False),
            json.dumps(dataclasses.asdict(usage)),
            self.clock(),
        )
        return Part(part.index, part.start_s, part.end_s, answer, usage)


class _Stopping(Exception):
    """The pool is stopping: put the task back before its next paid call."""


@dataclass(frozen=True)
class PoolOptions:
    parallel: int = 4
    max_uploads: int = 2
    simulated: bool = False
    timeout_s: float | None = None  # per video generate call; None = api.request_timeout


class WorkerPool:
    def __init__(
        self,
        *,
        batch_id: str,
        store: CheckpointManager,
        services: Mapping[str, GeminiService],
        keys: KeyPool,
        settings: Settings,
        registry: TemplateRegistry,
        limiter: APILimiter,
        retry: RetryPolicy,
        options: PoolOptions,
        clock: Callable[[], float],
        sleep: Sleep,
        budget: Budget | None = None,
        on_stage: StageListener | None = None,
    ) -> None:
        self.batch_id = batch_id
        self.store = store
        self.services = services  # by key fingerprint
        self.keys = keys
        keys.on_change = self._key_changed
        self._dirty_keys: set[str] = set()
        self._keys_urgent = False
        self._keys_saved_at = 0.0
        self._on_key: dict[int, PoolKey] = {}  # task -> the key it runs on
        self._load_by: Counter[str] = Counter()  # tasks in flight per project and per key
        self.settings = settings
        self.registry = registry
        self.limiter = limiter
        self.retry = retry
        self.options = options
        self.clock = clock
        self.sleep = sleep
        self.on_stage = on_stage or (lambda task, stage, fraction: None)
        self.prices = Prices(settings.prices)
        self.budget = budget or Budget(None)
        self.estimator = Estimator()
        self.stop_reason: str | None = None
        self.stop_message: str | None = None
        self.aborted = False
        self._active = 0
        self._uploads = asyncio.Semaphore(options.max_uploads)
        self._generating = asyncio.Semaphore(options.parallel)
        self._lookahead = Lookahead(options.parallel, options.max_uploads)
        self._budget_freed = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._sent_at: dict[int, float] = {}  # task -> when its generate call was let through

    # -- control -----------------------------------------------------------------
    def request_stop(self, reason: str, message: str | None = None) -> None:
        """Stop claiming new work; in-flight tasks finish their current call."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message
            self._lookahead.close()
            self._budget_freed.set()
            logger.warning("stopping batch %s: %s", self.batch_id, message or reason)

    def abort(self, reason: str, message: str | None = None) -> None:
        """Stop now, calls in flight included (``cancel`` from another terminal). Their
        tasks are left mid-stage for the caller to put back (``recover``)."""
        self.request_stop(reason, message)
        self.aborted = True
        for worker in self._workers:
            worker.cancel()

    async def run(self) -> None:
        # Enough workers for every generate slot plus the lookahead's ceiling; the
        # lookahead decides how many of them hold a task.
        count = self.options.parallel + self._lookahead.ceiling
        self._workers = [asyncio.create_task(self._worker(n)) for n in range(count)]
        try:
            results = await asyncio.gather(*self._workers, return_exceptions=True)
            await self._save_keys(now=True)  # the successes counted since the last save
        finally:
            for worker in self._workers:
                worker.cancel()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _worker(self, number: int) -> None:
        placeholder = -1 - number  # holds the worker's place in the window while claiming
        while self.stop_reason is None:
            await self._lookahead.enter(placeholder)
            if self.stop_reason is not None:
                self._lookahead.move(placeholder, None)
                break
            try:
                task = await self.store.claim_next(self.batch_id, self.clock())
            finally:
                self._lookahead.move(placeholder, None)
            if task is None:
                next_retry = await self.store.next_retry_at(self.batch_id)
                if next_retry is None and self._active == 0:
                    return  # nothing pending, nothing running: the batch is through
                wait = _IDLE_POLL_S if next_retry is None else next_retry - self.clock()
                await self.sleep(max(0.01, min(wait, _IDLE_POLL_S)))
                continue
            self._active += 1
            self._lookahead.move(task.id, PREPARING, task.size_bytes)
            try:
                await self._run_task(task)
            finally:
                self._active -= 1
                self._lookahead.move(task.id, None)

    # -- one task -----------------------------------------------------------------
    def _rebuild(self, task: TaskRow) -> PreparedVideo:
        """Everything the stages need, from the row alone (a new process may run it)."""
        source = parse_source(task.source)
        template = self.registry.get(task.template)
        info = None
        if source.path is not None:
            info = VideoInfo(task.duration_s or 0.0, task.size_bytes or 0, task.mime_type or "")
        builtins = prompt_builtins(source, info, datetime.now(UTC))
        params = task.params
        return PreparedVideo(
            source=source,
            info=info,
            template=template,
            params=params,
            prompt=template.render_prompt(params, builtins),
            system_instruction=template.render_system_instruction(params, builtins),
            files=LessonFiles(Path(task.output_md), Path(task.output_json)),
        )

    async def _flush_calls(self, task: TaskRow, key: PoolKey | None = None) -> None:
        pending = _CALLS.get()
        calls, pending[:] = list(pending), []
        for call in calls:
            if call.usage is not None:
                self.budget.spend(self.prices.of_usage(call.model or task.model, call.usage))
        _STORED_CALLS.get().extend(calls)
        key = key or self._on_key.get(task.id)
        await self.store.record_attempts(
            task.id, calls, key_fingerprint=key.fingerprint if key else None, now=self.clock()
        )
        await self._save_keys()

    def _key_changed(self, state: KeyState) -> None:
        self._dirty_keys.add(state.fingerprint)
        # a failure, cooldown or disabled key is stored at once; a success can wait
        self._keys_urgent |= state.consecutive_failures > 0 or state.disabled is not None

    async def _save_keys(self, *, now: bool = False) -> None:
        due = time.monotonic() - self._keys_saved_at >= _KEY_SAVE_EVERY_S
        if not (now or due or self._keys_urgent):
            return
        self._keys_urgent = False
        self._keys_saved_at = time.monotonic()
        while self._dirty_keys:
            state = self.keys.states[self._dirty_keys.pop()]
            await self.store.save_key_health(dataclasses.asdict(state), self.clock())

    # -- keys ---------------------------------------------------------------------
    def _load(self, key: PoolKey) -> float:
        """Tasks in flight on the key's project (the quota owner), then on the key."""
        return self._load_by["project:" + key.project] + self._load_by[key.fingerprint] / 1000

    def _assign(self, task: TaskRow, key: PoolKey) -> None:
        self._on_key[task.id] = key
        self._load_by.update(("project:" + key.project, key.fingerprint))

    def _unassign(self, task: TaskRow) -> PoolKey | None:
        key = self._on_key.pop(task.id, None)
        if key is not None:
            self._load_by.subtract(("project:" + key.project, key.fingerprint))
        return key

    async def _key_for(self, task: TaskRow) -> TaskRow:
        """Pick the task's key: the one that uploaded its video while that key can still
        be used, else the best usable key (then the video is uploaded again with it)."""
        pinned = task.upload_key if task.upload_name else None
        reason = None
        if pinned is not None:
            state = self.keys.states.get(pinned)
            if state is None:
                reason = f"{pinned} is no longer in the key pool"
            elif state.disabled is not None:
                reason = f"{pinned} is disabled ({state.disabled})"
            elif state.daily_exhausted(self.clock()):
                reason = f"the daily quota of {pinned}'s project is used up"
            else:
                self._assign(task, self.keys.key(pinned))
                return task
        while True:
            try:
                key = self.keys.choose(load=self._load)
                break
            except NoUsableKey as exc:
                if exc.available_at is None or exc.available_at - self.clock() > _MAX_KEY_WAIT_S:
                    raise
                self.on_stage(task, "waiting for a key", None)
                await self.sleep(max(0.01, exc.available_at - self.clock()))
                if self.stop_reason is not None:
                    raise _Stopping from None
        self._assign(task, key)
        if reason is not None:
            add_note(f"moved from {pinned} to {key.fingerprint}: {reason}; uploading again")
            await self.store.clear_upload(task.id, self.clock())
            task = dataclasses.replace(
                task,
                upload_name=None,
                upload_uri=None,
                upload_mime=None,
                upload_expires_at=None,
                upload_key=None,
            )
        return task

    async def _run_task(self, task: TaskRow) -> None:
        _CALLS.set([])
        _STORED_CALLS.set([])
        _NOTES.set([])
        try:
            video = self._rebuild(task)
            raw_estimate = self.raw_estimate(video)
            tokens_in, tokens_out = self.estimator.tokens(raw_estimate)
            # Reserved before the (free) upload: a video the budget cannot pay for is not
            # uploaded either; held until the paid call has answered.
            await self._reserve(task, self.prices.usd(task.model, tokens_in, tokens_out) or 0.0)
            task = await self._key_for(task)
            key = self._on_key[task.id]
            service = self.services[key.fingerprint]
            pipeline = self._pipeline(task, service)
            ref = await self._video_ref(task, video, service)
            await self._flush_calls(task)
            self._lookahead.move(task.id, READY)
            self.on_stage(task, "waiting to generate", None)
            bucket = self.limiter.bucket(key.project, task.model)
            try:
                # The slot is held for the call only: bookkeeping happens after it frees.
                async with self._generating:
                    if self.stop_reason is not None:
                        raise _Stopping  # uploaded, not paid for: the resume reuses the upload
                    self._lookahead.move(task.id, GENERATING)
                    await self.store.set_stage(task.id, TaskStage.GENERATING, self.clock())
                    self.on_stage(task, "generating", None)
                    timeout = self.options.timeout_s or self.settings.api.request_timeout
                    if task.last_error_kind == ApiTimeoutError.__name__:
                        timeout *= min(_MAX_TIMEOUT_GROWTH, 1.5**task.attempts)
                    sent: list[float] = []

                    async def paced(share: float) -> None:
                        # every call (a part, an adjusted retry) waits for the limiter
                        self._sent_at[task.id] = await bucket.acquire(tokens_in * share)
                        sent.append(self.clock())

                    async def adjusted(changed: Adjustments) -> None:
                        # stored before the call it changes
                        await self.store.set_adjustments(task.id, changed.to_json(), self.clock())
                        add_note(changed.notes[-1])
                        await self._flush_calls(task)

                    parts = StoredParts(self.store, task.id, self.clock)
                    generation = await pipeline.lesson(
                        video,
                        ref,
                        store=parts,
                        note=add_note,
                        timeout_s=timeout,
                        adjustments=Adjustments.from_json(task.adjustments),
                        on_adjust=adjusted,
                        pace=paced,
                    )
                    if sent:
                        self._lookahead.generated(self.clock() - sent[0])
            finally:
                await self._flush_calls(task)
                self._release(task)
            pace = bucket.pace_rpm
            self._lookahead.rate_limit_per_s = None if pace is None else pace / 60
            bucket.succeeded()
            self.keys.succeeded(key.fingerprint)
            self.estimator.observe(raw_estimate, generation.usage)
            # The answer is committed before the files are written: whatever stops the
            # writing (a crash, a full disk), the next run writes it without a new call.
            await parts.keep(generation, video.duration_s or 0.0)
            await self.store.set_stage(task.id, TaskStage.WRITING, self.clock())
            self.on_stage(task, "writing", None)
            pipeline.write(video, generation, list(_STORED_CALLS.get()))
            cost = self.prices.of_usage(task.model, generation.usage)
            await self.store.complete(task.id, generation.usage, cost, self.clock())
            self.on_stage(task, "done", None)
            if ref.file_name:
                await pipeline.delete_quietly(ref.file_name)
                await self.store.clear_upload(task.id, self.clock())
        except BudgetExceeded as exc:
            self._release(task)
            await self.store.requeue(task.id, self.clock())
            self.on_stage(task, "pending", None)
            self.request_stop("budget", str(exc))
        except _Stopping:
            self._release(task)
            await self.store.requeue(task.id, self.clock())
            self.on_stage(task, "pending", None)
        except (GsVideoReportError, QuotaParked) as exc:
            await self._flush_calls(task)
            await self._handle_failure(task, exc)
        finally:
            # Forget the task before the next await: once re-queued, another worker may
            # claim it while this one still writes the attempt log.
            held = self._unassign(task)
            self._sent_at.pop(task.id, None)
            await self._flush_calls(task, held)

    def _pipeline(self, task: TaskRow, service: GeminiService) -> VideoPipeline:
        return VideoPipeline(
            service,
            self.settings,
            model=task.model,
            retry=RetryPolicy(max_retries=0),
            simulated=self.options.simulated,
            sleep=self.sleep,
        )

    async def _reserve(self, task: TaskRow, estimate_usd: float) -> None:
        """Hold the video's estimate within ``--cost-limit``. While other videos' estimates
        are in flight, wait for their real cost (often lower); stop only when the video
        does not fit even with nothing in flight."""
        while True:
            if self.stop_reason is not None:
                raise _Stopping
            try:
                self.budget.reserve(task.id, estimate_usd)
                return
            except BudgetExceeded:
                if self.budget.in_flight_usd <= 0:
                    raise
            self.on_stage(task, "waiting to fit the cost limit", None)
            self._budget_freed.clear()
            await self._budget_freed.wait()

    def _release(self, task: TaskRow) -> None:
        self.budget.release(task.id)
        self._budget_freed.set()

    @staticmethod
    def raw_estimate(video: PreparedVideo) -> int:
        return estimate_input_tokens(video.duration_s, video.template.generation, video.prompt)

    def estimate_usd(self, tasks: list[TaskRow]) -> float | None:
        """What ``tasks`` would cost by the corrected estimate (None: a price is unknown)."""
        total = 0.0
        for task in tasks:
            try:
                raw = self.raw_estimate(self._rebuild(task))
            except GsVideoReportError:
                raw = estimate_input_tokens(task.duration_s, GenerationSettings(), "")
            tokens_in, tokens_out = self.estimator.tokens(raw)
            usd = self.prices.usd(task.model, tokens_in, tokens_out)
            if usd is None:
                return None
            total += usd
        return total

    def learn_from(self, finished: list[TaskRow]) -> None:
        """Seed the estimate correction with videos an earlier run of the batch finished."""
        for task in finished:
            if task.stage is not TaskStage.DONE or not task.prompt_tokens:
                continue
            try:
                raw = self.raw_estimate(self._rebuild(task))
            except GsVideoReportError:
                continue  # its template is gone; nothing to learn from it
            usage = Usage(
                prompt_tokens=task.prompt_tokens,
                candidates_tokens=task.output_tokens or 0,
                thoughts_tokens=task.thoughts_tokens or 0,
                total_tokens=task.total_tokens or 0,
            )
            self.estimator.observe(raw, usage)

    async def _video_ref(
        self, task: TaskRow, video: PreparedVideo, service: GeminiService
    ) -> VideoRef:
        if video.source.path is None:
            return VideoRef(uri=video.source.identity, mime_type=None)
        size = task.size_bytes or 0
        if (
            task.upload_name
            and task.upload_key == service.key_fingerprint
            and (task.upload_expires_at or 0) > self.clock_wall() + _UPLOAD_REUSE_MARGIN_S
        ):
            try:
                file = await service.get_file(task.upload_name)
                if file.state != "FAILED":
                    self.on_stage(task, "processing", None)
                    file = await service.wait_until_active(file, size_bytes=size)
                    logger.info("%s: reusing upload %s", task.display_name, file.name)
                    return VideoRef(file.uri, file.mime_type, file.name)
            except FileAccessError:
                pass
            await self.store.clear_upload(task.id, self.clock())
        assert video.info is not None
        self.on_stage(task, "waiting to upload", None)
        async with self._uploads:  # (the claim marked the task "uploading")
            started = self.clock()
            self.on_stage(task, "uploading", 0.0)
            file = await service.upload(
                video.source.path,
                video.info.mime_type,
                display_name=printable(video.source.path.name),
                progress=lambda done, total: self.on_stage(task, "uploading", done / max(1, total)),
            )
        expires = file.expires_at.timestamp() if file.expires_at else None
        await self.store.record_upload(
            task.id,
            name=file.name,
            uri=file.uri,
            mime_type=file.mime_type,
            expires_at=expires,
            key_fingerprint=service.key_fingerprint,
            now=self.clock(),
        )
        self.on_stage(task, "processing", None)
        file = await service.wait_until_active(file, size_bytes=size)
        self._lookahead.prepared(self.clock() - started)
        return VideoRef(file.uri, file.mime_type, file.name)

    @staticmethod
    def clock_wall() -> float:
        """Upload expiry is wall-clock time from the server, not the pacing clock."""
        return datetime.now(UTC).timestamp()

    async def _handle_failure(self, task: TaskRow, exc: Exception) -> None:
        now = self.clock()
        kind, message = type(exc).__name__, str(exc)
        key = self._on_key.get(task.id)
        if isinstance(exc, NoUsableKey):
            await self.store.requeue(task.id, now)
            self.on_stage(task, "pending", None)
            self.request_stop("auth" if exc.auth else "quota", message)
            return
        if key is not None and isinstance(exc, ApiError) and is_key_level(exc):
            self.keys.failed(key.fingerprint, exc)
        bucket = self.limiter.bucket(key.project if key else "", task.model)
        if isinstance(exc, RateLimitError) and exc.quota is not QuotaScope.PER_DAY:
            bucket.rate_limited(exc.retry_after, sent_at=self._sent_at.get(task.id))
            await self.store.requeue(task.id, now, at=bucket.paused_until)
            self.on_stage(task, "waiting for quota", None)
            return
        if isinstance(exc, RateLimitError | QuotaParked):
            resets = daily_reset_at(now)
            bucket.park(f"the daily quota for {task.model} is used up", resets)
            await self.store.requeue(task.id, now)
            self.on_stage(task, "pending", None)
            if not self.keys.usable():  # else the task moves to a key of another project
                when = datetime.fromtimestamp(resets).astimezone()
                self.request_stop(
                    "quota",
                    f"the daily request quota for {task.model} is used up on every key; it"
                    f" resets at midnight Pacific ({when:%Y-%m-%d %H:%M %Z} here) - resume"
                    " after that",
                )
            return
        if isinstance(exc, AuthError):
            await self.store.requeue(task.id, now)
            self.on_stage(task, "pending", None)
            if not self.keys.usable():
                self.request_stop("auth", message)
            return
        if isinstance(exc, FileAccessError):
            await self.store.clear_upload(task.id, now)
        delay = self.retry.delay(exc, task.attempts + 1) if isinstance(exc, ApiError) else None
        if delay is not None:
            await self.store.schedule_retry(
                task.id, at=now + delay, kind=kind, message=message, now=now
            )
            self.on_stage(task, f"retry in {delay:.0f}s", None)
            return
        await self.store.fail(task.id, kind, message, now)
        self.on_stage(task, "failed", None)
        logger.warning("%s failed: %s", task.display_name, message)
