"""The batch engine end to end: real SDK, simulator over loopback, real SQLite."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gs_video_report.batch.inputs import scan_folder
from gs_video_report.batch.planner import build_plan
from gs_video_report.batch.runner import BatchOutcome, RunOptions, record_plan, run_batch
from gs_video_report.batch.workers import WorkerPool
from gs_video_report.config import ApiKey, PoolKey, Settings, load_settings
from gs_video_report.errors import ExitCode
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.services.writer import FileWriter
from gs_video_report.simulator import Fault, Simulator
from gs_video_report.storage import CheckpointManager, TaskStage, open_db
from tests.conftest import TEST_KEY, make_lectures
from tests.virtual_time import SteppingClock


def settings_for(sim: Simulator, tmp_path: Path) -> Settings:
    return load_settings(env={"GS_VIDEOREPORT_BASE_URL": sim.url}, cwd=tmp_path)


async def plan_and_run(
    store: CheckpointManager, sim: Simulator, tmp_path: Path, batch_id: str
) -> BatchOutcome:
    if not await record(store, sim, tmp_path, batch_id):
        return BatchOutcome(batch_id)
    return await resume(store, sim, tmp_path, batch_id)


async def record(store: CheckpointManager, sim: Simulator, tmp_path: Path, batch_id: str) -> bool:
    """Plan the lectures folder into ``batch_id``; False when there is nothing to run."""
    settings = settings_for(sim, tmp_path)
    registry = TemplateRegistry.with_builtins()
    out = tmp_path / "out"
    plan = build_plan(
        scan_folder(tmp_path / "lectures", skip=out),
        settings=settings,
        registry=registry,
        writer=FileWriter(out),
        template="summary_report",
        params={},
        ledger=await store.done_ledger(),
    )
    if plan.to_run:
        await record_plan(
            store,
            plan,
            batch_id=batch_id,
            source_desc="test",
            output_dir=str(out),
            snapshot={"model": settings.model},
            now=time.time(),
        )
    return bool(plan.to_run)


async def resume(
    store: CheckpointManager,
    sim: Simulator,
    tmp_path: Path,
    batch_id: str,
    keys: list[PoolKey] | None = None,
) -> BatchOutcome:
    """Run (or resume) a recorded batch on a stepping clock: on the test key, or ``keys``."""
    clock = SteppingClock()
    return await run_batch(
        store,
        batch_id,
        settings=settings_for(sim, tmp_path),
        keys=keys or [PoolKey.of(ApiKey(TEST_KEY, "test"))],
        options=RunOptions(parallel=3, max_uploads=2),
        registry=TemplateRegistry.with_builtins(),
        clock=clock.clock,
    )


def test_batch_runs_every_video_and_a_second_run_skips_them(sim: Simulator, tmp_path: Path) -> None:
    make_lectures(tmp_path / "lectures")

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            outcome = await plan_and_run(store, sim, tmp_path, "b1")
            assert outcome.exit_code == ExitCode.OK and outcome.counts == {TaskStage.DONE: 3}
            batch = await store.batch("b1")
            assert batch is not None and abs(batch["created_at"] - time.time()) < 600  # wall clock
            tasks = await store.tasks("b1")
            assert all(Path(t.output_md).is_file() and Path(t.output_json).is_file() for t in tasks)
            assert {Path(t.output_md).relative_to(tmp_path / "out").as_posix() for t in tasks} == {
                "summary_report/week1/intro.md",
                "summary_report/week2/intro.md",
                "summary_report/week2/photosynthesis_basics.md",
            }
            assert all(t.total_tokens and t.cost_usd and t.cost_usd > 0 for t in tasks)
            stages = [a["stage"] for a in await store.attempts(tasks[0].id)]
            assert stages[0] == "upload" and "generate" in stages
            assert all(
                a["key_fingerprint"] == ApiKey(TEST_KEY, "t").fingerprint
                for a in await store.attempts(tasks[0].id)
            )
            again = await plan_and_run(store, sim, tmp_path, "b2")
            assert await store.batch("b2") is None and again.counts == {}

    asyncio.run(main())
    stats = sim.stats()
    assert stats["calls"]["generate"] == 3 and stats["uploads_completed"] == 3
    assert stats["files_live"] == 0 and stats["max_in_flight"] <= 3


def test_daily_quota_parks_with_exit_5_and_resume_reuses_the_active_upload(
    sim: Simulator, tmp_path: Path
) -> None:
    make_lectures(tmp_path / "lectures")
    sim.add_fault(Fault("rate_limit_day", "generate", match="photosynthesis"))

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            first = await plan_and_run(store, sim, tmp_path, "b1")
            assert first.exit_code == ExitCode.QUOTA
            parked = [t for t in await store.tasks("b1") if t.stage is TaskStage.PENDING]
            assert [t.display_name for t in parked] == ["photosynthesis_basics"]
            assert parked[0].upload_name  # kept for the resume
            uploads_before = sim.stats()["uploads_completed"]
            second = await resume(store, sim, tmp_path, "b1")
            assert second.exit_code == ExitCode.OK and second.counts == {TaskStage.DONE: 3}
            assert sim.stats()["uploads_completed"] == uploads_before  # no second upload
            assert (await store.batch("b1"))["status"] == "done"  # type: ignore[index]

    asyncio.run(main())
    assert sim.stats()["generate_by_subject"]["photosynthesis_basics.mp4"] == 1  # served once
    assert sim.stats()["calls"]["generate"] == 4  # 3 lessons + the one 429


def test_retryable_failures_are_stored_retries_and_permanent_ones_fail_alone(
    sim: Simulator, tmp_path: Path
) -> None:
    make_lectures(tmp_path / "lectures")
    sim.add_fault(Fault("unavailable", "generate", times=2, match="photosynthesis"))
    sim.add_fault(Fault("safety", "generate", times=1, match="intro.mp4"))

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            outcome = await plan_and_run(store, sim, tmp_path, "b1")
            assert outcome.exit_code == ExitCode.PARTIAL
            assert outcome.counts == {TaskStage.DONE: 2, TaskStage.FAILED: 1}
            by_name = {t.display_name + str(t.seq): t for t in await store.tasks("b1")}
            failed = next(t for t in by_name.values() if t.stage is TaskStage.FAILED)
            assert failed.last_error_kind == "AnswerError" and "SAFETY" in (failed.last_error or "")
            retried = next(t for t in by_name.values() if t.display_name == "photosynthesis_basics")
            assert retried.stage is TaskStage.DONE and retried.attempts == 2

    asyncio.run(main())


def test_a_per_minute_429_pauses_every_worker_once_and_burns_no_attempt(
    sim: Simulator, tmp_path: Path
) -> None:
    make_lectures(tmp_path / "lectures")
    # The three workers' first generate calls are all on the wire when the 429s come back.
    sim.add_fault(Fault("rate_limit_minute", "generate", times=3, retry_after=20))
    sim.set_limits(latency={"generate": 0.5})
    pools: list[WorkerPool] = []

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            await record(store, sim, tmp_path, "b0")
            clock = SteppingClock()
            start = clock.now
            outcome = await run_batch(
                store,
                "b0",
                settings=settings_for(sim, tmp_path),
                keys=[PoolKey.of(ApiKey(TEST_KEY, "test"))],
                options=RunOptions(parallel=3, max_uploads=3),
                registry=TemplateRegistry.with_builtins(),
                clock=clock.clock,
                on_pool=pools.append,
            )
            assert outcome.counts == {TaskStage.DONE: 3}
            assert all(t.attempts == 0 for t in await store.tasks("b0"))  # no retry burned
            (bucket,) = pools[0].limiter.buckets()
            assert bucket.pauses == 1  # one shared pause, not one backoff per worker
            assert clock.now - start >= 20  # the server's retryDelay was honoured
            assert bucket.pace_rpm is None  # no configured limit: nothing to slow down

    asyncio.run(main())
    assert sim.stats()["calls"]["generate"] == 6  # 3 answered 429 + 3 lessons
