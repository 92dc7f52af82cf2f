"""Riding out a lost network: one ``Network`` per worker pool.

Losing the connection is not a video's fault. A call that fails at the connection level
(``NetworkError``: refused, reset, DNS, no route, connect timeout) makes ``decide``
answer ``Offline``, and the pool asks ``settle`` what that means:

- the first such failure probes at once (one cheap call on any key). If the probe gets
  through, the failure was the call's own: the task retries as for any transient error,
  using a try (so a server that resets one video's calls cannot loop it forever);
- if not, the network is down: ``ready`` — awaited by the service before every call —
  holds every upload, poll and generate call; the failed tasks go back to the queue
  without using a try; a probe is retried after 5, 10, 20, 40, then every 60 seconds on
  the injected clock (``NetworkLost`` before each wait), until one gets through
  (``NetworkBack``) or ``wait_s`` has passed since the outage began. Then the batch
  stops, resumable (``StopReason.OFFLINE``, exit 6).

A stop for another reason (Ctrl-C, cancel) releases the held calls at once: their tasks
go back to the queue, no try used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from gs_video_report.batch.decide import Fail, Offline, Requeue, RetryAt, StopBatch
from gs_video_report.batch.events import NetworkBack, NetworkLost, Reporter
from gs_video_report.clock import Clock
from gs_video_report.errors import NetworkError
from gs_video_report.models import StopReason

logger = logging.getLogger(__name__)

PROBE_DELAYS_S = (5.0, 10.0, 20.0, 40.0, 60.0)  # then every 60 s

Probe = Callable[[], Awaitable[bool]]  # True: the endpoint answered (anything)


class Network:
    def __init__(
        self,
        clock: Clock,
        reporter: Reporter,
        *,
        wait_s: float,
        probe: Probe,
        on_give_up: Callable[[str], None] | None = None,
    ) -> None:
        self.clock = clock
        self.reporter = reporter
        self.wait_s = wait_s
        self._probe = probe
        self._on_give_up = on_give_up
        self.down_since: float | None = None
        self._back_at: float | None = None  # when the latest outage ended
        self.gave_up: str | None = None  # why the batch stops
        self.probes = 0
        self._reason = ""
        self._closed = False
        self._open = asyncio.Event()  # set while calls may start
        self._open.set()
        self._checking: asyncio.Task[bool] | None = None
        self._prober: asyncio.Task[None] | None = None

    @property
    def online(self) -> bool:
        return self.down_since is None

    async def ready(self) -> None:
        """The gate before every call: returns at once while the network is up; while it
        is down, when a probe got through. Raises ``NetworkError`` when the wait ends
        without it (given up, or the pool stops): the call is not made."""
        if self.down_since is None:
            return
        await self._open.wait()
        if self.down_since is not None:
            raise NetworkError(self.gave_up or "the network is down and the batch is stopping")

    async def settle(
        self, offline: Offline, attempt_started: float
    ) -> Requeue | StopBatch | RetryAt | Fail:
        """What a connection failure means for its task (``decide`` said ``offline``), whose
        attempt began at ``attempt_started``. An attempt the latest outage overlapped
        failed because of it, even if the network came back before this was asked."""
        overlapped = self._back_at is not None and self._back_at >= attempt_started
        if self.down_since is None and not overlapped:
            if self._checking is None:
                self._checking = asyncio.ensure_future(self._check(offline.reason))
            # shielded: the first failing worker's cancellation must not cancel the check
            # the others wait on too
            if not await asyncio.shield(self._checking):
                return offline.fallback
        if self.gave_up is not None:
            return StopBatch(StopReason.OFFLINE, self.gave_up)
        return Requeue("offline: waiting for the network")

    def close(self) -> None:
        """The pool stops: nothing is held any more, nothing more is probed."""
        self._closed = True
        self._open.set()
        if self._prober is not None and self._prober is not asyncio.current_task():
            self._prober.cancel()

    async def aclose(self) -> None:
        self.close()
        for task in (self._prober, self._checking):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- an outage ------------------------------------------------------------------
    async def _reachable(self) -> bool:
        self.probes += 1
        try:
            return await self._probe()
        except Exception:
            # a probe that breaks must not hold every call forever: let the calls go on
            # and meet whatever it is themselves
            logger.exception("the network probe failed unexpectedly")
            return True

    async def _check(self, reason: str) -> bool:
        """Probe at once: True when the network is down (an outage begins)."""
        try:
            if await self._reachable():
                return False
            self._go_down(reason)
            return True
        finally:
            self._checking = None

    def _go_down(self, reason: str) -> None:
        self.down_since = self.clock.time()
        self._reason = reason
        logger.warning(
            "the Gemini API cannot be reached (%s): no call starts until it answers", reason
        )
        if self._closed:
            return  # stopping anyway: nothing to hold or probe for
        self._open.clear()
        self._prober = asyncio.create_task(self._probe_until_back(self.down_since))

    async def _probe_until_back(self, since: float) -> None:
        failed = 0
        while True:
            now = self.clock.time()
            left = since + self.wait_s - now
            if left <= 0:
                self._give_up(since, now)
                return
            # the last probe falls exactly at the end of the wait
            delay = min(PROBE_DELAYS_S[min(failed, len(PROBE_DELAYS_S) - 1)], left)
            self.reporter.emit(NetworkLost(since, now + delay, delay, self._reason))
            logger.info("offline since %.0f s; probing again in %.0f s", now - since, delay)
            await self.clock.sleep(delay)
            if await self._reachable():
                self._back(since)
                return
            failed += 1

    def _back(self, since: float) -> None:
        self._back_at = self.clock.time()
        after = self._back_at - since
        self.down_since = None
        self._open.set()
        logger.warning("the Gemini API answers again after %.0f s offline", after)
        self.reporter.emit(NetworkBack(after))

    def _give_up(self, since: float, now: float) -> None:
        when = datetime.fromtimestamp(since).astimezone()
        self.gave_up = (
            f"the Gemini API could not be reached for {(now - since) / 60:.0f} min (since"
            f" {when:%H:%M}); no video failed - resume when the network is back"
        )
        logger.warning("%s", self.gave_up)
        self._open.set()  # the held calls raise: their tasks go back to the queue
        if self._on_give_up is not None:
            self._on_give_up(self.gave_up)
