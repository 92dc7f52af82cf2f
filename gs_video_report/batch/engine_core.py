"""What every part of the ``Engine`` stands on: its settings, keys, clock and state
database, the template registry (kept while no template file changes), and a batch's
status. ``api.Engine`` adds the lifecycle; ``housekeeping`` and ``lesson_files`` the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from gs_video_report.batch.lease import dead_on_this_host
from gs_video_report.batch.requests import SyncEngine
from gs_video_report.batch.stored import state_db_path
from gs_video_report.batch.views import BatchView
from gs_video_report.clock import REAL, Clock
from gs_video_report.errors import UnknownBatchError
from gs_video_report.storage import CheckpointManager, open_db
from gs_video_report.storage.jobs import JobStore

if TYPE_CHECKING:
    from gs_video_report.config import PoolKey, Settings
    from gs_video_report.services.templates import TemplateRegistry


class EngineCore:
    def __init__(
        self,
        settings: Settings,
        *,
        keys: Sequence[PoolKey] = (),
        home: Path | None = None,
        clock: Clock = REAL,
        config_file: Path | None = None,
        progress_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.keys = list(keys)
        self.db_path = state_db_path(home)
        self.clock = clock
        self.config_file = config_file  # stored with a batch, so a resume reads it again
        self.progress_file = progress_file
        self.sync = SyncEngine(self)
        self._registry: tuple[object, TemplateRegistry] | None = None

    def registry(self, extra: Sequence[Path] = ()) -> TemplateRegistry:
        from gs_video_report.services.templates import (
            TemplateRegistry,
            builtin_templates_dir,
            load_template,
        )

        if extra:  # given by path: loaded afresh, onto a registry of its own
            registry = TemplateRegistry.with_builtins(self.settings.templates.dirs)
            for file in extra:
                registry.add(load_template(file))
            return registry
        # One batch asks three times (plan, record, run) and loading parses every
        # template: kept while no template file changed (a long-lived caller sees edits).
        dirs = [builtin_templates_dir(), *self.settings.templates.dirs]
        seen = tuple(
            (str(f), f.stat().st_mtime_ns, f.stat().st_size)
            for d in dirs
            if d.is_dir()
            for f in sorted(d.glob("*.y*ml"))
        )
        if self._registry is None or self._registry[0] != (dirs, seen):
            self._registry = ((dirs, seen), TemplateRegistry.with_builtins(dirs[1:]))
        return self._registry[1]

    @asynccontextmanager
    async def _store(self) -> AsyncIterator[CheckpointManager]:
        async with open_db(self.db_path) as conn:
            yield CheckpointManager(conn)

    def check_template(self, name: str | None) -> None:
        """Raises ``TemplateError`` unless ``name`` (default: the configured one) loads;
        a typo's error names the closest template."""
        from gs_video_report.batch.planner import find_template

        find_template(self.registry(), name or self.settings.templates.default)

    async def status(self, batch_id: str) -> BatchView:
        if not self.db_path.exists():
            raise UnknownBatchError(batch_id)
        async with self._store() as store:
            row = await store.batch(batch_id)
            if row is None:
                raise UnknownBatchError(batch_id)
            tasks = await store.tasks(batch_id)
            counts = await store.counts(batch_id)
            jobs = await JobStore(store).summary(batch_id)
        keep = ("display_name", "name", "state", "requests", "submitted_at", "ended_at")
        view = BatchView.of(row, counts, self.clock.time(), tasks, holder_dead=dead_on_this_host)
        return replace(view, jobs=[{k: j[k] for k in keep} for j in jobs])
