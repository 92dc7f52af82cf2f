"""From inputs to a plan of VideoTasks, with nothing spent.

Every entry goes through the same local checks as ``main`` (``pipeline.prepare``); an
entry that fails them becomes a problem line and the others go on. Output paths are
decided here, for the whole batch at once, so two videos can never claim one file.
The skip-existing ledger (``done_ledger``, written with each task's "done"): a video is
skipped when a task with the same done key (content fingerprint, template name and
version, parameters, model) finished before and its lesson is still on disk.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from gs_video_report.batch.cost import Prices, estimate_input_tokens, expected_output_tokens
from gs_video_report.batch.inputs import InputEntry, InputProblem, Inputs
from gs_video_report.batch.parts import input_limit, spans
from gs_video_report.errors import InputError, TemplateError
from gs_video_report.models import VideoInfo, VideoSource
from gs_video_report.services.fingerprint import content_fingerprint, url_fingerprint
from gs_video_report.services.probe import checked_stat, probe_video
from gs_video_report.services.sources import parse_source
from gs_video_report.services.templates import LessonTemplate, TemplateRegistry
from gs_video_report.services.writer import FileWriter
from gs_video_report.storage.checkpoint import LedgerEntry
from gs_video_report.storage.probecache import ProbeCache, Probed

if TYPE_CHECKING:
    from gs_video_report.batch.pipeline import PreparedVideo
    from gs_video_report.config import Settings
    from gs_video_report.services.templates import TemplateRegistry

Ledger = Mapping[str, LedgerEntry]  # done key -> where its lesson was written
ALREADY_DONE = "already done"


def done_key(
    content_fp: str, template: str, version: str, params: Mapping[str, str], model: str
) -> str:
    blob = json.dumps([content_fp, template, version, dict(sorted(params.items())), model])
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class PlannedTask:
    entry: InputEntry
    video: PreparedVideo
    content_fingerprint: str
    done_key: str
    skip_reason: str | None = None
    skip_kind: str | None = None  # the reason in short, for counts ("already done")


@dataclass
class Plan:
    tasks: list[PlannedTask] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)

    @property
    def to_run(self) -> list[PlannedTask]:
        return [t for t in self.tasks if t.skip_reason is None]

    @property
    def skipped(self) -> list[PlannedTask]:
        return [t for t in self.tasks if t.skip_reason is not None]

    @property
    def total_duration_s(self) -> float:
        return sum(t.video.duration_s or 0.0 for t in self.to_run)

    def skip_counts(self) -> dict[str, int]:
        """Why videos are skipped, counted: ``{"already done": 12}``."""
        counts: dict[str, int] = {}
        for task in self.skipped:
            kind = task.skip_kind or "skipped"
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def build_plan(
    inputs: Inputs,
    *,
    settings: Settings,
    registry: TemplateRegistry,
    writer: FileWriter,
    template: str | None,
    params: Mapping[str, str],
    ledger: Ledger | None = None,
    force: bool = False,
    probes: ProbeCache | None = None,
    templates: Sequence[str] = (),
) -> Plan:
    """``templates`` (``-t A -t B``): every entry without a template of its own is
    planned once per template, its tasks next to each other — they share one upload
    (``batch.uploads``), and back to back they may share a cache (``batch.caching``)."""
    chosen = unique_templates(templates, template)
    for name in chosen:
        if name is not None:
            registry.get(name)  # a broken -t fails the batch once, not every row
    plan = Plan(problems=list(inputs.problems))
    taken: set[Path] = set()
    seen: dict[tuple[str, str, str], str] = {}
    unusable: set[int] = set()  # entries whose video failed: one problem line, not one a -t
    known = _probe_all(inputs.entries, settings, probes) if probes is not None else None
    for entry, name in ((e, n) for e in inputs.entries for n in _for_entry(e, chosen)):
        if id(entry) in unusable:
            continue
        try:
            planned = plan_entry(
                entry,
                settings,
                registry,
                writer,
                name,
                params,
                taken,
                known=known,
                ledger=None if force else ledger,
            )
        except (InputError, TemplateError) as exc:
            if isinstance(exc, InputError):
                unusable.add(id(entry))
            plan.problems.append(InputProblem(entry.origin, str(exc)))
            continue
        video = planned.video
        identity = (
            video.source.identity,
            video.template.name,
            json.dumps(video.params, sort_keys=True),
        )
        if identity in seen:
            plan.problems.append(
                InputProblem(entry.origin, f"duplicate of {seen[identity]}; skipped")
            )
            continue
        seen[identity] = entry.origin
        taken.add(video.files.markdown)
        if not force and planned.skip_reason is None:
            reason = _done_already(planned, ledger)
            if reason is not None:
                planned = replace(planned, skip_reason=reason, skip_kind=ALREADY_DONE)
        plan.tasks.append(planned)
    if probes is not None:
        probes.flush()
    return plan


Known = Mapping[str, tuple[VideoSource, "tuple[VideoInfo, str] | InputError"]]
_PROBE_THREADS = min(4, os.cpu_count() or 1)


def _probe_all(entries: Sequence[InputEntry], settings: Settings, probes: ProbeCache) -> Known:
    """Every local file's probe and fingerprint (or why it is unusable), by entry text:
    from the cache while its key (size, times, inode) is unchanged, else probed — in a
    few threads (PyAV and the fingerprint's reads and hashing release the GIL: 100 new
    videos took half the time on 2 cores). Nothing is spent, so order does not matter
    here; ``plan_entry`` meets each result, or raises its error, in the inputs' order.
    The cheap checks (there, a file, a video type, readable, under the size limit) run
    every time: the limit may have changed, the file become unreadable."""
    max_bytes = settings.video.max_file_size_mb * 1024 * 1024
    sources: dict[str, VideoSource] = {}
    for entry in entries:
        try:
            source = parse_source(entry.text)
        except InputError:
            continue  # plan_entry says so, in its place
        if source.path is not None:
            # not resolved: a symlink's target may change (the stat sees it)
            sources.setdefault(entry.text, source)
    probes.prefetch(s.path for s in sources.values() if s.path is not None)
    results: dict[str, tuple[VideoSource, tuple[VideoInfo, str] | InputError]] = {}
    misses: list[tuple[str, Path, os.stat_result]] = []
    for text, source in sources.items():
        path = source.path
        assert path is not None
        try:
            # the checks' stat is the cache key, taken before probing: a change while
            # probing misses next time
            info, mime = checked_stat(path, max_bytes=max_bytes)
        except InputError as exc:
            results[text] = (source, exc)
            continue
        hit = probes.get(path, info)
        if hit is None:
            misses.append((text, path, info))
            continue
        video = VideoInfo(hit.duration_s, info.st_size, mime, hit.width, hit.height, hit.has_audio)
        results[text] = (source, (replace(video, mtime_ns=info.st_mtime_ns), hit.fingerprint))

    def probe(path: Path) -> tuple[VideoInfo, str]:
        return probe_video(path, max_bytes=max_bytes), content_fingerprint(path)

    with ThreadPoolExecutor(max_workers=max(1, min(_PROBE_THREADS, len(misses)))) as pool:
        futures = [(text, path, info, pool.submit(probe, path)) for text, path, info in misses]
    for text, path, info, future in futures:
        try:
            video, fingerprint = future.result()
        except InputError as exc:
            results[text] = (sources[text], exc)
            continue
        probed = Probed(video.duration_s, video.width, video.height, video.has_audio, fingerprint)
        probes.put(path, info, probed)
        results[text] = (sources[text], (video, fingerprint))
    return results


def unique_templates(templates: Sequence[str], template: str | None = None) -> list[str | None]:
    """The batch's templates in the order given, each once (``-t a -t a`` is one);
    ``[None]`` (the configured default) when none was given."""
    names = list(dict.fromkeys([*templates, *([template] if template else [])]))
    return list(names) if names else [None]


def _for_entry(entry: InputEntry, templates: list[str | None]) -> list[str | None]:
    # a CSV row naming its own template runs with that one alone
    return [entry.template] if entry.template else templates


def _done_already(
    planned: PlannedTask, ledger: Ledger | None, *, lesson_there: bool = False
) -> str | None:
    """Why the task need not run: the ledger says it was done and its lesson is there,
    or its own lesson is on disk with this work's done key in its sidecar (a state
    database lost or replaced since). ``lesson_there``: the ledger's lesson was just
    seen on disk (``plan_entry``), not asked again."""
    previous = ledger.get(planned.done_key) if ledger is not None else None
    # Only where this plan would write it: done into another folder, the task runs and
    # its lesson is written there from that answer, with no call (``batch.reuse``).
    same_place = previous is not None and Path(previous.output_md) == planned.video.files.markdown
    if same_place and (lesson_there or _lesson_there(ledger, planned.done_key)):
        assert previous is not None  # same_place says so
        return f"{ALREADY_DONE} in {previous.batch_id}: {previous.output_md}"
    from gs_video_report.batch.pipeline import read_sidecar  # see plan_entry

    files = planned.video.files
    if files.answer_json.is_file() and files.markdown.is_file():
        sidecar = read_sidecar(files.answer_json)
        if sidecar is not None and sidecar.get("done_key") == planned.done_key:
            return f"{ALREADY_DONE}, on disk: {files.markdown}"
    return None


def find_template(registry: TemplateRegistry, name: str) -> LessonTemplate:
    """``registry.get(name)``; an unknown name close to a known one (a typo) says which:
    "did you mean summary_report?"."""
    broken = {e.path.stem for e in registry.entries() if e.template is None}
    path_like = name.endswith((".yaml", ".yml")) or "/" in name
    if path_like or name in broken or name in registry.names():
        return registry.get(name)
    close = difflib.get_close_matches(name, registry.names(), n=1)
    if not close:
        return registry.get(name)  # its error lists the templates there are
    raise TemplateError(
        f"unknown template '{name}' — did you mean {close[0]}? (see list-templates)"
    )


def plan_entry(
    entry: InputEntry,
    settings: Settings,
    registry: TemplateRegistry,
    writer: FileWriter,
    template: str | None,
    params: Mapping[str, str],
    taken: set[Path] | None = None,
    *,
    known: Known | None = None,
    ledger: Ledger | None = None,
) -> PlannedTask:
    """One entry through every local check; raises ``InputError``/``TemplateError``.
    ``known``: the entries' probes and fingerprints (``_probe_all``; else it is probed).
    ``ledger``: a video whose done key it holds, with the lesson still there, is planned
    without its prompt (``prepare(render=False)``); ``build_plan`` then skips it — and
    should it not (the lesson would go elsewhere now), it is planned again, rendered."""
    # The pipeline (templates, Jinja, the formatter) loads with the first plan, not with
    # this module: the CLI imports ``estimate_plan`` for every command, --help included.
    from gs_video_report.batch.pipeline import prepare

    chosen = find_template(registry, entry.template or template or settings.templates.default)
    merged = {**params, **entry.params}
    info, fingerprint = None, None
    if known is not None and entry.text in known:
        source, probed = known[entry.text]
        if isinstance(probed, InputError):
            raise probed
        info, fingerprint = probed
    else:
        source = parse_source(entry.text)
    if source.path is None:
        fingerprint = url_fingerprint(source.identity)
    key = None
    if fingerprint is not None and ledger:
        resolved = chosen.resolve_parameters(merged)
        key = done_key(fingerprint, chosen.name, chosen.version, resolved, settings.model)
    done = key is not None and _lesson_there(ledger, key)

    def prepared(render: bool) -> PreparedVideo:
        return prepare(
            source,
            template=chosen,
            params=merged,
            settings=settings,
            writer=writer,
            subdir=entry.subdir,
            output_stem=entry.output_name,
            taken=taken or set(),
            info=info,
            render=render,
        )

    video = prepared(render=not done)
    if fingerprint is None:
        assert source.path is not None  # a URL's was taken above
        fingerprint = content_fingerprint(source.path)
    key = key or done_key(fingerprint, chosen.name, chosen.version, video.params, settings.model)
    planned = PlannedTask(entry, video, fingerprint, key)
    if done:
        reason = _done_already(planned, ledger, lesson_there=True)
        if reason is None:
            return replace(planned, video=prepared(render=True))
        planned = replace(planned, skip_reason=reason, skip_kind=ALREADY_DONE)
    return planned


def _lesson_there(ledger: Ledger | None, key: str) -> bool:
    previous = ledger.get(key) if ledger is not None else None
    return previous is not None and Path(previous.output_md).is_file()


@dataclass(frozen=True)
class EstimateRow:
    video: str
    source: str  # the path or URL
    template: str
    duration_s: float | None
    parts: list[tuple[float, float]]  # empty: one request
    input_tokens: int
    output: Path


@dataclass(frozen=True)
class PlanEstimate:
    """What ``--dry-run`` shows: per video, and the totals."""

    rows: list[EstimateRow]
    input_tokens: int
    calls: int
    cost_usd: float | None  # None: no price for the model
    model: str
    rpm: float | None
    tpm: float | None
    uploads: int = 0  # videos with a local file (YouTube needs none)
    discounted_usd: float | None = None  # at Flex and Batch Mode prices (half)

    @property
    def min_minutes(self) -> float:
        """The least time the configured rate limits allow (0: none configured)."""
        return max(
            self.calls / self.rpm if self.rpm else 0.0,
            self.input_tokens / self.tpm if self.tpm else 0.0,
        )


def estimate_plan(plan: Plan, settings: Settings) -> PlanEstimate:
    rows = []
    for task in plan.to_run:
        video = task.video
        tokens = estimate_input_tokens(video.duration_s, video.template.generation, video.prompt)
        bounds = spans(
            video.duration_s,
            settings.video.part_minutes * 60,
            video.template.generation,
            input_limit(settings.model),
        )
        rows.append(
            EstimateRow(
                video.source.display_name,
                video.source.identity,
                video.template.name,
                video.duration_s,
                list(bounds),
                tokens,
                video.files.markdown,
            )
        )
    tokens_total = sum(r.input_tokens for r in rows)
    calls = sum(max(1, len(r.parts)) for r in rows)
    output = sum(
        expected_output_tokens(t.video.template.generation) * max(1, len(r.parts))
        for t, r in zip(plan.to_run, rows, strict=True)
    )
    cost = Prices(settings.prices).usd(settings.model, tokens_total, output)
    half = Prices(settings.prices, discounted=True).usd(settings.model, tokens_total, output)
    limits = settings.limits_for(settings.model)
    uploads = sum(1 for t in plan.to_run if t.video.source.path is not None)
    return PlanEstimate(
        rows, tokens_total, calls, cost, settings.model, limits.rpm, limits.tpm, uploads, half
    )
