"""What the CLI says at the end of a batch, in its reports and its exit code agrees: one
rule (exit 1 when a video failed or an input was rejected), one summary, one plan."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from gs_video_report.errors import ExitCode
from gs_video_report.simulator import Fault, Simulator
from tests.conftest import SAMPLES, TEST_KEY, make_lectures


def batch_id_in(text: str) -> str:
    found = re.search(r"batch_\d{8}_\d{6}_[0-9a-f]+", text)
    assert found, text
    return found.group()


def report(out: Path, batch_id: str) -> tuple[dict, list]:  # type: ignore[type-arg]
    folder = out / "_reports" / batch_id
    summary = json.loads((folder / "summary.json").read_text())
    return summary, json.loads((folder / "failures.json").read_text())


def test_the_end_of_a_batch_names_the_failed_and_the_retry_command(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    keys, config = tmp_path / "my keys.txt", tmp_path / "config.yaml"
    keys.write_text(f"{TEST_KEY} project=p1\n")
    config.write_text("limits: {}\n")
    sim.add_fault(Fault("safety", "generate", match="photosynthesis"))
    args = ["batch", "-d", str(root), "-o", str(out), "--simulate", "-q"]
    args += ["--keys-file", str(keys), "-c", str(config)]
    result = cli(*args)
    assert result.exit_code == ExitCode.PARTIAL, result.output
    err = result.stderr
    for column in ("Done", "Failed", "Skipped", "Rejected", "Cost", "Time"):
        assert column in err
    assert "(simulated)" in err and ": partial" in err
    failed = [line for line in err.splitlines() if line.startswith("  photosynthesis_basics: ")]
    assert len(failed) == 1 and "SAFETY" in failed[0].upper(), err
    batch_id = batch_id_in(err)
    retry = next(line for line in err.splitlines() if line.startswith("Retry the failed"))
    command = retry.split(": ", 1)[1]
    assert shlex.split(command) == [
        "gs_videoreport",
        "retry-failed",
        batch_id,
        "--keys-file",
        str(keys),
        "-c",
        str(config),
    ]

    again = cli("retry-failed", batch_id, "--simulate", "-q", "--json")
    doc = json.loads(again.stdout)  # one document, with the same figures
    assert doc["done"] == 3 and doc["failed"] == 0 and doc["failures"] == []
    assert doc["simulated"] is True and doc["retry_command"] is None
    assert doc["skipped"] == 0 and doc["rejected"] == [] and doc["elapsed_s"] >= 0


def test_json_summary_has_the_failures_and_the_retry_command(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    sim.add_fault(Fault("safety", "generate", match="photosynthesis"))
    result = cli("batch", "-d", str(root), "-o", str(out), "--simulate", "-q", "--json")
    doc = json.loads(result.stdout)
    assert doc["status"] == "partial" and doc["done"] == 2 and doc["failed"] == 1
    assert [f["video"] for f in doc["failures"]] == ["photosynthesis_basics"]
    assert doc["failures"][0]["reason"]
    assert doc["retry_command"] == f"gs_videoreport retry-failed {doc['batch_id']}"
    assert doc["simulated"] is True and doc["spent_usd"] > 0 and doc["cost_known"] is True


def test_rejected_inputs_are_in_the_reports_and_make_the_batch_partial(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", videos / "good.mp4")
    (videos / "empty.mp4").write_bytes(b"")
    first = cli("batch", "-d", str(videos), "-o", str(out), "--simulate", "-q", "--json")
    assert first.exit_code == ExitCode.PARTIAL, first.output
    doc = json.loads(first.stdout)
    assert doc["status"] == "partial" and doc["done"] == 1 and doc["failed"] == 0
    assert [r["reason"] for r in doc["rejected"]] == [f"{videos / 'empty.mp4'}: empty file"]
    summary, failures = report(out, doc["batch_id"])
    assert summary["status"] == "partial"  # it said "done" while the exit code said 1
    assert summary["rejected"] == [
        {
            "input": f"{videos}/",
            "status": "rejected",
            "reason": f"{videos / 'empty.mp4'}: empty file",
        }
    ]
    assert [f["status"] for f in failures] == ["rejected"]
    assert json.loads(cli("status", doc["batch_id"], "--json").stdout)["status"] == "partial"
    # a resume's report and exit code still count them
    (out / "_reports").rename(tmp_path / "old_reports")
    resumed = cli("resume", doc["batch_id"], "--simulate", "-q")
    assert resumed.exit_code == ExitCode.PARTIAL, resumed.output
    assert "empty file" in resumed.stderr  # named in the summary
    summary, failures = report(out, doc["batch_id"])
    assert summary["status"] == "partial" and len(summary["rejected"]) == 1
    assert [f["status"] for f in failures] == ["rejected"]


def test_a_missing_list_path_and_a_broken_csv_row_are_rejected_with_the_reason(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.mp4"
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", good)
    listing = tmp_path / "todo.txt"
    listing.write_text(f"{good}\n{tmp_path / 'gone.mp4'}\n")
    result = cli("batch", "-f", str(listing), "-o", str(tmp_path / "a"), "--simulate", "-q")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    batch_id = batch_id_in(result.stderr)
    summary, failures = report(tmp_path / "a", batch_id)
    assert summary["status"] == "partial" and summary["counts"] == {"done": 1}
    assert failures[0]["input"] == "todo.txt:2" and "not found" in failures[0]["reason"]

    table = tmp_path / "course.csv"
    table.write_text(f'path,template\n{good},summary_report\n"broken,summary_report\n')
    result = cli("batch", "-u", str(table), "-o", str(tmp_path / "b"), "--simulate", "-q")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    batch_id = batch_id_in(result.stderr)
    _, failures = report(tmp_path / "b", batch_id)
    assert failures[0]["input"] == "course.csv:3" and "not a valid CSV row" in failures[0]["reason"]


def test_a_clean_batch_exits_0_and_says_done(
    cli, sim: Simulator, sample: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    result = cli("batch", "-d", str(sample.parent), "-o", str(out), "--simulate", "-q", "--json")
    assert result.exit_code == ExitCode.OK, result.output
    doc = json.loads(result.stdout)
    summary, failures = report(out, doc["batch_id"])
    assert summary["status"] == doc["status"] == "done" and failures == []


def test_dry_run_prints_the_plan_on_stdout(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, out = tmp_path / "lectures", tmp_path / "out"
    root.mkdir()
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", root / "a.mp4")
    args = ["batch", "-d", str(root), "-o", str(out), "--simulate", "-t", "summary_report"]
    assert cli(*args, "-q").exit_code == ExitCode.OK
    calls = sim.api_calls()
    shutil.copy(SAMPLES / "photosynthesis_basics.mp4", root / "b.mp4")
    (root / "empty.mp4").write_bytes(b"")
    plan = cli(*args, "--dry-run")
    assert plan.exit_code == ExitCode.PARTIAL  # empty.mp4, as the run would say
    assert "Would run 1 video(s)" in plan.stdout and "empty.mp4: empty file" in plan.stdout
    assert "skipped 1: 1 already done" in plan.stdout and "already done in" not in plan.stdout
    verbose = cli(*args, "--dry-run", "-v")
    assert verbose.stdout.count("already done in") == 1
    assert sim.api_calls() == calls and not (out / "summary_report" / "b.md").exists()


def test_dry_run_json_is_one_document_with_the_totals(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    (root / "empty.mp4").write_bytes(b"")
    config = tmp_path / "config.yaml"
    config.write_text("limits:\n  gemini-3.8-flash: {rpm: 2, tpm: 1000000}\n")
    args = ["batch", "-d", str(root), "-o", str(out), "--simulate", "--dry-run", "--json"]
    result = cli(*args, "-c", str(config))
    assert result.exit_code == ExitCode.PARTIAL, result.output
    doc = json.loads(result.stdout)
    assert [e["video"] for e in doc["entries"]] == ["intro", "intro", "photosynthesis_basics"]
    entry = doc["entries"][0]
    assert entry["template"] == "chinese_transcript" and entry["duration_s"] == 45
    assert entry["parts"] == 1 and entry["estimated_input_tokens"] > 0
    assert entry["output"].endswith("week1/intro.md")
    assert doc["skipped"] == {"count": 0, "reasons": {}, "videos": []}
    assert [r["reason"].rsplit(": ", 1)[1] for r in doc["rejected"]] == ["empty file"]
    totals = doc["totals"]
    assert totals["videos"] == 3 and totals["calls"] == 3 and totals["duration_s"] == 120
    assert totals["estimated_input_tokens"] == sum(
        e["estimated_input_tokens"] for e in doc["entries"]
    )
    assert totals["estimated_cost_usd"] > 0 and totals["min_time_s"] == 90  # 3 calls at 2 rpm
    assert sim.api_calls() == 0 and not out.exists()
