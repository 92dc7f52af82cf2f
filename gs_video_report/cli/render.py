"""``gs_videoreport render OUTPUT_DIR | BATCH_ID``: lessons rebuilt from their JSON
sidecars, in any format, in place or into another folder — with no API call."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from gs_video_report.batch.api import Engine, RenderResult
from gs_video_report.cli.common import (
    ConfigOpt,
    JsonOpt,
    VerboseOpt,
    handle_errors,
    runtime,
    settings_from,
    setup_logging,
)
from gs_video_report.cli.options import FormatOpt, formats_of
from gs_video_report.cli.text import printable


def render_command(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(help="A folder of lessons (searched recursively) or a batch id")
    ],
    formats: FormatOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead, at the same relative places"),
    ] = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild lessons from their JSON sidecars with no API call: after a template's
    layout changed, in another format (--format md,html,srt,vtt), or into another folder.
    A lesson that cannot be rendered is reported and the others are (exit 1)."""
    setup_logging(runtime(ctx), verbose=verbose, to_file=False)
    with handle_errors(verbose):
        engine = Engine(settings_from(config), clock=runtime(ctx).clock)
        wanted = formats_of(formats)
        result = asyncio.run(engine.render(target, formats=wanted, output=output))
    if as_json:
        typer.echo(json.dumps(_json(result)))
    else:
        _print(result)
    raise typer.Exit(int(result.exit_code))


def _print(result: RenderResult) -> None:
    for lesson in result.failed:
        typer.echo(f"error: {printable(lesson.sidecar)}: {printable(lesson.error)}", err=True)
    # the same note for many lessons (a template without timed segments) is said once
    for note, count in Counter(n for lesson in result.lessons for n in lesson.notes).items():
        times = f" ({count} lessons)" if count > 1 else ""
        typer.echo(f"note: {printable(note)}{times}", err=True)
    if result.not_done:
        typer.echo(f"{result.not_done} video(s) of the batch have no lesson yet", err=True)
    done = len(result.lessons) - len(result.failed)
    files = sum(len(lesson.written) for lesson in result.lessons)
    typer.echo(
        f"Rendered {done} lesson(s), {files} file(s), into {printable(result.output)}"
        + (f"; {len(result.failed)} failed" if result.failed else "")
    )


def _json(result: RenderResult) -> dict[str, object]:
    return {
        "output": printable(result.output),
        "rendered": len(result.lessons) - len(result.failed),
        "failed": len(result.failed),
        "not_done": result.not_done,
        "lessons": [
            {
                "sidecar": printable(lesson.sidecar),
                "files": [printable(p) for p in lesson.written],
                "notes": [printable(n) for n in lesson.notes],
                "error": printable(lesson.error) if lesson.error else None,
            }
            for lesson in result.lessons
        ],
    }
