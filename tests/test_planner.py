from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

from gs_video_report.batch.inputs import InputEntry, Inputs, read_url_list, scan_folder
from gs_video_report.batch.planner import Plan, build_plan, done_key
from gs_video_report.config import load_settings
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.services.writer import FileWriter
from gs_video_report.storage.checkpoint import TaskRow
from tests.conftest import SAMPLES

VIDEO = SAMPLES / "intro_to_fractions.mp4"


def plan_for(inputs: Inputs, out: Path, ledger=None, force: bool = False, probes=None) -> Plan:  # type: ignore[no-untyped-def]
    settings = load_settings(env={}, cwd=out.parent)
    return build_plan(
        inputs,
        settings=settings,
        registry=TemplateRegistry.with_builtins(),
        writer=FileWriter(out),
        template="summary_report",
        params={},
        ledger=ledger,
        force=force,
        probes=probes,
    )


def test_same_names_in_two_folders_get_separate_lessons_mirroring_folders(tmp_path: Path) -> None:
    root = tmp_path / "lectures"
    for rel in ("week1/intro.mp4", "week2/intro.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(VIDEO, root / rel)
    out = tmp_path / "out"
    plan = plan_for(scan_folder(root, skip=out), out)
    paths = [t.video.files.markdown for t in plan.tasks]
    assert paths == [out / "summary_report/week1/intro.md", out / "summary_report/week2/intro.md"]
    # the same bytes: one content fingerprint, but two sources, two tasks
    assert plan.tasks[0].content_fingerprint == plan.tasks[1].content_fingerprint
    assert plan.total_duration_s == 90


def test_bad_entries_become_problems_and_duplicates_are_dropped(tmp_path: Path) -> None:
    good = tmp_path / "good.mp4"
    shutil.copy(VIDEO, good)
    (tmp_path / "text.mp4").write_text("not a video")
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(
        "path,template,output_name,subject_area\n"
        "good.mp4,comprehensive_lesson,../../escape,art\n"
        "good.mp4,comprehensive_lesson,,art\n"
        "text.mp4,,,\n"
        "good.mp4,no_such_template,,\n"
        "https://vimeo.com/1,,,\n"
        "good.mp4,summary_report,,\n"
    )
    out = tmp_path / "out"
    plan = plan_for(read_url_list(csv_file), out)
    assert [t.entry.origin for t in plan.tasks] == ["list.csv:2", "list.csv:7"]
    first = plan.tasks[0]
    assert first.video.params["subject_area"] == "art"
    assert first.video.files.markdown.resolve().is_relative_to(out.resolve())  # ../../ stays inside
    problems = {p.origin: p.message for p in plan.problems}
    assert problems["list.csv:3"].startswith("duplicate of list.csv:2")
    assert "not a readable video" in problems["list.csv:4"]
    assert "unknown template 'no_such_template'" in problems["list.csv:5"]
    assert "only public YouTube videos" in problems["list.csv:6"]


def test_skip_existing_uses_the_ledger_and_needs_the_lesson_on_disk(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    shutil.copy(VIDEO, video)
    inputs = Inputs(entries=[InputEntry(str(video), "x")])
    out = tmp_path / "out"
    first = plan_for(inputs, out).tasks[0]
    lesson = first.video.files.markdown  # done before, where this plan writes it
    fields = {name: None for name in TaskRow.__dataclass_fields__}
    previous = TaskRow(**{**fields, "batch_id": "batch_old", "output_md": str(lesson)})  # type: ignore[arg-type]
    ledger = {first.done_key: previous}

    assert plan_for(inputs, out, ledger).tasks[0].skip_reason is None  # lesson missing: redo
    lesson.parent.mkdir(parents=True)
    lesson.write_text("# done")
    lesson.with_suffix(".json").write_text(json.dumps({"source": str(video.resolve())}))
    skipped = plan_for(inputs, out, ledger).tasks[0]
    assert skipped.skip_reason and "batch_old" in skipped.skip_reason
    assert plan_for(inputs, out, ledger, force=True).tasks[0].skip_reason is None
    # moving the video to another folder keeps the key; another template version would not
    moved = tmp_path / "elsewhere" / "renamed.mp4"
    moved.parent.mkdir()
    shutil.copy(video, moved)
    again = plan_for(Inputs(entries=[InputEntry(str(moved), "y")]), out).tasks[0]
    assert again.done_key == first.done_key
    other_version = done_key(
        first.content_fingerprint, "summary_report", "2.1", first.video.params, "gemini-3.8-flash"
    )
    assert other_version != first.done_key
    other_model = done_key(
        first.content_fingerprint, "summary_report", "2.0", first.video.params, "gemini-3.7-flash"
    )
    assert other_model != first.done_key


def test_a_video_done_before_is_skipped_without_rendering_its_prompt(tmp_path: Path) -> None:
    """With the probe cache the fingerprint is known before rendering: a video the ledger
    says is done (its lesson where this plan would write it) is skipped unrendered; one
    whose lesson would now go elsewhere runs, with its prompt."""
    from gs_video_report.storage.probecache import ProbeCache

    video = tmp_path / "v.mp4"
    shutil.copy(VIDEO, video)
    inputs = Inputs(entries=[InputEntry(str(video), "x")])
    out = tmp_path / "out"

    def plan(ledger):  # type: ignore[no-untyped-def]
        probes = ProbeCache.open(tmp_path / "home")
        try:
            return plan_for(inputs, out, ledger, probes=probes).tasks[0]
        finally:
            probes.close()

    first = plan({})
    assert first.skip_reason is None and first.video.prompt
    lesson = first.video.files.markdown
    lesson.parent.mkdir(parents=True)
    lesson.write_text("# done")
    lesson.with_suffix(".json").write_text(json.dumps({"source": str(video.resolve())}))
    fields = {name: None for name in TaskRow.__dataclass_fields__}
    here = TaskRow(**{**fields, "batch_id": "batch_old", "output_md": str(lesson)})  # type: ignore[arg-type]
    skipped = plan({first.done_key: here})
    assert skipped.skip_reason and "batch_old" in skipped.skip_reason
    assert skipped.video.prompt == "" and skipped.video.files == first.video.files
    elsewhere = tmp_path / "old" / "v.md"
    elsewhere.parent.mkdir()
    elsewhere.write_text("# done in another folder")
    there = TaskRow(**{**fields, "batch_id": "batch_old", "output_md": str(elsewhere)})  # type: ignore[arg-type]
    runs = plan({first.done_key: there})
    assert runs.skip_reason is None and runs.video.prompt == first.video.prompt


def test_probing_ahead_in_threads_plans_what_probing_in_order_plans(tmp_path: Path) -> None:
    """New files are probed a few at a time (``_probe_all``): the tasks, their order, the
    problems and their messages are those of the plan that probes one by one; and so
    are the second plan's, from the cache."""
    from gs_video_report.storage.probecache import ProbeCache

    root = tmp_path / "in"
    root.mkdir()
    for i in range(6):
        shutil.copy(VIDEO, root / f"v{i}.mp4")
    (root / "v2.mp4").write_text("not a video")
    (root / "v4.mp4").write_bytes(b"")
    for video in root.iterdir():
        os.utime(video, (1e9, 1e9))  # old enough for the cache to keep
    out = tmp_path / "out"
    inputs = scan_folder(root, skip=out)
    one_by_one = plan_for(inputs, out)
    for _ in range(2):
        probes = ProbeCache.open(tmp_path / "home")
        try:
            ahead = plan_for(inputs, out, probes=probes)
        finally:
            probes.close()
        assert [(t.entry.text, t.content_fingerprint) for t in ahead.tasks] == [
            (t.entry.text, t.content_fingerprint) for t in one_by_one.tasks
        ]
        assert ahead.problems == one_by_one.problems and len(ahead.problems) == 2
    with sqlite3.connect(tmp_path / "home" / "probe_cache.db") as conn:
        assert conn.execute("SELECT count(*) FROM probes").fetchone()[0] == 4
