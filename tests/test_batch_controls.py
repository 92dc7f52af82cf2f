"""Budget, progress file, resume settings, cleanup and lesson-on-disk recovery: the real
Typer app or the runner, the real SDK against the simulator, real SQLite."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from gs_video_report.batch.cleanup import cleanup
from gs_video_report.batch.cost import Budget, BudgetExceeded, Estimator, Prices
from gs_video_report.config import ApiKey, PoolKey, PriceOverride
from gs_video_report.errors import ExitCode
from gs_video_report.models import GenerationSettings, Usage
from gs_video_report.simulator import Fault, Simulator
from gs_video_report.storage import CheckpointManager, TaskStage, open_db
from tests.conftest import SAMPLES, TEST_KEY, make_lectures
from tests.test_batch_runner import plan_and_run, resume, settings_for


def test_budget_counts_spent_plus_in_flight() -> None:
    budget = Budget(1.0, spent_usd=0.5)
    budget.reserve(1, 0.3)
    with pytest.raises(BudgetExceeded, match="cross the cost limit"):
        budget.reserve(2, 0.3)  # 0.5 + 0.3 in flight + 0.3 > 1.0
    budget.release(1)
    budget.spend(0.1)
    budget.reserve(2, 0.3)  # 0.6 + 0.3 <= 1.0
    assert Budget(None).in_flight_usd == 0 and budget.in_flight_usd == pytest.approx(0.3)


def test_estimate_is_corrected_by_real_usage() -> None:
    estimator = Estimator()
    # before any video finished: a lesson plus the thinking of the call's level
    assert estimator.tokens(1000) == (1000, 4000 + 4096)  # medium, the default level
    assert estimator.tokens(1000, GenerationSettings(thinking_level="high")) == (1000, 20_384)
    capped = GenerationSettings(thinking_level="high", max_output_tokens=8192)
    assert estimator.tokens(1000, capped) == (1000, 8192)  # never more than the call may make
    estimator.observe(1000, Usage(prompt_tokens=1500, candidates_tokens=600, thoughts_tokens=200))
    estimator.observe(3000, Usage(prompt_tokens=4500, candidates_tokens=1000, thoughts_tokens=0))
    assert estimator.tokens(2000) == (3000, 900)  # input x1.5, output = mean of 800 and 1000


def test_prices_config_overrides_and_unknown_is_none() -> None:
    prices = Prices({"my-model": PriceOverride(input=1.0, output=2.0)})
    assert prices.usd("my-model", 1_000_000, 500_000) == pytest.approx(2.0)
    assert prices.usd("nobody-knows", 10, 10) is None
    assert prices.on("gemini-3.8-flash") is not None  # the shipped table


def _write_config(text: str) -> None:
    Path("config.yaml").write_text(text)  # tests run in their own cwd (isolated_env)


def test_cost_limit_stops_before_crossing_and_resume_with_a_higher_limit_finishes(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # Input-only prices make the figures easy: a video costs its prompt tokens x $1/M.
    _write_config("prices:\n  gemini-3.8-flash: {input: 1.0, output: 0.0}\n")
    out = tmp_path / "out"
    args = ("batch", "-d", str(SAMPLES), "-o", str(out), "--simulate", "-q", "--json")
    first = cli(*args, "-p", "1", "--cost-limit", "0.005")
    assert first.exit_code == ExitCode.QUOTA, first.output
    summary = json.loads(first.stdout)
    assert summary["stop_reason"] == "budget" and summary["counts"] == {"done": 1, "pending": 2}
    assert 0 < summary["spent_usd"] <= 0.005
    assert summary["rest_estimate_usd"] > 0.005  # what the other two would cost
    assert "Raise the limit with: gs_videoreport resume" in first.stderr
    # the next video was refused before its (free) upload, not only before generate
    assert sim.stats()["calls"]["generate"] == 1 and sim.stats()["uploads_completed"] == 1
    second = cli("resume", summary["batch_id"], "--cost-limit", "1", "-q", "--json")
    assert second.exit_code == ExitCode.OK, second.output
    assert json.loads(second.stdout)["counts"] == {"done": 3}
    assert sim.stats()["calls"]["generate"] == 3


def test_cost_limit_needs_a_price(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    result = cli(
        "batch",
        "-d",
        str(SAMPLES),
        "-o",
        str(out),
        "--simulate",
        "-m",
        "my-model",
        "--cost-limit",
        "1",
    )
    assert result.exit_code == ExitCode.USAGE and "needs a price for my-model" in result.stderr
    assert sim.api_calls() == 0 and not out.exists()


def test_progress_file_and_resume_keeps_the_batch_settings(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    root, out, progress = (
        make_lectures(tmp_path / "lectures"),
        tmp_path / "out",
        tmp_path / "p.json",
    )
    sim.add_fault(Fault("rate_limit_day", "generate", match="photosynthesis"))
    first = cli(
        "batch",
        "-d",
        str(root),
        "-o",
        str(out),
        "--simulate",
        "-q",
        "--json",
        "--progress-file",
        str(progress),
        "-p",
        "1",
    )
    assert first.exit_code == ExitCode.QUOTA
    snap = json.loads(progress.read_text())
    # uploads run ahead, so which video reaches its (only) generate slot first varies
    done_first = snap["videos"]["done"]
    assert snap["state"] == "quota" and done_first in (1, 2)
    assert snap["video_seconds"]["total"] > snap["video_seconds"]["done"] > 0
    # no --simulate, no --progress-file: the batch remembers both (and its parallelism)
    batch_id = json.loads(first.stdout)["batch_id"]
    second = cli("resume", batch_id, "-q", "--json")
    assert second.exit_code == ExitCode.OK, second.output
    snap = json.loads(progress.read_text())
    assert snap["state"] == "finished" and snap["videos"] == {
        "total": 3 - done_first,
        "done": 3 - done_first,
        "failed": 0,
        "retrying": 0,
        "waiting_for_quota": 0,
        "queued": 0,
        "in_flight": 0,
    }
    settings = json.loads(
        sqlite3.connect(tmp_path / "home" / "state.db")
        .execute("SELECT settings_json FROM batches")
        .fetchone()[0]
    )
    assert settings["parallel"] == 1 and settings["simulated"] is True
    assert TEST_KEY not in json.dumps(settings)


def test_a_real_api_batch_cannot_be_resumed_simulated(
    cli, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    monkeypatch.setenv("GS_VIDEOREPORT_BASE_URL", sim.url)
    sim.add_fault(Fault("rate_limit_day", "generate"))
    first = cli("batch", "-d", str(SAMPLES), "-o", str(tmp_path / "o"), "-q", "--json")
    assert first.exit_code == ExitCode.QUOTA
    batch_id = json.loads(first.stdout)["batch_id"]
    refused = cli("resume", batch_id, "--simulate")
    assert refused.exit_code == ExitCode.USAGE and "without --simulate" in refused.stderr


def test_cleanup_deletes_owned_uploads_and_drops_old_batches_but_keeps_the_ledger(
    sim: Simulator, tmp_path: Path
) -> None:
    make_lectures(tmp_path / "lectures")
    sim.add_fault(Fault("safety", "generate", match="photosynthesis"))

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            first = await plan_and_run(store, sim, tmp_path, "b1")
            assert first.counts == {TaskStage.DONE: 2, TaskStage.FAILED: 1}
            failed = next(t for t in await store.tasks("b1") if t.stage is TaskStage.FAILED)
            assert failed.upload_name and sim.stats()["files_live"] == 1
            settings = settings_for(sim, tmp_path)
            kept = await cleanup(
                store,
                older_than_days=30,
                now=time.time(),
                all_uploads=False,
                keys=[PoolKey.of(ApiKey("another-key", "t"))],
                api=settings.api,
            )
            assert kept.files_kept == 1 and kept.other_keys == {failed.upload_key}
            assert sim.stats()["files_live"] == 1
            report = await cleanup(
                store,
                older_than_days=0,
                now=time.time() + 86400,  # after the run's finish on its stepping clock
                all_uploads=False,
                keys=[PoolKey.of(ApiKey(TEST_KEY, "t"))],
                api=settings.api,
            )
            assert report.files_deleted == 1 and report.batches_dropped == ["b1"]
            assert sim.stats()["files_live"] == 0 and sim.stats()["calls"]["delete_file"] >= 3
            assert await store.batch("b1") is None and await store.tasks("b1") == []
            # dropping history does not forget what was done: nothing is paid twice
            generates = sim.stats()["calls"]["generate"]
            again = await plan_and_run(store, sim, tmp_path, "b2")
            assert [t.display_name for t in await store.tasks("b2")] == ["photosynthesis_basics"]
            assert sim.stats()["calls"]["generate"] == generates + 1
            assert again.counts == {TaskStage.DONE: 1}  # the fault fired once

    asyncio.run(main())


def test_cleanup_command_reports_and_keeps_lessons(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert cli("batch", "-d", str(SAMPLES), "-o", str(out), "--simulate", "-q").exit_code == 0
    dry = cli("cleanup", "--days", "0", "--dry-run", "--json")
    assert dry.exit_code == 0 and len(json.loads(dry.stdout)["batches_dropped"]) == 1
    assert "batch_" in cli("list-batches").stdout
    done = cli("cleanup", "--days", "0")
    assert done.exit_code == 0 and "dropped 1 batch(es)" in done.stderr
    assert "batch_" not in cli("list-batches").stdout
    assert len(list((out / "chinese_transcript").glob("*.md"))) == 3


def _without_created(markdown: str) -> str:
    return "\n".join(line for line in markdown.splitlines() if not line.startswith("created:"))


def test_a_lesson_written_before_a_crash_is_committed_without_paying_again(
    sim: Simulator, tmp_path: Path
) -> None:
    make_lectures(tmp_path / "lectures")

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            await plan_and_run(store, sim, tmp_path, "b1")
            # As if the process died after writing the lesson, before committing "done".
            task = (await store.tasks("b1"))[0]
            await store._write("UPDATE tasks SET stage = 'writing' WHERE id = ?", (task.id,))
            await store._write("DELETE FROM done_ledger WHERE done_key = ?", (task.done_key,))
            lesson = Path(task.output_md).read_text()
            generates = sim.stats()["calls"]["generate"]
            outcome = await resume(store, sim, tmp_path, "b1")
            assert outcome.counts == {TaskStage.DONE: 3}
            assert sim.stats()["calls"]["generate"] == generates  # nothing paid again
            again = await store.task(task.id)
            assert again.total_tokens == task.total_tokens and again.cost_usd == task.cost_usd
            rewritten = Path(task.output_md).read_text()  # from the stored answer
            assert _without_created(rewritten) == _without_created(lesson)
            assert task.done_key in await store.done_ledger()

    asyncio.run(main())
