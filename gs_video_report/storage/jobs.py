"""Gemini Batch Mode jobs in the state database (migration ``batch_mode_jobs``).

The order of writes is what makes submitting exactly-once across crashes: ``plan`` commits
the job's row (its display name fixed) and its tasks before anything is sent; ``named``
commits the job's name the moment the API returns it; a row without a name is a job that
may or may not exist at Google, and the engine looks for it by display name first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from gs_video_report.storage.checkpoint import CheckpointManager

OPEN_STATES = ("CREATING", "PENDING", "RUNNING")


@dataclass(frozen=True)
class JobRow:
    id: int
    batch_id: str
    seq: int
    display_name: str
    key_fingerprint: str
    model: str
    name: str | None
    input_file: str | None
    state: str
    results_file: str | None
    created_at: float
    submitted_at: float | None
    ended_at: float | None
    collected_at: float | None
    estimate_usd: float | None

    @property
    def ended(self) -> bool:
        return self.state not in OPEN_STATES


class JobStore:
    """The batch's jobs, over the checkpoint's connection and its write lock."""

    def __init__(self, store: CheckpointManager) -> None:
        self.store = store

    async def jobs(self, batch_id: str) -> list[JobRow]:
        rows = await self.store._rows(
            "SELECT * FROM batch_jobs WHERE batch_id = ? ORDER BY seq", (batch_id,)
        )
        return [JobRow(**{f.name: r[f.name] for f in fields(JobRow)}) for r in rows]

    async def plan(
        self,
        batch_id: str,
        *,
        key_fingerprint: str,
        model: str,
        lines: Sequence[tuple[int, str]],
        estimate_usd: float | None,
        now: float,
    ) -> JobRow:
        """A new job's row and its tasks (task id, line key), in one transaction, before
        anything is sent: its display name is what a resume looks for."""
        async with self.store._tx() as tx:
            cur = await tx.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM batch_jobs WHERE batch_id = ?",
                (batch_id,),
            )
            row = await cur.fetchone()
            seq = int(row[0]) if row else 0
            display = f"gsvr-{batch_id}-{seq}"
            cur = await tx.execute(
                "INSERT INTO batch_jobs (batch_id, seq, display_name, key_fingerprint, model,"
                " created_at, estimate_usd) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (batch_id, seq, display, key_fingerprint, model, now, estimate_usd),
            )
            job_id = cur.lastrowid
            await tx.executemany(
                "INSERT INTO batch_job_tasks (job_id, task_id, line_key) VALUES (?, ?, ?)",
                [(job_id, task_id, key) for task_id, key in lines],
            )
        return next(j for j in await self.jobs(batch_id) if j.id == job_id)

    async def set_input(self, job_id: int, input_file: str) -> None:
        await self.store._write(
            "UPDATE batch_jobs SET input_file = ? WHERE id = ?", (input_file, job_id)
        )

    async def named(self, job_id: int, name: str, state: str, now: float) -> None:
        """Committed the moment the API returned the job (or a resume found it)."""
        await self.store._write(
            "UPDATE batch_jobs SET name = ?, state = ?, submitted_at = ? WHERE id = ?",
            (name, state, now, job_id),
        )

    async def set_state(
        self, job_id: int, state: str, now: float, *, results_file: str | None = None
    ) -> None:
        ended = state not in OPEN_STATES
        await self.store._write(
            "UPDATE batch_jobs SET state = ?, results_file = COALESCE(?, results_file),"
            " ended_at = CASE WHEN ? THEN COALESCE(ended_at, ?) ELSE ended_at END"
            " WHERE id = ?",
            (state, results_file, ended, now, job_id),
        )

    async def collected(self, job_id: int, now: float) -> None:
        await self.store._write(
            "UPDATE batch_jobs SET collected_at = ? WHERE id = ?", (now, job_id)
        )

    async def lines(self, job_id: int) -> dict[str, int]:
        """The job's line keys and their tasks."""
        rows = await self.store._rows(
            "SELECT line_key, task_id FROM batch_job_tasks WHERE job_id = ?", (job_id,)
        )
        return {r["line_key"]: r["task_id"] for r in rows}

    async def tasks_in_open_jobs(self, batch_id: str) -> set[int]:
        rows = await self.store._rows(
            "SELECT t.task_id FROM batch_job_tasks t JOIN batch_jobs j ON j.id = t.job_id"
            " WHERE j.batch_id = ? AND j.collected_at IS NULL",
            (batch_id,),
        )
        return {r["task_id"] for r in rows}

    async def summary(self, batch_id: str) -> list[dict[str, Any]]:
        """For ``status`` and the report: each job's state, requests and times."""
        rows = await self.store._rows(
            "SELECT j.*, COUNT(t.task_id) AS requests FROM batch_jobs j"
            " LEFT JOIN batch_job_tasks t ON t.job_id = j.id WHERE j.batch_id = ?"
            " GROUP BY j.id ORDER BY j.seq",
            (batch_id,),
        )
        return [dict(r) for r in rows]
