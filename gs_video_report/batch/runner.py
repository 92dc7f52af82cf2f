"""Running a batch: plan -> rows -> lease -> WorkerPool, and resuming one.

``start_batch`` commits the whole plan as task rows before anything is spent, so an
interruption at any later moment is resumable with ``resume_batch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gs_video_report.batch.cost import Budget, Prices
from gs_video_report.batch.limiter import APILimiter, Limits
from gs_video_report.batch.planner import Plan
from gs_video_report.batch.report import write_reports
from gs_video_report.batch.workers import PoolOptions, Sleep, StageListener, WorkerPool, record_call
from gs_video_report.config import PoolKey, Settings
from gs_video_report.errors import ExitCode, OutputError, UnknownBatchError, UsageError
from gs_video_report.retry import RetryPolicy
from gs_video_report.services.gemini import GeminiService
from gs_video_report.services.gemini.keypool import KeyPool, KeyState
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.services.writer import remove_leftovers
from gs_video_report.storage.checkpoint import CheckpointManager, NewTask, TaskStage

logger = logging.getLogger(__name__)

LEASE_TTL_S = 30.0
CANCEL_POLL_S = 2.0


def new_batch_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"batch_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(4)}"


@dataclass(frozen=True)
class RunOptions:
    parallel: int = 4
    max_uploads: int = 2
    max_retries: int = 3
    simulated: bool = False
    timeout_s: float | None = None  # per video generate call
    cost_limit_usd: float | None = None  # for the whole batch, earlier runs included


@dataclass
class BatchOutcome:
    batch_id: str
    counts: dict[TaskStage, int] = field(default_factory=dict)
    stop_reason: str | None = None
    stop_message: str | None = None
    report_dir: Path | None = None
    spent_usd: float = 0.0
    rest_usd: float | None = None  # estimate for what is left (None: unknown)

    @property
    def exit_code(self) -> ExitCode:
        if self.stop_reason in ("quota", "budget"):
            return ExitCode.QUOTA
        if self.stop_reason == "auth":
            return ExitCode.AUTH
        if self.stop_reason in ("interrupted", "cancelled"):
            return ExitCode.INTERRUPTED
        return ExitCode.PARTIAL if self.counts.get(TaskStage.FAILED) else ExitCode.OK


async def record_plan(
    store: CheckpointManager,
    plan: Plan,
    *,
    batch_id: str,
    source_desc: str,
    output_dir: str,
    snapshot: dict[str, object],
) -> None:
    tasks = [
        NewTask(
            seq=seq,
            source=t.video.source.identity,
            source_kind=t.video.source.kind.value,
            display_name=t.video.source.display_name,
            template=t.video.template.name,
            template_version=t.video.template.version,
            params=t.video.params,
            model=str(snapshot["model"]),
            content_fingerprint=t.content_fingerprint,
            done_key=t.done_key,
            output_md=str(t.video.files.markdown),
            output_json=str(t.video.files.answer_json),
            duration_s=t.video.duration_s,
            size_bytes=t.video.info.size_bytes if t.video.info else None,
            mime_type=t.video.info.mime_type if t.video.info else None,
        )
        for seq, t in enumerate(plan.to_run)
    ]
    await store.create_batch(
        batch_id,
        source_desc=source_desc,
        output_dir=output_dir,
        settings=snapshot,
        tasks=tasks,
        now=time.time(),
    )


async def run_batch(
    store: CheckpointManager,
    batch_id: str,
    *,
    settings: Settings,
    keys: Sequence[PoolKey],
    options: RunOptions,
    registry: TemplateRegistry,
    # Times stored in the task table (retry times, updated_at) must survive a reboot,
    # so the default is wall-clock time, not a monotonic clock that restarts at boot.
    clock: Callable[[], float] = time.time,
    sleep: Sleep = asyncio.sleep,
    on_stage: StageListener | None = None,
    on_pool: Callable[[WorkerPool], None] | None = None,
) -> BatchOutcome:
    """Run (or resume) ``batch_id`` until every task is done or failed, or a stop."""
    if await store.batch(batch_id) is None:
        raise UnknownBatchError(batch_id)
    prices = Prices(settings.prices)
    if options.cost_limit_usd is not None:
        unpriced = sorted({t.model for t in await store.tasks(batch_id) if not prices.on(t.model)})
        if unpriced:
            raise UsageError(
                f"--cost-limit needs a price for {', '.join(unpriced)}: add it under 'prices'"
                " in the config file"
            )
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    await store.acquire_lease(
        batch_id,
        owner=owner,
        pid=os.getpid(),
        now=time.time(),
        ttl_s=LEASE_TTL_S,
        holder_dead=_dead_on_this_host,
    )
    try:
        await store.recover(batch_id, clock())
        tasks = await store.tasks(batch_id)
        # a writer killed mid-write (the lease says it is gone) left temp files behind
        remove_leftovers(
            Path(p) for t in tasks if not t.stage.finished for p in (t.output_md, t.output_json)
        )
        await store.set_batch_status(batch_id, "running", time.time())
        spent = sum(prices.of_usage(m, u) or 0.0 for m, u in await store.billed_usage(batch_id))
        budget = Budget(options.cost_limit_usd, spent)
        limiter = APILimiter(
            lambda model: Limits(**settings.limits_for(model).model_dump()),
            clock=clock,
            sleep=sleep,
        )
        # Health carries over between runs, except cooldowns: a resume is the user asking
        # to try again (a quota that is still used up costs one free 429 to find out).
        known = {
            fp: KeyState(**{**row, "cooldown_until": None, "cooldown_reason": None})
            for fp, row in (await store.key_health()).items()
        }
        pool_of_keys = KeyPool(keys, api=settings.api, states=known, clock=clock)
        async with contextlib.AsyncExitStack() as stack:
            services = {
                k.fingerprint: await stack.enter_async_context(
                    GeminiService(
                        k.key, settings.api, sleep=sleep, clock=clock, on_call=record_call
                    )
                )
                for k in keys
            }
            if not pool_of_keys.usable():
                raise pool_of_keys.none_usable()
            pool = WorkerPool(
                batch_id=batch_id,
                store=store,
                services=services,
                keys=pool_of_keys,
                settings=settings,
                registry=registry,
                limiter=limiter,
                retry=RetryPolicy(max_retries=options.max_retries),
                options=PoolOptions(
                    options.parallel, options.max_uploads, options.simulated, options.timeout_s
                ),
                clock=clock,
                sleep=sleep,
                budget=budget,
                on_stage=on_stage,
            )
            pool.learn_from(tasks)
            if on_pool is not None:
                on_pool(pool)
            keeper = asyncio.create_task(_keep_lease(store, pool, batch_id, owner))
            try:
                await pool.run()
            except asyncio.CancelledError:
                # Stopped at once (second Ctrl-C): tasks mid-stage stay as they are and
                # the next resume puts them back in the queue (``recover``).
                await store.set_batch_status(batch_id, "interrupted", time.time())
                raise
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
        if pool.aborted:
            await store.recover(batch_id, clock())  # what was in flight goes back in the queue
        if pool.stop_reason == "cancelled":
            await store.cancel_pending(batch_id, clock())
        left = [t for t in await store.tasks(batch_id) if not t.stage.finished]
        outcome = BatchOutcome(
            batch_id,
            await store.counts(batch_id),
            pool.stop_reason,
            pool.stop_message,
            spent_usd=budget.spent_usd,
            rest_usd=pool.estimate_usd(left),
        )
        status = outcome.stop_reason or (
            "partial" if outcome.counts.get(TaskStage.FAILED) else "done"
        )
        await store.set_batch_status(batch_id, status, time.time())
        try:
            outcome.report_dir = await write_reports(store, batch_id)
        except OutputError as exc:  # the batch's own state is safe; say so, do not crash
            logger.warning("could not write the batch report: %s", exc)
        return outcome
    finally:
        await store.release_lease(batch_id, owner=owner)


def _dead_on_this_host(owner: str) -> bool:
    """A lease holder on this machine whose process is gone (killed, crashed): no need to
    wait for its lease to expire. Holders on other hosts are trusted until expiry."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, but not ours to signal
    return False


