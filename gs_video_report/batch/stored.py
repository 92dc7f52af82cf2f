"""Where the state lives and what a batch was started with: the state database's path,
a batch's stored run, and the small helpers front-ends need at start-up (this module
loads neither pydantic's settings nor the templates until a function asks)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gs_video_report.batch.requests import RunOptions
from gs_video_report.batch.views import StoredRun
from gs_video_report.errors import UnknownBatchError
from gs_video_report.storage import CheckpointManager, open_db
from gs_video_report.storage.db import DB_NAME

if TYPE_CHECKING:
    from gs_video_report.config import Settings
    from gs_video_report.services.templates import TemplateEntry


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """``--param key=value`` strings to a dict; a malformed pair is a ``TemplateError``
    (the templates' own rule, loaded with them when first used)."""
    from gs_video_report.services.templates import parse_params as parse

    return parse(pairs)


def state_db_path(home: Path | None = None) -> Path:
    if home is None:
        from gs_video_report.config import home_dir  # pydantic, for the one call

        home = home_dir()
    return home / DB_NAME


def list_templates(settings: Settings) -> list[TemplateEntry]:
    """Every template the settings can see, broken ones with the reason."""
    from gs_video_report.services.templates import TemplateRegistry

    return TemplateRegistry.with_builtins(settings.templates.dirs).entries()


async def read_stored_run(batch_id: str, home: Path | None = None) -> StoredRun:
    """What ``batch_id`` was started with (its options, config file, progress file)."""
    path = state_db_path(home)
    if not path.exists():
        raise UnknownBatchError(batch_id)
    async with open_db(path) as conn:
        return await stored_run_of(CheckpointManager(conn), batch_id)


async def stored_run_of(store: CheckpointManager, batch_id: str) -> StoredRun:
    """``read_stored_run`` on a store that is open already."""
    batch = await store.batch(batch_id)
    if batch is None:
        raise UnknownBatchError(batch_id)
    snapshot: dict[str, Any] = json.loads(batch["settings_json"])
    known = {f.name for f in fields(RunOptions)}
    return StoredRun(
        RunOptions(**{k: v for k, v in snapshot.items() if k in known}),
        Path(snapshot["config"]) if snapshot.get("config") else None,
        Path(snapshot["progress_file"]) if snapshot.get("progress_file") else None,
        str(snapshot.get("model", "")),
        tuple(Path(p) for p in snapshot.get("template_files", [])),
    )
