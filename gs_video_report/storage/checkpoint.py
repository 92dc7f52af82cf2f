"""CheckpointManager: the only code that writes batch and task state.

A task moves pending -> uploading -> processing -> generating -> writing -> done, or to
failed / cancelled; each transition is its own committed transaction, so a process
killed at any point resumes from the last committed stage. The uploaded file's name
and expiry are kept, so a resumed task whose upload is still ACTIVE does not upload
again, and a done task is never generated again.

One process runs a batch at a time: a lease (owner, pid, expiry) renewed by heartbeat.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any

import aiosqlite

from gs_video_report.errors import BatchBusyError, OutputError, StorageError, UnknownBatchError
from gs_video_report.models import BatchStatus, CallRecord, TaskStage, Usage
from gs_video_report.storage.sharing import SharedMedia

# A live claim on a task's work by another task: this process's own (it runs), or one
# whose batch's lease is held by the owner that claimed it and has not expired.
_LIVE_CLAIM = (
    "SELECT 1 FROM work_claims c JOIN batches b ON b.id = c.batch_id"
    " WHERE c.done_key = tasks.done_key AND c.task_id != tasks.id"
    " AND (c.owner = ? OR (b.lease_owner = c.owner AND b.lease_until > ?))"
)

# One statement (see ``claim_next``); its parameters: now, owner, now, batch id, now,
# owner, now. The literal stage = 'pending' lets SQLite use the pending-only index
# (migration 9), so a claim never steps over done tasks.
CLAIM_NEXT = (
    "UPDATE tasks SET stage = 'uploading', started_at = COALESCE(started_at, ?),"
    " next_attempt_at = NULL, claimed_by = ?, updated_at = ? WHERE id = ("
    "SELECT id FROM tasks WHERE batch_id = ? AND stage = 'pending'"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= ?) AND NOT EXISTS ("
    + _LIVE_CLAIM
    + ") ORDER BY seq LIMIT 1)"
    # only while the claimer holds the batch: a process taken over claims nothing more
    " AND EXISTS (SELECT 1 FROM batches WHERE id = tasks.batch_id AND lease_owner = ?)"
    " RETURNING *"
)

__all__ = ["CheckpointManager", "LeaseHeldError", "LedgerEntry", "NewTask", "TaskRow", "TaskStage"]


class LeaseHeldError(BatchBusyError):
    """Another live process runs this batch."""

    def __init__(self, batch_id: str, pid: int | None, owner: str | None) -> None:
        super().__init__(
            f"batch {batch_id} is being run by another process (PID {pid}, {owner}); "
            "wait for it to finish, or `gs_videoreport cancel` it"
        )
        self.pid = pid


@dataclass(frozen=True)
class LedgerEntry:
    done_key: str
    batch_id: str
    output_md: str
    output_json: str
    finished_at: float


@dataclass(frozen=True)
class NewTask:
    seq: int
    source: str
    source_kind: str
    display_name: str
    template: str
    template_version: str
    params: Mapping[str, str]
    model: str
    content_fingerprint: str
    done_key: str
    output_md: str
    output_json: str
    duration_s: float | None = None
    size_bytes: int | None = None
    mime_type: str | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class TaskRow:
    id: int
    batch_id: str
    seq: int
    source: str
    source_kind: str
    display_name: str
    template: str
    template_version: str
    params_json: str
    model: str
    content_fingerprint: str
    done_key: str
    duration_s: float | None
    size_bytes: int | None
    mime_type: str | None
    output_md: str
    output_json: str
    stage: TaskStage
    attempts: int
    next_attempt_at: float | None
    last_error_kind: str | None
    last_error: str | None
    upload_name: str | None
    upload_uri: str | None
    upload_mime: str | None
    upload_expires_at: float | None
    upload_key: str | None
    prompt_tokens: int | None
    output_tokens: int | None
    thoughts_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    started_at: float | None
    finished_at: float | None
    updated_at: float
    adjustments: str | None = None  # JSON of batch.adapt.Adjustments
    same_as: str | None = None  # the lesson came from this other lesson's answer, no call
    claimed_by: str | None = None  # the lease owner that last claimed it
    mtime_ns: int | None = None  # the video's when planned (None: planned before m008)
    cache_name: str | None = None  # an explicit context cache of the upload (shared)
    cache_expires_at: float | None = None
    cached_tokens: int | None = None  # input tokens billed at the cached rate
    saving_usd: float | None = None  # what caching saved this task, its cost included

    @property
    def params(self) -> dict[str, str]:
        loaded: dict[str, str] = json.loads(self.params_json)
        return loaded

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> TaskRow:
        data = {f.name: row[f.name] for f in fields(cls)}
        data["stage"] = TaskStage(data["stage"])
        return cls(**data)


class CheckpointManager(SharedMedia):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        # Workers share this connection; SQLite has one transaction per connection.
        self._tx_lock = asyncio.Lock()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One immediate transaction: committed before the caller's next step starts."""
        async with self._tx_lock:
            try:
                # BEGIN inside the try: a cancel (second Ctrl-C) that lands while it runs
                # must not leave the shared connection inside a transaction.
                await self.conn.execute("BEGIN IMMEDIATE")
                yield self.conn
            except BaseException:
                await self.conn.rollback()
                raise
            await self.conn.commit()

    async def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        """One statement, atomic on its own (autocommit: one round trip to the database
        thread, not three); the number of rows it changed. The lock keeps it out of
        another worker's open transaction on the shared connection."""
        async with self._tx_lock:
            cur = await self.conn.execute(sql, params)
            return cur.rowcount

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[aiosqlite.Row]:
        """A query's rows in one round trip."""
        return list(await self.conn.execute_fetchall(sql, params))

    async def _update_task(self, task_id: int, now: float, **values: Any) -> None:
        assignments = ", ".join(f"{key} = ?" for key in values)  # keys are ours, never input
        await self._write(
            f"UPDATE tasks SET {assignments}, updated_at = ? WHERE id = ?",
            (*values.values(), now, task_id),
        )

    # -- batches -----------------------------------------------------------------
    async def create_batch(
        self,
        batch_id: str,
        *,
        source_desc: str,
        output_dir: str,
        settings: Mapping[str, Any],
        tasks: Iterable[NewTask],
        now: float,
    ) -> None:
        """The batch and all its tasks in one transaction: a batch is never half-planned."""
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO batches (id, created_at, updated_at, status, source_desc, output_dir,"
                " settings_json) VALUES (?, ?, ?, 'created', ?, ?, ?)",
                (batch_id, now, now, source_desc, output_dir, json.dumps(settings, default=str)),
            )
            await tx.executemany(
                "INSERT INTO tasks (batch_id, seq, source, source_kind, display_name, template,"
                " template_version, params_json, model, content_fingerprint, done_key, duration_s,"
                " size_bytes, mime_type, mtime_ns, output_md, output_json, stage, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                [
                    (
                        batch_id,
                        t.seq,
                        t.source,
                        t.source_kind,
                        t.display_name,
                        t.template,
                        t.template_version,
                        json.dumps(dict(t.params), sort_keys=True),
                        t.model,
                        t.content_fingerprint,
                        t.done_key,
                        t.duration_s,
                        t.size_bytes,
                        t.mime_type,
                        t.mtime_ns,
                        t.output_md,
                        t.output_json,
                        now,
                    )
                    for t in tasks
                ],
            )

    async def set_batch_status(self, batch_id: str, status: BatchStatus, now: float) -> None:
        finished = now if status.final else None
        await self._write(
            "UPDATE batches SET status = ?, updated_at = ?, finished_at = ? WHERE id = ?",
            (status.value, now, finished, batch_id),
        )

    async def update_batch_settings(
        self, batch_id: str, changes: Mapping[str, Any], now: float
    ) -> None:
        """Merge ``changes`` into the batch's stored settings (``resume --cost-limit``
        is the batch's limit from then on, also for a later ``retry-failed``)."""
        await self._write(
            "UPDATE batches SET settings_json = json_patch(settings_json, ?), updated_at = ?"
            " WHERE id = ?",
            (json.dumps(dict(changes)), now, batch_id),
        )

    async def batch(self, batch_id: str) -> dict[str, Any] | None:
        rows = await self._rows("SELECT * FROM batches WHERE id = ?", (batch_id,))
        return dict(rows[0]) if rows else None

    async def batches(self, limit: int | None = 20) -> list[dict[str, Any]]:
        """Newest first; ``limit=None``: all."""
        rows = await self._rows(
            "SELECT * FROM batches ORDER BY created_at DESC LIMIT ?", (limit or -1,)
        )
        return [dict(r) for r in rows]

    async def request_cancel(self, batch_id: str, now: float) -> None:
        await self._write(
            "UPDATE batches SET cancel_requested = 1, updated_at = ? WHERE id = ?",
            (now, batch_id),
        )

    async def cancel_requested(self, batch_id: str) -> bool:
        rows = await self._rows("SELECT cancel_requested FROM batches WHERE id = ?", (batch_id,))
        return bool(rows and rows[0][0])

    # -- the lease ---------------------------------------------------------------
    async def acquire_lease(
        self,
        batch_id: str,
        *,
        owner: str,
        pid: int,
        now: float,
        ttl_s: float,
        holder_dead: Callable[[str], bool] = lambda owner: False,
    ) -> None:
        """Take the batch, unless another owner holds an unexpired lease (and is not known
        to be dead: ``holder_dead(owner)``, e.g. a killed process on this machine)."""
        async with self._tx() as tx:
            rows = await tx.execute_fetchall(
                "SELECT lease_owner, lease_pid, lease_until FROM batches WHERE id = ?", (batch_id,)
            )
            if not rows:
                raise UnknownBatchError(batch_id)
            holder, holder_pid, until = next(iter(rows))
            live = until is not None and until > now and not holder_dead(holder)
            if holder and holder != owner and live:
                raise LeaseHeldError(batch_id, holder_pid, holder)
            await tx.execute(
                "UPDATE batches SET lease_owner = ?, lease_pid = ?, lease_until = ?,"
                " cancel_requested = 0, updated_at = ? WHERE id = ?",
                (owner, pid, now + ttl_s, now, batch_id),
            )

    async def heartbeat(self, batch_id: str, *, owner: str, now: float, ttl_s: float) -> bool:
        """Extend the lease; False when it was lost (taken over after expiring)."""
        changed = await self._write(
            "UPDATE batches SET lease_until = ? WHERE id = ? AND lease_owner = ?",
            (now + ttl_s, batch_id, owner),
        )
        return changed == 1

    async def release_lease(self, batch_id: str, *, owner: str) -> None:
        await self._write(
            "UPDATE batches SET lease_owner = NULL, lease_pid = NULL, lease_until = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (batch_id, owner),
        )

    # -- tasks -------------------------------------------------------------------
    async def tasks(self, batch_id: str) -> list[TaskRow]:
        rows = await self._rows("SELECT * FROM tasks WHERE batch_id = ? ORDER BY seq", (batch_id,))
        return [TaskRow.from_row(r) for r in rows]

    async def task(self, task_id: int) -> TaskRow:
        rows = await self._rows("SELECT * FROM tasks WHERE id = ?", (task_id,))
        if not rows:
            raise StorageError(f"no task {task_id}")
        return TaskRow.from_row(rows[0])

    async def counts(self, batch_id: str) -> dict[TaskStage, int]:
        rows = await self._rows(
            "SELECT stage, COUNT(*) FROM tasks WHERE batch_id = ? GROUP BY stage", (batch_id,)
        )
        return {TaskStage(stage): n for stage, n in rows}

    async def cancel_pending(self, batch_id: str, now: float) -> int:
        """A cancelled batch: what has not started will not (nor what waits in a Batch Mode
        job, cancelled at Google by the engine); ``recover`` undoes this on resume."""
        queued = await self._write(
            "UPDATE tasks SET stage = 'cancelled', updated_at = ? WHERE batch_id = ?"
            " AND stage = 'queued'",
            (now, batch_id),
        )
        return queued + await self._write(
            "UPDATE tasks SET stage = 'cancelled', updated_at = ? WHERE batch_id = ?"
            " AND stage = 'pending'",
            (now, batch_id),
        )

    async def recover(self, batch_id: str, now: float) -> int:
        """Tasks a dead process left mid-stage (or a cancel left unstarted) go back to
        pending, upload info kept (and an answer already received: ``keep_answer``), and
        so do tasks that failed only because their lesson could not be written."""
        async with self._tx() as tx:
            await tx.execute("DELETE FROM work_claims WHERE batch_id = ?", (batch_id,))
            cur = await tx.execute(
                "UPDATE tasks SET stage = 'pending', updated_at = ? WHERE batch_id = ?"
                " AND (stage IN ('uploading', 'processing', 'generating', 'writing', 'cancelled')"
                " OR (stage = 'failed' AND last_error_kind = ?))",
                (now, batch_id, OutputError.kind),
            )
            return cur.rowcount

    async def claim_next(self, batch_id: str, now: float, owner: str) -> TaskRow | None:
        """The next runnable pending task (retry time passed) whose work no other live
        task holds, marked started, with its work claimed for ``owner`` (the batch's
        lease holder; a trigger writes the claim) — one statement, so atomic across
        processes and one round trip."""
        async with self._tx_lock:
            rows = await self.conn.execute_fetchall(
                CLAIM_NEXT, (now, owner, now, batch_id, now, owner, now, owner)
            )
        return next((TaskRow.from_row(row) for row in rows), None)

    async def release_claim(self, task_id: int, owner: str) -> None:
        """The task left its stage (done, failed, back in the queue): its work is free
        (only ``owner``'s claim: after a takeover, the new owner's stays)."""
        await self._write(
            "DELETE FROM work_claims WHERE task_id = ? AND owner = ?", (task_id, owner)
        )

    async def blocked_pending(self, batch_id: str, now: float, owner: str) -> int:
        """Pending tasks that wait only for the same work in another live task."""
        rows = await self._rows(
            "SELECT COUNT(*) FROM tasks WHERE batch_id = ? AND stage = 'pending'"
            " AND EXISTS (" + _LIVE_CLAIM + ")",
            (batch_id, owner, now),
        )
        return int(rows[0][0]) if rows else 0

    async def holds_lease(self, batch_id: str, owner: str, now: float, ttl_s: float) -> bool:
        """Extend the lease if ``owner`` still holds it; False once another process has
        taken the batch over (this one must then stop before its next paid call)."""
        return await self.heartbeat(batch_id, owner=owner, now=now, ttl_s=ttl_s)

    async def lease_state(
        self, batch_id: str, owner: str, now: float, ttl_s: float
    ) -> tuple[bool, bool]:
        """(still ours — the lease extended —, cancel requested): both checked before
        every paid call, in one round trip."""
        async with self._tx_lock:
            rows = await self.conn.execute_fetchall(
                "UPDATE batches SET lease_until = ? WHERE id = ? AND lease_owner = ?"
                " RETURNING cancel_requested",
                (now + ttl_s, batch_id, owner),
            )
        row = next(iter(rows), None)
        return row is not None, bool(row and row[0])

    async def unfinished_single(self, done_key: str) -> str | None:
        """The newest one-video (``main``) batch for this work that has not finished."""
        rows = await self._rows(
            "SELECT b.id FROM batches b JOIN tasks t ON t.batch_id = b.id"
            " WHERE t.done_key = ? AND t.stage != 'done'"
            " AND json_extract(b.settings_json, '$.single') = 1"
            " AND b.status NOT IN ('done', 'partial', 'cancelled')"
            " ORDER BY b.created_at DESC LIMIT 1",
            (done_key,),
        )
        return rows[0][0] if rows else None

    async def next_retry_at(self, batch_id: str) -> float | None:
        rows = await self._rows(
            "SELECT MIN(next_attempt_at) FROM tasks WHERE batch_id = ? AND stage = 'pending'",
            (batch_id,),
        )
        return rows[0][0] if rows else None

    async def set_stage(
        self, task_id: int, stage: TaskStage, now: float, *, owner: str | None = None
    ) -> None:
        """``owner``: only while the task is still claimed by it (after a takeover the
        new owner's stage stands)."""
        if owner is None:
            await self._update_task(task_id, now, stage=stage.value)
            return
        await self._write(
            "UPDATE tasks SET stage = ?, updated_at = ? WHERE id = ? AND claimed_by = ?",
            (stage.value, now, task_id, owner),
        )

    async def set_adjustments(self, task_id: int, adjustments_json: str, now: float) -> None:
        """What the next generate call changes (stored before it is made)."""
        await self._update_task(task_id, now, adjustments=adjustments_json)

    # -- a long video's parts ------------------------------------------------------------
    async def parts(self, task_id: int) -> list[dict[str, Any]]:
        rows = await self._rows(
            "SELECT idx, start_s, end_s, answer_json, usage_json FROM task_parts"
            " WHERE task_id = ? ORDER BY idx",
            (task_id,),
        )
        return [dict(r) for r in rows]

    async def plan_parts(self, task_id: int, bounds: Iterable[tuple[float, float]]) -> None:
        """The task's parts (replacing a plan that had none done)."""
        async with self._tx() as tx:
            await tx.execute("DELETE FROM task_parts WHERE task_id = ?", (task_id,))
            await tx.executemany(
                "INSERT INTO task_parts (task_id, idx, start_s, end_s) VALUES (?, ?, ?, ?)",
                [(task_id, i, start, end) for i, (start, end) in enumerate(bounds)],
            )

    async def keep_answer(
        self, task_id: int, duration_s: float, answer_json: str, usage_json: str, now: float
    ) -> None:
        """A whole-video answer as the task's only part, unless it has parts (which hold
        their answers already)."""
        await self._write(
            "INSERT INTO task_parts (task_id, idx, start_s, end_s, answer_json, usage_json,"
            " finished_at) SELECT ?, 0, 0, ?, ?, ?, ? WHERE NOT EXISTS"
            " (SELECT 1 FROM task_parts WHERE task_id = ?)",
            (task_id, duration_s, answer_json, usage_json, now, task_id),
        )

    async def finish_part(
        self, task_id: int, index: int, answer_json: str, usage_json: str, now: float
    ) -> None:
        await self._write(
            "UPDATE task_parts SET answer_json = ?, usage_json = ?, finished_at = ?"
            " WHERE task_id = ? AND idx = ?",
            (answer_json, usage_json, now, task_id, index),
        )

    async def clear_upload(self, task_id: int, now: float) -> None:
        await self._update_task(
            task_id,
            now,
            upload_name=None,
            upload_uri=None,
            upload_mime=None,
            upload_expires_at=None,
            upload_key=None,
        )

    async def complete(
        self,
        task_id: int,
        usage: Usage,
        cost_usd: float | None,
        now: float,
        *,
        same_as: str | None = None,
        saving_usd: float | None = None,
    ) -> None:
        """Call only after the lesson is on disk: "done" means written, then committed.
        The skip-existing ledger gets its entry in the same statement (a trigger)."""
        await self._write(
            "UPDATE tasks SET stage = 'done', prompt_tokens = ?, output_tokens = ?,"
            " thoughts_tokens = ?, total_tokens = ?, cost_usd = ?, finished_at = ?,"
            " same_as = ?, last_error_kind = NULL, last_error = NULL, cached_tokens = ?,"
            " saving_usd = ?, updated_at = ? WHERE id = ?",
            (
                usage.prompt_tokens,
                usage.candidates_tokens,
                usage.thoughts_tokens,
                usage.total_tokens,
                cost_usd,
                now,
                same_as,
                usage.cached_tokens,
                saving_usd,
                now,
                task_id,
            ),
        )

    async def fail(self, task_id: int, kind: str, message: str, now: float) -> None:
        await self._update_task(
            task_id,
            now,
            stage=TaskStage.FAILED.value,
            last_error_kind=kind,
            last_error=message,
            finished_at=now,
            next_attempt_at=None,
        )

    async def schedule_retry(
        self, task_id: int, *, at: float, kind: str, message: str, now: float
    ) -> None:
        await self._write(
            "UPDATE tasks SET stage = 'pending', attempts = attempts + 1, next_attempt_at = ?,"
            " last_error_kind = ?, last_error = ?, updated_at = ? WHERE id = ?",
            (at, kind, message, now, task_id),
        )

    async def requeue(self, task_id: int, now: float, *, at: float | None = None) -> None:
        """Back to pending without counting an attempt (interrupted, or a quota pause
        until ``at``)."""
        await self._update_task(task_id, now, stage=TaskStage.PENDING.value, next_attempt_at=at)

    async def requeue_failed(self, batch_id: str, now: float) -> int:
        return await self._write(
            "UPDATE tasks SET stage = 'pending', attempts = 0, next_attempt_at = NULL,"
            " finished_at = NULL, updated_at = ? WHERE batch_id = ? AND stage = 'failed'",
            (now, batch_id),
        )

    async def requeue_task(self, batch_id: str, task_id: int, now: float) -> bool:
        """One failed video back in the queue, with its tries reset (a dashboard's retry
        button); False when it is not a failed task of the batch."""
        changed = await self._write(
            "UPDATE tasks SET stage = 'pending', attempts = 0, next_attempt_at = NULL,"
            " finished_at = NULL, updated_at = ? WHERE id = ? AND batch_id = ?"
            " AND stage = 'failed'",
            (now, task_id, batch_id),
        )
        return changed > 0

    async def record_attempts(
        self, task_id: int, calls: Iterable[CallRecord], *, key_fingerprint: str | None, now: float
    ) -> None:
        """API calls of a task, in one round trip (each row is a fact on its own)."""
        rows = [
            (
                task_id,
                now,
                call.stage,
                key_fingerprint,
                call.model,
                call.latency_s,
                int(call.ok),
                call.usage.prompt_tokens if call.usage else None,
                call.usage.candidates_tokens if call.usage else None,
                call.usage.thoughts_tokens if call.usage else None,
                call.usage.cached_tokens if call.usage else None,
                call.finish_reason,
                call.error_kind,
                call.error_message,
                call.note,
            )
            for call in calls
        ]
        if not rows:
            return
        async with self._tx_lock:
            await self.conn.executemany(
                "INSERT INTO attempts (task_id, at, stage, key_fingerprint, model, latency_s, ok,"
                " prompt_tokens, output_tokens, thoughts_tokens, cached_tokens, finish_reason,"
                " error_kind, error_message, note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    async def attempts(self, task_id: int) -> list[dict[str, Any]]:
        rows = await self._rows("SELECT * FROM attempts WHERE task_id = ? ORDER BY id", (task_id,))
        return [dict(r) for r in rows]

    async def billed_usage(self, batch_id: str) -> list[tuple[str, Usage]]:
        """Usage of every answered call of the batch, rejected answers included (billed)."""
        rows = await self._rows(
            "SELECT a.model, a.prompt_tokens, a.output_tokens, a.thoughts_tokens,"
            " a.cached_tokens FROM attempts a JOIN tasks t ON t.id = a.task_id"
            " WHERE t.batch_id = ? AND a.prompt_tokens IS NOT NULL",
            (batch_id,),
        )
        return [
            (
                row[0],
                Usage(
                    prompt_tokens=row[1],
                    candidates_tokens=row[2] or 0,
                    thoughts_tokens=row[3] or 0,
                    cached_tokens=row[4] or 0,
                ),
            )
            for row in rows
        ]

    async def usage_by_day(self, batch_id: str | None = None) -> list[tuple[str, str, str, Usage]]:
        """Billed tokens of every batch (or one) summed by (batch, UTC day of the call,
        model); prices are per token, so a sum prices the same as its calls."""
        rows = await self._rows(
            "SELECT t.batch_id, date(a.at, 'unixepoch'), a.model, SUM(a.prompt_tokens),"
            " SUM(COALESCE(a.output_tokens, 0)), SUM(COALESCE(a.thoughts_tokens, 0))"
            " FROM attempts a JOIN tasks t ON t.id = a.task_id"
            " WHERE a.prompt_tokens IS NOT NULL AND (? IS NULL OR t.batch_id = ?)"
            " GROUP BY 1, 2, 3",
            (batch_id, batch_id),
        )
        return [
            (r[0], r[1], r[2] or "", Usage(r[3], candidates_tokens=r[4], thoughts_tokens=r[5]))
            for r in rows
        ]

    async def done_entry(self, done_key: str) -> LedgerEntry | None:
        """Where this work's lesson was written, if it was done (by any batch)."""
        rows = await self._rows(
            "SELECT done_key, batch_id, output_md, output_json, finished_at FROM done_ledger"
            " WHERE done_key = ?",
            (done_key,),
        )
        return LedgerEntry(*rows[0]) if rows else None

    async def done_ledger(self) -> dict[str, LedgerEntry]:
        """The skip-existing ledger: for each done key, where its lesson was written. It
        outlives ``cleanup`` of the batch that made it (dropping history must not make
        the next run pay again)."""
        rows = await self._rows(
            "SELECT done_key, batch_id, output_md, output_json, finished_at FROM done_ledger"
        )
        return {row[0]: LedgerEntry(*row) for row in rows}

    # -- cleanup -----------------------------------------------------------------
    async def finished_batches(self, before: float) -> list[str]:
        """Batches that finished before ``before`` and nobody runs."""
        rows = await self._rows(
            "SELECT id FROM batches WHERE finished_at IS NOT NULL AND finished_at < ?"
            " AND status IN ('done', 'partial', 'cancelled', 'failed') AND lease_owner IS NULL"
            " ORDER BY finished_at",
            (before,),
        )
        return [row[0] for row in rows]

    async def owned_uploads(self) -> list[TaskRow]:
        """Tasks whose uploaded file the tool has not deleted yet (any batch not running)."""
        rows = await self._rows(
            "SELECT t.* FROM tasks t JOIN batches b ON b.id = t.batch_id"
            " WHERE t.upload_name IS NOT NULL AND b.lease_owner IS NULL ORDER BY t.id"
        )
        return [TaskRow.from_row(row) for row in rows]

    async def drop_batches(self, batch_ids: Iterable[str]) -> int:
        """Delete batches with their tasks and attempts (the done ledger stays)."""
        ids = list(batch_ids)
        if not ids:
            return 0
        marks = ", ".join("?" for _ in ids)
        return await self._write(f"DELETE FROM batches WHERE id IN ({marks})", tuple(ids))

    # -- key health (shared by all batches) ------------------------------------------
    _KEY_FIELDS = (
        "fingerprint",
        "label",
        "project",
        "successes",
        "failures",
        "consecutive_failures",
        "cooldown_until",
        "cooldown_reason",
        "disabled",
        "last_error",
    )

    async def save_key_health(self, state: Mapping[str, Any], now: float) -> None:
        """One key's health (``KeyState`` as a mapping), replacing what was stored."""
        values = [state[name] for name in self._KEY_FIELDS]
        values[4] = json.dumps(values[4], sort_keys=True)
        marks = ", ".join("?" for _ in range(len(values) + 1))
        await self._write(
            f"INSERT OR REPLACE INTO key_health ({', '.join(self._KEY_FIELDS)}, updated_at)"
            f" VALUES ({marks})",
            (*values, now),
        )

    async def key_health(self) -> dict[str, dict[str, Any]]:
        rows = await self._rows("SELECT * FROM key_health")
        out = {}
        for row in rows:
            data = {name: row[name] for name in self._KEY_FIELDS}
            data["failures"] = json.loads(data["failures"] or "{}")
            out[data["fingerprint"]] = data
        return out

    async def enable_key(self, fingerprint: str, now: float) -> bool:
        """Back in the pool: not disabled, not cooling down. False: no such key."""
        changed = await self._write(
            "UPDATE key_health SET disabled = NULL, cooldown_until = NULL,"
            " cooldown_reason = NULL, consecutive_failures = 0, updated_at = ?"
            " WHERE fingerprint = ?",
            (now, fingerprint),
        )
        return changed > 0

    # -- presets -----------------------------------------------------------------
    async def presets(self) -> list[tuple[str, str | None, dict[str, str]]]:
        rows = await self._rows("SELECT name, template, params_json FROM presets ORDER BY name")
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    async def save_preset(
        self, name: str, template: str | None, params: Mapping[str, str], now: float
    ) -> None:
        await self._write(
            "INSERT OR REPLACE INTO presets (name, template, params_json, updated_at)"
            " VALUES (?, ?, ?, ?)",
            (name, template, json.dumps(dict(params), sort_keys=True), now),
        )

    async def delete_preset(self, name: str) -> bool:
        return await self._write("DELETE FROM presets WHERE name = ?", (name,)) > 0
