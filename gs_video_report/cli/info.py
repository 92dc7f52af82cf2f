"""``list-templates``, ``list-models``, ``version``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gs_video_report import __version__
from gs_video_report.batch.api import list_templates
from gs_video_report.catalog import MODELS
from gs_video_report.cli.common import handle_errors, settings_from
from gs_video_report.cli.text import literal, printable


def list_templates_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config file")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", "-k", hidden=True)] = None,
) -> None:
    """Show templates: name, version, description, parameters; broken ones with the reason."""
    with handle_errors(False):
        settings = settings_from(config)
        table = Table(title="Templates", show_lines=True)
        for col in ("Name", "Version", "Description", "Parameters (default)"):
            table.add_column(col, overflow="fold")
        broken = []
        for entry in list_templates(settings):
            tpl = entry.template
            if tpl is None:
                broken.append(entry)
                continue
            marker = " (default)" if tpl.name == settings.templates.default else ""
            params = "\n".join(
                f"{p.name} = {p.default!r}" if p.default is not None else f"{p.name} (required)"
                for p in tpl.parameters
            )
            cells = (tpl.name + marker, tpl.version, tpl.description, params or "-")
            table.add_row(*(literal(c) for c in cells))  # user templates: text, not markup
        Console().print(table)
        for entry in broken:
            typer.echo(f"warning: {printable(entry.error)}", err=True)


def list_models_command() -> None:
    """Show the models this tool knows, with context sizes and current prices."""
    today = datetime.now(UTC).date()
    table = Table(title=f"Gemini models (prices USD per 1M tokens, as of {today})")
    table.add_column("Model", no_wrap=True)  # a name cut short is useless for -m
    for col in ("Input tokens", "Output tokens", "$ in", "$ out"):
        table.add_column(col, justify="right")
    table.add_column("Notes", overflow="fold")
    for info in MODELS.values():
        price = info.price_on(today)
        table.add_row(
            info.name,
            f"{info.input_tokens:,}",
            f"{info.output_tokens:,}",
            f"{price.input:.2f}" if price else "?",
            f"{price.output:.2f}" if price else "?",
            info.description,
        )
    Console().print(table)
    typer.echo("Any other model name is accepted with -m; its price is reported as unknown.")


def version_command() -> None:
    """Print the version."""
    typer.echo(f"gs_videoreport {__version__}")
