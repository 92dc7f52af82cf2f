"""What the simulator remembers: files, uploads in progress, faults to inject,
limits to enforce, and counters of everything it received. Thread-safe."""

from __future__ import annotations

import contextlib
import hashlib
import random
import secrets
import tempfile
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gs_video_report.simulator.batches import BATCH_ROUTES, BatchBook
from gs_video_report.simulator.caches import CacheBook

BATCH_ENDPOINTS = tuple(endpoint for _, _, endpoint in BATCH_ROUTES)

FILE_TTL_S = 48 * 3600
ENDPOINTS = (
    "upload_start",
    "upload_chunk",
    "get_file",
    "list_files",
    "delete_file",
    "generate",
    *BATCH_ENDPOINTS,
)

# Fault kinds, and which endpoints each makes sense on.
FAULT_KINDS = {
    "rate_limit_minute": "any",  # 429, quotaId ...PerMinute..., RetryInfo retryDelay
    "rate_limit_day": "any",  # 429, quotaId ...PerDay..., no RetryInfo
    "server_error": "any",  # 500 INTERNAL
    "unavailable": "any",  # 503 UNAVAILABLE, model overloaded
    "hang": "any",  # answer only after `delay` seconds (past the client's timeout)
    "hold": "any",  # no answer until Simulator.release() (none if the client leaves first)
    "reset": "any",  # close the connection without an answer (RST)
    "truncated": "any",  # 200 with a JSON body cut in half
    "trickle": "any",  # headers at once, then the body a few bytes per `interval`, over `delay` s
    "permission_denied": "any",  # 403 as for a foreign or expired file
    "echo_key": "any",  # 400 whose message and details repeat the caller's API key
    "processing_failed": "upload",  # the uploaded file ends FAILED
    "max_tokens": "generate",  # finishReason MAX_TOKENS with cut JSON
    "safety": "generate",  # finishReason SAFETY, no text
    "recitation": "generate",  # finishReason RECITATION, no text
    "blocked": "generate",  # promptFeedback.blockReason, no candidates
    "invalid_answer": "generate",  # STOP, but JSON that misses required fields
}


def fingerprint(key: str) -> str:
    return "key-" + hashlib.sha256(key.strip().encode()).hexdigest()[:8]


@dataclass
class Fault:
    """Inject ``kind`` into the next ``times`` matching calls.

    ``endpoint`` is one of ``ENDPOINTS`` or ``"*"``; ``match`` (optional) must be a
    substring of the subject of the call: the file's display name, or the video URL.
    """

    kind: str
    endpoint: str = "generate"
    times: int = 1
    match: str | None = None
    retry_after: float = 10.0  # for rate_limit_minute
    delay: float = 30.0  # for hang; for trickle, how long the whole body takes
    interval: float = 0.2  # for trickle: seconds between writes (each under any read timeout)
    after: int = 0  # let this many matching calls through first

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.endpoint != "*" and self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}")


@dataclass
class Outage:
    """The network goes down once ``after_calls`` API calls got through, for
    ``duration_s`` seconds of the simulator's clock: every request meanwhile is dropped."""

    after_calls: int
    duration_s: float
    started: float | None = None


@dataclass
class SimFile:
    id: str
    owner: str  # key fingerprint
    display_name: str
    mime_type: str
    size: int
    created: float
    sha256: str
    duration_s: float
    polls_left: int
    failed_reason: str | None = None
    deleted: bool = False
    active_at: float | None = None  # processing by time (limits.processing_s), not polls

    def processed(self, now: float) -> bool:
        """Whether processing is over (then the file is ACTIVE, or FAILED)."""
        return self.polls_left <= 0 if self.active_at is None else now >= self.active_at

    content: bytes | None = None  # kept for what is not a video (a batch's JSONL)
    generated: bool = False  # written by the API (a batch's results): downloadable

    @property
    def name(self) -> str:
        return f"files/{self.id}"


@dataclass
class Upload:
    id: str
    owner: str
    display_name: str
    mime_type: str
    size: int
    received: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    spool: Any = None  # temp file with the bytes, for probing; None past the cap
    fail_processing: bool = False


@dataclass
class Limits:
    rpm: int | None = None  # generate requests per minute per key, else 429 per-minute
    max_concurrency: int | None = None  # requests in flight at once, else 429
    latency: dict[str, float] = field(default_factory=dict)  # endpoint -> seconds
    polls_until_active: int = 1
    # seconds from upload to ACTIVE, whatever the polls (a real server's processing time);
    # None: polls_until_active decides
    processing_s: float | None = None
    probe_max_bytes: int = 64 * 1024 * 1024
    thoughts_tokens: int = 0  # thinking tokens every answer reports (and bills)
    refuse_flex: bool = False  # generate calls asking for the Flex tier answer 400


