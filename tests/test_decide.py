"""decide(): what every failure means, as a table (pure: no simulator, no clock)."""

from __future__ import annotations

import random

import pytest

from gs_video_report.batch.adapt import Adjustments
from gs_video_report.batch.cost import BudgetExceeded
from gs_video_report.batch.decide import (
    Adapt,
    Fail,
    Offline,
    Outcome,
    ParkBucket,
    PauseBucket,
    Requeue,
    RetryAt,
    Situation,
    StopBatch,
    call_timeout,
    decide,
)
from gs_video_report.batch.limiter import QuotaParked
from gs_video_report.errors import (
    AnswerError,
    ApiTimeoutError,
    AuthError,
    FileAccessError,
    FileProcessingError,
    InputError,
    NetworkError,
    OutputError,
    PermanentError,
    QuotaScope,
    RateLimitError,
    TransientError,
)
from gs_video_report.models import GenerationSettings, StopReason
from gs_video_report.retry import RetryPolicy
from gs_video_report.services.gemini.keypool import NoUsableKey

NOW = 1_000_000.0
POLICY = RetryPolicy(max_retries=3, base_s=2.0, cap_s=120.0, rng=random.Random(7))


def at(attempts: int = 0, *, keys: bool = True, answer: bool = False) -> Situation:
    return Situation(
        NOW,
        attempts,
        "gemini-3.8-flash",
        keys_usable=keys,
        adjustments=Adjustments() if answer else None,
        base=GenerationSettings(max_output_tokens=8192) if answer else None,
    )


PER_MINUTE = RateLimitError("429", retry_after=20, quota=QuotaScope.PER_MINUTE)
PER_DAY = RateLimitError("429", quota=QuotaScope.PER_DAY)

TABLE: list[tuple[str, BaseException, Situation, type[Outcome]]] = [
    ("503 on the first try: retry later", TransientError("503"), at(0), RetryAt),
    ("timeout: retry later", ApiTimeoutError("slow"), at(1), RetryAt),
    ("503 with every try used: fail", TransientError("503"), at(3), Fail),
    ("connection failed: offline", NetworkError("refused"), at(0), Offline),
    ("connection failed, every try used: still offline", NetworkError("refused"), at(3), Offline),
    ("403 on the file: upload again", FileAccessError("403"), at(0), RetryAt),
    ("processing FAILED: fail", FileProcessingError("bad video"), at(0), Fail),
    ("400: fail", PermanentError("400"), at(0), Fail),
    ("per-minute 429: pause the bucket", PER_MINUTE, at(3), PauseBucket),
    ("per-day 429, another key left: park", PER_DAY, at(0), ParkBucket),
    ("per-day 429, no key left: park and stop", PER_DAY, at(0, keys=False), ParkBucket),
    ("parked bucket: park", QuotaParked("parked", None), at(0), ParkBucket),
    ("bad key, another left: requeue", AuthError("invalid"), at(0), Requeue),
    ("bad key, none left: stop", AuthError("invalid"), at(0, keys=False), StopBatch),
    ("no usable key: stop", NoUsableKey("none", None, auth=True), at(0), StopBatch),
    ("budget: stop", BudgetExceeded("over"), at(0), StopBatch),
    ("cut-off answer: adapt", AnswerError("cut", reason="MAX_TOKENS"), at(0, answer=True), Adapt),
    ("safety stop: fail", AnswerError("no", reason="SAFETY"), at(0, answer=True), Fail),
    ("answer error at the worker: fail", AnswerError("cut", reason="MAX_TOKENS"), at(0), Fail),
    ("disk full: fail (a resume writes it)", OutputError("disk full"), at(0), Fail),
    ("file gone: fail", InputError("video not found"), at(0), Fail),
    ("a bug: fail", KeyError("x"), at(0), Fail),
]


@pytest.mark.parametrize(
    ("case", "error", "situation", "expected"), TABLE, ids=[t[0] for t in TABLE]
)
def test_decide(case: str, error: BaseException, situation: Situation, expected: type) -> None:
    assert type(decide(error, situation, POLICY)) is expected


def test_the_outcomes_carry_what_to_do() -> None:
    retry = decide(TransientError("503"), at(0), POLICY)
    assert isinstance(retry, RetryAt) and 1.0 <= retry.delay_s <= 2.0 and retry.at > NOW
    assert not retry.reupload
    again = decide(FileAccessError("403"), at(0), POLICY)
    assert isinstance(again, RetryAt) and again.reupload
    server = decide(TransientError("503", retry_after=30), at(0), POLICY)
    assert isinstance(server, RetryAt) and server.delay_s >= 30  # RetryInfo honoured
    pause = decide(PER_MINUTE, at(0), POLICY)
    assert pause == PauseBucket(20)
    parked = decide(PER_DAY, at(0, keys=False), POLICY)
    assert isinstance(parked, ParkBucket) and parked.resets_at > NOW
    assert parked.stop is not None and parked.stop.reason is StopReason.QUOTA
    assert "resets at midnight Pacific" in parked.stop.message
    assert decide(PER_DAY, at(0), POLICY) == ParkBucket(parked.resets_at, None)
    stop = decide(NoUsableKey("none", 5.0, auth=False), at(0), POLICY)
    assert stop == StopBatch(StopReason.QUOTA, "none")
    assert decide(BudgetExceeded("over"), at(0), POLICY) == StopBatch(StopReason.BUDGET, "over")
    bug = decide(KeyError("x"), at(0), POLICY)
    assert bug == Fail("InternalError", "internal error: KeyError: 'x'")
    safety = decide(AnswerError("stopped\nby filters", reason="SAFETY"), at(0), POLICY)
    assert safety == Fail("AnswerError", "stopped by filters")  # one line
    adapted = decide(AnswerError("cut", reason="MAX_TOKENS"), at(0, answer=True), POLICY)
    assert isinstance(adapted, Adapt) and adapted.adjustments.max_output_tokens == 16384


def test_a_failed_connection_uses_no_try_unless_the_network_proves_fine() -> None:
    """``Offline``: free while the network is down; its fallback (what a 503 would get)
    applies only when a probe gets through at once, so one video's resets cannot loop."""
    first = decide(NetworkError("upload: connection failed (ConnectError: refused)"), at(0), POLICY)
    assert isinstance(first, Offline)
    assert first.reason == "upload: connection failed (ConnectError: refused)"
    assert isinstance(first.fallback, RetryAt) and first.fallback.at > NOW
    assert not first.fallback.reupload
    last = decide(NetworkError("reset\nby peer"), at(3), POLICY)
    assert last == Offline(Fail("NetworkError", "reset by peer"), "reset by peer")


def test_a_timed_out_call_gets_a_longer_timeout_next_time() -> None:
    assert call_timeout(600, 0, None) == 600
    assert call_timeout(600, 1, "TransientError") == 600
    assert call_timeout(600, 1, "ApiTimeoutError") == 900
    assert call_timeout(600, 5, "ApiTimeoutError") == 1800  # at most 3x
