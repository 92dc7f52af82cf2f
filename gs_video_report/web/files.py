"""Which files a batch's pages may serve, and the batch's lessons as one zip.

A batch serves only what its pages need: the exact video files of its tasks (wherever
they are), each task's lesson files (``.md``/``.json``/``.html``/``.srt``/``.vtt`` next to
the output the task names, inside the output folder) and its reports
(``_reports/BATCH/``) — never a hidden file, never anything else lying in those folders
(a ``.env``, a ``keys.txt``, a ``config.yaml``). It is judged on the resolved path, so
``..`` and a symlink pointing out are refused; and a file that holds one of the engine's
keys is never served, whatever its name (``KeyScrub``). The URL of a file is its
absolute path below ``/batches/ID/files/``, so a lesson page's relative link to its
video (``../videos/a.mp4``) resolves to another such URL.
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

# A lesson page is the render's own (inline style and script, a YouTube frame), in a
# sandbox: an opaque origin, so its script (or a hostile answer quoted in it) cannot read
# the dashboard's pages, cookie or token; no fetch, no form, no remote image.
LESSON_CSP = (
    "sandbox allow-scripts; default-src 'self'; style-src 'self' 'unsafe-inline';"
    " script-src 'self' 'unsafe-inline'; media-src 'self' data:; img-src 'self' data:;"
    " frame-src https://www.youtube.com https://www.youtube-nocookie.com;"
    " connect-src 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Anything else a batch serves (a video, Markdown, JSON, a report) runs nothing, whatever
# is in it: an HTML or SVG file opened in the tab is inert on an opaque origin.
FILE_CSP = "sandbox; default-src 'none'; media-src 'self'; img-src 'self' data:;" + (
    " style-src 'unsafe-inline'; frame-ancestors 'none'"
)


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a NUL byte
        return None


def _hidden(path: Path, below: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(below).parts)


class BatchFiles:
    def __init__(self, view: BatchView) -> None:
        self.view = view
        self.output = _resolved(Path(view.output_dir))
        self.videos = {
            r
            for t in view.tasks
            if t.source.startswith("/")
            and (r := _resolved(Path(t.source)))
            and not r.name.startswith(".")
        }
        # the lesson files a task's output names (each format's sibling), not yet resolved:
        # a file written after this view is still found
        self.lessons = {
            Path(t.output).absolute().with_suffix(suffix)
            for t in view.tasks
            for suffix in LESSON_SUFFIXES
        }
        self.reports = Path(view.output_dir).absolute() / "_reports" / view.id

    def allowed(self, path: Path) -> Path | None:
        """The file itself when the batch may serve it, else None."""
        real = _resolved(path)
        if real is None or not real.is_file():
            return None
        if real in self.videos:
            return real
        if self.output is None or not real.is_relative_to(self.output):
            return None  # a lesson or report is inside the output folder, resolved
        if _hidden(real, self.output):
            return None
        reports = _resolved(self.reports)
        if reports is not None and real.is_relative_to(reports):
            return real
        lessons = {r for p in self.lessons if (r := _resolved(p)) is not None}
        return real if real in lessons else None

    def is_video(self, real: Path) -> bool:
        return real in self.videos

    def lesson_pages(self) -> set[Path]:
        """The tasks' HTML renders, resolved: the only pages served with their script."""
        pages = (p for p in self.lessons if p.suffix == ".html")
        return {r for p in pages if (r := _resolved(p)) is not None}

    def url(self, path: Path | str, cap: str = "") -> str:
        """The file's URL; with ``cap`` (the batch's read-only capability), one that needs
        no cookie: a lesson page runs on an opaque origin, so its video request carries
        none, and its relative link keeps the capability."""
        where = f"/c/{cap}/files" if cap else "/files"
        return f"/batches/{self.view.id}{where}{quote(str(Path(path).absolute()))}"

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
        wanted = sorted(self.lessons)
        if self.reports.is_dir():
            wanted += sorted(p for p in self.reports.rglob("*") if p.is_file())
        for path in wanted:
            real = self.allowed(path)
            if real is None or real in seen or not real.is_relative_to(self.output):
                continue
            seen.add(real)
            yield real.relative_to(self.output).as_posix(), real


class KeyScrub:
    """A belt over ``BatchFiles``: no file whose bytes hold one of the engine's keys leaves
    the dashboard (a lesson quoting an error that echoed a key, a key file someone saved
    as a lesson's name). Each file is read once per version (path, size, mtime)."""

    CHUNK = 1024 * 1024

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [s.encode() for s in secrets if s]
        self._clean: dict[tuple[Path, int, int], bool] = {}

    async def clean(self, path: Path) -> bool:
        if not self.secrets:
            return True
        stat = await asyncio.to_thread(path.stat)
        version = (path, stat.st_size, stat.st_mtime_ns)
        if version not in self._clean:
            if len(self._clean) > 4096:
                self._clean.clear()
            self._clean[version] = await asyncio.to_thread(self._scan, path)
        return self._clean[version]

    def _scan(self, path: Path) -> bool:
        keep = max(len(s) for s in self.secrets) - 1  # a key across two chunks
        tail = b""
        with open(path, "rb") as handle:
            while chunk := handle.read(self.CHUNK):
                window = tail + chunk
                if any(s in window for s in self.secrets):
                    return False
                tail = window[-keep:] if keep else b""
        return True


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
