"""``cleanup``: drop old finished batches and delete the uploaded files the tool still owns.

Uploads are normally deleted as soon as their lesson is written; what remains belongs to
failed, cancelled or interrupted tasks. Files of batches that can still be resumed are
kept unless asked (``all_uploads``): a resume reuses them instead of uploading again.
A file can only be deleted with the key that uploaded it (any key of the pool); files
of keys not given are reported, not touched. The skip-existing ledger survives dropped batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gs_video_report.config import ApiSettings, PoolKey
from gs_video_report.errors import ApiError, FileAccessError
from gs_video_report.services.gemini import GeminiService
from gs_video_report.storage.checkpoint import CheckpointManager, TaskRow

logger = logging.getLogger(__name__)

FINISHED = ("done", "partial", "cancelled", "failed")


@dataclass
class CleanupReport:
    batches_dropped: list[str] = field(default_factory=list)
    files_deleted: int = 0
    files_gone: int = 0  # expired, already deleted, or on a simulator
    files_kept: int = 0  # could not be deleted now (other key, no key, API error)
    other_keys: set[str] = field(default_factory=set)
    caches_deleted: int = 0  # context caches left by a crash (storage is billed hourly)


async def delete_caches(
    store: CheckpointManager,
    services: Mapping[str, GeminiService],
    now: float,
    simulated: set[str],
) -> int:
    """Every context cache a batch no process runs left behind: each costs storage by
    the hour, and a resume makes a new one where it still pays. One past its expiry is
    gone already; one whose key is not given is left to expire (its TTL is short)."""
    deleted = 0
    for name, key, expires, batch_id in await store.owned_caches():
        service = services.get(key or "")
        if service is not None and (expires or now + 1) > now and batch_id not in simulated:
            try:
                await service.delete_cache(name)
                deleted += 1
            except FileAccessError:
                pass  # expired or deleted already
            except ApiError as exc:
                logger.warning("could not delete %s: %s", name, exc)
                continue
        await store.forget_cache(name, now)
    return deleted


async def uploads_to_delete(store: CheckpointManager, *, all_uploads: bool) -> list[TaskRow]:
    finished = {b["id"] for b in await store.batches(limit=None) if b["status"] in FINISHED}
    return [t for t in await store.owned_uploads() if all_uploads or t.batch_id in finished]


async def simulated_batches(store: CheckpointManager) -> set[str]:
    return {
        b["id"]
        for b in await store.batches(limit=None)
        if json.loads(b["settings_json"]).get("simulated")
    }


async def cleanup(
    store: CheckpointManager,
    *,
    older_than_days: float,
    now: float,
    all_uploads: bool,
    keys: Sequence[PoolKey],
    api: ApiSettings,
    dry_run: bool = False,
) -> CleanupReport:
    async with contextlib.AsyncExitStack() as stack:
        services = {
            k.fingerprint: await stack.enter_async_context(GeminiService(k.key, api)) for k in keys
        }
        return await _cleanup(store, older_than_days, now, all_uploads, services, dry_run)


async def _cleanup(
    store: CheckpointManager,
    older_than_days: float,
    now: float,
    all_uploads: bool,
    services: Mapping[str, GeminiService],
    dry_run: bool,
) -> CleanupReport:
    report = CleanupReport()
    simulated = await simulated_batches(store)
    if not dry_run:
        report.caches_deleted = await delete_caches(store, services, now, simulated)
    seen: set[str] = set()  # a video's tasks (-t A -t B) share one upload
    for task in await uploads_to_delete(store, all_uploads=all_uploads):
        assert task.upload_name is not None
        if task.upload_name in seen:
            continue
        seen.add(task.upload_name)
        gone = task.batch_id in simulated or (task.upload_expires_at or now + 1) <= now
        service = services.get(task.upload_key or "")
        if gone:
            report.files_gone += 1
        elif service is None:
            report.files_kept += 1
            if task.upload_key:
                report.other_keys.add(task.upload_key)
            continue
        elif not dry_run:
            try:
                await service.delete_file(task.upload_name)
                report.files_deleted += 1
            except FileAccessError:
                report.files_gone += 1  # already deleted or expired on the server
            except ApiError as exc:
                logger.warning("could not delete %s: %s", task.upload_name, exc)
                report.files_kept += 1
                continue
        else:
            report.files_deleted += 1
        if not dry_run:
            await store.forget_upload(task.upload_name, now)
    report.batches_dropped = await store.finished_batches(before=now - older_than_days * 86400)
    if not dry_run:
        await store.drop_batches(report.batches_dropped)
    return report
