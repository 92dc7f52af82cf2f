"""Looking after batches through the ``Engine``: the history, cancelling, cleaning up,
the key pool's health, and the dashboard's cost summaries and presets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gs_video_report.batch.cost import Prices
from gs_video_report.batch.engine_core import EngineCore
from gs_video_report.batch.lease import dead_on_this_host
from gs_video_report.batch.views import (
    BatchView,
    Cancelled,
    CancelResult,
    CostSummary,
    KeyView,
    PresetView,
)
from gs_video_report.models import BatchStatus

if TYPE_CHECKING:
    from gs_video_report.batch.cleanup import CleanupReport


class Housekeeping(EngineCore):
    async def batches(self, limit: int | None = 10) -> list[BatchView]:
        """Newest first."""
        if not self.db_path.exists():
            return []
        async with self._store() as store:
            now = self.clock.time()
            return [
                BatchView.of(row, await store.counts(row["id"]), now, holder_dead=dead_on_this_host)
                for row in await store.batches(limit)
            ]

    async def cancel(self, batch_id: str) -> Cancelled:
        """Stop a batch: a running one (another process) stops within seconds, an idle one
        at once (resumable); a finished one is left as it is."""
        view = await self.status(batch_id)
        if view.status.final:
            return Cancelled(CancelResult.ALREADY_FINISHED, view.status)
        now = self.clock.time()
        async with self._store() as store:
            await store.request_cancel(batch_id, now)
            if view.running_pid is not None:
                return Cancelled(CancelResult.REQUESTED, view.status, view.running_pid)
            await store.cancel_pending(batch_id, now)
            await store.set_batch_status(batch_id, BatchStatus.CANCELLED, now)
        return Cancelled(CancelResult.CANCELLED, BatchStatus.CANCELLED)

    async def uploads_need_keys(self) -> bool:
        """Whether ``cleanup`` has uploads of real (not simulated) batches to delete."""
        from gs_video_report.batch.cleanup import simulated_batches

        if not self.db_path.exists():
            return False
        async with self._store() as store:
            simulated = await simulated_batches(store)
            return any(t.batch_id not in simulated for t in await store.owned_uploads())

    async def cleanup(
        self, *, older_than_days: float, all_uploads: bool, dry_run: bool
    ) -> CleanupReport:
        from gs_video_report.batch.cleanup import CleanupReport, cleanup

        if not self.db_path.exists():
            return CleanupReport()
        async with self._store() as store:
            return await cleanup(
                store,
                older_than_days=older_than_days,
                now=self.clock.time(),
                all_uploads=all_uploads,
                keys=self.keys,
                api=self.settings.api,
                dry_run=dry_run,
            )

    async def key_health(self) -> dict[str, dict[str, Any]]:
        if not self.db_path.exists():
            return {}
        async with self._store() as store:
            return await store.key_health()

    async def key_pool(self) -> list[KeyView]:
        """The engine's keys as the batches see them: health from the state database."""
        from gs_video_report.services.gemini.keypool import KeyPool, KeyState

        known = {fp: KeyState(**row) for fp, row in (await self.key_health()).items()}
        pool = KeyPool(self.keys, states=known, clock=self.clock.time)
        now = self.clock.time()
        views = []
        for key in self.keys:
            state = pool.states[key.fingerprint]
            views.append(
                KeyView(
                    key.fingerprint,
                    key.label,
                    key.project,
                    key.key.source,
                    state.describe(now),
                    state.usable(now),
                    state.cooldown_until,
                    state.successes,
                    dict(state.failures),
                    state.last_error,
                )
            )
        return views

    async def enable_key(self, fingerprint: str) -> bool:
        async with self._store() as store:
            return await store.enable_key(fingerprint, self.clock.time())

    # -- the dashboard's summaries and presets --------------------------------------
    async def costs(self, batch_id: str | None = None) -> CostSummary:
        """What was billed, per batch and per UTC day (of one batch, with ``batch_id``)."""
        if not self.db_path.exists():
            return CostSummary({}, {})
        async with self._store() as store:
            rows = await store.usage_by_day(batch_id)
        by_batch, by_day = Prices(self.settings.prices).of_grouped_usage(rows)
        return CostSummary(by_batch, dict(sorted(by_day.items(), reverse=True)))

    async def presets(self) -> list[PresetView]:
        """The config file's presets, then those saved here (a saved one of the same name
        wins)."""
        found = {
            name: PresetView(name, p.template, dict(p.params), "config")
            for name, p in self.settings.presets.items()
        }
        if self.db_path.exists():
            async with self._store() as store:
                for name, template, params in await store.presets():
                    found[name] = PresetView(name, template, params, "saved")
        return sorted(found.values(), key=lambda p: p.name)

    async def save_preset(self, name: str, template: str | None, params: Mapping[str, str]) -> None:
        from gs_video_report.errors import UsageError

        if not name.strip() or len(name) > 80:
            raise UsageError("a preset needs a name (at most 80 characters)")
        if template:
            self.check_template(template)
        async with self._store() as store:
            await store.save_preset(name.strip(), template or None, params, self.clock.time())

    async def delete_preset(self, name: str) -> bool:
        async with self._store() as store:
            return await store.delete_preset(name)
