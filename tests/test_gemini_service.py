"""The real google-genai SDK against the simulator over loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gs_video_report.config import ApiKey, ApiSettings
from gs_video_report.errors import (
    AnswerError,
    ApiTimeoutError,
    AuthError,
    FileAccessError,
    FileProcessingError,
    NetworkError,
    PermanentError,
    QuotaScope,
    RateLimitError,
    TransientError,
)
from gs_video_report.models import CallRecord
from gs_video_report.services.gemini import GeminiService, VideoRef
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.simulator import Fault, Simulator
from tests.conftest import SAMPLES, TEST_KEY, FakeSleep

T = TypeVar("T")
TEMPLATE = TemplateRegistry.with_builtins().get("summary_report")
VIDEO = SAMPLES / "intro_to_fractions.mp4"


def run(
    sim: Simulator,
    body: Callable[[GeminiService], Awaitable[T]],
    *,
    key: str = TEST_KEY,
    calls: list[CallRecord] | None = None,
    **api: Any,
) -> T:
    async def main() -> T:
        settings = ApiSettings(base_url=sim.url, **api)
        service = GeminiService(
            ApiKey(key, "test"),
            settings,
            sleep=FakeSleep(),
            on_call=(calls.append if calls is not None else None),
        )
        async with service:
            return await body(service)

    return asyncio.run(main())


async def upload_active(service: GeminiService, path: Path = VIDEO) -> VideoRef:
    file = await service.upload(path, "video/mp4", display_name=path.name)
    size = path.stat().st_size
    file = await service.wait_until_active(file, size_bytes=size)
    return VideoRef(file.uri, file.mime_type, file.name)


async def lesson(service: GeminiService, ref: VideoRef | None = None) -> Any:
    ref = ref or await upload_active(service)
    return await service.generate(
        model="gemini-3.8-flash",
        video=ref,
        prompt="make a summary",
        schema=TEMPLATE.schema,
        settings=TEMPLATE.generation,
        validate=TEMPLATE.validate_answer,
    )


def test_upload_process_generate_delete(sim: Simulator) -> None:
    calls: list[CallRecord] = []
    progress: list[int] = []

    async def body(service: GeminiService) -> Any:
        file = await service.upload(
            VIDEO,
            "video/mp4",
            display_name=VIDEO.name,
            progress=lambda done, total: progress.append(done),
        )
        assert file.state == "PROCESSING"
        file = await service.wait_until_active(file, size_bytes=VIDEO.stat().st_size)
        gen = await lesson(service, VideoRef(file.uri, file.mime_type, file.name))
        await service.delete_file(file.name)
        return gen

    gen = run(sim, body, calls=calls)
    assert TEMPLATE.validate_answer(gen.data) == []
    assert gen.finish_reason == "STOP" and gen.usage.prompt_tokens > 45 * 60  # ~66+32 tokens/s
    assert progress[-1] == VIDEO.stat().st_size
    stats = sim.stats()
    assert stats["bytes_received"] == VIDEO.stat().st_size
    assert stats["uploads_completed"] == 1 and stats["files_live"] == 0
    assert [c.stage for c in calls] == ["upload", "poll", "poll", "generate", "delete"]
    assert calls[3].usage == gen.usage and calls[3].finish_reason == "STOP"
    request = stats["generate_requests"][0]
    assert request["generation_config"]["responseMimeType"] == "application/json"
    assert request["generation_config"]["mediaResolution"] == "MEDIA_RESOLUTION_LOW"
    assert request["video_metadata"] == {"fps": 1.0}


def test_uploads_follow_base_url_even_when_the_server_names_another_host(sim: Simulator) -> None:
    sim.hand_out_upload_urls_on("http://127.0.0.1:9")  # nothing listens there
    ref = run(sim, upload_active)
    assert ref.file_name and sim.stats()["uploads_completed"] == 1


def test_youtube_url_is_passed_as_file_data_without_upload(sim: Simulator) -> None:
    url = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    gen = run(sim, lambda s: lesson(s, VideoRef(url, None)))
    assert TEMPLATE.validate_answer(gen.data) == []
    assert sim.stats()["uploads_started"] == 0 and sim.stats()["generate_by_subject"] == {url: 1}


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("max_tokens", "MAX_TOKENS"),
        ("safety", "SAFETY"),
        ("recitation", "RECITATION"),
        ("blocked", "BLOCKED_SAFETY"),
        ("invalid_answer", "SCHEMA_MISMATCH"),
    ],
)
def test_incomplete_answers_are_errors_never_lessons(
    sim: Simulator, kind: str, reason: str
) -> None:
    sim.add_fault(Fault(kind, "generate"))
    calls: list[CallRecord] = []
    with pytest.raises(AnswerError) as err:
        run(sim, lesson, calls=calls)
    assert err.value.reason == reason and not err.value.retryable
    assert calls[-1].stage == "generate" and not calls[-1].ok


def test_real_max_output_tokens_is_enforced(sim: Simulator) -> None:
    async def tiny(service: GeminiService) -> Any:
        ref = await upload_active(service)
        settings = TEMPLATE.generation.__class__(max_output_tokens=20)
        return await service.generate(
            model="gemini-3.8-flash",
            video=ref,
            prompt="p",
            schema=TEMPLATE.schema,
            settings=settings,
        )

    with pytest.raises(AnswerError, match="MAX_TOKENS"):
        run(sim, tiny)


def test_processing_failed(sim: Simulator) -> None:
    sim.add_fault(Fault("processing_failed", "upload_start"))
    with pytest.raises(FileProcessingError, match="could not process"):
        run(sim, upload_active)


def test_processing_timeout_uses_the_scaled_deadline(sim: Simulator) -> None:
    sim.set_limits(polls_until_active=10_000)
    with pytest.raises(ApiTimeoutError, match="still PROCESSING"):
        run(sim, upload_active, processing_timeout=0.05, processing_timeout_per_gb=0)


def test_a_file_belongs_to_the_key_that_uploaded_it(sim: Simulator) -> None:
    ref = run(sim, upload_active, key="key-A-1234567890")
    with pytest.raises(FileAccessError):
        run(sim, lambda s: lesson(s, ref), key="key-B-1234567890")


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        (Fault("rate_limit_minute", "generate", retry_after=17), RateLimitError),
        (Fault("rate_limit_day", "generate"), RateLimitError),
        (Fault("server_error", "generate"), TransientError),
        (Fault("unavailable", "generate"), TransientError),
        (Fault("reset", "generate"), NetworkError),
        (Fault("truncated", "generate"), TransientError),
        (Fault("permission_denied", "generate"), FileAccessError),
        (Fault("reset", "upload_chunk"), NetworkError),
        (Fault("server_error", "upload_start"), TransientError),
        (Fault("unavailable", "get_file"), TransientError),
    ],
)
def test_wire_faults_become_our_classes(sim: Simulator, fault: Fault, cls: type) -> None:
    sim.add_fault(fault)
    with pytest.raises(cls) as err:
        run(sim, lesson)
    assert type(err.value) is cls
    if fault.kind == "rate_limit_minute":
        assert err.value.quota is QuotaScope.PER_MINUTE and err.value.retry_after == 17  # type: ignore[attr-defined]
    if fault.kind == "rate_limit_day":
        assert err.value.quota is QuotaScope.PER_DAY and not err.value.retryable  # type: ignore[attr-defined]
    assert sim.stats()["faults_injected"] == {fault.kind: 1}


def test_hang_past_the_request_timeout(sim: Simulator) -> None:
    sim.add_fault(Fault("hang", "generate", delay=30))
    with pytest.raises(ApiTimeoutError):
        run(sim, lesson, request_timeout=0.3)


def test_a_trickled_answer_cannot_hold_a_generate_past_its_timeout(sim: Simulator) -> None:
    # every read gets a few bytes well within the 1 s read timeout; all of it would take 30 s
    sim.add_fault(Fault("trickle", "generate", delay=30, interval=0.2))
    youtube = VideoRef("https://youtu.be/dQw4w9WgXcQ", None)
    calls: list[CallRecord] = []

    async def generate(service: GeminiService) -> Any:
        return await service.generate(
            model="gemini-3.8-flash",
            video=youtube,
            prompt="p",
            schema=TEMPLATE.schema,
            settings=TEMPLATE.generation,
            timeout_s=1.0,
        )

    started = time.monotonic()
    with pytest.raises(ApiTimeoutError, match=r"generate: no complete answer within 1s"):
        run(sim, generate, calls=calls)
    assert 0.9 < time.monotonic() - started < 2.0
    assert [(c.stage, c.error_kind) for c in calls] == [("generate", "ApiTimeoutError")]
    # the simulator noticed the client leave and stopped sending
    assert sim.wait_until(lambda stats: stats["trickles_cut"] == 1, timeout=1.0)


@pytest.mark.parametrize(
    ("endpoint", "stage", "api"),
    [
        # one chunk: the start and the chunk, 0.5 s each
        ("upload_chunk", "upload", {"upload_timeout": 0.5}),
        ("get_file", "poll", {"request_timeout": 1.0}),
    ],
)
def test_upload_and_poll_have_an_overall_deadline_too(
    sim: Simulator, endpoint: str, stage: str, api: dict[str, float]
) -> None:
    sim.add_fault(Fault("trickle", endpoint, delay=30, interval=0.2))
    started = time.monotonic()
    with pytest.raises(ApiTimeoutError, match=rf"{stage}: no complete answer within 1s"):
        run(sim, upload_active, **api)
    assert time.monotonic() - started < 2.0
    assert sim.wait_until(lambda stats: stats["trickles_cut"] == 1, timeout=1.0)


def test_invalid_key_and_unknown_model(sim: Simulator) -> None:
    sim.invalidate_key("bad-key-123456")
    with pytest.raises(AuthError, match="API key not valid"):
        run(sim, upload_active, key="bad-key-123456")

    async def other_model(service: GeminiService) -> Any:
        return await service.generate(
            model="nonexistent-model",
            video=VideoRef("https://youtu.be/dQw4w9WgXcQ", None),
            prompt="p",
            schema=TEMPLATE.schema,
            settings=TEMPLATE.generation,
        )

    with pytest.raises(PermanentError, match="list-models"):
        run(sim, other_model)


def test_rpm_limit_answers_429_with_retry_delay(sim: Simulator) -> None:
    sim.set_limits(rpm=1)
    url = VideoRef("https://youtu.be/dQw4w9WgXcQ", None)

    async def twice(service: GeminiService) -> Any:
        await lesson(service, url)
        return await lesson(service, url)

    with pytest.raises(RateLimitError) as err:
        run(sim, twice)
    assert err.value.quota is QuotaScope.PER_MINUTE and 0 < (err.value.retry_after or 0) <= 60


# -- a lost network ------------------------------------------------------------------------
def _closed_port() -> str:
    """A loopback port nothing listens on: every connect is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _service(base_url: str, key: str = TEST_KEY) -> GeminiService:
    return GeminiService(ApiKey(key, "test"), ApiSettings(base_url=base_url), sleep=FakeSleep())


