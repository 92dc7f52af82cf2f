"""A Gemini-compatible HTTP simulator for ``--simulate``, the tests and the benchmarks.

    with Simulator() as sim:
        sim.add_fault(Fault("rate_limit_minute", "generate", times=2, retry_after=5))
        ... point the SDK at sim.url with any key ...
        sim.stats()["calls"]["generate"]

It listens on 127.0.0.1 (a free port) in a background thread. Everything it
received is counted (``stats()``); faults and limits can also be set over HTTP
(``/_sim/faults``, ``/_sim/limits``) by another process.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any

from gs_video_report.simulator.batches import BatchFate, BatchTiming
from gs_video_report.simulator.server import Handler
from gs_video_report.simulator.state import (
    ENDPOINTS,
    FAULT_KINDS,
    Fault,
    Outage,
    SimState,
    fingerprint,
)

SIMULATED_KEY = "simulated-key-not-a-secret"

__all__ = ["ENDPOINTS", "FAULT_KINDS", "SIMULATED_KEY", "Fault", "Simulator"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (killed, timed out) is normal here, not a server error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Simulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        self.state = SimState(clock=clock, seed=seed)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self._server = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # how fast stop() returns
            name="gemini-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stop_event.set()  # releases hanging handlers
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.state.discard_uploads()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- steering ----------------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        with self.state.lock:
            self.state.faults.append(fault)

    def chaos(self, rate: float, kinds: tuple[str, ...], *, hang_s: float = 30.0) -> None:
        """Inject a random fault from ``kinds`` into a ``rate`` share of calls (a "hang"
        holds the call ``hang_s`` seconds, then drops it)."""
        with self.state.lock:
            self.state.chaos_rate = rate
            self.state.chaos_kinds = kinds
            self.state.chaos_hang_s = hang_s

    def release(self) -> None:
        """Answer the calls a ``hold`` fault holds now (normally)."""
        with self.state.lock:
            self.state.releases += 1

    def set_limits(self, **limits: Any) -> None:
        with self.state.lock:
            for key, value in limits.items():
                setattr(self.state.limits, key, value)

    def invalidate_key(self, key: str) -> None:
        self.state.invalid_keys.add(fingerprint(key))

    def deny_key(self, key: str) -> None:
        """Every call with ``key`` answers 403 PERMISSION_DENIED (a suspended key)."""
        self.state.denied_keys.add(fingerprint(key))

    def set_project(self, key: str, project: str) -> None:
        """``key`` belongs to ``project``: keys of one project share its quotas."""
        with self.state.lock:
            self.state.projects[fingerprint(key)] = project

    def exhaust_daily(
        self, *, project: str | None = None, key: str | None = None, exhausted: bool = True
    ) -> None:
        """Generate calls of ``project`` (or of ``key``'s project) answer 429 per-day until
        called again with ``exhausted=False``."""
        with self.state.lock:
            name = project or self.state.project_of(fingerprint(key or ""))
            if exhausted:
                self.state.daily_exhausted.add(name)
            else:
                self.state.daily_exhausted.discard(name)

    def set_offline(self, offline: bool = True) -> None:
        """While offline, every API request is dropped unanswered (the connection reset,
        as a lost network does to the client): not handled, not counted, only ``dropped``."""
        with self.state.lock:
            self.state.offline = offline

    def outage(self, *, after_calls: int, duration_s: float) -> None:
        """The network goes down once ``after_calls`` API calls got through, for
        ``duration_s`` seconds of the simulator's clock (pass the tests' virtual one)."""
        with self.state.lock:
            self.state.outage = Outage(after_calls, duration_s)

    def hand_out_upload_urls_on(self, base: str) -> None:
        """Make upload URLs point at ``base`` (as the real API points at its own host)."""
        self.state.upload_host = base.rstrip("/")

    # -- Batch Mode (batches.py) ---------------------------------------------------
    def batch_timing(self, *, pending_s: float = 0.0, running_s: float = 0.0) -> None:
        """How long a new batch job stays PENDING, then RUNNING, on the batch clock."""
        with self.state.lock:
            self.state.batches.timing = BatchTiming(pending_s, running_s)

    def advance_batches(self, seconds: float) -> None:
        """Move the batch clock on: a job that takes "hours" is through at once."""
        with self.state.lock:
            self.state.batch_offset += seconds

    def plan_batch(self, state: str, *, match: str | None = None) -> None:
        """The next job created (whose display name contains ``match``) ends ``state``:
        FAILED or EXPIRED (no results), CANCELLED, or SUCCEEDED."""
        with self.state.lock:
            self.state.batches.fates.append(BatchFate(state, match))

    def stats(self) -> dict[str, Any]:
        return self.state.snapshot()

    def wait_until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        """Block until ``predicate(stats())`` holds (re-checked as each request ends) or
        ``timeout`` seconds pass; whether it held. For what a handler finishes after the
        client has its answer, or has gone."""
        with self.state.handled:
            return self.state.handled.wait_for(lambda: predicate(self.state.snapshot()), timeout)

    def api_calls(self) -> int:
        """Calls to the Gemini API surface (not counting control requests)."""
        calls = self.state.snapshot()["calls"]
        return sum(calls.get(e, 0) for e in ENDPOINTS)
