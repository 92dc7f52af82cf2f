"""Gemini Batch Mode in the simulator: jobs over a JSONL file uploaded through the Files
API, answered line by line like ``generateContent``, with the real API's awkward parts
kept (results out of input order, per-request error lines, EXPIRED with no results,
create not idempotent).

Routes (added to the server's table):
  POST   /{v}/models/{model}:batchGenerateContent   create (an Operation naming batches/{id})
  GET    /{v}/batches/{id}    GET /{v}/batches    POST /{v}/batches/{id}:cancel
  DELETE /{v}/batches/{id}
  GET    /download/{v}/files/{id}:download?alt=media  (and without /download) the results

A job's state follows the simulator's clock plus ``SimState.batch_offset`` (so a test can
make a job take "hours" at once): PENDING for ``timing.pending_s``, RUNNING for
``timing.running_s``, then a terminal state — SUCCEEDED, PARTIALLY_SUCCEEDED when a line
failed, or the next planned ``BatchFate`` (FAILED, EXPIRED). A job is answered once, when
it ends; the counters say how many lines were answered, per ledger key and per API key.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gs_video_report.simulator.server import Handler
    from gs_video_report.simulator.state import SimState

_VERSION = r"(?:v1beta|v1|v1alpha)"
BATCH_ROUTES = [
    (
        "POST",
        re.compile(rf"^/{_VERSION}/models/(?P<model>[^/:]+):batchGenerateContent$"),
        "batch_create",
    ),
    ("GET", re.compile(rf"^/{_VERSION}/batches/(?P<bid>[a-z0-9-]+)$"), "batch_get"),
    ("GET", re.compile(rf"^/{_VERSION}/batches$"), "batch_list"),
    ("POST", re.compile(rf"^/{_VERSION}/batches/(?P<bid>[a-z0-9-]+):cancel$"), "batch_cancel"),
    ("DELETE", re.compile(rf"^/{_VERSION}/batches/(?P<bid>[a-z0-9-]+)$"), "batch_delete"),
    (
        "GET",
        re.compile(rf"^(?:/download)?/{_VERSION}/files/(?P<fid>[a-z0-9-]+):download$"),
        "file_download",
    ),
]
TERMINAL = frozenset({"SUCCEEDED", "PARTIALLY_SUCCEEDED", "FAILED", "EXPIRED", "CANCELLED"})
# the strings the SDK's t_job_state maps (BATCH_STATE_*); the rest go as JOB_STATE_*
_WIRE = {"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"}
# status-level faults a batch line reports as its error (code, status)
_LINE_ERRORS = {
    "server_error": (500, "INTERNAL"),
    "unavailable": (503, "UNAVAILABLE"),
    "permission_denied": (403, "PERMISSION_DENIED"),
    "rate_limit_minute": (429, "RESOURCE_EXHAUSTED"),
    "rate_limit_day": (429, "RESOURCE_EXHAUSTED"),
}


@dataclass
class BatchTiming:
    pending_s: float = 0.0
    running_s: float = 0.0


@dataclass
class BatchFate:
    """What the next created job (whose display name contains ``match``) comes to."""

    state: str  # FAILED | EXPIRED | CANCELLED (at its end) | SUCCEEDED
    match: str | None = None


@dataclass
class SimBatch:
    id: str
    owner: str
    model: str
    display_name: str
    created: float
    lines: list[dict[str, Any]]
    fate: str | None = None
    state: str = "PENDING"
    ended: float | None = None
    results: str | None = None  # files/<id> of the results
    deleted: bool = False
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return f"batches/{self.id}"


def _wire_state(state: str) -> str:
    return f"BATCH_STATE_{state}" if state in _WIRE else f"JOB_STATE_{state}"


class BatchBook:
    """The jobs and their counters; all access under the state's lock."""

    def __init__(self) -> None:
        self.timing = BatchTiming()
        self.fates: list[BatchFate] = []
        self.jobs: dict[str, SimBatch] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        self.created = 0
        self.lines_answered = 0
        self.answers_by_key: Counter[str] = Counter()  # the JSONL line's key -> answers
        self.answers_by_api_key: Counter[str] = Counter()
        self.line_errors = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "batches_created": self.created,
            "batch_lines_answered": self.lines_answered,
            "batch_answers_by_key": dict(self.answers_by_key),
            "batch_answers_by_api_key": dict(self.answers_by_api_key),
            "batch_line_errors": self.line_errors,
            "batches": [
                {
                    "name": j.name,
                    "display_name": j.display_name,
                    "state": j.state,
                    "requests": len(j.lines),
                    "deleted": j.deleted,
                }
                for j in self.jobs.values()
            ],
        }


def _now(state: SimState) -> float:
    return state.clock() + state.batch_offset


