"""The command line. The only layer that imports typer and rich, and the only one that
prints. Every command turns our exceptions into one line on stderr and an exit code."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperGroup

from gs_video_report import __version__
from gs_video_report.cli.batch import batch_command, resume_command, retry_failed_command
from gs_video_report.cli.common import output_closed, quiet_exit
from gs_video_report.cli.info import list_models_command, list_templates_command, version_command
from gs_video_report.cli.keys import keys_command
from gs_video_report.cli.manage import (
    cancel_command,
    cleanup_command,
    list_batches_command,
    status_command,
)
from gs_video_report.cli.render import render_command
from gs_video_report.cli.serve import serve_command
from gs_video_report.cli.single import main_command
from gs_video_report.cli.text import printable
from gs_video_report.errors import ExitCode

EXIT_CODES = """Exit codes: 0 success · 1 some videos failed or inputs rejected · 2 usage
error · 3 bad input or configuration · 4 authentication or permission · 5 quota or budget
exhausted (resumable) · 6 offline: the Gemini API could not be reached (resumable) ·
130 interrupted (resumable) · 141 output closed (| head)"""


class _CommandTypo(Exception):
    def __init__(self, given: str, meant: str) -> None:
        super().__init__(f"no command '{given}' — did you mean '{meant}'?")


def _legacy_argv(argv: list[str]) -> list[str]:
    """``gs_videoreport VIDEO ...`` (as the original's docs promised) means ``main VIDEO
    ...``; but a word close to a command's name that is no file and looks like no path
    or URL is a typo (``bacth``), not a video (``_CommandTypo``)."""
    if not argv:
        return argv
    first = argv[0]
    commands = {c.name for c in app.registered_commands if c.name}
    if first.startswith("-") or first in commands:
        return argv
    wordlike = not any(mark in first for mark in "./\\:")
    if wordlike and not Path(first).exists():
        close = difflib.get_close_matches(first, sorted(commands), n=1)
        if close:
            raise _CommandTypo(first, close[0])
    return ["main", *argv]


class _Group(TyperGroup):
    """The root command: the legacy short form and command typos are handled here, so
    every way in (the installed script, ``python -m``, the tests' runner) has them."""

    # Typer passes a typer.Context; the base class names the private Click it vendors
    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        try:
            args = _legacy_argv(args)
        except _CommandTypo as typo:
            typer.echo(f"error: {printable(typo)}", err=True)
            raise typer.Exit(int(ExitCode.USAGE)) from None
        return super().parse_args(ctx, args)

    # Output to a pipe that closed (``list-batches | head -1``) ends quietly with 141,
    # also for what is printed outside a command's own error handling (--help, version).
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _output_guard():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        with _output_guard():
            return super().invoke(ctx)


class _OneLineUsage(ClickException):
    """Click's usage error is three lines (usage, hint, message); ours is the one
    ``error:`` line every other mistake gets, naming where the help is."""

    exit_code = int(ExitCode.USAGE)

    def __init__(self, error: UsageError) -> None:
        super().__init__(error.format_message())
        ctx = error.ctx
        self.help_hint = f"{ctx.command_path} -h" if ctx is not None else "gs_videoreport -h"

    def show(self, file: Any = None) -> None:
        typer.echo(f"error: {printable(self.message)} (see '{self.help_hint}')", err=True)


@contextmanager
def _output_guard() -> Iterator[None]:
    try:
        yield
    except UsageError as exc:
        raise _OneLineUsage(exc) from None
    except (SystemExit, OSError) as exc:
        if output_closed(exc):
            raise quiet_exit() from None
        raise


app = typer.Typer(
    name="gs_videoreport",
    help="Turn teaching videos into lesson plans and transcripts with Gemini.\n\n" + EXIT_CODES,
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=_Group,
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
app.command("render", epilog=EXIT_CODES)(render_command)
app.command("cleanup")(cleanup_command)
app.command("keys")(keys_command)
app.command("serve")(serve_command)
app.command("list-templates")(list_templates_command)
app.command("list-models")(list_models_command)
app.command("version")(version_command)


def main() -> None:
    app(args=sys.argv[1:], prog_name="gs_videoreport")
