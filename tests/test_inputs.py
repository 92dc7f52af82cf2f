from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gs_video_report.batch.inputs import read_file_list, read_url_list, scan_folder
from gs_video_report.errors import InputError
from gs_video_report.services.fingerprint import SAMPLE_BYTES, content_fingerprint
from tests.conftest import SAMPLES

VIDEO = SAMPLES / "intro_to_fractions.mp4"


def tree(root: Path) -> Path:
    for rel in (
        "week1/intro.mp4",
        "week2/intro.mp4",
        "week2/Notes.MOV",
        "top.webm",
        ".hidden/secret.mp4",
        "week1/.draft.mp4",
        "week1/readme.txt",
        "out/old.mp4",
    ):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(VIDEO, path)
    return root


def test_folder_scan_is_recursive_sorted_and_skips_hidden_and_output(tmp_path: Path) -> None:
    root = tree(tmp_path / "lectures")
    found = scan_folder(root, skip=root / "out")
    names = [Path(e.text).relative_to(root).as_posix() for e in found.entries]
    assert names == ["top.webm", "week1/intro.mp4", "week2/Notes.MOV", "week2/intro.mp4"]
    assert [e.subdir for e in found.entries] == [None, Path("week1"), Path("week2"), Path("week2")]
    assert found.problems == []


def test_symlinks_are_followed_but_loops_and_dangling_links_are_reported(tmp_path: Path) -> None:
    root = tree(tmp_path / "lectures")
    (root / "week1" / "loop").symlink_to(root)  # a loop back to the top
    (root / "gone.mp4").symlink_to(tmp_path / "nothing.mp4")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(VIDEO, elsewhere / "linked.mp4")
    (root / "shared").symlink_to(elsewhere)
    found = scan_folder(root, skip=root / "out")
    names = {Path(e.text).name for e in found.entries}
    assert "linked.mp4" in names and "gone.mp4" not in names
    messages = {p.message for p in found.problems}
    assert "broken symbolic link" in messages and "symbolic link loop; skipped" in messages


def test_file_list_with_comments_urls_and_relative_paths(tmp_path: Path) -> None:
    lst = tmp_path / "lists" / "todo.txt"
    lst.parent.mkdir()
    lst.write_text("# this week\n\nvideos/a.mp4\n  https://youtu.be/dQw4w9WgXcQ  \n/abs/b.mov\n")
    found = read_file_list(lst)
    assert [e.text for e in found.entries] == [
        str(tmp_path / "lists" / "videos" / "a.mp4"),
        "https://youtu.be/dQw4w9WgXcQ",
        "/abs/b.mov",
    ]
    assert [e.origin for e in found.entries] == ["todo.txt:3", "todo.txt:4", "todo.txt:5"]


def test_csv_rows_carry_template_name_and_parameters_and_broken_rows_are_reported(
    tmp_path: Path,
) -> None:
    csv_file = tmp_path / "batch.csv"
    csv_file.write_text(
        "url,template,output_name,subject_area,language\n"
        "https://youtu.be/dQw4w9WgXcQ,comprehensive_lesson,rick,music,English\n"
        "a.mp4,,,,\n"
        "broken,row\n"
        ",summary_report,,,\n"
    )
    found = read_url_list(csv_file)
    first, second = found.entries
    assert first.template == "comprehensive_lesson" and first.output_name == "rick"
    assert first.params == {"subject_area": "music", "language": "English"}
    assert (
        second.text == str(tmp_path / "a.mp4") and second.template is None and second.params == {}
    )
    assert [(p.origin, p.message) for p in found.problems] == [
        ("batch.csv:4", "expected 5 columns, found 2"),
        ("batch.csv:5", "no url or path in this row"),
    ]


def test_csv_without_a_source_column_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("video,template\na.mp4,x\n")
    with pytest.raises(InputError, match="'url' or 'path' column"):
        read_url_list(tmp_path / "x.csv")
    with pytest.raises(InputError, match="list file not found"):
        read_file_list(tmp_path / "none.txt")


def test_fingerprint_follows_content_not_name_and_reads_little(tmp_path: Path) -> None:
    a = tmp_path / "a.mp4"
    shutil.copy(VIDEO, a)
    moved = tmp_path / "renamed" / "b.mp4"
    moved.parent.mkdir()
    shutil.copy(VIDEO, moved)
    assert content_fingerprint(a) == content_fingerprint(moved)
    big = tmp_path / "big.mp4"
    with open(big, "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: cheap to make
    before = content_fingerprint(big)
    with open(big, "r+b") as handle:
        handle.seek(25 * 1024 * 1024)
        handle.write(b"edited")
    assert content_fingerprint(big) != before  # the middle sample sees the edit
    assert before.startswith(f"{50 * 1024 * 1024}-")
    assert big.stat().st_size > 3 * SAMPLE_BYTES
