"""``cancel`` of a batch no process is running: its Gemini Batch jobs still open are
cancelled at Google too, with the keys given (as ``cleanup`` uses them). A simulated
batch's jobs lived in a simulator that is gone: they are only marked cancelled. A job
whose key was not given is left open and counted — it keeps running at Google and a
``resume`` collects it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gs_video_report.config import ApiSettings, PoolKey
from gs_video_report.errors import ApiError
from gs_video_report.services.gemini import GeminiService
from gs_video_report.services.gemini.batches import BatchClient
from gs_video_report.storage.checkpoint import CheckpointManager
from gs_video_report.storage.jobs import JobRow, JobStore

logger = logging.getLogger(__name__)


async def open_jobs(store: CheckpointManager, batch_id: str) -> list[JobRow]:
    """Jobs that may be running at Google: not ended, not collected."""
    return [j for j in await JobStore(store).jobs(batch_id) if not j.ended and not j.collected_at]


async def cancel_idle_jobs(
    store: CheckpointManager,
    batch_id: str,
    *,
    keys: Sequence[PoolKey],
    api: ApiSettings,
    simulated: bool,
    now: float,
) -> int:
    """Cancel the batch's open jobs at Google; the number left running (no key for them)."""
    jobs = JobStore(store)
    by_fingerprint = {k.fingerprint: k for k in keys}
    left = 0
    for job in await open_jobs(store, batch_id):
        key = by_fingerprint.get(job.key_fingerprint)
        if not simulated:
            if key is None:
                left += 1
                continue
            async with GeminiService(key.key, api) as service:
                await _cancel_one(BatchClient(service), job)
        await jobs.set_state(job.id, "CANCELLED", now)
        await jobs.collected(job.id, now)
    return left


async def _cancel_one(client: BatchClient, job: JobRow) -> None:
    try:
        name = job.name
        if name is None:  # a create a crash may have left unrecorded
            found = await client.find(job.display_name)
            name = found.name if found is not None and not found.ended else None
        if name is not None:
            await client.cancel(name)
    except ApiError as exc:  # a 404: gone already; else it ends within 48 h anyway
        logger.warning("could not cancel %s at Google: %s", job.name or job.display_name, exc)
