"""The budget covers every paid call (issue "Pay once", A): answers heavy with thinking,
and adapted retries after MAX_TOKENS, never take a batch past --cost-limit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gs_video_report.batch.api import Engine, PlanRequest, RunOptions
from gs_video_report.batch.cost import Prices
from gs_video_report.config import ApiKey, PoolKey, load_settings
from gs_video_report.errors import ExitCode
from gs_video_report.models import StopReason, TaskStage, Usage
from gs_video_report.simulator import Fault, Simulator
from tests.conftest import SAMPLES, TEST_KEY, copy_lecture
from tests.virtual_time import SteppingClock


def _engine(sim: Simulator, home: Path) -> Engine:
    settings = load_settings(env={"GS_VIDEOREPORT_BASE_URL": sim.url}, cwd=home)
    keys = [PoolKey.of(ApiKey(TEST_KEY, "test"))]
    return Engine(settings, keys=keys, home=home, clock=SteppingClock().clock)


def _course(folder: Path, count: int) -> Path:
    for i in range(count):  # the same length each: the same cost each
        copy_lecture(SAMPLES / "intro_to_fractions.mp4", folder / f"lecture_{i}.mp4")
    return folder


def _run(engine: Engine, folder: Path, out: Path, **options: object) -> object:
    async def main() -> object:
        planned = await engine.plan(
            PlanRequest(output=out, input_dir=folder, template="summary_report")
        )
        return await engine.start(planned, RunOptions(simulated=True, **options))  # type: ignore[arg-type]

    return asyncio.run(main())


def _generate_costs(home: Path, engine: Engine) -> list[float]:
    prices = Prices(engine.settings.prices)
    with sqlite3.connect(home / "state.db") as db:
        rows = db.execute(
            "SELECT model, prompt_tokens, output_tokens, thoughts_tokens FROM attempts"
            " WHERE stage = 'generate' ORDER BY id"
        ).fetchall()
    return [
        prices.of_usage(m, Usage(prompt_tokens=p, candidates_tokens=o, thoughts_tokens=t)) or 0.0
        for m, p, o, t in rows
    ]


def test_answers_heavy_with_thinking_stay_within_the_limit(sim: Simulator, tmp_path: Path) -> None:
    sim.set_limits(thoughts_tokens=30_000)  # each answer bills far more than a lesson's guess
    probe = _engine(sim, tmp_path / "probe")
    _run(probe, _course(tmp_path / "one", 1), tmp_path / "probe_out")
    (one_video,) = _generate_costs(tmp_path / "probe", probe)
    engine = _engine(sim, tmp_path / "home")
    limit = 2.5 * one_video  # two videos fit, three do not
    outcome = _run(
        engine, _course(tmp_path / "six", 6), tmp_path / "out", parallel=3, cost_limit_usd=limit
    )
    assert outcome.stop_reason is StopReason.BUDGET, outcome  # type: ignore[attr-defined]
    assert outcome.exit_code == ExitCode.QUOTA  # type: ignore[attr-defined]
    assert outcome.counts[TaskStage.DONE] == 2  # type: ignore[attr-defined]
    spent = sum(_generate_costs(tmp_path / "home", engine))
    assert spent <= limit, (spent, limit)


def test_an_adapted_retry_is_checked_against_the_limit(sim: Simulator, tmp_path: Path) -> None:
    sim.add_fault(Fault("max_tokens", "generate", times=1))
    probe = _engine(sim, tmp_path / "probe")
    _run(probe, _course(tmp_path / "one", 1), tmp_path / "probe_out")
    first, _adapted = _generate_costs(tmp_path / "probe", probe)
    sim.add_fault(Fault("max_tokens", "generate", times=1))
    engine = _engine(sim, tmp_path / "home")
    # the cut-off first call fits; its retry with twice the output budget does not
    limit = first * 1.5
    outcome = _run(engine, _course(tmp_path / "again", 1), tmp_path / "out", cost_limit_usd=limit)
    assert outcome.stop_reason is StopReason.BUDGET, outcome  # type: ignore[attr-defined]
    assert outcome.exit_code == ExitCode.QUOTA  # type: ignore[attr-defined]
    costs = _generate_costs(tmp_path / "home", engine)
    assert len(costs) == 1 and sum(costs) <= limit  # the retry was never sent
