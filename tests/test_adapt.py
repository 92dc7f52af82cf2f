"""Adapting instead of repeating: the policy on its own, then in a batch against the
simulator (what the next request carried, what was stored, what the report says)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gs_video_report.batch.adapt import PARAPHRASE, Adjustments, adapt
from gs_video_report.errors import AnswerError, ExitCode
from gs_video_report.models import GenerationSettings
from gs_video_report.simulator import Fault, Simulator
from gs_video_report.storage import CheckpointManager, TaskStage, open_db
from tests.conftest import SAMPLES, copy_lecture
from tests.test_batch_runner import record, resume


def _error(reason: str, message: str = "x") -> AnswerError:
    return AnswerError(message, reason=reason)


def test_max_tokens_doubles_the_budget_to_the_ceiling_then_lowers_thinking() -> None:
    base = GenerationSettings(max_output_tokens=16_384, thinking_level="high")
    current, budgets = Adjustments(), []
    while (changed := adapt(_error("MAX_TOKENS"), current, base)) is not None:
        current = changed
        budgets.append((current.max_output_tokens, current.thinking_level))
    assert budgets == [
        (32_768, None),
        (65_536, None),
        (65_536, "low"),
        (65_536, "minimal"),
    ]
    assert current.settings(base) == GenerationSettings(
        max_output_tokens=65_536, thinking_level="minimal"
    )
    assert current.notes[0] == "MAX_TOKENS: output budget 16384 -> 32768 tokens"


def test_recitation_and_schema_get_one_instruction_each_and_safety_none() -> None:
    base = GenerationSettings()
    recite = adapt(_error("RECITATION"), Adjustments(), base)
    assert recite is not None and recite.prompt("P") == f"P\n\n{PARAPHRASE}"
    assert adapt(_error("RECITATION"), recite, base) is None
    schema = adapt(_error("SCHEMA_MISMATCH", "'summary' is a required property"), recite, base)
    assert schema is not None and "'summary' is a required property" in schema.prompt("P")
    assert adapt(_error("INVALID_JSON"), schema, base) is None
    for reason in ("SAFETY", "BLOCKED_SAFETY", "EMPTY", "PROHIBITED_CONTENT"):
        assert adapt(_error(reason), Adjustments(), base) is None
    assert Adjustments.from_json(schema.to_json()) == schema


def test_a_batch_adapts_records_and_reports(sim: Simulator, tmp_path: Path) -> None:
    lectures = tmp_path / "lectures"
    lectures.mkdir()
    for name in ("cut.mp4", "recite.mp4", "broken.mp4", "unsafe.mp4"):
        copy_lecture(SAMPLES / "intro_to_fractions.mp4", lectures / name)
    sim.add_fault(Fault("max_tokens", match="cut.mp4"))
    sim.add_fault(Fault("recitation", match="recite.mp4"))
    sim.add_fault(Fault("invalid_answer", match="broken.mp4"))
    sim.add_fault(Fault("safety", match="unsafe.mp4", times=5))

    async def main() -> dict[str, list[dict[str, object]]]:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            await record(store, sim, tmp_path, "b1")
            outcome = await resume(store, sim, tmp_path, "b1")
            assert outcome.exit_code == ExitCode.PARTIAL
            assert outcome.counts == {TaskStage.DONE: 3, TaskStage.FAILED: 1}
            tasks = {Path(t.source).name: t for t in await store.tasks("b1")}
            assert "SAFETY" in (tasks["unsafe.mp4"].last_error or "")
            stored = Adjustments.from_json(tasks["cut.mp4"].adjustments)
            assert stored.max_output_tokens == 16_384  # summary_report asks for 8,192
            return {name: await store.attempts(t.id) for name, t in tasks.items()}

    attempts = asyncio.run(main())
    generates = {n: [a for a in calls if a["stage"] == "generate"] for n, calls in attempts.items()}
    assert [a["finish_reason"] for a in generates["cut.mp4"]] == ["MAX_TOKENS", "STOP"]
    assert generates["cut.mp4"][1]["note"] == "MAX_TOKENS: output budget 8192 -> 16384 tokens"
    assert len(generates["unsafe.mp4"]) == 1  # no retry for SAFETY
    requests = {r["subject"]: [] for r in sim.stats()["generate_requests"]}
    for r in sim.stats()["generate_requests"]:
        requests[r["subject"]].append(r)
    assert [r["generation_config"]["maxOutputTokens"] for r in requests["cut.mp4"]] == [8192, 16384]
    assert PARAPHRASE not in requests["recite.mp4"][0]["prompt"]
    assert PARAPHRASE in requests["recite.mp4"][1]["prompt"]
    assert "Your previous answer was rejected" in requests["broken.mp4"][1]["prompt"]

    report = tmp_path / "out" / "_reports" / "b1"
    summary = json.loads((report / "summary.json").read_text())
    evolution = {Path(v["source"]).name: v["prompt_evolution"] for v in summary["videos"]}
    assert evolution["cut.mp4"] == ["MAX_TOKENS: output budget 8192 -> 16384 tokens"]
    assert evolution["recite.mp4"] == ["RECITATION: asked to paraphrase instead of quoting"]
    assert evolution["broken.mp4"][0].startswith("SCHEMA_MISMATCH: told the model")
    assert evolution["unsafe.mp4"] == []
    markdown = (report / "summary.md").read_text()
    assert "## Adjustments" in markdown and "output budget 8192 -> 16384" in markdown
    lesson = json.loads(next((tmp_path / "out").rglob("cut.json")).read_text())
    assert lesson["prompt_evolution"] == ["MAX_TOKENS: output budget 8192 -> 16384 tokens"]
