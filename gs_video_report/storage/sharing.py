"""One upload (and one context cache) for all the tasks of a video: a batch run with
``-t A -t B`` has a task per (video, template), and they share what is on the server.

What a task uses is recorded on the task itself (``upload_*``, ``cache_*``), on every
task that uses it, each time in one statement: a crash at any moment leaves either none
or all of them pointing at it, and a resume reuses it. The last task to end deletes it:
a task about to delete asks first whether any other unfinished task still uses it
(``upload_users``), after its own "done" is committed — of two tasks ending together,
the later one sees the other done. Mixed into ``CheckpointManager``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiosqlite

_UNFINISHED = "stage NOT IN ('done', 'failed', 'cancelled')"
_NO_UPLOAD = (
    "upload_name = NULL, upload_uri = NULL, upload_mime = NULL, upload_expires_at = NULL,"
    " upload_key = NULL"
)


class SharedMedia:
    if TYPE_CHECKING:  # provided by CheckpointManager

        async def _write(self, sql: str, params: tuple[Any, ...]) -> int: ...

        async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[aiosqlite.Row]: ...

    async def share_upload(
        self,
        task_id: int,
        *,
        name: str,
        uri: str,
        mime_type: str,
        expires_at: float | None,
        key_fingerprint: str,
        now: float,
    ) -> int:
        """The task's new upload (its stage now "processing"), recorded too on every
        unfinished task of its batch for the same video that has no upload yet: they
        reuse it (and are routed to its key). The number of tasks it was recorded on."""
        return await self._write(
            "UPDATE tasks SET upload_name = ?, upload_uri = ?, upload_mime = ?,"
            " upload_expires_at = ?, upload_key = ?, updated_at = ?,"
            " stage = CASE WHEN id = ? THEN 'processing' ELSE stage END"
            " WHERE id = ? OR (upload_name IS NULL AND stage IN ('pending', 'uploading')"
            " AND source_kind != 'youtube' AND (batch_id, content_fingerprint) = ("
            "SELECT batch_id, content_fingerprint FROM tasks WHERE id = ?))",
            (name, uri, mime_type, expires_at, key_fingerprint, now, task_id, task_id, task_id),
        )

    async def upload_users(self, name: str, *, besides: int | None = None) -> int:
        """Unfinished tasks that use the upload ``name`` (other than ``besides``)."""
        rows = await self._rows(
            f"SELECT COUNT(*) FROM tasks WHERE upload_name = ? AND id != ? AND {_UNFINISHED}",
            (name, -1 if besides is None else besides),
        )
        return int(rows[0][0])

    async def upload_templates(self, name: str) -> list[str]:
        """The templates of the unfinished tasks that use the upload ``name``."""
        rows = await self._rows(
            f"SELECT template FROM tasks WHERE upload_name = ? AND {_UNFINISHED} ORDER BY seq",
            (name,),
        )
        return [str(row[0]) for row in rows]

    async def forget_upload(self, name: str, now: float) -> None:
        """The upload was deleted (or is gone): no task points at it any more."""
        await self._write(
            f"UPDATE tasks SET {_NO_UPLOAD}, updated_at = ? WHERE upload_name = ?", (now, name)
        )

    async def share_cache(
        self, upload_name: str, cache_name: str, expires_at: float | None, now: float
    ) -> None:
        """The cache of an upload, recorded on every unfinished task that uses it."""
        await self._write(
            "UPDATE tasks SET cache_name = ?, cache_expires_at = ?, updated_at = ?"
            f" WHERE upload_name = ? AND {_UNFINISHED}",
            (cache_name, expires_at, now, upload_name),
        )

    async def cache_users(self, name: str, *, besides: int | None = None) -> int:
        rows = await self._rows(
            f"SELECT COUNT(*) FROM tasks WHERE cache_name = ? AND id != ? AND {_UNFINISHED}",
            (name, -1 if besides is None else besides),
        )
        return int(rows[0][0])

    async def forget_cache(self, name: str, now: float) -> None:
        await self._write(
            "UPDATE tasks SET cache_name = NULL, cache_expires_at = NULL, updated_at = ?"
            " WHERE cache_name = ?",
            (now, name),
        )

    async def owned_caches(self) -> list[tuple[str, str | None, float | None, str]]:
        """(cache, key fingerprint, expiry, batch) of every cache the tool has not deleted,
        in batches no process runs: ``cleanup`` deletes them."""
        rows = await self._rows(
            "SELECT t.cache_name, MAX(t.upload_key), MAX(t.cache_expires_at), MAX(t.batch_id)"
            " FROM tasks t"
            " JOIN batches b ON b.id = t.batch_id"
            " WHERE t.cache_name IS NOT NULL AND b.lease_owner IS NULL GROUP BY t.cache_name"
        )
        return [(str(r[0]), r[1], r[2], str(r[3])) for r in rows]

    async def idle_caches(self, batch_id: str) -> list[tuple[str, str | None]]:
        """(cache, key) recorded in the batch that no unfinished task uses any more: a
        crash came between the last one's "done" and its deletion."""
        rows = await self._rows(
            "SELECT cache_name, MAX(upload_key) FROM tasks WHERE batch_id = ?"
            " AND cache_name IS NOT NULL GROUP BY cache_name"
            f" HAVING SUM({_UNFINISHED}) = 0",
            (batch_id,),
        )
        return [(str(r[0]), r[1]) for r in rows]
