"""`gs_videoreport batch | resume | status | list-batches` through the real Typer app."""

from __future__ import annotations

import json
from pathlib import Path

from gs_video_report.errors import ExitCode
from gs_video_report.simulator import Fault, Simulator
from tests.conftest import make_lectures


def lectures(tmp_path: Path) -> Path:
    root = make_lectures(tmp_path / "lectures")
    (root / "notes.txt").write_text("not a video")
    (root / "broken.mp4").write_text("not a video either")
    return root


def lessons(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.md") if "_reports" not in p.parts]


def test_dry_run_calls_and_writes_nothing(
    cli, sim: Simulator, tmp_path: Path, isolated_env: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    result = cli("batch", "-d", str(lectures(tmp_path)), "-o", str(out), "--dry-run", "--simulate")
    assert result.exit_code == ExitCode.PARTIAL, result.output  # broken.mp4, as a run would
    assert "Would run 3 video(s)" in result.stdout and "estimated cost $" in result.stdout
    assert "broken.mp4: " in result.stdout and "not a readable video" in result.stdout
    assert sim.api_calls() == 0 and not out.exists() and not (isolated_env / "state.db").exists()


def test_batch_then_status_then_skip_on_rerun(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, out = lectures(tmp_path), tmp_path / "out"
    first = cli(
        "batch",
        "-d",
        str(root),
        "-o",
        str(out),
        "-t",
        "summary_report",
        "--simulate",
        "--json",
        "-q",
    )
    assert first.exit_code == ExitCode.PARTIAL, (
        first.output
    )  # broken.mp4 was reported, the rest ran
    summary = json.loads(first.stdout)
    assert summary["counts"] == {"done": 3}
    assert sorted(p.relative_to(out).as_posix() for p in lessons(out)) == [
        "summary_report/week1/intro.md",
        "summary_report/week2/intro.md",
        "summary_report/week2/photosynthesis_basics.md",
    ]
    status = cli("status", summary["batch_id"], "--json")
    rows = json.loads(status.stdout)["tasks"]
    assert {r["stage"] for r in rows} == {"done"} and all(r["tokens"] for r in rows)
    assert summary["batch_id"] in cli("list-batches").stdout
    generates = sim.stats()["calls"]["generate"]
    again = cli(
        "batch", "-d", str(root), "-o", str(out), "-t", "summary_report", "--simulate", "-q"
    )
    assert "3 already done" in again.stderr and sim.stats()["calls"]["generate"] == generates
    assert again.exit_code == ExitCode.PARTIAL  # broken.mp4 is still rejected
    forced = cli(
        "batch",
        "-d",
        str(root),
        "-o",
        str(out),
        "-t",
        "summary_report",
        "--simulate",
        "-q",
        "--force",
    )
    assert (
        forced.exit_code == ExitCode.PARTIAL and sim.stats()["calls"]["generate"] == generates + 3
    )


def test_daily_quota_exits_5_prints_resume_and_resume_finishes(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    root, out = lectures(tmp_path), tmp_path / "out"
    (root / "broken.mp4").unlink()
    sim.add_fault(Fault("rate_limit_day", "generate", match="photosynthesis"))
    first = cli("batch", "-d", str(root), "-o", str(out), "--simulate", "-q")
    assert first.exit_code == ExitCode.QUOTA, first.output
    resume_line = next(
        line for line in first.stderr.splitlines() if line.startswith("Resume with:")
    )
    batch_id = resume_line.split()[-1]
    second = cli("resume", batch_id, "--simulate", "-q")
    assert second.exit_code == ExitCode.OK, second.output
    assert len(lessons(out)) == 3


def test_exactly_one_source(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("batch", "--simulate").exit_code == ExitCode.USAGE
    both = cli("batch", "-d", str(tmp_path), "-f", str(tmp_path / "x.txt"), "--simulate")
    assert both.exit_code == ExitCode.USAGE and "exactly one" in both.stderr
    assert cli("status", "batch_nope").exit_code == ExitCode.INPUT


def test_retry_failed_requeues_and_runs_only_the_failed(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    sim.add_fault(Fault("safety", "generate", match="photosynthesis"))
    first = cli("batch", "-d", str(root), "-o", str(out), "--simulate", "-q", "--json")
    assert first.exit_code == ExitCode.PARTIAL
    summary = json.loads(first.stdout)
    assert summary["counts"] == {"done": 2, "failed": 1}
    generates = sim.stats()["calls"]["generate"]
    again = cli("retry-failed", summary["batch_id"], "--simulate", "-q", "--json")
    assert again.exit_code == ExitCode.OK, again.output
    assert json.loads(again.stdout)["counts"] == {"done": 3}
    assert sim.stats()["calls"]["generate"] == generates + 1  # only the failed one


def test_cancel_an_idle_batch_then_resume_it(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    sim.add_fault(Fault("rate_limit_day", "generate", match="photosynthesis"))
    first = cli("batch", "-d", str(root), "-o", str(out), "--simulate", "-q", "--json")
    batch_id = json.loads(first.stdout)["batch_id"]
    cancelled = cli("cancel", batch_id)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    status = json.loads(cli("status", batch_id, "--json").stdout)
    assert status["status"] == "cancelled"
    assert sorted(r["stage"] for r in status["tasks"]) == ["cancelled", "done", "done"]
    resumed = cli("resume", batch_id, "--simulate", "-q", "--json")
    assert resumed.exit_code == ExitCode.OK and json.loads(resumed.stdout)["counts"] == {"done": 3}


def test_reports_list_every_video_and_the_failures(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    sim.add_fault(Fault("recitation", "generate", match="photosynthesis", times=2))
    result = cli("batch", "-d", str(root), "-o", str(out), "--simulate", "-q", "--json")
    summary_out = json.loads(result.stdout)
    reports = out / "_reports" / summary_out["batch_id"]
    assert summary_out["report"] == str(reports)
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["counts"] == {"done": 2, "failed": 1} and summary["total_cost_usd"] > 0
    by_status = {v["status"] for v in summary["videos"]}
    assert by_status == {"done", "failed"}
    failures = json.loads((reports / "failures.json").read_text())
    assert [f["video"] for f in failures] == ["photosynthesis_basics"]
    assert "RECITATION" in failures[0]["error"]["message"]
    markdown = (reports / "summary.md").read_text()
    assert "photosynthesis_basics | failed" in markdown
    assert "| Video | Status | Length | Retries |" in markdown  # retries, not tries: 0 = first
    # reports are not lessons: a rerun's folder scan must not pick them up, and nothing is redone
    again = cli("batch", "-d", str(root), "-o", str(out), "--simulate", "-q", "--dry-run")
    assert "Would run 1 video(s)" in again.stdout