def _advance(state: SimState, job: SimBatch, answer: Any) -> None:
    """Move ``job`` along the clock; answer its lines once, as it ends."""
    if job.state in TERMINAL:
        return
    timing = state.batches.timing
    age = _now(state) - job.created
    if age < timing.pending_s:
        return
    if age < timing.pending_s + timing.running_s:
        job.state = "RUNNING"
        return
    job.ended = _now(state)
    if job.fate in ("FAILED", "EXPIRED", "CANCELLED"):
        job.state = job.fate
        return
    lines = []
    for line in job.lines:
        lines.append(answer(job, line))
    failed = sum(1 for line in lines if "error" in line)
    state.rng.shuffle(lines)  # the API promises input order; callers must not rely on it
    results = state.new_generated_file(
        job.owner, f"batch-{job.id}", "\n".join(json.dumps(x) for x in lines).encode() + b"\n"
    )
    job.results = results.name
    job.counts.update(total=len(lines), failed=failed, ok=len(lines) - failed)
    job.state = "PARTIALLY_SUCCEEDED" if failed else "SUCCEEDED"


def operation(job: SimBatch) -> dict[str, Any]:
    """A job as the API shows it: an Operation whose metadata is the GenerateContentBatch."""
    from gs_video_report.simulator.server import _iso

    meta: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "model": f"models/{job.model}",
        "displayName": job.display_name,
        "createTime": _iso(job.created),
        "updateTime": _iso(job.ended or job.created),
        "state": _wire_state(job.state),
        "batchStats": {
            "requestCount": str(len(job.lines)),
            "successfulRequestCount": str(job.counts["ok"]),
            "failedRequestCount": str(job.counts["failed"]),
            "pendingRequestCount": str(0 if job.state in TERMINAL else len(job.lines)),
        },
    }
    if job.ended is not None:
        meta["endTime"] = _iso(job.ended)
    if job.results:
        meta["output"] = {"responsesFile": job.results}
    data: dict[str, Any] = {"name": job.name, "metadata": meta, "done": job.state in TERMINAL}
    return data


def batch_job(h: Handler, match: re.Match[str]) -> SimBatch | None:
    owner = h._owner()
    with h.state.lock:
        job = h.state.batches.jobs.get(match.group("bid"))
        if job is not None and (job.deleted or job.owner != owner):
            job = None
        if job is not None:
            _advance(h.state, job, lambda j, line: answer_line(h, j, line))
    if job is None:
        h._error(404, "NOT_FOUND", f"Batch {match.group('bid')} not found.")
    return job


def batch_create(h: Handler, match: re.Match[str], parsed: Any) -> None:
    body = json.loads(h._body() or b"{}")
    owner = h._owner()
    batch = body.get("batch") or {}
    source = batch.get("inputConfig") or batch.get("input_config") or {}
    display = str(batch.get("displayName") or batch.get("display_name") or "")
    fault = h.state.take_fault("batch_create", display)
    if fault and fault.kind != "reset":
        h._inject(fault, match.group("model"))
    lines = batch_lines(h, source, owner)
    if lines is None:
        return
    with h.state.lock:
        book = h.state.batches
        fate = next((f for f in book.fates if f.match is None or f.match in display), None)
        if fate is not None:
            book.fates.remove(fate)
        job = SimBatch(
            id=secrets.token_hex(8),
            owner=owner,
            model=match.group("model"),
            display_name=display,
            created=_now(h.state),
            lines=lines,
            fate=fate.state if fate else None,
        )
        book.jobs[job.id] = job
        book.created += 1
        _advance(h.state, job, lambda j, line: answer_line(h, j, line))
        payload = operation(job)
    if fault is not None:  # "reset": the job exists, its answer is lost on the way
        h._inject(fault, None)
    h._send(200, payload)


def batch_lines(h: Handler, source: dict[str, Any], owner: str) -> list[Any] | None:
    name = source.get("fileName") or source.get("file_name")
    if name:
        file = h.state.live_file(str(name).removeprefix("files/"), owner)
        if file is None:
            h._no_such_file(str(name))
            return None
        if file.content is None or file.polls_left > 0:
            h._error(
                400,
                "FAILED_PRECONDITION",
                f"The File {file.id} is not in an ACTIVE state and usage is not allowed.",
            )
            return None
        try:
            rows = [json.loads(x) for x in file.content.decode().splitlines() if x.strip()]
        except ValueError:
            h._error(400, "INVALID_ARGUMENT", "The input file is not valid JSONL.")
            return None
    else:
        inline = (source.get("requests") or {}).get("requests") or []
        rows = [
            {"key": (r.get("metadata") or {}).get("key", str(i)), "request": r["request"]}
            for i, r in enumerate(inline)
        ]
    bad = next((r for r in rows if not isinstance(r, dict) or "request" not in r), None)
    if bad is not None or not rows:
        h._error(400, "INVALID_ARGUMENT", "Each line needs a 'key' and a 'request'.")
        return None
    return rows


