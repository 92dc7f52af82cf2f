"""Check a local video before anything is spent on it (PyAV).

Everything here is local and cheap: the container header plus a few packets
near the end, never a full decode or a full read of a large file.
"""

from __future__ import annotations

import os
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING

from gs_video_report.errors import InputError
from gs_video_report.models import VideoInfo

if TYPE_CHECKING:
    import av

# Gemini's documented video MIME types, by file extension.
MIME_BY_EXTENSION: dict[str, str] = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mpeg": "video/mpeg",
    ".mpg": "video/mpg",
    ".mov": "video/mov",
    ".avi": "video/avi",
    ".flv": "video/x-flv",
    ".webm": "video/webm",
    ".wmv": "video/wmv",
    ".3gp": "video/3gpp",
    ".3gpp": "video/3gpp",
}
VIDEO_EXTENSIONS = frozenset(MIME_BY_EXTENSION)

# A truncated file often still has a complete header (moov first); its last
# packet then ends well before the advertised duration.
_TRUNCATION_SLACK_S = 2.0
_TRUNCATION_SLACK_RATIO = 0.05


def mime_type_for(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in MIME_BY_EXTENSION:
        accepted = " ".join(sorted(VIDEO_EXTENSIONS))
        shown = ext or "(no extension)"
        raise InputError(f"{path.name}: unsupported file type {shown} (Gemini accepts: {accepted})")
    return MIME_BY_EXTENSION[ext]


def _format_size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def check_file(path: Path, *, max_bytes: int) -> tuple[int, str, int]:
    """The checks that need no decoding: exists, a file, a video extension, readable, sized.
    Its size, MIME type and modification time (ns)."""
    stat, mime = checked_stat(path, max_bytes=max_bytes)
    return stat.st_size, mime, stat.st_mtime_ns


def checked_stat(path: Path, *, max_bytes: int) -> tuple[os.stat_result, str]:
    """``check_file``'s checks; the file's stat (the probe cache's key) and MIME type."""
    # One stat answers "there?" and "a file?" (a plan runs this for every video, every
    # time); the rarer questions (a broken link?) are asked only when it fails.
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError, ValueError):
        stat = None
    except OSError as exc:  # a symlink loop, a folder we may not enter
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if stat is None:
        if path.is_symlink():
            raise InputError(f"{path}: broken symbolic link (its target does not exist)")
        raise InputError(f"video not found: {path}")
    if not S_ISREG(stat.st_mode):
        raise InputError(f"{path}: not a file")
    mime = mime_type_for(path)
    try:
        size = stat.st_size
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if size == 0:
        raise InputError(f"{path}: empty file")
    if size > max_bytes:
        raise InputError(
            f"{path}: file is {_format_size(size)}; the limit is {_format_size(max_bytes)} "
            "(Gemini's Files API takes at most 2 GB per file)"
        )
    return stat, mime


def probe_video(path: Path, *, max_bytes: int) -> VideoInfo:
    """Raise ``InputError`` with a one-line reason unless ``path`` is a usable video."""
    size, mime, mtime_ns = check_file(path, max_bytes=max_bytes)
    # PyAV (FFmpeg's libraries) takes a while to load; commands that probe nothing
    # (--help, status, list-templates) must not pay for it
    import av

    try:
        container = av.open(os.fspath(path))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            f"{path}: not a readable video (truncated, corrupt or not a video)"
        ) from exc
    try:
        with container:
            video_streams = list(container.streams.video)
            if not video_streams:
                raise InputError(f"{path}: no video stream (audio-only or not a video)")
            stream = video_streams[0]
            duration = _duration_s(container, stream)
            if duration is None or duration <= 0:
                raise InputError(f"{path}: video duration is unknown (file may be damaged)")
            _check_not_truncated(path, container, stream, duration)
            return VideoInfo(
                duration_s=round(duration, 3),
                size_bytes=size,
                mime_type=mime,
                width=stream.codec_context.width or None,
                height=stream.codec_context.height or None,
                has_audio=bool(container.streams.audio),
                mtime_ns=mtime_ns,
            )
    except av.FFmpegError as exc:
        raise InputError(f"{path}: not a readable video (truncated or corrupt)") from exc


def _duration_s(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if container.duration:
        return float(container.duration) / 1_000_000
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _check_not_truncated(
    path: Path, container: av.container.InputContainer, stream: av.VideoStream, duration: float
) -> None:
    """Seek to the last seconds and demux: a cut file stops well short of its duration."""
    time_base = stream.time_base
    if not time_base:
        return
    start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
    target = max(0.0, duration - 3.0)
    import av  # loaded by probe_video already

    try:
        container.seek(int((start + target) / time_base), stream=stream, backward=True)
    except av.FFmpegError:
        return  # not seekable (e.g. some AVI/FLV); the header checks stand
    last_end = None
    for packet in container.demux(stream):
        if packet.pts is None or not packet.size:
            continue
        end = float((packet.pts + (packet.duration or 0)) * time_base) - start
        last_end = end if last_end is None else max(last_end, end)
    slack = max(_TRUNCATION_SLACK_S, duration * _TRUNCATION_SLACK_RATIO)
    if last_end is None or last_end < duration - slack:
        reached = "no frames" if last_end is None else f"{last_end:.1f}s"
        raise InputError(
            f"{path}: video is truncated (header says {duration:.1f}s, data ends at {reached})"
        )
