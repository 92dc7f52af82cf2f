"""Long videos in parts: the split, the merge, and a batch that uploads once, asks for each
part with video_metadata offsets, merges one lesson, and on a resume asks only for the
parts it does not have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import pytest

from gs_video_report.batch.parts import Part, absolute, merge, spans
from gs_video_report.errors import ExitCode
from gs_video_report.models import GenerationSettings
from gs_video_report.simulator import Fault, Simulator
from tests.conftest import REPO

DENSE = GenerationSettings(media_resolution="high", fps=10.0)  # 2,612 tokens per second


def make_long_video(path: Path, seconds: int) -> Path:
    """A tiny but long video (32x32, one frame per second): probes as ``seconds`` long."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(seconds):
            container.mux(stream.encode(av.VideoFrame(32, 32, "yuv420p")))
        container.mux(stream.encode())
    return path


def dense_template(tmp_path: Path) -> Path:
    """summary_report watching at high resolution and 10 fps: 6 minutes of video need
    ~940k input tokens, more than 80 % of a 1M-token model."""
    text = (REPO / "templates" / "summary_report.yaml").read_text()
    text = text.replace("name: summary_report", "name: summary_dense")
    text = text.replace("media_resolution: low\n  fps: 1.0", "media_resolution: high\n  fps: 10.0")
    path = tmp_path / "summary_dense.yaml"
    path.write_text(text)
    return path


# -- the split and the merge ------------------------------------------------------------
def test_spans_split_only_what_does_not_fit_into_equal_parts() -> None:
    assert spans(360, 60, DENSE, 1_048_576) == [(i * 60.0, (i + 1) * 60.0) for i in range(6)]
    assert spans(360, 1200, GenerationSettings(media_resolution="low"), 1_048_576) == []
    # after MAX_TOKENS: at least two parts, even when the video would fit
    assert spans(360, 180, GenerationSettings(), 1_048_576, at_least_two=True) == [
        (0.0, 180.0),
        (180.0, 360.0),
    ]
    assert spans(100, 60, DENSE, 10, at_least_two=True) == []  # too short to split
    # parts shrink until each fits the model
    assert len(spans(3600, 3600, DENSE, 1_048_576)) == 12  # 300 s each: 784k tokens


def test_merge_makes_times_absolute_drops_repeats_and_keeps_the_schema() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "main_topic": {"type": "string"},
            "summary": {"type": "string"},
            "key_points": {
                "type": "array",
                "maxItems": 4,
                "items": {"type": "object"},
            },
            "terms": {"type": "array", "items": {"type": "object"}},
        },
    }
    first = {
        "main_topic": "Fractions",
        "summary": "Halves.",
        "key_points": [{"point": "a", "start_seconds": 10}, {"point": "b", "start_seconds": 50}],
        "terms": [{"term": "Numerator", "meaning": "top"}],
    }
    # the second part counted from its own start (0-60 for the clip 60-120)
    second = {
        "main_topic": "Fractions, part 2",
        "summary": "Quarters.",
        "key_points": [
            {"point": "c", "start_seconds": 5},
            {"point": "d", "start_seconds": 30},
            {"point": "e", "start_seconds": 55},
        ],
        "terms": [{"term": "numerator", "meaning": "the top"}, {"term": "Denominator"}],
    }
    assert absolute(second, 60, 120)["key_points"][0]["start_seconds"] == 65
    assert absolute(first, 0, 60) == first
    merged = merge(schema, [Part(0, 0, 60, first), Part(1, 60, 120, second)])
    assert merged["main_topic"] == "Fractions"
    assert merged["summary"] == "Halves.\n\nQuarters."
    times = [k["start_seconds"] for k in merged["key_points"]]
    assert times == sorted(times) and len(times) == 4 and times[0] == 10 and times[-1] == 115
    assert [t["term"] for t in merged["terms"]] == ["Numerator", "Denominator"]