async def cancel_batch(store: CheckpointManager, batch_id: str) -> str:
    """Stop a batch: a running one (another process) stops within seconds; an idle one at once."""
    batch = await store.batch(batch_id)
    if batch is None:
        raise UnknownBatchError(batch_id)
    await store.request_cancel(batch_id, time.time())
    if batch["lease_until"] and batch["lease_until"] > time.time():
        pid = batch["lease_pid"]
        return f"cancel requested; the process running it (PID {pid}) stops within seconds"
    await store.cancel_pending(batch_id, time.time())
    await store.set_batch_status(batch_id, "cancelled", time.time())
    return "cancelled"


async def _keep_lease(
    store: CheckpointManager, pool: WorkerPool, batch_id: str, owner: str
) -> None:
    """Notice `cancel` from another terminal within seconds, and heartbeat the lease (real
    time: other processes read it)."""
    ticks = 0
    while True:
        await asyncio.sleep(CANCEL_POLL_S)
        ticks += 1
        if await store.cancel_requested(batch_id):
            pool.abort("cancelled", "cancelled from another terminal")
        if ticks % round(LEASE_TTL_S / 3 / CANCEL_POLL_S) == 0:
            alive = await store.heartbeat(batch_id, owner=owner, now=time.time(), ttl_s=LEASE_TTL_S)
            if not alive:
                pool.request_stop("interrupted", "another process took over this batch")