class SimState:
    def __init__(self, *, clock: Callable[[], float] = time.time, seed: int = 0) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.files: dict[str, SimFile] = {}
        self.uploads: dict[str, Upload] = {}
        self.faults: list[Fault] = []
        self.chaos_rate = 0.0
        self.chaos_kinds: tuple[str, ...] = ()
        self.chaos_hang_s = 30.0
        self.rng = random.Random(seed)
        self.limits = Limits()
        self.invalid_keys: set[str] = set()
        self.denied_keys: set[str] = set()  # 403 PERMISSION_DENIED (a suspended key)
        self.projects: dict[str, str] = {}  # key fingerprint -> project (quota owner)
        self.daily_exhausted: set[str] = set()  # projects whose per-day quota is used up
        self.upload_host: str | None = None  # hand out upload URLs on another host
        self.offline = False  # every API request is dropped (the connection reset)
        self.outage: Outage | None = None
        self.stop_event = threading.Event()
        self.handled = threading.Condition(self.lock)  # notified as each request ends
        self.releases = 0  # Simulator.release() calls: a held call waits for the next one
        self._windows: dict[str, deque[float]] = defaultdict(deque)
        self.in_flight = 0
        self.caches = CacheBook(clock, self.lock)
        self.batches = BatchBook()
        self.batch_offset = 0.0  # added to the clock for batch jobs: "hours" at once
        self.reset_stats()

    def reset_stats(self) -> None:
        with self.lock:
            self.calls: Counter[str] = Counter()
            self.calls_by_file: dict[str, Counter[str]] = defaultdict(Counter)
            self.generate_by_subject: Counter[str] = Counter()
            self.statuses: Counter[int] = Counter()
            self.faults_injected: Counter[str] = Counter()
            self.keys_seen: set[str] = set()
            self.uploads_started = 0
            self.uploads_completed = 0
            self.bytes_received = 0
            self.files_deleted = 0
            self.trickles_cut = 0  # trickled answers the client left before their end
            # requests dropped while offline, by endpoint (not handled, not in ``calls``)
            self.dropped: Counter[str] = Counter()
            self.max_in_flight = 0
            # by family (an upload's start and chunks are one "upload")
            self.max_in_flight_by: Counter[str] = Counter()
            self._in_flight_by: Counter[str] = Counter()
            self.generate_requests: deque[dict[str, Any]] = deque(maxlen=2000)
            self.caches.created = self.caches.deleted = self.caches.cached_generates = 0
            if hasattr(self, "batches"):
                self.batches.reset_stats()

    # -- flight accounting -------------------------------------------------
    @contextlib.contextmanager
    def flight(self, endpoint: str = "") -> Iterator[Callable[[], None]]:
        """A request in flight, from its arrival until its answer starts (the callable
        it yields; or until it ends): a client may send its next request as soon as it
        has an answer, so the answer, not the handler's exit, ends the flight."""
        family = _family(endpoint) if endpoint else ""
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if family:
                self._in_flight_by[family] += 1
                self.max_in_flight_by[family] = max(
                    self.max_in_flight_by[family], self._in_flight_by[family]
                )
        landed = False

        def land() -> None:
            nonlocal landed
            with self.lock:
                if landed:
                    return
                landed = True
                self.in_flight -= 1
                if family:
                    self._in_flight_by[family] -= 1

        try:
            yield land
        finally:
            land()

    def project_of(self, owner: str) -> str:
        """Quotas are per project; a key not assigned to one is its own project."""
        return self.projects.get(owner, owner)

    def over_rpm(self, owner: str) -> float | None:
        """Seconds until the window frees when ``owner`` (a project) is over its per-minute
        limit."""
        rpm = self.limits.rpm
        if not rpm:
            return None
        with self.lock:
            now = self.clock()
            window = self._windows[owner]
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= rpm:
                return max(0.5, 60 - (now - window[0]))
            window.append(now)
            return None

    def dropping(self, endpoint: str) -> bool:
        """Whether the network is down for a request arriving now (counted as dropped)."""
        with self.lock:
            down = self.offline or self._in_outage()
            if down:
                self.dropped[endpoint] += 1
            return down

    def _in_outage(self) -> bool:
        outage = self.outage
        if outage is None:
            return False
        if outage.started is None:
            if sum(self.calls[e] for e in ENDPOINTS) < outage.after_calls:
                return False
            outage.started = self.clock()
        if self.clock() < outage.started + outage.duration_s:
            return True
        self.outage = None  # over
        return False

    # -- faults ------------------------------------------------------------
    def take_fault(self, endpoint: str, subject: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                applies = fault.endpoint in ("*", endpoint) and (
                    fault.match is None or fault.match in subject
                )
                if applies and fault.after > 0:
                    fault.after -= 1
                    continue
                if applies and fault.times > 0:
                    fault.times -= 1
                    self.faults_injected[fault.kind] += 1
                    return fault
            if self.chaos_rate and self.rng.random() < self.chaos_rate:
                kinds = [
                    k for k in self.chaos_kinds if FAULT_KINDS[k] in ("any", _family(endpoint))
                ]
                if kinds:
                    kind = self.rng.choice(kinds)
                    self.faults_injected[kind] += 1
                    return Fault(kind=kind, endpoint=endpoint, delay=self.chaos_hang_s)
            return None

    # -- files -------------------------------------------------------------
    def new_upload(self, owner: str, display_name: str, mime: str, size: int) -> Upload:
        upload = Upload(secrets.token_hex(12), owner, display_name, mime, size)
        if size <= self.limits.probe_max_bytes:
            upload.spool = tempfile.NamedTemporaryFile(prefix="gsvr-sim-", delete=False)  # noqa: SIM115
        with self.lock:
            self.uploads[upload.id] = upload
            self.uploads_started += 1
        return upload

    def finish_upload(
        self, upload: Upload, probe: Callable[[str | None, int], tuple[float, str | None]]
    ) -> SimFile:
        spool_path = None
        content = None
        if upload.spool is not None:
            upload.spool.close()
            spool_path = upload.spool.name
        try:
            if upload.mime_type.startswith("video/") or spool_path is None:
                duration, failed = probe(spool_path, upload.size)
            else:  # a request file (JSONL): kept to be read, nothing to probe
                duration, failed = 0.0, None
                content = Path(spool_path).read_bytes()
        finally:
            if spool_path:
                Path(spool_path).unlink(missing_ok=True)
        file = SimFile(
            id=secrets.token_hex(6),
            owner=upload.owner,
            display_name=upload.display_name,
            mime_type=upload.mime_type,
            size=upload.size,
            created=self.clock(),
            sha256=upload.hasher.hexdigest(),
            duration_s=duration,
            polls_left=self.limits.polls_until_active,
            failed_reason=failed,
            content=content,
        )
        if self.limits.processing_s is not None:
            file.active_at = file.created + self.limits.processing_s
        with self.lock:
            self.uploads.pop(upload.id, None)
            self.files[file.id] = file
            self.uploads_completed += 1
        return file

    def new_generated_file(self, owner: str, file_id: str, content: bytes) -> SimFile:
        """A file the API wrote (a batch's results): ACTIVE at once, downloadable."""
        file = SimFile(
            id=file_id,
            owner=owner,
            display_name=file_id,
            mime_type="application/jsonl",
            size=len(content),
            created=self.clock(),
            sha256=hashlib.sha256(content).hexdigest(),
            duration_s=0.0,
            polls_left=0,
            content=content,
            generated=True,
        )
        with self.lock:
            self.files[file.id] = file
        return file

    def discard_uploads(self) -> None:
        """Drop unfinished uploads (a client gave up mid-way) and their spooled bytes."""
        with self.lock:
            pending, self.uploads = list(self.uploads.values()), {}
        for upload in pending:
            if upload.spool is not None:
                upload.spool.close()
                Path(upload.spool.name).unlink(missing_ok=True)

    def live_file(self, file_id: str, owner: str) -> SimFile | None:
        """The file if it exists, is not deleted or expired, and belongs to ``owner``."""
        with self.lock:
            file = self.files.get(file_id)
            if file is None or file.deleted or file.owner != owner:
                return None
            if self.clock() - file.created > FILE_TTL_S:
                return None
            return file

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            live = [f for f in self.files.values() if not f.deleted]
            return {
                "calls": dict(self.calls),
                "calls_by_file": {k: dict(v) for k, v in self.calls_by_file.items()},
                "generate_by_subject": dict(self.generate_by_subject),
                "statuses": {str(k): v for k, v in self.statuses.items()},
                "faults_injected": dict(self.faults_injected),
                "keys_seen": sorted(self.keys_seen),
                "uploads_started": self.uploads_started,
                "uploads_completed": self.uploads_completed,
                "bytes_received": self.bytes_received,
                "files_live": len(live),
                "files_deleted": self.files_deleted,
                "trickles_cut": self.trickles_cut,
                "dropped": dict(self.dropped),
                "max_in_flight": self.max_in_flight,
                "max_in_flight_by": dict(self.max_in_flight_by),
                "generate_requests": list(self.generate_requests),
                **self.caches.snapshot(),
                **self.batches.snapshot(),
            }


def _family(endpoint: str) -> str:
    return "upload" if endpoint.startswith("upload") else endpoint
