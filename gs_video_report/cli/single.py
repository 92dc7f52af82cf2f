"""``gs_videoreport main VIDEO``: the legacy single-video command."""

from __future__ import annotations

import asyncio
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gs_video_report.batch.single import prepare_single, run_single
from gs_video_report.cli.common import (
    api_target,
    handle_errors,
    runtime,
    settings_from,
    setup_logging,
)
from gs_video_report.services.templates import parse_params

TEMPLATE_HELP = "Template name (see list-templates) or path to a template .yaml file"


def main_command(
    ctx: typer.Context,
    video: Annotated[str, typer.Argument(help="Local video file or public YouTube URL")],
    template: Annotated[str | None, typer.Option("--template", "-t", help=TEMPLATE_HELP)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Gemini model name")] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", "-k", help="Gemini API key (prefer $GEMINI_API_KEY)")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config file")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Template parameter key=value (repeatable)")
    ] = None,
    simulate: Annotated[
        bool,
        typer.Option("--simulate", help="Use the built-in Gemini simulator (no key, no network)"),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logs and tracebacks")
    ] = False,
) -> None:
    """Turn one video (file or YouTube URL) into a lesson (Markdown + JSON answer)."""
    rt = runtime(ctx)
    if api_key:
        rt.secrets.add(api_key.strip())
    setup_logging(rt, verbose=verbose, to_file=True)
    with handle_errors(verbose):
        settings = settings_from(config, model=model, **{"output.dir": output})
        prepared = prepare_single(
            video, settings=settings, template=template, params=parse_params(param or [])
        )
        with api_target(rt, settings, simulate=simulate, api_key=api_key) as (target, keys):
            console = Console(stderr=True)
            show = console.is_terminal and not verbose
            with console.status("starting", spinner="dots") if show else nullcontext() as status:

                def on_stage(stage: str, fraction: float | None) -> None:
                    if status is not None:
                        pct = f" {fraction:.0%}" if fraction is not None else ""
                        status.update(f"{prepared.source.display_name}: {stage}{pct}")

                result = asyncio.run(
                    run_single(
                        prepared,
                        settings=target,
                        key=keys[0].key,  # one video, one key: the pool's first
                        simulated=simulate,
                        on_stage=on_stage,
                        sleep=rt.sleep,
                    )
                )
        gen = result.generation
        typer.echo(f"Lesson: {result.files.markdown}")
        typer.echo(f"Answer: {result.files.answer_json}")
        note = " · simulated" if simulate else ""
        typer.echo(
            f"Model {gen.model} · {gen.usage.total_tokens:,} tokens "
            f"(prompt {gen.usage.prompt_tokens:,}, output {gen.usage.candidates_tokens:,}){note}",
            file=sys.stdout,
        )
