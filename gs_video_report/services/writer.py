"""FileWriter: where a lesson goes, and writing it so a crash never leaves half a file.

Names are readable and deterministic: ``<output>/<template>/<stem>.md`` with the
answer beside it as ``<stem>.json``. A name already taken by a *different* source
(two ``intro.mp4`` in different folders, ``x.mp4`` next to ``x.mov``) gets a short
hash of the source's identity: ``intro-3fa2c1.md``. The same source always maps to
the same file, so re-running replaces its lesson instead of piling up copies. A path
that would resolve outside the output folder is refused (``InputError``) when planned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from gs_video_report.errors import InputError, OutputError, OutputFolderError
from gs_video_report.models import LessonFiles, VideoSource

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_MAX_STEM_BYTES = 150


def safe_stem(name: str) -> str:
    """A file-system-safe, still readable stem (keeps non-ASCII letters and spaces)."""
    # Undecodable bytes in file names arrive as lone surrogates; they cannot be encoded.
    cleaned = name.encode("utf-8", "replace").decode("utf-8").replace("\ufffd", "_")
    cleaned = _UNSAFE.sub("_", cleaned)
    cleaned = re.sub(r"\s+", " ", cleaned).strip(" .")
    while len(cleaned.encode("utf-8")) > _MAX_STEM_BYTES:
        cleaned = cleaned[:-1]
    return cleaned or "video"


def source_hash(source: VideoSource) -> str:
    return hashlib.sha256(source.identity.encode("utf-8", "surrogateescape")).hexdigest()[:6]


# How ``write_answer`` begins every answer file: its first key is the source.
_OWNER_PREFIX = b'{\n  "source": "'
_OWNER_HEAD_BYTES = 4096
_DECODER = json.JSONDecoder()


def _owner_of(json_path: Path) -> str | None:
    """The source identity recorded in an existing answer file, if readable. A file that
    begins as ours do is read only as far as that first string (a rerun of 5,000 done
    videos spent a sixth of its time parsing whole answers for it); any other is parsed
    whole. Only a file with a second top-level "source" (none we write) could tell
    the two readings apart."""
    try:
        with open(json_path, "rb") as handle:
            head = handle.read(_OWNER_HEAD_BYTES)
            if head.startswith(_OWNER_PREFIX):
                try:
                    # from the string's opening quote: that one JSON value alone
                    source, _ = _DECODER.raw_decode(head.decode(), len(_OWNER_PREFIX) - 1)
                    return str(source)
                except ValueError:  # longer than the head, or cut in a character
                    pass
            data = json.loads(head + handle.read())
    except (OSError, ValueError):
        return None
    source = data.get("source") if isinstance(data, dict) else None
    return source if isinstance(source, str) else None


class FileWriter:
    def __init__(self, output_dir: Path, *, template_subfolders: bool = True) -> None:
        self.output_dir = output_dir
        self.template_subfolders = template_subfolders
        # Resolved once per planning (a plan is a moment): each resolve walks every part
        # of the path, and a folder of 5,000 videos asked 30,000 of them.
        self._root: Path | None = None
        self._folders_inside: set[Path] = set()

    def folder_for(self, template_name: str, subdir: Path | None = None) -> Path:
        folder = self.output_dir / template_name if self.template_subfolders else self.output_dir
        return folder / subdir if subdir else folder

    def plan(
        self,
        source: VideoSource,
        template_name: str,
        *,
        subdir: Path | None = None,
        stem: str | None = None,
        taken: Collection[Path] = (),
    ) -> LessonFiles:
        """Choose the lesson's paths. ``taken`` holds paths already promised to other
        sources in this run; files on disk count as taken when their answer names
        another source."""
        folder = self.folder_for(template_name, subdir)
        if folder not in self._folders_inside:
            self._check_inside(folder)
            self._folders_inside.add(folder)
        base = safe_stem(stem or source.display_name)
        for hashed in (False, True):  # the hash is made only when the plain name is taken
            md = folder / (f"{base}-{source_hash(source)}.md" if hashed else f"{base}.md")
            if md in taken:
                continue
            owner = _owner_of(md.with_suffix(".json"))
            if md.exists() and owner != source.identity:
                continue
            return self._inside(LessonFiles(markdown=md, answer_json=md.with_suffix(".json")))
        # The hashed name is ours by construction; only a hash collision gets here.
        md = folder / f"{base}-{hashlib.sha256(source.identity.encode()).hexdigest()[:12]}.md"
        return self._inside(LessonFiles(markdown=md, answer_json=md.with_suffix(".json")))

    def _inside(self, files: LessonFiles) -> LessonFiles:
        for path in (files.markdown, files.answer_json):
            if not self._plain_name_in_checked_folder(path):
                self._check_inside(path)
        return files

    def _plain_name_in_checked_folder(self, path: Path) -> bool:
        """True when ``path`` cannot leave the output folder without a full resolve: its
        folder was resolved inside already (``plan`` checks it first), its name is one
        part (``safe_stem`` drops separators and leading dots) and it is not a symlink.
        One lstat instead of a realpath that lstats every part of the path again — a
        plan of 5,000 videos spent a fifth of its time there."""
        if path.parent not in self._folders_inside or path.name in ("", ".", ".."):
            return False
        try:
            return not stat.S_ISLNK(os.lstat(path).st_mode)
        except FileNotFoundError:
            return True  # nothing there yet: the name is made under the checked folder
        except (OSError, ValueError):
            return False  # let the full check say why

    def _check_inside(self, path: Path) -> None:
        """Every name part (template, subfolder, stem) may come from a file someone else
        wrote, and a symlink in the output folder may point anywhere: whatever they say,
        the resolved path must stay under the output folder."""
        try:
            if self._root is None:
                self._root = self.output_dir.resolve()
            inside = path.resolve().is_relative_to(self._root)
        except (OSError, ValueError):  # a NUL byte, a symlink loop
            inside = False
        if not inside:
            raise InputError(
                f"refusing to write {str(path)!r}: it is not inside the output folder "
                f"{str(self.output_dir)!r}"
            )


def write_answer(files: LessonFiles, answer_document: dict[str, Any]) -> None:
    """The answer, written before its lesson: a lesson on disk always has its answer."""
    text = json.dumps(answer_document, ensure_ascii=False, indent=2) + "\n"
    atomic_write_text(files.answer_json, text)


def write_markdown(files: LessonFiles, markdown: str) -> None:
    atomic_write_text(files.markdown, markdown)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (before any thread): os.umask can only be read by setting it.
_FILE_MODE = 0o666 & ~_umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder, fsync, then rename over ``path``. The
    file gets the mode any new file would (mkstemp's own is 0600, unreadable to the
    colleague or web server the lessons are for)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp_name).replace(path)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    _fsync_dir(path.parent)


def check_writable(folder: Path) -> None:
    """``OutputError`` unless a lesson can be written into ``folder`` — checked before
    anything is paid for (a read-only or missing mount is not found after the calls)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".gs_videoreport-check.", suffix=".tmp")
        os.close(fd)
        Path(name).unlink()
    except OSError as exc:
        raise OutputFolderError(
            f"the output folder {folder} cannot be written: {exc.strerror or exc}"
        ) from exc


def remove_leftovers(paths: Iterable[Path]) -> int:
    """Temp files a killed writer left for ``paths`` (``.<name>.<random>.tmp``): one
    directory listing per folder, not one per file, and only for these files (another
    batch may be writing into the same folder). Returns how many went."""
    by_folder: dict[Path, set[str]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, set()).add(path.name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            target = name[1:-4].rsplit(".", 1)[0]  # .<name>.<random>.tmp -> <name>
            if target in names:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
