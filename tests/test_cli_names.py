"""Names are data, not markup: what a file name, a list line, a CSV cell or an error
quoting them contains prints as it is (Rich markup literally, terminal control
characters as visible escapes), wherever the CLI prints it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from gs_video_report.cli.text import literal, printable
from gs_video_report.errors import ExitCode
from gs_video_report.simulator import Simulator
from tests.conftest import SAMPLES

NAME = "[bold red]x[blink]\x1b[2J"  # markup, and an ESC sequence that clears the screen
SHOWN = "[bold red]x[blink]\\x1b[2J"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f]")  # any control character but \n and \t


def assert_clean(text: str) -> None:
    assert not RAW.search(text), repr(text)


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # table cells unfolded, so names can be found


def test_printable_and_literal() -> None:
    assert printable("a\x1b[2Jb\rc\x07d\u202ee") == "a\\x1b[2Jb\\rc\\x07d\\u202ee".replace(
        "\\r", "\\x0d"
    )
    assert printable("line\nnext\tx", lines=True) == "line\nnext\tx"
    assert literal("[bold]x[/]") == "\\[bold]x\\[/]"


def test_a_file_name_with_markup_and_escapes_prints_literally(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    videos, out = tmp_path / "videos", tmp_path / "out"
    videos.mkdir()
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", videos / f"{NAME}.mp4")
    # a file is no "[red]x[/red]\x1b[2J.mp4" (a name has no slash); a path can be
    (videos / "[red]x[").mkdir()
    (videos / "[red]x[" / "red]\x1b[2J\r\x07.mp4").write_bytes(b"")  # rejected, by name
    empty = "[red]x[/red]\\x1b[2J\\x0d\\x07.mp4: empty file"
    plan = cli("batch", "-d", str(videos), "-o", str(out), "--simulate", "--dry-run")
    assert_clean(plan.output)
    assert SHOWN in plan.stdout and empty in plan.stdout
    result = cli("batch", "-d", str(videos), "-o", str(out), "--simulate", "-q")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert_clean(result.output)
    assert f"done: {SHOWN}" in result.stderr  # the progress line
    assert result.stderr.count(empty) == 2  # the plan's line and the summary's
    batch_id = re.search(r"batch_\d{8}_\d{6}_[0-9a-f]+", result.stderr).group()  # type: ignore[union-attr]
    status = cli("status", batch_id)
    assert_clean(status.output)
    assert SHOWN in status.stdout
    doc = json.loads(cli("status", batch_id, "--json").stdout)
    assert doc["tasks"][0]["video"] == NAME  # JSON keeps the data as it is, escaped by JSON


def test_list_lines_csv_cells_and_errors_print_literally(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    line = "[link=https://evil.example]click[/link]\x1b]0;owned\x07.mp4"
    listing = tmp_path / "todo.txt"
    listing.write_text(f"{SAMPLES / 'intro_to_fractions.mp4'}\n{line}\n")
    result = cli("batch", "-f", str(listing), "-o", str(tmp_path / "a"), "--simulate", "-q")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert_clean(result.output)
    assert "todo.txt:2: video not found:" in result.stderr
    # the path keeps one slash of two; the rest is as it was written
    assert "[link=https:/evil.example]click[/link]\\x1b]0;owned\\x07.mp4" in result.stderr

    table = tmp_path / "course.csv"
    table.write_text(f"path,template\n{SAMPLES / 'intro_to_fractions.mp4'},[bold]no\x1b[5m\n")
    result = cli("batch", "-u", str(table), "-o", str(tmp_path / "b"), "--simulate", "-q")
    assert result.exit_code == ExitCode.INPUT, result.output
    assert_clean(result.output)
    assert "unknown template '[bold]no\\x1b[5m'" in result.stderr

    error = cli("main", f"{tmp_path}/{NAME}.mp4", "--simulate")
    assert error.exit_code == ExitCode.INPUT
    assert_clean(error.output)
    assert error.stderr.startswith("error: video not found: ") and SHOWN in error.stderr
