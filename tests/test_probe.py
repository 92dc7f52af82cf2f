from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gs_video_report.errors import InputError
from gs_video_report.services.probe import probe_video

SAMPLES = Path(__file__).resolve().parents[1] / "examples" / "videos"
LIMIT = 2 * 1024**3


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.iterdir()))
def test_bundled_samples_probe(name: str) -> None:
    info = probe_video(SAMPLES / name, max_bytes=LIMIT)
    assert 15 <= info.duration_s <= 60
    assert info.mime_type in {"video/mp4", "video/webm"} and info.has_audio


def _bad(tmp_path: Path, kind: str) -> Path:
    data = (SAMPLES / "intro_to_fractions.mp4").read_bytes()
    path = tmp_path / "video.mp4"
    if kind == "missing":
        return tmp_path / "nope.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "unsupported":
        path = tmp_path / "video.mkv"
        path.write_bytes(data)
    elif kind == "directory":
        path = tmp_path / "folder.mp4"
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(tmp_path / "gone.mp4")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "video not found"),
        ("empty", "empty file"),
        ("text", "not a readable video"),
        ("truncated", "not a readable video"),
        ("unsupported", "unsupported file type .mkv"),
        ("directory", "not a file"),
        ("dangling", "broken symbolic link"),
    ],
)
def test_bad_inputs_are_one_clear_line(tmp_path: Path, kind: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        probe_video(_bad(tmp_path, kind), max_bytes=LIMIT)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_truncated_file_with_header_first_is_caught(tmp_path: Path) -> None:
    """moov-first (faststart) files open fine when cut; the data stops short."""
    import av

    src = SAMPLES / "intro_to_fractions.mp4"
    faststart = tmp_path / "fs.mp4"
    with (
        av.open(str(src)) as inp,
        av.open(str(faststart), "w", options={"movflags": "faststart"}) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    probe_video(faststart, max_bytes=LIMIT)  # the intact file is fine
    cut = tmp_path / "cut.mp4"
    data = faststart.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InputError, match="truncated"):
        probe_video(cut, max_bytes=LIMIT)


def test_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", path)
    with pytest.raises(InputError, match="the limit is"):
        probe_video(path, max_bytes=1000)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    import av
    import numpy as np

    path = tmp_path / "talk.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(InputError, match="no video stream"):
        probe_video(path, max_bytes=LIMIT)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", path)
    path.chmod(0)
    with pytest.raises(InputError, match="cannot read"):
        probe_video(path, max_bytes=LIMIT)
