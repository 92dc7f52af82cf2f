"""Which key a task runs on, and the pool's health in the state database.

A task stays on the key that uploaded its video (another key gets 403 on the file); it
moves — uploading again, with the reason in the attempt log — only when that key is
disabled, gone from the pool, or its project's daily quota is used up. New tasks go to
the usable key whose project (the quota owner) has the fewest tasks in flight. Health is
saved at once after a failure, a cooldown or a disabled key, and every few seconds
otherwise (successes are many and cheap to lose).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable

from gs_video_report.batch.calls import CallLog
from gs_video_report.clock import Clock
from gs_video_report.config import PoolKey
from gs_video_report.errors import ApiError
from gs_video_report.services.gemini.keypool import KeyPool, KeyState, NoUsableKey, is_key_level
from gs_video_report.storage.checkpoint import CheckpointManager, TaskRow

MAX_KEY_WAIT_S = 900.0  # a longer wait for a cooling key (a daily quota) stops the batch
KEY_SAVE_EVERY_S = 5.0


class KeyRouter:
    def __init__(self, keys: KeyPool, store: CheckpointManager, clock: Clock) -> None:
        self.keys = keys
        self.store = store
        self.clock = clock
        keys.on_change = self._changed
        self._dirty: set[str] = set()
        self._urgent = False
        self._saved_at = float("-inf")
        self._on_key: dict[int, PoolKey] = {}  # task -> the key it runs on
        self._load_by: Counter[str] = Counter()  # tasks in flight per project and per key

    # -- assignment -----------------------------------------------------------------
    def key_of(self, task_id: int) -> PoolKey | None:
        return self._on_key.get(task_id)

    def _load(self, key: PoolKey) -> float:
        """Tasks in flight on the key's project, then on the key."""
        return self._load_by["project:" + key.project] + self._load_by[key.fingerprint] / 1000

    def _assign(self, task_id: int, key: PoolKey) -> None:
        self._on_key[task_id] = key
        self._load_by.update(("project:" + key.project, key.fingerprint))

    def unassign(self, task_id: int) -> PoolKey | None:
        key = self._on_key.pop(task_id, None)
        if key is not None:
            self._load_by.subtract(("project:" + key.project, key.fingerprint))
        return key

    async def route(
        self, task: TaskRow, log: CallLog, *, waiting: Callable[[], None]
    ) -> tuple[TaskRow, PoolKey]:
        """The task's key (and the task without its upload when it had to move). Waits
        for a key that cools down within ``MAX_KEY_WAIT_S``; raises ``NoUsableKey``
        when none will."""
        pinned = task.upload_key if task.upload_name else None
        reason = self._why_not(pinned) if pinned is not None else None
        if pinned is not None and reason is None:
            key = self.keys.key(pinned)
            self._assign(task.id, key)
            return task, key
        while True:
            try:
                key = self.keys.choose(load=self._load)
                break
            except NoUsableKey as exc:
                now = self.clock.time()
                if exc.available_at is None or exc.available_at - now > MAX_KEY_WAIT_S:
                    raise
                waiting()
                await self.clock.sleep(max(0.01, exc.available_at - now))
        self._assign(task.id, key)
        if reason is None:
            return task, key
        log.note(f"moved from {pinned} to {key.fingerprint}: {reason}; uploading again")
        await self.store.clear_upload(task.id, self.clock.time())
        moved = dataclasses.replace(
            task,
            upload_name=None,
            upload_uri=None,
            upload_mime=None,
            upload_expires_at=None,
            upload_key=None,
        )
        return moved, key

    def _why_not(self, fingerprint: str) -> str | None:
        state = self.keys.states.get(fingerprint)
        if state is None:
            return f"{fingerprint} is no longer in the key pool"
        if state.disabled is not None:
            return f"{fingerprint} is disabled ({state.disabled})"
        if state.daily_exhausted(self.clock.time()):
            return f"the daily quota of {fingerprint}'s project is used up"
        return None

    # -- health ---------------------------------------------------------------------
    def succeeded(self, key: PoolKey) -> None:
        self.keys.succeeded(key.fingerprint)

    def failed(self, key: PoolKey | None, error: BaseException) -> None:
        """Count a key-level failure (auth, quota) against the key's health."""
        if key is not None and isinstance(error, ApiError) and is_key_level(error):
            self.keys.failed(key.fingerprint, error)

    def usable(self) -> bool:
        return bool(self.keys.usable())

    def _changed(self, state: KeyState) -> None:
        self._dirty.add(state.fingerprint)
        self._urgent |= state.consecutive_failures > 0 or state.disabled is not None

    async def save(self, *, now: bool = False) -> None:
        at = self.clock.time()
        if not (now or self._urgent or at - self._saved_at >= KEY_SAVE_EVERY_S):
            return
        self._urgent, self._saved_at = False, at
        while self._dirty:
            state = self.keys.states[self._dirty.pop()]
            await self.store.save_key_health(dataclasses.asdict(state), at)
