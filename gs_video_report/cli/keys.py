"""``keys``: the key pool as the batch sees it, and ``keys enable FINGERPRINT``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gs_video_report.batch.api import Engine
from gs_video_report.cli.common import (
    ConfigOpt,
    JsonOpt,
    KeysFileOpt,
    fail,
    handle_errors,
    runtime,
    settings_from,
)
from gs_video_report.cli.text import literal
from gs_video_report.errors import ExitCode


def keys_command(
    ctx: typer.Context,
    action: Annotated[
        str | None, typer.Argument(help="'enable' to put a disabled key back in the pool")
    ] = None,
    fingerprint: Annotated[
        str | None, typer.Argument(help="The key to enable (key-xxxxxxxx, from the list)")
    ] = None,
    keys_file: KeysFileOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The key pool: fingerprint (never the key), label, project, state, cooldown, counts.
    `keys enable FINGERPRINT` re-enables a disabled key."""
    rt = runtime(ctx)
    console = Console(stderr=True, highlight=False)
    with handle_errors(False):
        if action is not None:
            if action != "enable" or not fingerprint:
                raise fail("usage: gs_videoreport keys enable FINGERPRINT", ExitCode.USAGE)
            engine = Engine(settings_from(config), clock=rt.clock)
            if not asyncio.run(engine.enable_key(fingerprint)):
                raise fail(f"no key {fingerprint} in the state database", ExitCode.INPUT)
            console.print(f"{literal(fingerprint)} is enabled again")
            return
        from gs_video_report.config import resolve_keys  # see cli.common

        settings = settings_from(config)
        keys = resolve_keys(settings, keys_file=keys_file)
        for key in keys:
            rt.secrets.add(key.key.reveal())
        views = asyncio.run(Engine(settings, keys=keys, clock=rt.clock).key_pool())
        rows: list[dict[str, Any]] = [dataclasses.asdict(v) for v in views]
        usable = sum(1 for r in rows if r["usable"])
        if as_json:
            typer.echo(json.dumps({"keys": rows, "usable": usable, "total": len(rows)}))
        else:
            table = Table(title=f"Key pool: {usable} of {len(rows)} usable")
            for column in ("key", "label", "project", "state", "ok", "failures"):
                table.add_column(column)
            for row in rows:
                failures = ", ".join(f"{k} {v}" for k, v in sorted(row["failures"].items()))
                cells = (row["fingerprint"], row["label"], row["project"], row["state"])
                table.add_row(*(literal(c) for c in cells), str(row["successes"]), failures or "-")
            Console(highlight=False).print(table)
        if usable * 2 < len(rows):
            console.print(
                f"[yellow]warning[/]: only {usable} of {len(rows)} keys are usable; see the"
                " states above (`gs_videoreport keys enable FINGERPRINT` after fixing a key)"
            )
