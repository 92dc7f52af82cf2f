"""The command line. The only layer that imports typer and rich, and the only one that
prints. Every command turns our exceptions into one line on stderr and an exit code."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gs_video_report import __version__
from gs_video_report.cli.batch import batch_command, resume_command, retry_failed_command
from gs_video_report.cli.info import list_models_command, list_templates_command, version_command
from gs_video_report.cli.keys import keys_command
from gs_video_report.cli.manage import (
    cancel_command,
    cleanup_command,
    list_batches_command,
    status_command,
)
from gs_video_report.cli.single import main_command

EXIT_CODES = """Exit codes: 0 success · 1 some videos failed · 2 usage error ·
3 bad input or configuration · 4 authentication or permission ·
5 quota or budget exhausted (resumable) ·
6 offline: the Gemini API could not be reached (resumable) ·
130 interrupted (resumable)"""

app = typer.Typer(
    name="gs_videoreport",
    help="Turn teaching videos into lesson plans and transcripts with Gemini.\n\n" + EXIT_CODES,
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gs_videoreport {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version")
    ] = False,
) -> None:
    pass


app.command("main", epilog=EXIT_CODES)(main_command)
app.command("batch", epilog=EXIT_CODES)(batch_command)
app.command("resume", epilog=EXIT_CODES)(resume_command)
app.command("status")(status_command)
app.command("cancel")(cancel_command)
app.command("retry-failed", epilog=EXIT_CODES)(retry_failed_command)
app.command("list-batches")(list_batches_command)
app.command("cleanup")(cleanup_command)
app.command("keys")(keys_command)
app.command("list-templates")(list_templates_command)
app.command("list-models")(list_models_command)
app.command("version")(version_command)


def _legacy_argv(argv: list[str]) -> list[str]:
    """``gs_videoreport VIDEO ...`` (as the original's docs promised) means ``main VIDEO ...``."""
    if not argv:
        return argv
    first = argv[0]
    commands = {c.name for c in app.registered_commands}
    if first.startswith("-") or first in commands:
        return argv
    return ["main", *argv]


def main() -> None:
    app(args=_legacy_argv(sys.argv[1:]), prog_name="gs_videoreport")
