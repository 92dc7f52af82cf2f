"""The engine's lifecycle guarantees, through its Python API (batch.api), the real SDK and
the simulator: a task holds nothing after it ends, and one task's crash stays its own."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from gs_video_report.batch import events as ev
from gs_video_report.batch.api import Engine, PlanRequest, RunOptions
from gs_video_report.batch.cost import Prices, expected_output_tokens
from gs_video_report.batch.planner import estimate_plan
from gs_video_report.config import ApiKey, PoolKey, load_settings
from gs_video_report.errors import ExitCode
from gs_video_report.models import BatchStatus, TaskStage
from gs_video_report.simulator import Fault, Simulator
from tests.conftest import SAMPLES, TEST_KEY
from tests.virtual_time import SteppingClock


def _engine(sim: Simulator, tmp_path: Path) -> Engine:
    settings = load_settings(env={"GS_VIDEOREPORT_BASE_URL": sim.url}, cwd=tmp_path)
    return Engine(
        settings,
        keys=[PoolKey.of(ApiKey(TEST_KEY, "test"))],
        home=tmp_path / "home",
        clock=SteppingClock().clock,
    )


def _two_videos(tmp_path: Path) -> Path:
    folder = tmp_path / "two"
    folder.mkdir()
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", folder / "a_first.mp4")
    shutil.copy(SAMPLES / "photosynthesis_basics.mp4", folder / "b_second.mp4")
    return folder


@pytest.mark.timeout(60)
def test_a_failed_processing_gives_its_budget_back(sim: Simulator, tmp_path: Path) -> None:
    """Two videos, a cost limit between one and two estimates, the first one's processing
    FAILED: the second gets the budget back and runs (on c898f3b it waited forever)."""
    sim.add_fault(Fault("processing_failed", "upload_start", match="a_first"))
    engine = _engine(sim, tmp_path)
    request = PlanRequest(output=tmp_path / "out", input_dir=_two_videos(tmp_path))

    async def main() -> None:
        planned = await engine.plan(request)
        estimate = estimate_plan(planned.plan, engine.settings)
        prices = Prices(engine.settings.prices)
        each = [
            prices.usd(
                estimate.model,
                row.input_tokens,
                expected_output_tokens(t.video.template.generation),
            )
            or 0.0
            for row, t in zip(estimate.rows, planned.plan.to_run, strict=True)
        ]
        limit = max(each) + 0.5 * min(each)  # one video fits, two do not
        options = RunOptions(parallel=2, max_uploads=2, simulated=True, cost_limit_usd=limit)
        outcome = await asyncio.wait_for(engine.start(planned, options), timeout=45)
        assert outcome.counts == {TaskStage.FAILED: 1, TaskStage.DONE: 1}, outcome
        assert outcome.exit_code == ExitCode.PARTIAL and outcome.stop_reason is None
        view = await engine.status(outcome.batch_id)
        assert view.status is BatchStatus.PARTIAL and view.running_pid is None
        failed = next(t for t in view.tasks if t.stage is TaskStage.FAILED)
        assert failed.video == "a_first" and failed.last_error_kind == "FileProcessingError"

    asyncio.run(main())
    assert sim.stats()["calls"]["generate"] == 1


class _CrashOn:
    """A front-end whose event handler has a bug, for one video: the exception surfaces
    inside that task, as any bug of ours would."""

    def __init__(self, video: str) -> None:
        self.video = video
        self.events: list[ev.Event] = []

    def emit(self, event: ev.Event) -> None:
        self.events.append(event)
        if (
            isinstance(event, ev.TaskActivity)
            and event.activity is ev.Activity.GENERATING
            and event.task.display_name == self.video
        ):
            raise RuntimeError("boom\nsecond line of a bug")


def test_an_unexpected_exception_fails_its_task_alone(sim: Simulator, tmp_path: Path) -> None:
    engine = _engine(sim, tmp_path)
    folder = tmp_path / "three"
    shutil.copytree(SAMPLES, folder)
    reporter = _CrashOn("photosynthesis_basics")

    async def main() -> None:
        planned = await engine.plan(PlanRequest(output=tmp_path / "out", input_dir=folder))
        outcome = await engine.start(planned, RunOptions(simulated=True), reporter=reporter)
        assert outcome.counts == {TaskStage.DONE: 2, TaskStage.FAILED: 1}
        assert outcome.exit_code == ExitCode.PARTIAL
        view = await engine.status(outcome.batch_id)
        assert view.status is BatchStatus.PARTIAL  # a final state, not "running"
        (failed,) = [t for t in view.tasks if t.stage is TaskStage.FAILED]
        assert failed.video == "photosynthesis_basics"
        assert failed.last_error_kind == "InternalError"
        assert failed.last_error == "internal error: RuntimeError: boom second line of a bug"
        assert "\n" not in failed.last_error
        # the task gave everything back: the failure was reported, nothing is in flight
        assert any(isinstance(e, ev.TaskFailed) for e in reporter.events)

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_options_changed_on_resume_are_the_batchs_from_then_on(
    sim: Simulator, tmp_path: Path
) -> None:
    """``resume --cost-limit 3`` and then ``retry-failed`` (with no flags) keeps the limit
    of 3, not the one the batch started with."""
    from gs_video_report.batch.api import RunChanges, read_stored_run

    sim.add_fault(Fault("processing_failed", "upload_start", match="a_first"))
    engine = _engine(sim, tmp_path)
    request = PlanRequest(output=tmp_path / "out", input_dir=_two_videos(tmp_path))

    async def main() -> tuple[RunOptions, RunOptions]:
        planned = await engine.plan(request)
        first = await engine.start(planned, RunOptions(parallel=2, cost_limit_usd=5.0))
        assert first.status == BatchStatus.PARTIAL
        await engine.resume(first.batch_id, RunChanges(cost_limit_usd=3.0, max_retries=1))
        after_resume = (await read_stored_run(first.batch_id, engine.db_path.parent)).options
        await engine.retry_failed(first.batch_id)
        after_retry = (await read_stored_run(first.batch_id, engine.db_path.parent)).options
        return after_resume, after_retry

    after_resume, after_retry = asyncio.run(main())
    for options in (after_resume, after_retry):
        assert (options.cost_limit_usd, options.max_retries, options.parallel) == (3.0, 1, 2)
