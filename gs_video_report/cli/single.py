"""``gs_videoreport main VIDEO``: the legacy single-video command."""

from __future__ import annotations

import asyncio
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gs_video_report.batch.api import Engine, OneResult, RunOptions, parse_params
from gs_video_report.batch.events import Event, TaskActivity, TaskFailed
from gs_video_report.cli.common import (
    api_target,
    fail,
    handle_errors,
    runtime,
    settings_from,
    setup_logging,
)
from gs_video_report.cli.options import FormatOpt, formats_of
from gs_video_report.cli.signals import Interrupts
from gs_video_report.cli.text import literal, printable
from gs_video_report.errors import ExitCode, exit_code_of
from gs_video_report.models import LessonFormat, StopReason

TEMPLATE_HELP = "Template name (see list-templates) or path to a template .yaml file"


class _Spinner:
    """The one video's stage on a terminal spinner (a reporter of the engine's events)."""

    def __init__(self, status: object | None) -> None:
        self.status = status

    def emit(self, event: Event) -> None:
        if self.status is None or not isinstance(event, TaskActivity | TaskFailed):
            return
        if isinstance(event, TaskFailed):
            text = f"failed: {event.reason}"
        else:
            pct = f" {event.fraction:.0%}" if event.fraction is not None else ""
            text = f"{event.activity.value}{pct}"
        self.status.update(literal(f"{event.task.display_name}: {text}"))  # type: ignore[attr-defined]


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
    force: Annotated[
        bool, typer.Option("--force", help="Generate again even if this video is done")
    ] = False,
    formats: FormatOpt = None,
    simulate: Annotated[
        bool,
        typer.Option("--simulate", help="Use the built-in Gemini simulator (no key, no network)"),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logs and tracebacks")
    ] = False,
) -> None:
    """Turn one video (file or YouTube URL) into a lesson (Markdown + JSON answer, and the
    other --format files).
    It runs as a one-video batch: interrupted, it resumes when run again."""
    rt = runtime(ctx)
    if api_key:
        rt.secrets.add(api_key.strip())
    setup_logging(rt, verbose=verbose, to_file=True)
    with handle_errors(verbose):
        settings = settings_from(config, model=model, **{"output.dir": output})
        params = parse_params(param or [])
        # every local check before the simulator or a key is touched
        Engine(settings).check_template(template)
        wanted = formats_of(formats) or settings.output.formats
        for note in Engine(settings).format_notes([template or settings.templates.default], wanted):
            typer.echo(f"note: {printable(note)}", err=True)
        with api_target(rt, settings, simulate=simulate, api_key=api_key) as (target, keys):
            engine = Engine(target, keys=keys[:1], clock=rt.clock)  # one video, one key
            console = Console(stderr=True)
            interrupts = Interrupts(console)
            options = RunOptions(
                parallel=1,
                max_uploads=1,
                max_retries=target.api.max_retries,
                simulated=simulate,
                formats=wanted,
            )
            show = console.is_terminal and not verbose
            with console.status("starting", spinner="dots") if show else nullcontext() as status:
                run = _run_one(
                    engine,
                    interrupts,
                    video,
                    template=template,
                    params=params,
                    options=options,
                    force=force,
                    reporter=_Spinner(status),
                )
                try:
                    result = asyncio.run(run)
                except (KeyboardInterrupt, asyncio.CancelledError):
                    typer.echo("Stopped at once. Run the same command again to resume.", err=True)
                    raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        _report(result, simulate, options.formats)


async def _run_one(engine: Engine, interrupts: Interrupts, video: str, **kwargs: Any) -> OneResult:
    """The one video, with Ctrl-C, SIGTERM and SIGHUP meaning what they mean in a batch."""
    interrupts.install()
    try:
        return await engine.run_one(video, control=interrupts.control, **kwargs)
    finally:
        interrupts.uninstall()


def _report(result: OneResult, simulate: bool, formats: tuple[LessonFormat, ...]) -> None:
    """Where the lesson is (stdout), or why there is none; exit 130 on any interruption,
    also one that came while the video's last call was in flight (it was finished first)."""
    if result.skipped_reason is not None:
        typer.echo(f"{printable(result.skipped_reason)} (--force to generate it again)", err=True)
        typer.echo(f"Lesson: {printable(result.markdown)}")
        return
    outcome, task = result.outcome, result.task
    assert outcome is not None and task is not None
    if not result.done:
        resume = " (run the same command again to resume)" if outcome.stop_reason else ""
        why = outcome.stop_message if outcome.stop_reason else task.last_error
        # one video: the exit code of what stopped it (a template refused at render: 3)
        code = outcome.exit_code if outcome.stop_reason else exit_code_of(task.last_error_kind)
        raise fail(f"{why or 'the video was not finished'}{resume}", code)
    for fmt in formats:  # the files written, the Markdown first as ever
        path = result.markdown.with_suffix(f".{fmt.value}")
        if path.is_file():
            typer.echo(f"Lesson: {printable(path)}")
    typer.echo(f"Answer: {printable(result.answer_json)}")
    note = " · simulated" if simulate else ""
    cost = f" · ${task.cost_usd:.4f}" if task.cost_usd is not None else ""
    typer.echo(
        f"Model {printable(result.model)} · {task.tokens or 0:,} tokens{cost}{note}",
        file=sys.stdout,
    )
    if outcome.stop_reason is StopReason.INTERRUPTED:
        typer.echo(f"{outcome.stop_message}: stopped after the lesson was saved", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED))
