"""Getting a task's video onto the server: reuse an upload that is still there, or upload
(at most ``max_uploads`` at a time: parallel uploads choke a teacher's link) and wait
until it is ACTIVE. The file's name is committed the moment the server named it, so a
process killed while the video is processed reuses the upload on resume.

A video is uploaded only if it is still the one planned (``check_unchanged``): deleted,
replaced, cut short or turned into a folder since, its task fails with a one-line
``InputError`` and nothing is sent for it; the batch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

from gs_video_report.batch.events import Activity, Reporter, TaskActivity, TaskView
from gs_video_report.batch.pipeline import PreparedVideo
from gs_video_report.clock import Clock
from gs_video_report.errors import ApiError, FileAccessError, InputError
from gs_video_report.services.fingerprint import content_fingerprint
from gs_video_report.services.gemini import GeminiService, VideoRef
from gs_video_report.services.sources import printable
from gs_video_report.storage.checkpoint import CheckpointManager, TaskRow

logger = logging.getLogger(__name__)

REUSE_MARGIN_S = 3600.0  # reuse an upload only if it lives at least this much longer


def check_unchanged(path: Path, task: TaskRow) -> None:
    """Raise ``InputError`` unless ``path`` is still the video ``task`` planned: another
    one would be paid for, and its lesson filed under the planned video's done key. Size
    and mtime first (a stat), then the content fingerprint (a few hundred KiB read):
    that also catches a copy that kept the size and mtime, and a file now unreadable."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(f"the video was deleted after planning: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot read the video: {path} ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"the video is now a folder: {path}")
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block the fingerprint's read forever
        raise InputError(f"the video is no longer a regular file: {path}")
    changed = [
        name
        for name, planned, now in (
            ("size", task.size_bytes, info.st_size),
            ("mtime", task.mtime_ns, info.st_mtime_ns),
        )
        if planned is not None and planned != now
    ]
    if not changed and content_fingerprint(path) != task.content_fingerprint:
        changed = ["content"]
    if changed:
        raise InputError(
            f"the video changed since it was planned ({'/'.join(changed)}); plan again: {path}"
        )


class Uploader:
    def __init__(
        self,
        store: CheckpointManager,
        clock: Clock,
        reporter: Reporter,
        *,
        max_uploads: int,
        prepared: Callable[[float], None],
        before_upload: Callable[[], Awaitable[None]],
    ) -> None:
        self.store = store
        self.clock = clock
        self.reporter = reporter
        self._slots = asyncio.Semaphore(max_uploads)
        self._videos: dict[str, asyncio.Lock] = {}  # content fingerprint -> its tasks' turn
        self._prepared = prepared  # seconds from upload start to ACTIVE (the lookahead)
        self._before_upload = before_upload  # raises when the batch is no longer ours

    def _show(self, view: TaskView, activity: Activity, fraction: float | None = None) -> None:
        self.reporter.emit(TaskActivity(view, activity, fraction))

    def one_video(self, task: TaskRow) -> contextlib.AbstractAsyncContextManager[object]:
        """Held by a video's task until its upload (and cache) exist: the video's other
        tasks (its other templates) wait, then find them recorded and reuse them."""
        if task.source_kind == "youtube":
            return contextlib.nullcontext()
        return self._videos.setdefault(task.content_fingerprint, asyncio.Lock())

    async def release(self, task: TaskRow, ref: VideoRef, service: GeminiService) -> None:
        """After the task's "done": the upload is deleted once no other unfinished task
        uses it (its "done" is committed first, so of two ending together the later one
        deletes), else only this task lets go of it."""
        assert ref.file_name is not None
        if (await self.store.task(task.id)).upload_name != ref.file_name:
            return  # another of the video's tasks, ending with it, deleted it already
        if await self.store.upload_users(ref.file_name, besides=task.id):
            await self.store.clear_upload(task.id, self.clock.time())
            return
        try:
            await service.delete_file(ref.file_name)
        except ApiError as exc:
            logger.info("could not delete %s (%s); it expires within 48 hours", ref.file_name, exc)
        await self.store.forget_upload(ref.file_name, self.clock.time())

    async def video_ref(
        self, task: TaskRow, view: TaskView, video: PreparedVideo, service: GeminiService
    ) -> VideoRef:
        """What the generate call points at: the YouTube URL, the task's upload when it
        is still usable with this key, else a new upload."""
        if video.source.path is None:
            return VideoRef(uri=video.source.identity, mime_type=None)
        reused = await self._reuse(task, view, service)
        if reused is not None:
            return reused
        assert video.info is not None
        path, info = video.source.path, video.info
        self._show(view, Activity.WAITING_FOR_UPLOAD)
        async with self._slots:  # (the claim marked the task "uploading")
            check_unchanged(path, task)  # after the wait for a slot: as late as it can be
            await self._before_upload()
            started = self.clock.time()
            self._show(view, Activity.UPLOADING, 0.0)
            file = await service.upload(
                path,
                info.mime_type,
                display_name=printable(path.name),
                progress=lambda done, total: self._show(
                    view, Activity.UPLOADING, done / max(1, total)
                ),
            )
        await self._before_upload()  # still ours: the upload's record may be written
        await self.store.share_upload(  # the video's other tasks (-t A -t B) reuse it
            task.id,
            name=file.name,
            uri=file.uri,
            mime_type=file.mime_type,
            expires_at=file.expires_at.timestamp() if file.expires_at else None,
            key_fingerprint=service.key_fingerprint,
            now=self.clock.time(),
        )
        self._show(view, Activity.PROCESSING)
        file = await service.wait_until_active(file, size_bytes=info.size_bytes)
        self._prepared(self.clock.time() - started)
        return VideoRef(file.uri, file.mime_type, file.name)

    async def _reuse(
        self, task: TaskRow, view: TaskView, service: GeminiService
    ) -> VideoRef | None:
        if not (
            task.upload_name
            and task.upload_key == service.key_fingerprint
            and (task.upload_expires_at or 0) > self.clock.time() + REUSE_MARGIN_S
        ):
            if task.upload_name:
                await self.store.clear_upload(task.id, self.clock.time())
            return None
        try:
            file = await service.get_file(task.upload_name)
            if file.state != "FAILED":
                self._show(view, Activity.PROCESSING)
                file = await service.wait_until_active(file, size_bytes=task.size_bytes or 0)
                logger.info("%s: reusing upload %s", task.display_name, file.name)
                return VideoRef(file.uri, file.mime_type, file.name)
        except FileAccessError:
            # expired or deleted on the server: upload again, for the video's other
            # tasks too (each would meet the same 403 and upload one of its own)
            await self.store.forget_upload(task.upload_name, self.clock.time())
            return None
        await self.store.clear_upload(task.id, self.clock.time())
        return None
