"""Flags and names the user can get wrong: each is one ``error:`` line before anything is
planned or called."""

from __future__ import annotations

from pathlib import Path

import pytest

from gs_video_report.errors import ExitCode
from gs_video_report.simulator import Simulator


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--timeout", "inf"),
        ("--timeout", "nan"),
        ("--timeout", "1e308"),
        ("--timeout", "0"),
        ("--cost-limit", "inf"),
        ("--cost-limit", "nan"),
        ("--cost-limit", "-1"),
        ("--parallel", "0"),
        ("--parallel", "33"),
        ("--max-uploads", "0"),
        ("--max-retries", "many"),
    ],
)
def test_a_bad_number_is_one_line_exit_2_and_no_call(
    cli, sim: Simulator, sample: Path, flag: str, value: str
) -> None:  # type: ignore[no-untyped-def]
    result = cli("batch", "-d", str(sample.parent), "--simulate", "-q", flag, value)
    assert result.exit_code == ExitCode.USAGE, result.output
    line = one_error_line(result.stderr)
    assert flag in line and value in line
    assert "Traceback" not in result.output and sim.stats()["calls"] == {}


def test_resume_and_retry_failed_check_them_too(cli, sim: Simulator) -> None:  # type: ignore[no-untyped-def]
    for command in ("resume", "retry-failed"):
        result = cli(command, "batch_x", "--simulate", "--timeout", "inf")
        assert result.exit_code == ExitCode.USAGE, result.output
        assert "--timeout" in one_error_line(result.stderr)
    assert sim.stats()["calls"] == {}


def test_sane_numbers_still_run(cli, sim: Simulator, sample: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "batch",
        "-d",
        str(sample.parent),
        "--simulate",
        "-q",
        "--timeout",
        "604800",
        "--parallel",
        "8",
        "--max-retries",
        "0",
        "--cost-limit",
        "0.5",
    )
    assert result.exit_code == ExitCode.OK, result.output


def test_a_mistyped_template_is_one_line_with_the_name_meant_before_any_input_is_read(
    cli, sim: Simulator, sample: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "no such folder"  # the template is checked before the inputs
    result = cli("batch", "-d", str(missing), "-t", "sumary_report", "--simulate")
    assert result.exit_code == ExitCode.INPUT, result.output
    assert "did you mean summary_report?" in one_error_line(result.stderr)
    result = cli("batch", "-d", str(sample.parent), "-t", "sumary_report", "--simulate", "--json")
    assert result.exit_code == ExitCode.INPUT and result.stdout == ""
    assert "did you mean summary_report?" in one_error_line(result.stderr)
    single = cli("main", str(sample), "-t", "comprehensive_lessons", "--simulate")
    assert single.exit_code == ExitCode.INPUT, single.output
    assert "did you mean comprehensive_lesson?" in one_error_line(single.stderr)
    far = cli("main", str(sample), "-t", "zzz", "--simulate")  # nothing close: the list
    assert "available: chinese_transcript" in one_error_line(far.stderr)
    assert sim.stats()["calls"] == {}


def test_a_mistyped_command_suggests_the_command(cli, sim: Simulator, sample: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("bacth", "-d", "x")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert one_error_line(result.stderr) == "error: no command 'bacth' — did you mean 'batch'?"
    assert "did you mean 'list-batches'" in one_error_line(cli("list-batchs").stderr)
    # a file of that name is a video (the legacy short form), not a typo
    Path("bacth").write_bytes(sample.read_bytes())
    legacy = cli("bacth", "--simulate", "-o", "out")
    assert legacy.exit_code == ExitCode.INPUT, legacy.output  # main's own check of it
    assert "bacth: unsupported file type" in one_error_line(legacy.stderr)
    # and a video that is not there is still "not found", not a command typo
    gone = cli("batch.mp4", "--simulate")
    assert gone.exit_code == ExitCode.INPUT and "not found" in one_error_line(gone.stderr)


def test_cleanup_days_must_be_finite(cli) -> None:  # type: ignore[no-untyped-def]
    for value in ("inf", "nan", "-1", "1e308"):
        result = cli("cleanup", "--days", value, "--dry-run")
        assert result.exit_code == 2, (value, result.output)
        assert result.stderr.strip().startswith("error: --days must be"), result.stderr


@pytest.mark.parametrize(
    "argv",
    [("batch", "--bogus"), ("status",), ("batch", "-p"), ("--nope",), ("resume",)],
)
def test_a_usage_mistake_is_one_error_line_not_a_box(cli, argv: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = cli(*argv)
    assert result.exit_code == ExitCode.USAGE, result.output
    line = one_error_line(result.stderr)
    assert "-h'" in line and "╭" not in result.output


@pytest.mark.parametrize("argv", [("batch", "-d", "."), ("list-batches",), ("status", "b")])
def test_a_state_home_that_is_a_file_is_one_line_before_anything_runs(
    cli, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...]
) -> None:  # type: ignore[no-untyped-def]
    not_a_folder = tmp_path / "home-file"
    not_a_folder.write_text("x")
    monkeypatch.setenv("GS_VIDEOREPORT_HOME", str(not_a_folder))
    result = cli(*argv, "--simulate") if argv[0] == "batch" else cli(*argv)
    assert result.exit_code == ExitCode.INPUT, result.output
    assert "is not a folder" in one_error_line(result.stderr)
    assert sim.stats()["calls"] == {} and not_a_folder.read_text() == "x"
