"""``render``: lessons rebuilt from their JSON sidecars, with no API call — after a
template's layout changed, in another format, or into another folder.

The sidecar holds the answer and what the lesson was written with (``meta``), so the
files come out as ``batch`` wrote them (``services.outputs``, the same atomic writes and
names). A lesson whose sidecar is unreadable, whose template is gone, or whose answer no
longer fits its template fails alone, with one line; the others are rendered.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gs_video_report.batch.pipeline import read_sidecar, write_rendered
from gs_video_report.batch.views import RenderedLessonView, RenderResult
from gs_video_report.errors import GsVideoReportError, InputError
from gs_video_report.models import LessonFiles, LessonFormat
from gs_video_report.services.formatter import LessonMeta, relative_video, relocated
from gs_video_report.services.html import render_page
from gs_video_report.services.outputs import render_lesson
from gs_video_report.services.sources import printable
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.services.writer import check_writable, write_answer

REPORTS_DIR = "_reports"  # the batch reports' folder: JSON that is no lesson


def find_sidecars(root: Path) -> list[Path]:
    """The lesson sidecars under ``root``: a ``.json`` beside a ``.md`` of the same stem,
    or one that reads as a sidecar; hidden entries and the reports' folder skipped."""
    found = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != REPORTS_DIR)
        for name in sorted(names):
            if name.startswith(".") or not name.endswith(".json"):
                continue
            path = Path(folder) / name
            if path.with_suffix(".md").is_file() or read_sidecar(path) is not None:
                found.append(path)
    return found


def _load(sidecar: Path, registry: TemplateRegistry) -> tuple[dict[str, Any], LessonMeta]:
    """The sidecar and its metadata, its answer checked against its template as it is now."""
    document = read_sidecar(sidecar)
    if document is None:
        raise InputError("not a readable lesson sidecar (broken JSON or no answer in it)")
    meta_block = document.get("meta")
    name = meta_block.get("template") if isinstance(meta_block, dict) else None
    # a name, never a path: a sidecar is data, and must not make us load a file it names
    if not isinstance(name, str) or not name or "/" in name or name.endswith((".yaml", ".yml")):
        raise InputError(f"the sidecar names no template (template: {name!r})")
    template = registry.get(name)
    problems = template.validate_answer(document["answer"])
    if problems:
        raise InputError(f"the answer no longer fits template '{name}': {problems[0]}")
    meta = LessonMeta.from_sidecar(document, template)
    return document, relocated(meta, document.get("video"), sidecar)


def render_one(
    sidecar: Path,
    target: LessonFiles,
    registry: TemplateRegistry,
    formats: Sequence[LessonFormat],
) -> RenderedLessonView:
    """One lesson into ``target`` (its sidecar copied there when that is elsewhere)."""
    try:
        document, meta = _load(sidecar, registry)
        rendered = render_lesson(document["answer"], meta, target, formats)
        if target.answer_json.absolute() != sidecar.absolute():
            # the new folder can be rendered again: its lessons keep their answers, with
            # the video's path from there
            video = relative_video(meta.source, target.answer_json)
            write_answer(target, {**document, "video": video} if video else document)
        write_rendered(rendered)
    except GsVideoReportError as exc:
        return RenderedLessonView(sidecar, (), error=printable(str(exc)))
    except (OSError, UnicodeDecodeError) as exc:
        return RenderedLessonView(sidecar, (), error=f"cannot read it: {exc}")
    return RenderedLessonView(sidecar, tuple(f.path for f in rendered.files), rendered.notes)


def render_all(
    sidecars: Iterable[Path],
    root: Path,
    output: Path,
    registry: TemplateRegistry,
    formats: Sequence[LessonFormat],
) -> list[RenderedLessonView]:
    """Each sidecar's lesson at the same place under ``output`` as under ``root``."""
    views = []
    for sidecar in sidecars:
        try:
            rel = sidecar.relative_to(root)
        except ValueError:  # a batch's lesson outside its folder (moved by hand)
            rel = Path(sidecar.name)
        json_path = output / rel
        target = LessonFiles(json_path.with_suffix(".md"), json_path)
        views.append(render_one(sidecar, target, registry, formats))
    return views


def existing_folder(target: str | Path) -> Path | None:
    folder = Path(target).expanduser()
    return folder.resolve() if folder.is_dir() else None


def render_lessons(
    root: Path,
    sidecars: Sequence[Path] | None,
    output: Path | None,
    registry: TemplateRegistry,
    formats: Sequence[LessonFormat],
    not_done: int = 0,
) -> RenderResult:
    """The lessons of ``sidecars`` (default: every one under ``root``) into ``output``
    (default: in place)."""
    found = find_sidecars(root) if sidecars is None else list(sidecars)
    if not found and not not_done:
        raise InputError(f"no lessons (JSON sidecars) in {printable(str(root))}")
    dest = output.expanduser().resolve() if output is not None else root
    if dest != root:
        check_writable(dest)
    views = render_all(found, root, dest, registry, formats)
    return RenderResult(tuple(views), dest, not_done)


def page_for(sidecar: Path, registry: TemplateRegistry, page_path: Path | None = None) -> str:
    """A lesson's HTML page, rendered in memory (nothing written): for the dashboard.
    ``page_path``: where the page is taken to be (the relative video link is made from
    it); by default beside the sidecar. Raises ``InputError``/``TemplateError``."""
    document, meta = _load(sidecar, registry)
    return render_page(document["answer"], meta, page_path or sidecar.with_suffix(".html"))
