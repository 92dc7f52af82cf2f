"""Several templates over one upload (issue 14, item 2): ``-t A -t B -t C`` uploads each
video once and answers it once per template, with an explicit context cache where the
price table says it pays — counted by the simulator, through the real SDK."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from gs_video_report.batch.caching import cache_choice, cache_ttl_s
from gs_video_report.catalog import MODELS
from gs_video_report.errors import ExitCode
from gs_video_report.simulator import Simulator
from tests.conftest import SAMPLES, copy_lecture
from tests.test_processes import Child, db_rows, lessons, same_target, wait_until

__all__ = ["same_target"]  # autouse: the in-process commands reach the simulator too

TEMPLATES = ("summary_report", "comprehensive_lesson", "chinese_transcript")
LONG = SAMPLES / "intro_to_fractions.mp4"  # 45 s: ~4,400 tokens, above the cache minimum
SHORT = SAMPLES / "photosynthesis_basics.mp4"  # 30 s: below the 4,096-token minimum


def course(folder: Path, count: int, sample: Path = LONG) -> Path:
    for i in range(count):
        copy_lecture(sample, folder / f"lecture_{i:02d}.mp4")
    return folder


def template_args(*names: str) -> list[str]:
    return [arg for name in names for arg in ("-t", name)]


def summary_of(out: Path) -> dict[str, Any]:
    (report,) = (out / "_reports").glob("*/summary.json")
    loaded: dict[str, Any] = json.loads(report.read_text())
    return loaded


def test_three_templates_over_ten_videos_upload_ten_and_answer_thirty(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    videos, out = course(tmp_path / "videos", 10), tmp_path / "out"

    result = cli("batch", "-d", str(videos), "-o", str(out), "-q", *template_args(*TEMPLATES))

    assert result.exit_code == ExitCode.OK, result.output
    stats = sim.stats()
    assert stats["uploads_completed"] == 10
    assert stats["calls"]["generate"] == 30
    assert sorted(stats["generate_by_subject"].values()) == [3] * 10
    # each template's lesson in its own folder, from its own answer
    for template in TEMPLATES:
        written = sorted(p.name for p in (out / template).glob("*.md"))
        assert written == [f"lecture_{i:02d}.md" for i in range(10)]
        for sidecar in (out / template).glob("*.json"):
            meta = json.loads(sidecar.read_text())["meta"]
            assert (meta["template"], meta["tokens"]["cached"]) == (template, 4410)
    # caching pays here: one cache a video, every call through it, each deleted at the end
    assert stats["caches_created"] == 10
    assert stats["cached_generates"] == 30
    assert stats["caches_deleted"] == 10 and stats["caches_live"] == 0
    assert stats["files_live"] == 0 and stats["files_deleted"] == 10
    requests = stats["generate_requests"]
    assert all(r["cached"] and not r["system_instruction"] for r in requests)
    summary = summary_of(out)
    assert summary["uploads"] == 10
    assert summary["cached_tokens"] == 30 * 4410
    assert summary["cache_saving_usd"] > 0
    assert "Cached tokens: 132,300" in (next((out / "_reports").glob("*/summary.md"))).read_text()


def test_a_video_below_the_cache_minimum_shares_its_upload_with_no_cache(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    videos, out = course(tmp_path / "videos", 2, SHORT), tmp_path / "out"

    result = cli("batch", "-d", str(videos), "-o", str(out), "-q", *template_args(*TEMPLATES[:2]))

    assert result.exit_code == ExitCode.OK, result.output
    stats = sim.stats()
    assert (stats["uploads_completed"], stats["calls"]["generate"]) == (2, 4)
    assert stats["caches_created"] == 0 and stats["files_live"] == 0
    # the video itself in every request (first: the implicit cache may help)
    assert not any(r["cached"] for r in stats["generate_requests"])
    assert summary_of(out)["cached_tokens"] == 0


def test_the_same_template_twice_is_one(cli, sim: Simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    videos, out = course(tmp_path / "videos", 1), tmp_path / "out"

    result = cli(
        "batch", "-d", str(videos), "-o", str(out), "-q", *template_args("summary_report") * 2
    )

    assert result.exit_code == ExitCode.OK, result.output
    assert sim.stats()["calls"]["generate"] == 1
    assert sim.stats()["caches_created"] == 0  # one call: a cache cannot pay
    assert len(lessons(out)) == 1


def test_dry_run_shows_uploads_calls_and_the_caching_saving(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    videos = course(tmp_path / "videos", 10)
    out = tmp_path / "out"
    args = ("batch", "-d", str(videos), "-o", str(out), "--dry-run", *template_args(*TEMPLATES))

    text = cli(*args)
    doc = cli(*args, "--json")

    assert text.exit_code == ExitCode.OK, text.output
    assert "10 upload(s), 30 call(s) · context caching for 10 video(s) saves" in text.output
    sharing = json.loads(doc.stdout)["sharing"]
    assert sharing["uploads"] == 10 and sharing["calls"] == 30
    assert sharing["cached_videos"] == 10 and sharing["cache_saving_usd"] > 0
    assert sim.api_calls() == 0


def test_a_csv_naming_one_video_with_two_templates_uploads_it_once(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    video = copy_lecture(LONG, tmp_path / "videos" / "lecture.mp4")
    rows = tmp_path / "rows.csv"
    rows.write_text(f"path,template\n{video},summary_report\n{video},comprehensive_lesson\n")

    result = cli("batch", "-u", str(rows), "-o", str(tmp_path / "out"), "-q")

    assert result.exit_code == ExitCode.OK, result.output
    stats = sim.stats()
    assert (stats["uploads_completed"], stats["calls"]["generate"]) == (1, 2)
    assert stats["caches_created"] == 1 and stats["caches_live"] == 0


def test_a_cached_request_may_not_set_its_own_system_instruction(sim: Simulator) -> None:
    """The simulator refuses what the real API refuses."""
    import urllib.error
    import urllib.request

    def call(method: str, path: str, body: object = None) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{sim.url}{path}", data=data, method=method)
        request.add_header("x-goog-api-key", "AIzaTEST-0123456789-abcdefghijklmnop")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    body = {"model": "models/gemini-3.8-flash", "contents": [{"parts": [{"text": "x" * 9000}]}]}
    _, cache = call("POST", "/v1beta/cachedContents", body)
    ask = {
        "cachedContent": cache["name"],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
    }
    code, refused = call("POST", "/v1beta/models/gemini-3.8-flash:generateContent", ask)
    assert code == 400 and "system_instruction" in refused["error"]["message"]
    assert call("DELETE", f"/v1beta/{cache['name']}")[0] == 200
    assert call("GET", f"/v1beta/{cache['name']}")[0] == 403  # gone
    assert sim.stats()["caches_deleted"] == 1


def test_cache_choice_follows_the_price_table() -> None:
    price = MODELS["gemini-3.8-flash"].prices[0]
    lite = MODELS["gemini-2.5-flash-lite"].prices[0]
    tokens = 100_000
    assert not cache_choice(price, video_tokens=tokens, uses=1, min_tokens=4096).use
    two = cache_choice(price, video_tokens=tokens, uses=2, min_tokens=4096)
    assert two.use and two.saving_usd is not None and two.saving_usd > 0
    # the reference's worked figure: N=2 costs 0.98 vs 1.50 per 1M tokens at 10 minutes
    hours = cache_ttl_s(2) / 3600
    expected = 2 * 0.75 - (0.75 + 2 * 0.075 + 0.50 * hours)
    assert abs(two.saving_usd - expected * tokens / 1e6) < 1e-9
    # storage dearer than the saving (flash-lite, two templates): no cache
    assert not cache_choice(lite, video_tokens=tokens, uses=2, min_tokens=2048).use
    assert not cache_choice(price, video_tokens=4000, uses=3, min_tokens=4096).use
    assert not cache_choice(None, video_tokens=tokens, uses=3, min_tokens=4096).use


def test_sigkill_mid_run_then_resume_uploads_ten_and_answers_none_twice(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    videos, out = course(tmp_path / "videos", 10), tmp_path / "out"
    sim.set_limits(latency={"generate": 0.3})
    args = ("batch", "-d", str(videos), "-o", str(out), "-q", "-p", "2")
    child = Child(tmp_path, sim, *args, *template_args(*TEMPLATES))
    # every video uploaded (and its upload recorded), a few lessons written
    everything_uploaded = (
        "SELECT count(*) FROM tasks WHERE stage = 'done' OR upload_name IS NOT NULL"
    )
    try:
        wait_until(
            "every upload recorded and some lessons done",
            lambda: (
                db_rows(tmp_path, everything_uploaded) == [(30,)]
                and db_rows(tmp_path, "SELECT count(*) FROM tasks WHERE stage = 'done'")[0][0] >= 4
            ),
            child,
        )
    finally:
        child.kill()
    sim.set_limits(latency={})
    killed = sim.stats()
    batch_id = str(db_rows(tmp_path, "SELECT id FROM batches")[0][0])

    resumed = cli("resume", batch_id, "-q", "--json")

    assert resumed.exit_code == ExitCode.OK, resumed.output
    stats = sim.stats()
    assert stats["uploads_completed"] == 10  # not one upload more after the kill
    assert killed["uploads_completed"] == 10
    # Only answers the kill caught before they were saved are asked again: at most -p 2
    # calls on the wire plus at most 2 answered ones being saved (a generate slot frees
    # when its answer arrives, so the next call may start while it is written); none
    # answered twice
    assert 30 <= stats["calls"]["generate"] <= 34
    assert len(lessons(out)) == 30
    assert stats["caches_live"] == 0  # the killed run's caches reused, then deleted
    assert stats["caches_created"] == 10
    with sqlite3.connect(tmp_path / "home" / "state.db") as conn:
        left = conn.execute(
            "SELECT count(*) FROM tasks WHERE upload_name IS NOT NULL OR cache_name IS NOT NULL"
        ).fetchone()[0]
    assert left == 0


def test_a_resume_deletes_a_cache_a_crash_left_after_its_last_task(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Killed between the last task's "done" and the cache's deletion: the cache would
    bill storage until its TTL; the next run of the batch deletes it first."""
    videos, out = course(tmp_path / "videos", 1), tmp_path / "out"
    done = cli("batch", "-d", str(videos), "-o", str(out), "-q", *template_args(*TEMPLATES[:2]))
    assert done.exit_code == ExitCode.OK, done.output
    assert sim.stats()["caches_deleted"] == 1
    # the state such a crash leaves: a live cache still recorded on the done tasks
    db = tmp_path / "home" / "state.db"
    with sqlite3.connect(db) as conn:
        (key,) = conn.execute("SELECT DISTINCT key_fingerprint FROM attempts").fetchone()
    import urllib.request

    body = {"model": "models/gemini-3.8-flash", "contents": [{"parts": [{"text": "x" * 9000}]}]}
    request = urllib.request.Request(
        f"{sim.url}/v1beta/cachedContents", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("x-goog-api-key", "AIzaTEST-0123456789-abcdefghijklmnop")
    with urllib.request.urlopen(request) as answer:
        name = json.loads(answer.read())["name"]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE tasks SET cache_name = ?, upload_key = ?", (name, key))
    assert sim.stats()["caches_live"] == 1
    batch_id = str(db_rows(tmp_path, "SELECT id FROM batches")[0][0])

    resumed = cli("resume", batch_id, "-q")

    assert resumed.exit_code == ExitCode.OK, resumed.output
    assert sim.stats()["caches_live"] == 0 and sim.stats()["calls"]["generate"] == 2
    assert db_rows(tmp_path, "SELECT count(*) FROM tasks WHERE cache_name IS NOT NULL") == [(0,)]


def test_one_unknown_template_among_several_fails_the_batch_before_any_call(
    cli, sim: Simulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    videos = course(tmp_path / "videos", 2)
    args = template_args("summary_report", "summary_reprt")

    result = cli("batch", "-d", str(videos), "-o", str(tmp_path / "out"), *args)

    assert result.exit_code == ExitCode.INPUT
    assert "did you mean summary_report?" in result.output
    assert "Traceback" not in result.output
    assert sim.api_calls() == 0 and not (tmp_path / "out").exists()


def test_cached_tokens_are_billed_at_the_cached_rate_and_the_saving_counts_the_cache() -> None:
    from datetime import date

    from gs_video_report.batch.caching import task_cost
    from gs_video_report.batch.cost import Prices
    from gs_video_report.models import Usage

    usage = Usage(prompt_tokens=10_000, candidates_tokens=1_000, cached_tokens=8_000)
    prices = Prices()
    day = date(2026, 12, 1)
    # 2,000 at $0.75, 8,000 at $0.075, 1,000 out at $3.75 (per 1M)
    assert abs((prices.of_usage("gemini-3.8-flash", usage, day) or 0) - 0.00585) < 1e-12
    cost, saving = task_cost(prices, "gemini-3.8-flash", usage, 0.001)
    # (today's prices: the table's 2026 point until 2027)
    assert cost is not None and saving is not None
    assert abs(cost - (prices.of_usage("gemini-3.8-flash", usage) or 0) - 0.001) < 1e-12
    plain = prices.of_usage("gemini-3.8-flash", Usage(10_000, 1_000)) or 0
    assert abs(saving - (plain - cost)) < 1e-12
    assert task_cost(prices, "gemini-3.8-flash", Usage(10_000, 1_000), 0.0)[1] is None
    assert task_cost(prices, "no-such-model", usage, 0.001) == (None, None)
