"""Work that is already paid for, found when a task is claimed (not only when planned):

- the task's own answer on disk (its JSON sidecar, with this work's done key): a run
  that lost its state database, or was killed between the answer and the lesson;
- the same work finished by another task since the plan was made — another batch, an
  older batch resumed after a newer one, or a byte-identical copy in this batch (its
  claim kept the copy waiting until the first was done).

Either way the lesson is written from that answer, with no call, and the task says
where its content came from (``same_as``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gs_video_report.batch.pipeline import read_sidecar
from gs_video_report.models import Usage
from gs_video_report.storage.checkpoint import CheckpointManager, TaskRow


@dataclass(frozen=True)
class Found:
    answer: dict[str, Any]
    same_as: str | None  # the other lesson; None: the task's own answer
    note: str
    # the task's own answer was paid for by it (a kill came before the state database
    # heard of it): its tokens, from the sidecar, so the lesson and the cost tell the truth
    usage: Usage = field(default_factory=Usage)


def sidecar_usage(sidecar: dict[str, Any]) -> Usage:
    """The answer's tokens as its sidecar's front matter recorded them (zero if absent)."""
    tokens = (sidecar.get("meta") or {}).get("tokens") or {}
    try:
        return Usage(
            int(tokens.get("prompt", 0)),
            int(tokens.get("candidates", 0)),
            int(tokens.get("thoughts", 0)),
            int(tokens.get("cached", 0)),
            int(tokens.get("total", 0)),
        )
    except (TypeError, ValueError, AttributeError):
        return Usage()


async def find_done(store: CheckpointManager, task: TaskRow) -> Found | None:
    """None when the task must be generated — or when its own answer is in the state
    database (the normal path then writes it, usage and cost included, with no call)."""
    if await store.parts(task.id):
        return None
    own = read_sidecar(Path(task.output_json))
    if own is not None and own.get("done_key") == task.done_key:
        note = "its answer was already on disk: no call"
        return Found(own["answer"], None, note, sidecar_usage(own))
    entry = await store.done_entry(task.done_key)
    if entry is None or entry.output_json == task.output_json:
        return None
    other = read_sidecar(Path(entry.output_json))
    # a sidecar from before done keys were written has none: the ledger vouches for it
    if other is None or other.get("done_key", task.done_key) != task.done_key:
        return None
    return Found(other["answer"], entry.output_md, f"same content as {entry.output_md}: no call")
