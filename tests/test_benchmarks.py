"""The benchmark scripts still run and still measure what they claim, on tiny inputs.

Timings are not asserted (that is what the benchmarks are for); their bookkeeping is:
every video done, none failed, the simulator answered every call.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )


def test_overhead_runs_every_task_through_the_real_pool(tmp_path: Path) -> None:
    lessons = tmp_path / "lessons"
    result = _run("overhead.py", "-n", "12", "--skip-end-to-end", "--lesson-dir", str(lessons))
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("orchestration"))
    assert re.search(r": 12 tasks, pool [\d.]+ ms/task", line), line
    assert list(lessons.iterdir()) == []  # its lesson folder is removed afterwards


def test_throughput_custom_scenario_finishes_every_video() -> None:
    result = _run("throughput.py", "-n", "6", "-r", "6000", "-p", "3", "-l", "0.02", "--json")
    row = json.loads(result.stdout.splitlines()[-1])
    assert (row["videos"], row["done"], row["failed"], row["exit_code"]) == (6, 6, 0, 0)
    assert row["api_calls"] >= 6 * 3  # upload, generate and delete of every video, at least
    assert row["calls_429"] == 0


def test_limiter_benchmark_reports_its_bound_and_every_video() -> None:
    result = _run("limiter.py", "-n", "6", "-r", "6000", "-p", "3", "-l", "0.02", "--json")
    row = json.loads(result.stdout.splitlines()[-1])
    assert (row["videos"], row["done"], row["failed"], row["exit_code"]) == (6, 6, 0, 0)
    # one window, the 6 calls two at a time on 3 slots: 0.02 s x 2
    assert row["bound_s"] == 0.04 and row["first_window_calls"] == 6
    assert row["calls_429"] == 0


def test_claims_benchmark_claims_every_pending_task_through_the_pending_index() -> None:
    result = _run(
        "claims.py", "-n", "40", "-n", "80", "--pending", "10", "--samples", "5", "--json"
    )
    rows = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert [(r["tasks"], r["done"], r["samples"]) for r in rows] == [(40, 30, 5), (80, 70, 5)]
    assert all("tasks_pending" in r["plans"]["claim"] for r in rows), rows


def test_pipeline_benchmark_runs_the_script_and_the_batch_on_the_same_videos() -> None:
    result = _run(
        "pipeline.py",
        *("-n", "4", "-p", "2", "-r", "1", "-l", "0.02", "--processing", "0.05"),
        "--json",
    )
    assert result.returncode in (0, 1), result.stderr  # 1: a ratio missed (not asserted)
    row = json.loads(result.stdout.splitlines()[-1])
    # each run wrote every video's answer, or the benchmark would have stopped with its exit
    assert (row["videos"], row["parallel"], row["repeats"]) == (4, 2, 1)
    assert len(row["script_wall_s"]) == len(row["batch_wall_s"]) == 1
    assert row["ratio_min"] > 0 and row["script_cpu_ms_per_video"] > 0


def test_at_rest_benchmark_reruns_a_finished_batch_without_calls() -> None:
    result = _run("at_rest.py", "-n", "5", "--json")
    assert result.returncode in (0, 1), result.stderr
    row = json.loads(result.stdout.splitlines()[-1])
    assert row["videos"] == 5 and row["generate_calls"] == 5  # the rerun called nothing
    assert all(row[k] > 0 for k in ("dry_run_first_s", "dry_run_second_s", "status_s"))


def test_templates_per_upload_benchmark_uploads_each_video_once() -> None:
    result = _run("templates_per_upload.py", "-n", "2", "--max-templates", "2", "--json")
    assert result.returncode == 0, result.stderr
    one, two = (json.loads(line) for line in result.stdout.splitlines()[-2:])
    assert (one["lessons"], one["uploads"], one["generate_calls"]) == (2, 2, 2)
    assert (two["lessons"], two["uploads"], two["generate_calls"]) == (4, 2, 4)
    # the 45 s sample is cached for its two templates, the 30 s one is below the minimum
    assert (two["caches_created"], two["caches_left"], two["files_left"]) == (1, 0, 0)
    assert two["saving_usd"] > 0 and one["saving_usd"] == 0


def test_modes_benchmark_halves_the_cost_in_flex_and_batch_mode() -> None:
    result = _run("modes.py", "-n", "2", "--json")
    rows = {r["mode"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert [rows[m]["done"] for m in ("live", "flex", "batch")] == [2, 2, 2], result.stderr
    assert rows["batch"]["batch_jobs"] == 1 and rows["batch"]["generate_calls"] == 0
    assert rows["batch"]["uploads_per_video"] == rows["live"]["uploads_per_video"] == 1
    half = rows["live"]["usd_per_lesson_hour"] / 2
    assert abs(rows["batch"]["usd_per_lesson_hour"] - half) < 1e-3
    assert abs(rows["flex"]["usd_per_lesson_hour"] - half) < 1e-3
