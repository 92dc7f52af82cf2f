"""Every bad input at once, end to end through the CLI: each gets one clear line naming it,
none costs an API call, and the good videos beside them still become lessons."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import av

from gs_video_report.errors import ExitCode
from gs_video_report.simulator import Simulator
from tests.conftest import SAMPLES, copy_lecture

VIDEO = SAMPLES / "intro_to_fractions.mp4"


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        frame.sample_rate = 8000
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


def bad_folder(root: Path) -> dict[str, str]:
    """A folder with one of each bad input (name -> what the message must say) and three
    good videos with awkward names."""
    root.mkdir(parents=True)
    data = VIDEO.read_bytes()
    expected = {}
    (root / "empty.mp4").write_bytes(b"")
    expected["empty.mp4"] = "empty file"
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    expected["truncated.mp4"] = "not a readable video"
    (root / "notes.mp4").write_text("this is a text file, renamed\n" * 40)
    expected["notes.mp4"] = "not a readable video"
    (root / "huge.mp4").write_bytes(data)
    with open(root / "huge.mp4", "r+b") as handle:  # a sparse 3 GB tail: over 2 GB
        handle.write(data + struct.pack(">I4s", 8, b"free"))
        handle.truncate(3 * 1024**3)
    expected["huge.mp4"] = "the limit is"
    _audio_only(root / "podcast.mp4")
    expected["podcast.mp4"] = "no video stream"
    (root / "dangling.mp4").symlink_to(root / "gone.mp4")
    expected["dangling.mp4"] = "broken symbolic link"
    (root / "loop").mkdir()
    (root / "loop" / "back").symlink_to(root)  # a folder link to an ancestor
    expected["back"] = "symbolic link loop"
    locked = root / "locked.mp4"
    copy_lecture(VIDEO, locked)
    locked.chmod(0)
    if os.geteuid() != 0:  # root reads anything
        expected["locked.mp4"] = "cannot read"
    # good ones, with names a careless tool would mangle
    copy_lecture(VIDEO, root / "week 1   intro.mp4")
    copy_lecture(VIDEO, Path(os.fsdecode(bytes(root) + b"/caf\xe9.mp4")))  # not UTF-8
    return expected


def test_every_bad_input_gets_one_clear_line_and_no_api_call(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    root, out = tmp_path / "lectures", tmp_path / "out"
    expected = bad_folder(root)
    (root / "notes.txt").write_text("not a video at all")  # not a video extension: ignored
    (root / "clip.mkv").write_bytes(VIDEO.read_bytes())
    result = cli("batch", "-d", str(root), "-o", str(out), "--simulate", "-q", "--json")
    assert result.exit_code == ExitCode.PARTIAL, result.output  # problems were reported
    lines = result.stderr.splitlines()
    for name, message in expected.items():
        hits = [line for line in lines if name in line and message in line]
        assert hits, f"{name}: no line with {message!r} in\n{result.stderr}"
    assert "Traceback" not in result.output
    # only the good videos reached the API: 2 uploads (locked.mp4 too when run as root)
    good = 3 if os.geteuid() == 0 else 2
    assert sim.stats()["uploads_completed"] == good
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"done": good}
    names = sorted(p.name for p in out.rglob("*.md") if "_reports" not in p.parts)
    assert "week 1 intro.md" in names and "caf_.md" in names  # readable, valid UTF-8


def test_lists_with_duplicates_broken_rows_and_escaping_names(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(VIDEO, videos / "a.mp4")
    shutil.copy(SAMPLES / "photosynthesis_basics.mp4", videos / "b.mp4")
    listing = tmp_path / "todo.txt"
    listing.write_text(f"# my list\n{videos / 'a.mp4'}\n\n{videos / 'a.mp4'}\n{videos / 'b.mp4'}\n")
    out = tmp_path / "out"
    result = cli("batch", "-f", str(listing), "-o", str(out), "--simulate", "-q")
    assert "todo.txt:4" in result.stderr and "duplicate of todo.txt:2" in result.stderr
    assert sim.stats()["uploads_completed"] == 2

    table = tmp_path / "course.csv"
    table.write_text(
        "path,template,output_name,language\n"
        f"{videos / 'a.mp4'},summary_report,../../../escaped,French\n"
        '"unterminated,summary_report,x\n'
        f"{videos / 'b.mp4'},summary_report,/etc/passwd,\n"
    )
    out2 = tmp_path / "out2"
    result = cli("batch", "-u", str(table), "-o", str(out2), "--simulate", "-q", "--force")
    written = [p for p in tmp_path.rglob("*.md") if "_reports" not in p.parts]
    assert all(p.resolve().is_relative_to(tmp_path.resolve()) for p in written)
    inside = [p for p in out2.rglob("*.md") if "_reports" not in p.parts]
    assert len(inside) == 2 and not (tmp_path.parent / "escaped.md").exists()
    assert not Path("/etc/passwd.md").exists()
    assert "course.csv:3: not a valid CSV row" in result.stderr  # named; the others ran
