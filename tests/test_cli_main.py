"""`gs_videoreport main` through the real Typer app, against the simulator."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from gs_video_report.cli import _legacy_argv
from gs_video_report.errors import ExitCode
from gs_video_report.simulator import Fault, Simulator
from tests.conftest import SAMPLES, TEST_KEY

TEMPLATES = ("chinese_transcript", "comprehensive_lesson", "summary_report")


def front_matter(md: Path) -> dict:  # type: ignore[type-arg]
    text = md.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_writes_a_complete_lesson(
    cli, sim: Simulator, sample: Path, tmp_path: Path, template: str
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "lessons"
    result = cli("main", str(sample), "--simulate", "-t", template, "-o", str(out))
    assert result.exit_code == 0, result.output
    md = out / template / "intro_to_fractions.md"
    assert f"Lesson: {md}" in result.stdout
    meta = front_matter(md)
    assert meta["simulated"] is True and meta["template"] == template
    assert meta["source"] == str(sample) and meta["duration"] == "00:45"
    assert meta["tokens"]["total"] > 0 and meta["model"] == "gemini-3.8-flash"
    body = md.read_text(encoding="utf-8")
    assert "{{" not in body and "{%" not in body
    links = re.findall(r"\]\(([^)]+)#t=(\d+)\)", body)
    assert len(links) >= 3
    for target, seconds in links:
        assert (
            md.parent / unquote(target)
        ).resolve() == sample.resolve()  # the link opens the video
        assert 0 <= int(seconds) <= 45
    answer = json.loads((out / template / "intro_to_fractions.json").read_text(encoding="utf-8"))
    assert answer["source"] == str(sample) and answer["answer"]
    stats = sim.stats()
    assert stats["uploads_completed"] == 1 and stats["calls"]["generate"] == 1
    assert stats["files_live"] == 0  # the upload was deleted afterwards


def test_youtube_url_gets_youtube_timestamp_links(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "main",
        "https://youtu.be/dQw4w9WgXcQ",
        "--simulate",
        "-t",
        "summary_report",
        "-o",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 0, result.output
    body = (tmp_path / "o" / "summary_report" / "youtube-dQw4w9WgXcQ.md").read_text()
    assert re.search(r"\(https://www\.youtube\.com/watch\?v=dQw4w9WgXcQ&t=\d+s\)", body)
    assert sim.stats()["uploads_started"] == 0


def test_params_reach_the_prompt(cli, sim: Simulator, sample: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "main",
        str(sample),
        "--simulate",
        "-t",
        "comprehensive_lesson",
        "--param",
        "subject_area=Mathematics",
    )
    assert result.exit_code == 0, result.output
    assert "Mathematics" in sim.stats()["generate_requests"][0]["prompt"]


def _bad_input(tmp_path: Path, kind: str) -> list[str]:
    data = (SAMPLES / "intro_to_fractions.mp4").read_bytes()
    video = tmp_path / "v.mp4"
    video.write_bytes(data)
    if kind == "missing file":
        return ["main", str(tmp_path / "none.mp4"), "--simulate"]
    if kind == "empty file":
        video.write_bytes(b"")
    elif kind == "text renamed .mp4":
        video.write_text("not a video\n" * 40)
    elif kind == "truncated video":
        video.write_bytes(data[: len(data) // 3])
    elif kind == "unsupported extension":
        shutil.move(video, tmp_path / "v.mkv")
        return ["main", str(tmp_path / "v.mkv"), "--simulate"]
    elif kind == "non-YouTube URL":
        return ["main", "https://vimeo.com/76979871", "--simulate"]
    elif kind == "unknown template":
        return ["main", str(video), "--simulate", "-t", "lesson_plan_9000"]
    elif kind == "missing template parameter":
        tpl = tmp_path / "needs.yaml"
        tpl.write_text(
            'name: needs\nversion: "1"\ndescription: d\nparameters: {topic: {default: null}}\n'
            'prompt: "about {{ topic }}"\nschema: {type: object}\nlayout: "x"\n'
        )
        return ["main", str(video), "--simulate", "-t", str(tpl)]
    elif kind == "unknown template parameter":
        return ["main", str(video), "--simulate", "--param", "colour=red", "-t", "summary_report"]
    elif kind == "no API key":
        return ["main", str(video)]
    elif kind == "malformed config":
        (tmp_path / "c.yaml").write_text("api: {timeout: [\n")
        return ["main", str(video), "--simulate", "-c", str(tmp_path / "c.yaml")]
    return ["main", str(video), "--simulate"]


@pytest.mark.parametrize(
    ("kind", "code", "message"),
    [
        ("missing file", ExitCode.INPUT, "video not found"),
        ("empty file", ExitCode.INPUT, "empty file"),
        ("text renamed .mp4", ExitCode.INPUT, "not a readable video"),
        ("truncated video", ExitCode.INPUT, "not a readable video"),
        ("unsupported extension", ExitCode.INPUT, "unsupported file type .mkv"),
        ("non-YouTube URL", ExitCode.INPUT, "only public YouTube videos"),
        ("unknown template", ExitCode.INPUT, "unknown template 'lesson_plan_9000'"),
        ("missing template parameter", ExitCode.INPUT, "needs parameter 'topic'"),
        ("unknown template parameter", ExitCode.INPUT, "no parameter 'colour'"),
        ("no API key", ExitCode.AUTH, "no Gemini API key"),
        ("malformed config", ExitCode.INPUT, "c.yaml: malformed YAML"),
    ],
)
def test_bad_input_one_line_exit_code_no_api_call(
    cli,
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    code: ExitCode,
    message: str,
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(
        "GS_VIDEOREPORT_BASE_URL", sim.url
    )  # a real call would land in the simulator
    result = cli(*_bad_input(tmp_path, kind))
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert sim.api_calls() == 0, sim.stats()["calls"]


def test_verbose_shows_the_traceback(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("main", str(tmp_path / "none.mp4"), "--simulate", "-v")
    assert result.exit_code == ExitCode.INPUT
    assert "Traceback" in result.stderr and "error: video not found" in result.stderr


def test_usage_error_exits_2(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("main", "x.mp4", "--no-such-flag").exit_code == ExitCode.USAGE
    assert cli("main").exit_code == ExitCode.USAGE


def test_retryable_errors_are_retried_with_backoff(
    cli, sim: Simulator, sample: Path, isolated_env: Path
) -> None:  # type: ignore[no-untyped-def]
    sim.add_fault(Fault("unavailable", "generate"))
    sim.add_fault(Fault("rate_limit_minute", "generate", retry_after=20))
    result = cli("main", str(sample), "--simulate", "-t", "summary_report")
    assert result.exit_code == 0, result.output
    assert sim.stats()["calls"]["generate"] == 3
    with sqlite3.connect(isolated_env / "state.db") as db:
        at = [row[0] for row in db.execute("SELECT at FROM attempts WHERE stage = 'generate'")]
        (tries,) = db.execute("SELECT attempts FROM tasks").fetchone()
    assert len(at) == 3 and at[1] - at[0] >= 1.0  # a backoff after the 503 (one try used)
    assert at[2] - at[1] >= 20  # the 429's RetryInfo was honoured (no try used)
    assert tries == 1


def test_per_day_quota_exits_5_without_retrying(cli, sim: Simulator, sample: Path) -> None:  # type: ignore[no-untyped-def]
    sim.add_fault(Fault("rate_limit_day", "generate"))
    result = cli("main", str(sample), "--simulate")
    assert result.exit_code == ExitCode.QUOTA, result.output
    assert sim.stats()["calls"]["generate"] == 1
    assert "run the same command again to resume" in result.stderr
    assert sim.stats()["files_live"] == 1  # kept for the resume
    again = cli("main", str(sample), "--simulate")  # `main` resumes where it stopped
    assert again.exit_code == 0, again.output
    assert sim.stats()["uploads_completed"] == 1  # the upload was reused, not sent again
    assert sim.stats()["calls"]["generate"] == 2 and sim.stats()["files_live"] == 0


def test_truncated_answer_fails_and_writes_nothing(
    cli, sim: Simulator, sample: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # cut off again after every adjustment (the budget is at its ceiling already; then
    # thinking lower, lower still): the video fails, nothing is written
    sim.add_fault(Fault("max_tokens", "generate", times=10))
    result = cli("main", str(sample), "--simulate", "-o", str(tmp_path / "o"))
    assert result.exit_code == ExitCode.PARTIAL
    assert "finish_reason=MAX_TOKENS" in result.stderr
    assert sim.stats()["calls"]["generate"] == 3
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.md"))


def test_expired_upload_is_uploaded_again_once(cli, sim: Simulator, sample: Path) -> None:  # type: ignore[no-untyped-def]
    sim.add_fault(Fault("permission_denied", "generate"))
    result = cli("main", str(sample), "--simulate", "-t", "summary_report")
    assert result.exit_code == 0, result.output
    assert sim.stats()["uploads_completed"] == 2 and sim.stats()["calls"]["generate"] == 2


def test_invalid_key_exits_4(
    cli, sim: Simulator, sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GS_VIDEOREPORT_BASE_URL", sim.url)
    sim.invalidate_key(TEST_KEY)
    result = cli("main", str(sample), "-k", TEST_KEY)
    assert result.exit_code == ExitCode.AUTH
    assert "API key not valid" in result.stderr and TEST_KEY not in result.output


def test_the_api_key_is_never_written_anywhere(
    cli,
    sim: Simulator,
    sample: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    isolated_env: Path,
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GS_VIDEOREPORT_BASE_URL", sim.url)
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    outputs = [
        cli("main", str(sample), "-t", t, "-o", str(tmp_path / "o"), "-v") for t in TEMPLATES
    ]
    sim.add_fault(Fault("server_error", "generate", times=10))
    outputs.append(cli("main", str(sample), "-o", str(tmp_path / "o"), "-v", "--force"))
    outputs.append(
        cli("main", str(sample), "-k", TEST_KEY, "-o", str(tmp_path / "o"), "-v", "--force")
    )
    assert [r.exit_code for r in outputs] == [0, 0, 0, 1, 1]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in written) and any(p.suffix == ".md" for p in written)
    for path in written:
        assert TEST_KEY.encode() not in path.read_bytes(), path
    for result in outputs:
        assert TEST_KEY not in result.output
    assert sim.stats()["keys_seen"]  # the key was really used


def test_legacy_forms() -> None:
    assert _legacy_argv(["video.mp4", "-t", "x"]) == ["main", "video.mp4", "-t", "x"]
    assert _legacy_argv(["list-templates"]) == ["list-templates"]
    assert _legacy_argv(["--version"]) == ["--version"]
    out = subprocess.run(
        [sys.executable, "-m", "gs_video_report", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("gs_videoreport ")


def test_info_commands(cli) -> None:  # type: ignore[no-untyped-def]
    templates = cli("list-templates")
    assert templates.exit_code == 0
    for name in TEMPLATES:
        assert name in templates.stdout
    assert "subject_area" in templates.stdout
    models = cli("list-models")
    assert (
        models.exit_code == 0
        and "gemini-3.8-flash" in models.stdout
        and "1,048,576" in models.stdout
    )
    assert cli("version").stdout.startswith("gs_videoreport ")
    assert "Exit codes" in cli("--help").stdout


def test_ctrl_c_exits_130(sim: Simulator, sample: Path) -> None:
    from typer.testing import CliRunner

    from gs_video_report.cli import app
    from gs_video_report.cli.common import Runtime
    from gs_video_report.clock import Clock

    interrupted: list[float] = []

    async def interrupted_sleep(seconds: float) -> None:
        # Ctrl-C comes once: a sleep raising it again during asyncio.run's clean-up left
        # a task with a never-retrieved KeyboardInterrupt, logged into a later test
        if not interrupted:
            interrupted.append(seconds)
            raise KeyboardInterrupt
        await asyncio.sleep(0)

    result = CliRunner().invoke(
        app,
        ["main", str(sample), "--simulate"],
        obj=Runtime(clock=Clock(sleep=interrupted_sleep), simulator=sim),
    )
    assert result.exit_code == ExitCode.INTERRUPTED
    assert result.stderr.strip() == "Stopped at once. Run the same command again to resume."