def answer_line(h: Handler, job: SimBatch, line: dict[str, Any]) -> dict[str, Any]:
    """One line's result, as ``generateContent`` would answer its request."""
    from gs_video_report.simulator.server import answer_payload, parse_request

    key = str(line.get("key", ""))
    request = line["request"]
    uri, clip, config, prompt = parse_request(request)
    book = h.state.batches
    unknown = [k for k in request if k not in _REQUEST_FIELDS]
    if unknown or any(k in config for k in ("thinking_config", "cached_content")):
        return _error_line(key, 400, "INVALID_ARGUMENT", f"no such field: {unknown}")
    file_id = uri.rstrip("/").rsplit("/", 1)[-1]
    file = h.state.live_file(file_id, job.owner)
    if file is None:
        book.line_errors += 1
        return _error_line(key, 403, "PERMISSION_DENIED", f"File {file_id} not found.")
    fault = h.state.take_fault("generate", file.display_name)
    if fault and fault.kind in _LINE_ERRORS:
        book.line_errors += 1
        code, status = _LINE_ERRORS[fault.kind]
        return _error_line(key, code, status, f"simulated {fault.kind}")
    book.lines_answered += 1
    book.answers_by_key[key] += 1
    book.answers_by_api_key[job.owner] += 1
    h.state.calls_by_file[file.id]["batch"] += 1
    response = answer_payload(
        h.state, job.model, file.display_name, file.duration_s, clip, config, prompt, fault
    )
    return {"key": key, "response": response}


def batch_get(h: Handler, match: re.Match[str], parsed: Any) -> None:
    job = batch_job(h, match)
    if job is not None:
        with h.state.lock:
            payload = operation(job)
        h._send(200, payload)


def batch_list(h: Handler, match: re.Match[str], parsed: Any) -> None:
    from urllib.parse import parse_qs

    owner = h._owner()
    query = parse_qs(parsed.query)
    size = int((query.get("pageSize") or ["50"])[0])
    start = int((query.get("pageToken") or ["0"])[0] or 0)
    with h.state.lock:
        mine = [j for j in h.state.batches.jobs.values() if j.owner == owner and not j.deleted]
        mine.reverse()  # newest first, as the API lists them
        for job in mine:
            _advance(h.state, job, lambda j, line: answer_line(h, j, line))
        page = [operation(j) for j in mine[start : start + size]]
    payload: dict[str, Any] = {"operations": page} if page else {}
    if start + size < len(mine):
        payload["nextPageToken"] = str(start + size)
    h._send(200, payload)


def batch_cancel(h: Handler, match: re.Match[str], parsed: Any) -> None:
    h._body()
    job = batch_job(h, match)
    if job is None:
        return
    with h.state.lock:
        if job.state not in TERMINAL:
            job.state, job.ended = "CANCELLED", _now(h.state)
    h._send(200, {})


def batch_delete(h: Handler, match: re.Match[str], parsed: Any) -> None:
    job = batch_job(h, match)
    if job is None:
        return
    with h.state.lock:
        job.deleted = True
    h._send(200, {})


def file_download(h: Handler, match: re.Match[str], parsed: Any) -> None:
    owner = h._owner()
    file = h.state.live_file(match.group("fid"), owner)
    if file is None or file.content is None or not file.generated:
        h._error(
            400 if file is not None else 404,
            "INVALID_ARGUMENT" if file is not None else "NOT_FOUND",
            "Only generated files can be downloaded.",
        )
        return
    h.send_response(200)
    h.send_header("Content-Type", "application/octet-stream")
    h.send_header("Content-Length", str(len(file.content)))
    h.end_headers()
    with h.state.lock:
        h.state.statuses[200] += 1
    h.wfile.write(file.content)


BATCH_HANDLERS = {
    "batch_create": batch_create,
    "batch_get": batch_get,
    "batch_list": batch_list,
    "batch_cancel": batch_cancel,
    "batch_delete": batch_delete,
    "file_download": file_download,
}


# the REST GenerateContentRequest's top-level fields: anything else (a flat SDK config)
# is what the real API rejects with "no such field"
_REQUEST_FIELDS = frozenset(
    {
        "model",
        "contents",
        "systemInstruction",
        "system_instruction",
        "generationConfig",
        "generation_config",
        "safetySettings",
        "tools",
        "toolConfig",
        "cachedContent",
        "serviceTier",
    }
)


def _error_line(key: str, code: int, status: str, message: str) -> dict[str, Any]:
    return {"key": key, "error": {"code": code, "message": message, "status": status}}
