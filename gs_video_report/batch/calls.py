"""The calls of one task, as they happen.

Each running task gets its own ``CallLog``, handed to the Gemini service as the task's
recorder (``GeminiService.recording``), so a call is always logged with the task that
made it, whatever else runs on the same key. A note (what was changed before the next
call, and why) goes with that call into the attempts table.
"""

from __future__ import annotations

import dataclasses
import logging

from gs_video_report.models import CallRecord

logger = logging.getLogger(__name__)


class CallLog:
    def __init__(self, name: str) -> None:
        self.name = name
        self._pending: list[CallRecord] = []
        self._notes: list[str] = []
        self.stored: list[CallRecord] = []  # already in the attempts table (for the sidecar)

    def record(self, call: CallRecord) -> None:
        if self._notes:
            call = dataclasses.replace(call, note="; ".join(self._notes))
            self._notes.clear()
        self._pending.append(call)

    def note(self, text: str) -> None:
        """Attach ``text`` to the task's next API call."""
        self._notes.append(text)
        logger.info("%s: %s", self.name, text)

    def take(self) -> list[CallRecord]:
        """The calls not stored yet; from now on they count as stored."""
        calls, self._pending = self._pending, []
        self.stored.extend(calls)
        return calls
