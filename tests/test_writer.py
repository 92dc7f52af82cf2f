from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gs_video_report.errors import InputError, OutputError
from gs_video_report.models import LessonFiles
from gs_video_report.services.sources import parse_source
from gs_video_report.services.writer import (
    FileWriter,
    atomic_write_text,
    remove_leftovers,
    safe_stem,
    write_answer,
    write_markdown,
)


def claim(writer: FileWriter, path: Path, template: str = "summary_report") -> LessonFiles:
    """Plan and write a lesson for ``path`` so later plans see it on disk."""
    source = parse_source(str(path))
    files = writer.plan(source, template)
    write_answer(files, {"source": source.identity, "answer": {}})
    write_markdown(files, "# lesson\n")
    return files


def test_same_names_from_different_folders_or_extensions_never_collide(tmp_path: Path) -> None:
    writer = FileWriter(tmp_path / "out")
    a = claim(writer, tmp_path / "week1" / "intro.mp4")
    b = claim(writer, tmp_path / "week2" / "intro.mp4")
    c = claim(writer, tmp_path / "week1" / "intro.mov")
    assert len({a.markdown, b.markdown, c.markdown}) == 3
    assert a.markdown == tmp_path / "out" / "summary_report" / "intro.md"
    assert b.markdown.name.startswith("intro-") and c.markdown.name.startswith("intro-")


def test_same_source_maps_to_the_same_file_and_templates_to_folders(tmp_path: Path) -> None:
    writer = FileWriter(tmp_path / "out")
    first = claim(writer, tmp_path / "intro.mp4")
    again = writer.plan(parse_source(str(tmp_path / "intro.mp4")), "summary_report")
    other = writer.plan(parse_source(str(tmp_path / "intro.mp4")), "chinese_transcript")
    assert again == first
    assert other.markdown.parent.name == "chinese_transcript" and other.markdown != first.markdown


def test_names_promised_in_the_same_run_count_as_taken(tmp_path: Path) -> None:
    writer = FileWriter(tmp_path / "out")
    first = writer.plan(parse_source(str(tmp_path / "a" / "x.mp4")), "t")
    second = writer.plan(parse_source(str(tmp_path / "b" / "x.mp4")), "t", taken={first.markdown})
    assert first.markdown != second.markdown


def test_youtube_names_are_readable(tmp_path: Path) -> None:
    files = FileWriter(tmp_path).plan(parse_source("https://youtu.be/dQw4w9WgXcQ"), "t")
    assert files.markdown.name == "youtube-dQw4w9WgXcQ.md"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("lecture 1: intro?", "lecture 1_ intro_"),
        ("  many   spaces  ", "many spaces"),
        ("..hidden", "hidden"),
        ("bad\udcffbytes", "bad_bytes"),
        ("课程 第一讲", "课程 第一讲"),
        ("", "video"),
    ],
)
def test_safe_stem(raw: str, expected: str) -> None:
    assert safe_stem(raw) == expected


def test_atomic_write_replaces_whole_and_leaves_no_temp_files(tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    target = tmp_path / "lesson.md"
    atomic_write_text(target, "old\n")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["lesson.md"]


def test_failed_write_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = tmp_path / "out"
    target = tmp_path / "lesson.md"
    atomic_write_text(target, "old\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["lesson.md"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_folder_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            atomic_write_text(folder / "x.md", "x")
    finally:
        folder.chmod(0o700)


def test_answer_is_written_before_the_lesson(tmp_path: Path) -> None:
    writer = FileWriter(tmp_path)
    files = claim(writer, tmp_path / "v.mp4")
    assert json.loads(files.answer_json.read_text())["source"] == str(tmp_path / "v.mp4")
    assert files.answer_json.stat().st_mtime_ns <= files.markdown.stat().st_mtime_ns


def test_temp_files_left_by_a_killed_writer_are_removed_for_those_files_only(
    tmp_path: Path,
) -> None:
    target = tmp_path / "lesson [1].md"  # odd characters in the name, too
    leftover = tmp_path / ".lesson [1].md.k1ll3d.tmp"
    leftover.write_text("half a lesson")
    other = tmp_path / ".other.md.k1ll3d.tmp"  # another batch's file, being written
    other.write_text("another file's")
    assert remove_leftovers([target, tmp_path / "gone" / "x.md"]) == 1
    assert not leftover.exists() and other.exists()


@pytest.mark.parametrize("template", ["..", "../x", "/abs", "a/../../b", "x/../.."])
def test_a_template_name_never_takes_the_lesson_outside_the_output_folder(
    tmp_path: Path, template: str
) -> None:
    writer = FileWriter(tmp_path / "out")
    with pytest.raises(InputError, match="not inside the output folder"):
        writer.plan(parse_source(str(tmp_path / "v.mp4")), template)


def test_a_nul_in_a_name_is_refused_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not inside the output folder"):
        FileWriter(tmp_path / "out").plan(parse_source(str(tmp_path / "v.mp4")), "a\x00b")


def test_symlinks_out_of_the_output_folder_are_refused(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "t").symlink_to(elsewhere)  # a template folder pointing away
    source = parse_source(str(tmp_path / "v.mp4"))
    with pytest.raises(InputError, match="not inside the output folder"):
        FileWriter(out).plan(source, "t")
    (out / "u").mkdir()
    (out / "u" / "v.md").symlink_to(elsewhere / "v.md")  # one lesson file pointing away
    with pytest.raises(InputError, match="not inside the output folder"):
        FileWriter(out).plan(source, "u")


def test_an_output_folder_that_is_itself_a_symlink_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    files = FileWriter(tmp_path / "link").plan(parse_source(str(tmp_path / "v.mp4")), "t")
    assert files.markdown == tmp_path / "link" / "t" / "v.md"


def test_the_owner_of_an_answer_is_its_source_however_it_is_written(tmp_path: Path) -> None:
    """The quick read of an answer's first key agrees with parsing it whole: long and
    non-ASCII sources, escapes, a character cut at the quick read's end, other files."""
    from gs_video_report.services.writer import _owner_of

    answer = tmp_path / "a.json"
    sources = ["/v/a.mp4", '/v/中文 "q"\\.mp4', "/" + "é" * 2047 + ".mp4", "/" + "x" * 9000]
    for source in sources:
        write_answer(LessonFiles(tmp_path / "a.md", answer), {"source": source, "meta": {}})
        assert _owner_of(answer) == source
    for text, owner in [
        ('{"meta": {}, "source": "/v/b.mp4"}', "/v/b.mp4"),  # not ours: parsed whole
        ('{\n  "source": 5}', None),
        # cut short, not JSON, but it names its source: the name stays that source's
        ('{\n  "source": "/v/c.mp4"', "/v/c.mp4"),
        ("[]", None),
    ]:
        answer.write_text(text, encoding="utf-8")
        assert _owner_of(answer) == owner
    answer.unlink()
    assert _owner_of(answer) is None
