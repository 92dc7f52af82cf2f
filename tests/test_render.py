"""`gs_videoreport render` and `--format`: lessons rebuilt from their sidecars with no API
call (the simulator's counters prove it), in every format, in place or elsewhere."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote_to_bytes

import srt
import webvtt

from gs_video_report.batch.api import Engine, read_stored_run
from gs_video_report.config import Settings
from gs_video_report.errors import ExitCode
from gs_video_report.models import LessonFormat
from gs_video_report.simulator import Fault, Simulator
from tests.conftest import REPO, SAMPLES, copy_lecture, make_lectures

LESSONS = [
    "chinese_transcript/week1/intro",
    "chinese_transcript/week2/intro",
    "chinese_transcript/week2/photosynthesis_basics",
]


def _batch(cli, root: Path, out: Path, *extra: str) -> str:  # type: ignore[no-untyped-def]
    result = cli("batch", "-d", str(root), "-o", str(out), "--simulate", "-q", "--json", *extra)
    assert result.exit_code in (ExitCode.OK, ExitCode.QUOTA), result.output
    return str(json.loads(result.stdout)["batch_id"])


def _without_created(text: str) -> str:
    return re.sub(r"(?m)^created: .*$", "created: -", text)


def _video_of(page: Path) -> Path:
    src = re.search(r'<video id="player"[^>]* src="([^"]+)"', page.read_text()).group(1)  # type: ignore[union-attr]
    return (page.parent / os.fsdecode(unquote_to_bytes(src))).resolve()


def test_render_reproduces_every_lesson_with_no_api_call(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    batch_id = _batch(cli, root, out)
    written = {rel: (out / f"{rel}.md").read_text() for rel in LESSONS}
    for rel in LESSONS:
        (out / f"{rel}.md").write_text("damaged")
    calls = sim.api_calls()

    again = cli("render", str(out))
    assert again.exit_code == ExitCode.OK, again.output
    assert "Rendered 3 lesson(s), 3 file(s)" in again.stdout
    for rel, before in written.items():
        assert _without_created((out / f"{rel}.md").read_text()) == _without_created(before)

    by_id = cli("render", batch_id, "--format", "html,srt,vtt", "--json")
    assert by_id.exit_code == ExitCode.OK, by_id.output
    assert json.loads(by_id.stdout)["rendered"] == 3
    for rel in LESSONS:
        answer = json.loads((out / f"{rel}.json").read_text())["answer"]
        cues = list(srt.parse((out / f"{rel}.srt").read_text()))
        assert [c.start.total_seconds() for c in cues] == [
            s["start_seconds"] for s in answer["transcript"]
        ]
        vtt = webvtt.from_string((out / f"{rel}.vtt").read_text())
        assert len(vtt.captions) == len(cues)
        assert _video_of(out / f"{rel}.html") == (root / rel.split("/", 1)[1]).with_suffix(".mp4")
    assert sim.api_calls() == calls  # not one request more: everything came from the sidecars
    assert not list(out.rglob(".*.tmp"))  # atomic writes leave nothing behind


def test_render_after_the_layout_changed(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    _batch(cli, root, out)
    mine = tmp_path / "templates"
    mine.mkdir()
    text = (REPO / "templates" / "chinese_transcript.yaml").read_text(encoding="utf-8")
    layout = text.replace("layout: |\n", "layout: |\n  Re-rendered: {{ answer.summary }}\n", 1)
    (mine / "chinese_transcript.yaml").write_text(layout, encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"templates:\n  dirs: [{mine}]\n")
    calls = sim.api_calls()
    result = cli("render", str(out), "-c", str(config))
    assert result.exit_code == ExitCode.OK, result.output
    assert all("Re-rendered: " in (out / f"{rel}.md").read_text() for rel in LESSONS)
    assert sim.api_calls() == calls


def test_render_into_another_folder_and_move_it(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    course = tmp_path / "course"
    root, out = make_lectures(course / "videos"), course / "lessons"
    _batch(cli, root, out)
    site = course / "site"
    result = cli("render", str(out), "-o", str(site), "--format", "md,html")
    assert result.exit_code == ExitCode.OK, result.output
    for rel in LESSONS:
        copied, original = (json.loads((d / f"{rel}.json").read_text()) for d in (site, out))
        assert copied.pop("video").startswith("../../../videos/")  # from its new place
        assert original.pop("video").startswith("../../../videos/") and copied == original
        assert (site / f"{rel}.md").is_file()
        assert _video_of(site / f"{rel}.html").is_file()
    moved = shutil.move(course, tmp_path / "moved course")  # the whole folder, videos too
    page = Path(moved) / "site" / f"{LESSONS[2]}.html"
    assert _video_of(page) == Path(moved) / "videos" / "week2" / "photosynthesis_basics.mp4"
    assert _video_of(page).is_file()
    again = cli("render", str(Path(moved) / "site"), "--format", "html")  # re-renders there
    assert again.exit_code == ExitCode.OK and _video_of(page).is_file()


def test_a_broken_sidecar_fails_alone_and_untimed_templates_skip_subtitles(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    run = ["batch", "-d", str(root), "-o", str(out), "-t", "summary_report", "--simulate"]
    first = cli(*run)
    assert first.exit_code == ExitCode.OK, first.output
    broken = out / "summary_report" / "week1" / "intro.json"
    broken.write_text("{not json")
    pointing = out / "summary_report" / "week2" / "intro.json"  # a sidecar naming a file
    document = json.loads(pointing.read_text())
    document["meta"]["template"] = str(tmp_path / "evil.yaml")
    pointing.write_text(json.dumps(document))
    result = cli("render", str(out), "--format", "md,srt")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert f"error: {broken}: not a readable lesson sidecar" in result.stderr
    assert f"error: {pointing}: the sidecar names no template" in result.stderr
    assert "note: srt skipped: template 'summary_report' has no timed segments" in result.stderr
    assert "Rendered 1 lesson(s), 1 file(s)" in result.stdout and "2 failed" in result.stdout
    assert not list(out.rglob("*.srt")) and "Traceback" not in result.output
    # said before a batch runs, once
    again = cli(*run, "--format", "vtt", "--force", "-q")
    assert again.stderr.count("note: vtt skipped: template 'summary_report' has no timed") == 1


def test_bad_targets_and_formats_are_one_line_errors(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = cli("render", str(tmp_path / "nowhere"))
    assert missing.exit_code == ExitCode.INPUT
    assert missing.stderr.strip().count("\n") == 0 and "no such folder or batch" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = cli("render", str(tmp_path / "empty"))
    assert empty.exit_code == ExitCode.INPUT and "no lessons" in empty.stderr
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / "state.db").touch()
    unknown = cli("render", "batch_20260101_000000_deadbeef")
    assert unknown.exit_code == ExitCode.INPUT, unknown.output
    for command in (["render", str(tmp_path)], ["batch", "-d", str(tmp_path), "--simulate"]):
        bad = cli(*command, "--format", "md,pdf")
        assert bad.exit_code == ExitCode.USAGE and "unknown format 'pdf'" in bad.stderr
    assert sim.api_calls() == 0


def test_formats_are_kept_by_the_batch_and_its_resume(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    sim.add_fault(Fault("rate_limit_day", "generate", match="photosynthesis"))
    batch_id = _batch(cli, root, out, "--format", "html", "--format", "vtt")  # repeats: both
    stored = asyncio.run(read_stored_run(batch_id))
    assert stored.options.formats == (LessonFormat.HTML, LessonFormat.VTT)
    resumed = cli("resume", batch_id, "--simulate", "-q")
    assert resumed.exit_code == ExitCode.OK, resumed.output
    for rel in LESSONS:
        assert (out / f"{rel}.html").is_file() and (out / f"{rel}.vtt").is_file()
        assert not (out / f"{rel}.md").exists()
    # the done key does not depend on formats: the same work in md is no new work
    calls = sim.api_calls()
    again = cli("batch", "-d", str(root), "-o", str(out), "--simulate", "-q", "--format", "md")
    assert again.exit_code == ExitCode.OK and sim.api_calls() == calls


def test_the_dashboard_gets_a_lesson_page_in_memory(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, out = make_lectures(tmp_path / "lectures"), tmp_path / "out"
    _batch(cli, root, out)
    sidecar = out / f"{LESSONS[0]}.json"
    page = Engine(Settings()).lesson_page(sidecar)
    title = json.loads(sidecar.read_text())["answer"]["title"]
    assert page.startswith("<!DOCTYPE html>") and f"<title>{title}</title>" in page
    assert not sidecar.with_suffix(".html").exists()  # nothing written


def test_main_writes_the_formats_for_a_youtube_video(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "o"
    url = "https://youtu.be/dQw4w9WgXcQ"
    result = cli("main", url, "--simulate", "-o", str(out), "--format", "html,srt")
    assert result.exit_code == ExitCode.OK, result.output
    stem = out / "chinese_transcript" / "youtube-dQw4w9WgXcQ"
    page = stem.with_suffix(".html").read_text()
    assert 'src="https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ?start=0' in page
    cues = list(srt.parse(stem.with_suffix(".srt").read_text()))
    assert cues and all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert not stem.with_suffix(".md").exists() and stem.with_suffix(".json").is_file()


def test_odd_names_keep_working_links_after_a_move(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    course = tmp_path / "course"
    names = ["café #1? 100%.mp4", os.fsdecode(b"caf\xe9 [old].mp4")]  # the 2nd: not UTF-8
    for name in names:
        copy_lecture(SAMPLES / "intro_to_fractions.mp4", course / "videos" / name)
    out = course / "out"
    _batch(cli, course / "videos", out, "--format", "md,html")
    moved = Path(shutil.move(course, tmp_path / "elsewhere"))
    result = cli("render", str(moved / "out"), "--format", "html")
    assert result.exit_code == ExitCode.OK, result.output
    pages = sorted((moved / "out" / "chinese_transcript").glob("*.html"))
    assert len(pages) == 2
    videos = {os.fsencode(_video_of(p).name) for p in pages}
    assert videos == {os.fsencode(n) for n in names}
    assert all(_video_of(p).is_file() for p in pages)