def test_a_refused_connection_is_a_network_error_and_the_probe_says_unreachable() -> None:
    async def main() -> None:
        async with _service(_closed_port()) as service:
            with pytest.raises(NetworkError, match=r"^upload: connection failed \(ConnectError"):
                await service.upload(VIDEO, "video/mp4", display_name=VIDEO.name)
            assert await service.reachable() is False

    asyncio.run(main())


def test_an_offline_simulator_resets_every_call_and_counts_none(sim: Simulator) -> None:
    sim.set_offline()
    with pytest.raises(
        NetworkError, match=r"connection failed \((ReadError|WriteError|ConnectError)"
    ):
        run(sim, lesson)
    assert run(sim, lambda s: s.reachable()) is False
    stats = sim.stats()
    assert stats["calls"] == {} and stats["dropped"] == {"upload_start": 1, "list_files": 1}
    sim.set_offline(False)
    assert run(sim, lambda s: s.reachable()) is True
    # any answer means the network works, an error status too (here: a rejected key)
    sim.invalidate_key("key-bad-1234567890")
    assert run(sim, lambda s: s.reachable(), key="key-bad-1234567890") is True


def test_a_gated_service_waits_at_the_gate_before_every_call(sim: Simulator) -> None:
    """The gate runs before the call: what it raises leaves the call unmade, unrecorded."""
    opened: list[str] = []
    calls: list[CallRecord] = []

    async def gate() -> None:
        opened.append("call")
        if len(opened) == 3:
            raise NetworkError("the network is down and the batch is stopping")

    async def body(service: GeminiService) -> Any:
        return await lesson(service.gated(gate))

    with pytest.raises(NetworkError, match="stopping"):
        run(sim, body, calls=calls)
    assert opened == ["call"] * 3  # upload, poll, (held) poll
    assert sim.stats()["calls"] == {"upload_start": 1, "upload_chunk": 1, "get_file": 1}
    assert [c.stage for c in calls] == ["upload", "poll"]