# -- in a batch ---------------------------------------------------------------------------
@pytest.fixture
def long_video(tmp_path: Path) -> Path:
    return make_long_video(tmp_path / "lectures" / "long.mp4", 360)


def _clips(sim: Simulator) -> list[tuple[str, str]]:
    return [
        (r["video_metadata"].get("start_offset", ""), r["video_metadata"].get("end_offset", ""))
        for r in sim.stats()["generate_requests"]
    ]


def test_a_long_video_is_split_merged_and_dry_run_shows_the_split(
    cli: Any, sim: Simulator, tmp_path: Path, long_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GS_VIDEOREPORT_VIDEO__PART_MINUTES", "1")
    template, out = dense_template(tmp_path), tmp_path / "out"
    args = ("batch", "-d", str(long_video.parent), "-o", str(out), "-t", str(template))
    dry = cli(*args, "--dry-run", "--simulate")
    assert dry.exit_code == 0, dry.output
    assert "00:00-01:00" in dry.stdout and "05:00-06:00" in dry.stdout
    assert sim.api_calls() == 0

    result = cli(*args, "--simulate", "-q", "--json")
    assert result.exit_code == 0, result.output
    stats = sim.stats()
    assert stats["uploads_completed"] == 1
    assert _clips(sim) == [(f"{60 * i}s", f"{60 * (i + 1)}s") for i in range(6)]
    assert "part 3 of 6" in stats["generate_requests"][2]["prompt"]
    lesson = json.loads(next(out.rglob("long.json")).read_text())
    points = lesson["answer"]["key_points"]
    assert 3 <= len(points) <= 5
    times = [p["start_seconds"] for p in points]
    assert times == sorted(times) and times[0] >= 0 and times[-1] < 360 and times[-1] >= 240
    assert lesson["meta"]["tokens"]["prompt"] > 800_000  # six parts' usage, summed
    paragraphs = lesson["answer"]["summary"].split("\n\n")
    assert len(paragraphs) >= 2 and len(set(paragraphs)) == len(paragraphs)  # none twice


def test_a_resume_asks_only_for_the_missing_parts(
    cli: Any, sim: Simulator, tmp_path: Path, long_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GS_VIDEOREPORT_VIDEO__PART_MINUTES", "1")
    template, out = dense_template(tmp_path), tmp_path / "out"
    sim.add_fault(Fault("safety", match="long.mp4", after=2))  # the third part is refused
    first = cli(
        "batch", "-d", str(long_video.parent), "-o", str(out), "-t", str(template), "--simulate"
    )
    assert first.exit_code == ExitCode.PARTIAL
    batch_id = json.loads(cli("list-batches", "--json").stdout)[0]["id"]
    again = cli("retry-failed", batch_id, "--simulate")
    assert again.exit_code == 0, again.output
    # parts 1 and 2, part 3 refused; after the retry parts 3-6 only
    parts = [(f"{60 * i}s", f"{60 * (i + 1)}s") for i in range(6)]
    assert _clips(sim) == parts[:3] + parts[2:]
    assert next(out.rglob("long.md")).is_file()


def test_max_tokens_after_every_adjustment_falls_back_to_parts(
    cli: Any, sim: Simulator, tmp_path: Path, long_video: Path
) -> None:
    out = tmp_path / "out"
    # cut off at 8k, 16k, 32k and 64k tokens, then at thinking low and minimal
    sim.add_fault(Fault("max_tokens", match="long.mp4", times=6))
    result = cli(
        "batch", "-d", str(long_video.parent), "-o", str(out), "-t", "summary_report",
        "--simulate", "-q", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _clips(sim) == [("", "")] * 6 + [("0s", "180s"), ("180s", "360s")]
    report = json.loads(next(out.rglob("summary.json")).read_text())
    evolution = report["videos"][0]["prompt_evolution"]
    assert evolution[-1] == "MAX_TOKENS with every adjustment: processing in 2 parts"
    assert evolution[0] == "MAX_TOKENS: output budget 8192 -> 16384 tokens"
