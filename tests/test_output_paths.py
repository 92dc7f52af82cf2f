"""Lessons land inside ``-o DIR`` whatever names the template, the CSV or the folder
give them: through the real CLI, against the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gs_video_report.errors import ExitCode
from gs_video_report.simulator import Simulator
from tests.test_templates import MINIMAL

BAD_NAMES = ["..", "../x", "/abs", "a/../../b", "a\x00b", "a\nb", "."]


def named_template(folder: Path, name: str) -> Path:
    path = folder / "named.yaml"
    path.write_text(
        MINIMAL.format(name=json.dumps(name)).replace("topic: {default: null", "topic: {default: t")
    )
    return path


def lessons_anywhere(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.md") if "_reports" not in p.parts]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_template_named_to_escape_is_refused_before_any_call(
    cli: Any, sim: Simulator, sample: Path, tmp_path: Path, name: str
) -> None:
    work = tmp_path / "work"  # the tests' cwd: "/abs" would be absolute, ".." its parent
    out = work / "out"
    template = named_template(tmp_path, name)
    table = tmp_path / "course.csv"
    table.write_text(f"path,template\n{sample},{template}\n")
    runs = {
        "main": ["main", str(sample), "-t", str(template)],
        "batch -t": ["batch", "-d", str(sample.parent), "-t", str(template)],
        "batch csv": ["batch", "-u", str(table)],
    }
    for how, args in runs.items():
        result = cli(*args, "-o", str(out), "--simulate")
        assert result.exit_code == ExitCode.INPUT, (how, result.output)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in result.output, (how, result.stderr)
        assert "named.yaml" in result.stderr and "name" in result.stderr, (how, result.stderr)
    assert lessons_anywhere(tmp_path) == [] and not Path("/abs").exists()
    assert sim.api_calls() == 0


def test_a_symlink_in_the_output_folder_cannot_lead_lessons_out(
    cli: Any, sim: Simulator, sample: Path, tmp_path: Path
) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "summary_report").symlink_to(elsewhere)
    main = cli("main", str(sample), "-t", "summary_report", "-o", str(out), "--simulate")
    assert main.exit_code == ExitCode.INPUT, main.output
    assert main.stderr.startswith("error: ") and "not inside the output folder" in main.stderr
    batch = cli(
        "batch", "-d", str(sample.parent), "-t", "summary_report", "-o", str(out), "--simulate"
    )
    assert batch.exit_code == ExitCode.INPUT, batch.output
    assert "not inside the output folder" in batch.stderr
    assert list(elsewhere.iterdir()) == [] and sim.api_calls() == 0


@pytest.mark.parametrize("output_name", ["..", ".", "../../x", "/etc/cron.d/x", "a/../../b"])
def test_csv_output_names_stay_inside(
    cli: Any, sim: Simulator, sample: Path, tmp_path: Path, output_name: str
) -> None:
    out = tmp_path / "deep" / "out"
    table = tmp_path / "course.csv"
    table.write_text(f"path,template,output_name\n{sample},summary_report,{output_name}\n")
    result = cli("batch", "-u", str(table), "-o", str(out), "--simulate", "-q")
    assert result.exit_code == ExitCode.OK, result.output
    written = lessons_anywhere(tmp_path)
    assert len(written) == 1 and written[0].parent == out / "summary_report", written
