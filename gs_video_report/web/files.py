"""Which files a batch's pages may serve, and the batch's lessons as one zip.

A batch serves what lies in its output folder and its input folder (and the exact video
files of its tasks, wherever they are: a folder scan follows symlinks) — judged on the
resolved path, so ``..`` and a symlink pointing out of those folders are refused. The
URL of a file is its absolute path below ``/batches/ID/files/``, so a lesson page's
relative link to its video (``../videos/a.mp4``) resolves to another such URL.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from gs_video_report.batch.api import BatchView

LESSON_SUFFIXES = (".md", ".json", ".html", ".srt", ".vtt")


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop
        return None


class BatchFiles:
    def __init__(self, view: BatchView) -> None:
        self.view = view
        self.output = _resolved(Path(view.output_dir))
        folders = [self.output, _resolved(view.input_dir) if view.input_dir else None]
        self.folders = [f for f in folders if f is not None]
        self.videos = {
            r for t in view.tasks if t.source.startswith("/") and (r := _resolved(Path(t.source)))
        }

    def allowed(self, path: Path) -> Path | None:
        """The file itself when the batch may serve it, else None."""
        real = _resolved(path)
        if real is None or not real.is_file():
            return None
        if real in self.videos or any(real.is_relative_to(f) for f in self.folders):
            return real
        return None

    def url(self, path: Path | str) -> str:
        return f"/batches/{self.view.id}/files{quote(str(Path(path).absolute()))}"

    def lesson(self, output_md: str) -> Path | None:
        """The page to open for a lesson: its HTML render, else its Markdown."""
        md = Path(output_md)
        for candidate in (md.with_suffix(".html"), md):
            if self.allowed(candidate) is not None:
                return candidate
        return None

    def for_zip(self) -> Iterator[tuple[str, Path]]:
        """(name in the zip, file): every lesson's files and the batch's reports, named
        relative to the output folder; nothing the batch may not serve."""
        if self.output is None:
            return
        seen: set[Path] = set()
        wanted = [
            Path(t.output).with_suffix(suffix)
            for t in self.view.tasks
            for suffix in LESSON_SUFFIXES
        ]
        reports = Path(self.view.output_dir) / "_reports" / self.view.id
        if reports.is_dir():
            wanted += sorted(p for p in reports.rglob("*") if p.is_file())
        for path in wanted:
            real = self.allowed(path)
            if real is None or real in seen or not real.is_relative_to(self.output):
                continue
            seen.add(real)
            yield real.relative_to(self.output).as_posix(), real


class _Sink(io.RawIOBase):
    """What zipfile writes, kept until the response takes it (not seekable: zipfile
    writes data descriptors instead of going back)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


async def stream_zip(
    files: Iterator[tuple[str, Path]], send: Callable[[bytes], Awaitable[None]]
) -> int:
    """Write the zip to ``send`` as it is made, 256 KiB at a time (a batch of long
    transcripts is never held in memory whole); returns how many files it holds."""
    sink = _Sink()
    count = 0
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in files:
            info = zipfile.ZipInfo.from_file(path, name)
            info.compress_type = zipfile.ZIP_DEFLATED
            source = await asyncio.to_thread(open, path, "rb")  # the disk, off the loop
            with source, archive.open(info, "w", force_zip64=True) as target:
                while chunk := await asyncio.to_thread(source.read, 256 * 1024):
                    target.write(chunk)
                    await send(sink.take())
            count += 1
    await send(sink.take())
    return count
