"""Running a batch: plan -> rows -> lease -> WorkerPool, and resuming one.

``record_plan`` commits the whole plan as task rows before anything is spent, so an
interruption at any later moment is resumable with ``run_batch``. Whatever happens
inside, a run ends with the batch in a stated status — never left ``running``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from gs_video_report.batch.cost import Budget, BudgetGate, Prices
from gs_video_report.batch.events import NullReporter, Reporter
from gs_video_report.batch.keyrouting import KeyRouter
from gs_video_report.batch.lease import dead_on_this_host as _dead_on_this_host
from gs_video_report.batch.lease import lease_owner as lease_owner
from gs_video_report.batch.limiter import APILimiter, Limits
from gs_video_report.batch.planner import Plan
from gs_video_report.batch.report import write_reports

# The run's options and outcome live with the engine's API values (cheap to import, so
# front-ends start without this module's SDK); they are the runner's names too.
from gs_video_report.batch.requests import RunOptions as RunOptions
from gs_video_report.batch.requests import new_batch_id as new_batch_id
from gs_video_report.batch.views import BatchOutcome as BatchOutcome
from gs_video_report.batch.workers import PoolOptions, WorkerPool
from gs_video_report.clock import REAL, Clock
from gs_video_report.config import PoolKey, Settings
from gs_video_report.errors import OutputError, UnknownBatchError, UsageError
from gs_video_report.models import BatchStatus, StopReason
from gs_video_report.retry import RetryPolicy
from gs_video_report.services.gemini import GeminiService
from gs_video_report.services.gemini.keypool import KeyPool, KeyState
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.services.writer import remove_leftovers
from gs_video_report.storage.checkpoint import CheckpointManager, NewTask

logger = logging.getLogger(__name__)

CANCEL_POLL_S = 2.0


async def record_plan(
    store: CheckpointManager,
    plan: Plan,
    *,
    batch_id: str,
    source_desc: str,
    output_dir: str,
    snapshot: dict[str, object],
    now: float,
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
            mtime_ns=t.video.info.mtime_ns if t.video.info else None,
        )
        for seq, t in enumerate(plan.to_run)
    ]
    await store.create_batch(
        batch_id,
        source_desc=source_desc,
        output_dir=output_dir,
        settings=snapshot,
        tasks=tasks,
        now=now,
    )


async def _check_prices(
    store: CheckpointManager, batch_id: str, prices: Prices, options: RunOptions
) -> None:
    if options.cost_limit_usd is None:
        return
    unpriced = sorted({t.model for t in await store.tasks(batch_id) if not prices.on(t.model)})
    if unpriced:
        raise UsageError(
            f"--cost-limit needs a price for {', '.join(unpriced)}: add it under 'prices'"
            " in the config file"
        )


async def run_batch(
    store: CheckpointManager,
    batch_id: str,
    *,
    settings: Settings,
    keys: Sequence[PoolKey],
    options: RunOptions,
    registry: TemplateRegistry,
    clock: Clock = REAL,
    reporter: Reporter | None = None,
    on_pool: Callable[[WorkerPool], None] | None = None,
) -> BatchOutcome:
    """Run (or resume) ``batch_id`` until every task is done or failed, or a stop."""
    batch = await store.batch(batch_id)
    if batch is None:
        raise UnknownBatchError(batch_id)
    rejected = len(json.loads(batch["settings_json"]).get("rejected", []))
    prices = Prices(settings.prices, discounted=options.mode != "live")
    await _check_prices(store, batch_id, prices, options)
    owner = lease_owner()
    await store.acquire_lease(
        batch_id,
        owner=owner,
        pid=os.getpid(),
        now=clock.time(),
        ttl_s=settings.run.lease_ttl,
        holder_dead=_dead_on_this_host,
    )
    status = BatchStatus.INTERRUPTED  # unless the run gets to say otherwise
    try:
        outcome = await _run_leased(
            store,
            batch_id,
            owner,
            settings=settings,
            keys=keys,
            options=options,
            registry=registry,
            clock=clock,
            reporter=reporter or NullReporter(),
            on_pool=on_pool,
            rejected=rejected,
        )
        status = outcome.status
        return outcome
    finally:
        # in a finally: an error or a second Ctrl-C must not leave the batch "running" —
        # unless another process has taken it over (then it is that process's to say)
        with contextlib.suppress(Exception):
            if await store.holds_lease(batch_id, owner, clock.time(), settings.run.lease_ttl):
                await asyncio.shield(store.set_batch_status(batch_id, status, clock.time()))
                await asyncio.shield(store.release_lease(batch_id, owner=owner))


async def _run_leased(
    store: CheckpointManager,
    batch_id: str,
    owner: str,
    *,
    settings: Settings,
    keys: Sequence[PoolKey],
    options: RunOptions,
    registry: TemplateRegistry,
    clock: Clock,
    reporter: Reporter,
    on_pool: Callable[[WorkerPool], None] | None,
    rejected: int,
) -> BatchOutcome:
    await store.recover(batch_id, clock.time())
    tasks = await store.tasks(batch_id)
    # a writer killed mid-write (the lease says it is gone) left temp files behind
    remove_leftovers(
        Path(p) for t in tasks if not t.stage.finished for p in (t.output_md, t.output_json)
    )
    await store.set_batch_status(batch_id, BatchStatus.RUNNING, clock.time())
    prices = Prices(settings.prices, discounted=options.mode != "live")
    spent = sum(prices.of_usage(m, u) or 0.0 for m, u in await store.billed_usage(batch_id))
    budget = BudgetGate(Budget(options.cost_limit_usd, spent))
    limiter = APILimiter(
        lambda model: Limits(**settings.limits_for(model).model_dump()),
        clock=clock.time,
        sleep=clock.sleep,
    )
    # Health carries over between runs, except cooldowns: a resume is the user asking
    # to try again (a quota that is still used up costs one free 429 to find out).
    known = {
        fp: KeyState(**{**row, "cooldown_until": None, "cooldown_reason": None})
        for fp, row in (await store.key_health()).items()
    }
    pool_of_keys = KeyPool(keys, api=settings.api, states=known, clock=clock.time)
    router = KeyRouter(pool_of_keys, store, clock)
    async with contextlib.AsyncExitStack() as stack:
        tier = "flex" if options.mode == "flex" else None
        services = {
            k.fingerprint: (
                await stack.enter_async_context(
                    GeminiService(k.key, settings.api, sleep=clock.sleep, clock=clock.time)
                )
            ).tiered(tier)
            for k in keys
        }
        if not router.usable():
            raise router.keys.none_usable()
        pool = WorkerPool(
            batch_id=batch_id,
            store=store,
            services=services,
            router=router,
            settings=settings,
            registry=registry,
            limiter=limiter,
            retry=RetryPolicy(max_retries=options.max_retries),
            options=PoolOptions(
                options.parallel,
                options.max_uploads,
                options.simulated,
                options.timeout_s,
                reuse=options.reuse,
                lease_ttl_s=settings.run.lease_ttl,
                formats=options.formats,
                mode=options.mode,
            ),
            clock=clock,
            budget=budget,
            owner=owner,
            reporter=reporter,
        )
        pool.estimates.learn_from(tasks)
        if on_pool is not None:
            on_pool(pool)
        keeper = asyncio.create_task(
            _keep_lease(store, pool, batch_id, owner, clock, settings.run.lease_ttl)
        )
        try:
            await pool.run()
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        cancelled = pool.stop_reason is StopReason.CANCELLED and not pool.lease_lost
        if cancelled and pool.jobs is not None:
            await pool.jobs.cancel_open()  # at Google, while the keys' clients are open
    if pool.lease_lost:  # the batch is another process's now: write nothing of it
        counts = await store.counts(batch_id)
        return BatchOutcome(batch_id, counts, pool.stop_reason, pool.stop_message)
    if pool.aborted:
        await store.recover(batch_id, clock.time())  # what was in flight goes back in the queue
    if pool.stop_reason is StopReason.CANCELLED:
        await store.cancel_pending(batch_id, clock.time())
    left = [t for t in await store.tasks(batch_id) if not t.stage.finished]
    reason, message = pool.stop_reason, pool.stop_message
    if reason is None and left:
        # never "done" with work left: say so, resumable (a resume puts it back)
        reason = StopReason.INTERRUPTED
        message = f"{len(left)} video(s) were left unfinished; resume to finish them"
        logger.warning("batch %s: %s", batch_id, message)
    outcome = BatchOutcome(
        batch_id,
        await store.counts(batch_id),
        reason,
        message,
        spent_usd=budget.budget.spent_usd,
        rest_usd=pool.estimates.usd(left),
        rejected=rejected,
    )
    await store.set_batch_status(batch_id, outcome.status, clock.time())
    if not options.reports:
        return outcome
    try:
        outcome.report_dir = await write_reports(store, batch_id)
    except OutputError as exc:  # the batch's own state is safe; say so, do not crash
        logger.warning("could not write the batch report: %s", exc)
    return outcome


async def _keep_lease(
    store: CheckpointManager,
    pool: WorkerPool,
    batch_id: str,
    owner: str,
    clock: Clock,
    ttl_s: float,
) -> None:
    """Notice `cancel` from another terminal within seconds, and heartbeat the lease
    (every third of its time to live)."""
    beat_every = max(1, round(ttl_s / 3 / CANCEL_POLL_S))
    ticks = 0
    while True:
        await clock.sleep(min(CANCEL_POLL_S, ttl_s / 3))
        ticks += 1
        if await store.cancel_requested(batch_id):
            pool.abort(StopReason.CANCELLED, "cancelled from another terminal")
        if ticks % beat_every == 0:
            alive = await store.heartbeat(batch_id, owner=owner, now=clock.time(), ttl_s=ttl_s)
            if not alive:
                pool.lose_lease()
