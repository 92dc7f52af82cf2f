"""Where a batch's videos come from: a folder, a list of paths/URLs, or a CSV.

Each source yields ``InputEntry`` rows plus ``InputProblem`` rows for what could not
be used (a broken CSV row, a dangling symlink, a duplicate); one bad entry never stops
the others. Relative paths in a list or CSV are relative to that file's folder.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gs_video_report.errors import InputError
from gs_video_report.services.probe import VIDEO_EXTENSIONS
from gs_video_report.services.sources import looks_like_url

_RESERVED_COLUMNS = {"url", "path", "template", "output_name"}


@dataclass(frozen=True)
class InputEntry:
    text: str  # a path (absolute) or a URL
    origin: str  # where it came from, for messages: "lectures/", "list.txt:4"
    template: str | None = None
    output_name: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    subdir: Path | None = None  # folder relative to --input-dir, mirrored in the output


@dataclass(frozen=True)
class InputProblem:
    origin: str
    message: str


@dataclass
class Inputs:
    entries: list[InputEntry] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)


def scan_folder(root: Path, *, skip: Path | None = None) -> Inputs:
    """Videos under ``root``, recursively, in a stable order. Hidden files and folders and
    the ``skip`` folder (the output) are left out; symlinks are followed, loops are not."""
    if not root.is_dir():
        raise InputError(f"input folder not found: {root}")
    result = Inputs()
    skip_real = skip.resolve() if skip is not None else None
    seen_dirs: set[tuple[int, int]] = set()
    for folder, files in _walk(root, seen_dirs, skip_real, result):
        # per folder, not per file: a folder of 5,000 videos is planned on every rerun
        relative = folder.relative_to(root)
        subdir = None if relative == Path() else relative
        absolute = str(folder.absolute()).rstrip(os.sep) + os.sep  # no Path per file
        for entry in files:
            name = entry.name
            if name.startswith(".") or Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            if entry.is_symlink() and not Path(entry.path).exists():  # rare: no cost
                result.problems.append(InputProblem(entry.path, "broken symbolic link"))
                continue
            result.entries.append(InputEntry(absolute + name, f"{root}/", subdir=subdir))
    return result


def _walk(
    folder: Path, seen: set[tuple[int, int]], skip: Path | None, result: Inputs
) -> Iterator[tuple[Path, list[os.DirEntry[str]]]]:
    """Each folder's entries that are not folders, sorted by name; then its subfolders.
    ``os.scandir``: the directory listing says which names are folders or symlinks, so a
    plain file costs no stat of its own."""
    try:
        stat = folder.stat()
    except OSError as exc:
        result.problems.append(InputProblem(str(folder), f"cannot read folder ({exc.strerror})"))
        return
    key = (stat.st_dev, stat.st_ino)
    if key in seen:
        result.problems.append(InputProblem(str(folder), "symbolic link loop; skipped"))
        return
    seen.add(key)
    if skip is not None and folder.resolve() == skip:
        return
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        result.problems.append(InputProblem(str(folder), f"cannot read folder ({exc.strerror})"))
        return
    folders: list[os.DirEntry[str]] = []
    files: list[os.DirEntry[str]] = []
    for entry in entries:
        (folders if _is_dir(entry) else files).append(entry)
    yield folder, files
    for entry in folders:
        if not entry.name.startswith("."):
            yield from _walk(folder / entry.name, seen, skip, result)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks, as Path.is_dir does
    except OSError:
        return False


def _resolve(text: str, base: Path) -> str:
    if looks_like_url(text):
        return text
    path = Path(text).expanduser()
    return str((path if path.is_absolute() else base / path).absolute())


def read_file_list(path: Path) -> Inputs:
    """One path or URL per line; ``#`` comments and blank lines ignored."""
    lines = _read_text(path).splitlines()
    result = Inputs()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        result.entries.append(InputEntry(_resolve(line, path.parent), f"{path.name}:{number}"))
    return result


def read_url_list(path: Path) -> Inputs:
    """CSV with a header: ``url`` or ``path``, optional ``template`` and ``output_name``;
    every other column is a template parameter for that row. A row is one line."""
    lines = _read_text(path).splitlines()
    header = [h.strip() for h in next(csv.reader(lines[:1]), [])]
    if not ({"url", "path"} & set(header)):
        raise InputError(f"{path}: the CSV needs a header with a 'url' or 'path' column")
    result = Inputs()
    # One row per line: a stray quote breaks its own row, not every row after it.
    for number, line in enumerate(lines[1:], start=2):
        origin = f"{path.name}:{number}"
        try:
            row = next(csv.reader([line], strict=True), [])
        except csv.Error as exc:
            result.problems.append(InputProblem(origin, f"not a valid CSV row ({exc})"))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            result.problems.append(
                InputProblem(origin, f"expected {len(header)} columns, found {len(row)}")
            )
            continue
        cells = {h: c.strip() for h, c in zip(header, row, strict=True)}
        source = cells.get("url") or cells.get("path")
        if not source:
            result.problems.append(InputProblem(origin, "no url or path in this row"))
            continue
        params = {k: v for k, v in cells.items() if k not in _RESERVED_COLUMNS and v}
        result.entries.append(
            InputEntry(
                _resolve(source, path.parent),
                origin,
                template=cells.get("template") or None,
                output_name=cells.get("output_name") or None,
                params=params,
            )
        )
    return result


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError(f"list file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the list ({exc})") from exc
