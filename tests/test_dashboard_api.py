"""The dashboard over real HTTP on loopback, in-process: the token and CSRF rules, a
batch started from the form running to done (the simulator's counters and the files on
disk), retry, cancel and resume, presets, costs, what files it serves, and that no key
ever leaves it."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gs_video_report.simulator import Fault, Simulator
from gs_video_report.web import Dashboard
from tests.dashboard_kit import engine_on, lectures, running
from tests.test_templates import MINIMAL

pytestmark = pytest.mark.timeout(60)


def _held(stats: dict[str, Any]) -> bool:
    """A ``hold`` fault holds a call (seen as the other calls end)."""
    return bool(stats["faults_injected"].get("hold"))


def test_every_request_needs_the_token_and_a_change_needs_it_in_the_request(
    sim: Simulator, tmp_path: Path
) -> None:
    engine = engine_on(sim, tmp_path)

    async def main() -> None:
        dashboard = Dashboard(engine, simulated=True)
        url = await dashboard.start("127.0.0.1", 0)
        base = url.split("/?token=")[0]
        try:
            async with aiohttp.ClientSession() as bare:
                for path in ("/", "/api/batches", "/api/keys", "/static/batch.js", "/batches/x"):
                    async with bare.get(base + path) as response:
                        assert response.status == 403, path
                async with bare.get(base + "/?token=wrong") as response:
                    assert response.status == 403
                async with bare.get(url, headers={"Host": "evil.example:80"}) as response:
                    assert response.status == 403  # DNS rebinding
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as tab:
                async with tab.get(url) as response:
                    assert response.status == 200
                    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
                async with tab.get(base + "/api/batches") as response:
                    assert response.status == 200  # the cookie from the first visit
                folder = str(lectures(tmp_path / "videos"))
                # a forged cross-site form carries the cookie, but not the token
                async with tab.post(base + "/batches", data={"input_dir": folder}) as response:
                    assert response.status == 403
                form = {"name": "p", "params": "grade=5", "token": "nope"}
                async with tab.post(base + "/presets", data=form) as response:
                    assert response.status == 403
                headers = {"X-Token": dashboard.token}
                form = {"name": "p", "params": "grade=5"}
                async with tab.post(
                    base + "/presets", data=form, headers=headers, allow_redirects=False
                ) as response:
                    assert response.status == 303
        finally:
            await dashboard.stop()
        assert [p.name for p in await engine.presets()] == ["p"]
        assert await engine.batches() == []  # the forged start recorded nothing

    asyncio.run(main())
    assert sim.api_calls() == 0


def test_a_batch_started_from_the_page_runs_to_done_and_zips(
    sim: Simulator, tmp_path: Path
) -> None:
    engine = engine_on(sim, tmp_path)
    folder = lectures(tmp_path / "videos")
    out = tmp_path / "lessons"

    async def main() -> None:
        async with running(engine) as client:
            batch_id = await client.start(folder, output_dir=str(out), template="summary_report")
            done = await client.until(batch_id, "done")
            # one stream, several updates as the batch went (not one answer per poll)
            assert len(client.seen) >= 2 and client.seen[0] != client.seen[-1]
            assert [t["stage"] for t in done["tasks"]] == ["done", "done"]
            assert done["progress"] == 1.0 and done["cost_usd"] > 0
            async with await client.get("/api/batches") as response:
                listing = await response.json()
            row = listing["batches"][0]
            expected = (batch_id, "summary_report", "done")
            assert (row["id"], row["template"], row["status"]) == expected
            assert sum(listing["by_day"].values()) == pytest.approx(row["cost_usd"])
            async with await client.get(f"/batches/{batch_id}/download.zip") as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "application/zip"
                archive = zipfile.ZipFile(io.BytesIO(await response.read()))
            names = set(archive.namelist())
            for name in ("algebra", "biology"):
                for suffix in (".md", ".json", ".html"):  # the page's batches get HTML
                    rel = f"summary_report/{name}{suffix}"
                    assert archive.read(rel) == (out / rel).read_bytes()
            assert f"_reports/{batch_id}/summary.json" in names
            async with await client.get(done["tasks"][0]["lesson_url"]) as response:
                assert response.status == 303  # to the lesson's file, below the batch
                async with await client.get(response.headers["Location"]) as lesson:
                    assert lesson.status == 200
                    assert "connect-src 'none'" in lesson.headers["Content-Security-Policy"]
                    page = (out / "summary_report/algebra.html").read_text()
                    assert (await lesson.text()) == page  # its HTML render

    asyncio.run(main())
    assert sim.stats()["calls"]["generate"] == 2  # one paid call a video, nothing more
    assert (out / "summary_report" / "biology.md").is_file()


def test_a_bad_folder_is_one_line_on_the_page_and_nothing_is_recorded(
    sim: Simulator, tmp_path: Path
) -> None:
    engine = engine_on(sim, tmp_path)

    async def main() -> None:
        async with running(engine) as client:
            data = {"input_dir": str(tmp_path / "missing")}
            async with await client.post("/batches", data) as response:
                assert response.status == 303
                page = response.headers["Location"]
            assert page.startswith("/?error=")
            async with await client.get(page) as response:
                text = await response.text()
            assert "input folder not found" in text and "Traceback" not in text
            data = {"input_dir": str(lectures(tmp_path / "v")), "template": "no_such"}
            async with await client.post("/batches", data) as response:
                assert "/?error=" in response.headers["Location"]
            # a path in the template field: a valid template file, but the page takes names
            mine = tmp_path / "mine.yaml"
            mine.write_text(MINIMAL.format(name="mine"))
            data["template"] = str(mine)
            async with await client.post("/batches", data) as response:
                assert "names%20only" in response.headers["Location"]
            form = {"name": "p", "template": str(mine)}
            async with await client.post("/presets", form) as response:
                assert response.status == 400
        assert await engine.batches() == [] and await engine.presets() == []

    asyncio.run(main())
    assert sim.api_calls() == 0


def test_retry_one_failed_video_from_the_page(sim: Simulator, tmp_path: Path) -> None:
    sim.add_fault(Fault("safety", "generate", match="biology"))
    engine = engine_on(sim, tmp_path)

    async def main() -> None:
        async with running(engine) as client:
            batch_id = await client.start(lectures(tmp_path / "videos"))
            partial = await client.until(batch_id, "partial")
            failed = [t for t in partial["tasks"] if t["stage"] == "failed"]
            assert [t["video"] for t in failed] == ["biology"]
            assert failed[0]["error"]  # the reason, one line
            done_id = next(t["id"] for t in partial["tasks"] if t["stage"] == "done")
            async with await client.post(f"/batches/{batch_id}/tasks/{done_id}/retry") as r:
                assert r.status == 400  # only a failed video goes back
            async with await client.post(f"/batches/{batch_id}/tasks/{failed[0]['id']}/retry"):
                pass
            done = await client.until(batch_id, "done")
            assert [t["stage"] for t in done["tasks"]] == ["done", "done"]

    asyncio.run(main())
    assert sim.stats()["calls"]["generate"] == 3


def test_cancel_then_resume_and_a_restarted_server_sees_it_all(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.add_fault(Fault("hold", "generate", times=1))
    engine = engine_on(sim, tmp_path)
    folder = lectures(tmp_path / "videos")

    async def main() -> str:
        async with running(engine) as client:
            batch_id = await client.start(folder)
            await asyncio.to_thread(sim.wait_until, _held, 20)
            async with await client.post(f"/batches/{batch_id}/cancel") as response:
                assert response.status == 303
            # said at once, while the held call is still in flight
            assert (await client.snapshot(batch_id))["status"] == "stopping"
            async with await client.get(f"/batches/{batch_id}") as response:
                assert "stopping…" in await response.text()
            sim.release()
            cancelled = await client.until(batch_id, "cancelled")
        # a new server on the same database: the batch, as it was left
        async with running(engine) as client:
            assert (await client.snapshot(batch_id))["status"] == "cancelled"
            async with await client.post(f"/batches/{batch_id}/resume") as response:
                assert response.status == 303
            done = await client.until(batch_id, "done")
        assert done["total"] == cancelled["total"] == 2
        return batch_id

    batch_id = asyncio.run(main())
    assert engine.sync.status(batch_id).status.value == "done"  # the engine agrees


def test_presets_from_the_config_and_the_page_survive_a_restart(
    sim: Simulator, tmp_path: Path
) -> None:
    engine = engine_on(
        sim, tmp_path, presets={"grade5": {"template": "summary_report", "params": {}}}
    )

    async def main() -> None:
        async with running(engine) as client:
            form = {"name": "mine", "template": "", "params": "a=1\nb=two"}
            async with await client.post("/presets", form) as response:
                assert response.status == 303
            async with await client.post("/presets", {"name": "bad", "params": "novalue"}) as r:
                assert r.status == 400
        async with running(engine) as client:
            async with await client.get("/") as response:
                page = await response.text()
            assert "grade5" in page and "mine" in page and "b=two" in page
            batch_id = await client.start(lectures(tmp_path / "videos"), preset="grade5")
            done = await client.until(batch_id, "done")
            assert {t["template"] for t in done["tasks"]} == {"summary_report"}
            async with await client.post("/presets/delete", {"name": "mine"}):
                pass
        assert [(p.name, p.origin) for p in await engine.presets()] == [("grade5", "config")]

    asyncio.run(main())


def test_it_serves_the_batch_folders_only(sim: Simulator, tmp_path: Path) -> None:
    engine = engine_on(sim, tmp_path)
    folder = lectures(tmp_path / "videos")
    out = tmp_path / "lessons"
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (folder / "link_out.txt").symlink_to(secret)
    (folder / "inside.txt").write_text("the input folder's own")

    async def main() -> None:
        async with running(engine) as client:
            batch_id = await client.start(folder, output_dir=str(out))
            await client.until(batch_id, "done")
            (out / "escape.md").symlink_to(secret)
            base = f"/batches/{batch_id}/files"
            ok = [f"{base}{folder}/algebra.mp4"]
            ok += [f"{base}{out}/_reports/{batch_id}/summary.md"]
            for path in ok:
                async with await client.get(path) as response:
                    assert response.status == 200, path
                    if path.endswith(".md"):  # shown in the tab, never sniffed as HTML
                        assert response.headers["Content-Type"].startswith("text/plain")
            refused = [
                f"{base}{secret}",
                f"{base}{folder}/link_out.txt",
                f"{base}{folder}/inside.txt",  # not a video of the batch
                f"{base}{out}/escape.md",
                f"{base}{out}/../secret.txt",
                f"{base}{out}/%2e%2e/secret.txt",
                f"{base}/etc/passwd",
                f"{base}{folder}/missing.mp4",
                f"/batches/other/files{folder}/algebra.mp4",
            ]
            for path in refused:
                async with await client.session.get(
                    aiohttp.client.URL(client.base + path, encoded=True)
                ) as response:
                    assert response.status == 404, path
                    assert "not yours" not in await response.text()
                    assert response.headers["X-Content-Type-Options"] == "nosniff"
            async with await client.get(f"/batches/{batch_id}/download.zip") as response:
                names = zipfile.ZipFile(io.BytesIO(await response.read())).namelist()
            assert "escape.md" not in names and all(".." not in n for n in names)

    asyncio.run(main())


def test_only_the_batch_s_videos_lessons_and_reports_are_served_and_never_a_key(
    sim: Simulator, tmp_path: Path
) -> None:
    """What a user keeps next to their videos (a .env as the README suggests, a keys
    file, a config with api.keys) is not the batch's to serve; a lesson that holds a key
    is not served or zipped; an HTML file runs nothing on the dashboard's origin."""
    key = "AIzaSECRET-served-key-0123456789abcdefgh"
    engine = engine_on(sim, tmp_path, key=key)
    folder = lectures(tmp_path / "videos")
    out = tmp_path / "lessons"
    planted = {
        ".env": f"GEMINI_API_KEY={key}\n",
        "keys.txt": "AIzaOTHER-key-not-the-engine-s\n",
        "config.yaml": "api:\n  keys: [AIzaOTHER]\n",
        "evil.html": "<script>alert(1)</script>",
        "evil.svg": "<svg xmlns='http://www.w3.org/2000/svg'><script>1</script></svg>",
    }
    for where in (folder, out):
        where.mkdir(exist_ok=True)
        for name, text in planted.items():
            (where / name).write_text(text)
    (out / ".hidden").mkdir()
    (out / ".hidden" / "x.md").write_text("hidden")

    async def main() -> None:
        async with running(engine) as client:
            batch_id = await client.start(folder, output_dir=str(out), template="summary_report")
            done = await client.until(batch_id, "done")
            base = f"/batches/{batch_id}/files"
            refused = [f"{base}{w}/{n}" for w in (folder, out) for n in planted]
            refused.append(f"{base}{out}/.hidden/x.md")
            for path in refused:
                async with await client.get(path) as response:
                    assert response.status == 404, path
            lesson = out / "summary_report" / "biology.md"
            async with await client.get(f"{base}{lesson}") as response:
                assert response.status == 200
                policy = response.headers["Content-Security-Policy"]
                assert policy.startswith("sandbox;") and "script-src" not in policy
            lesson.write_text(lesson.read_text() + f"\nquoted: {key}\n")
            async with await client.get(f"{base}{lesson}") as response:
                assert response.status == 404  # holds the key: never leaves
            async with await client.get(f"/batches/{batch_id}/download.zip") as response:
                archive = zipfile.ZipFile(io.BytesIO(await response.read()))
            names = archive.namelist()
            assert "summary_report/algebra.md" in names
            assert "summary_report/biology.md" not in names
            assert not any(n.endswith(tuple(planted)) for n in names)
            # a lesson page: its own script, on an opaque origin; its video by the batch's
            # capability (a sandboxed page's requests carry no cookie)
            async with await client.get(done["tasks"][0]["lesson_url"]) as response:
                page = response.headers["Location"]
            assert f"/batches/{batch_id}/c/" in page
            video = page.rsplit("/files/", 1)[0] + f"/files{folder}/algebra.mp4"
            async with aiohttp.ClientSession() as bare:  # no cookie, no token
                async with bare.get(client.base + page) as response:
                    assert response.status == 200
                    policy = response.headers["Content-Security-Policy"]
                    assert policy.startswith("sandbox allow-scripts;")
                    assert "img-src 'self' data:;" in policy
                async with bare.get(client.base + video) as response:
                    assert response.status == 200
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                other = video.replace(f"/batches/{batch_id}/", "/batches/other/")
                forged = video.replace("/c/", "/c/0")
                for path in (other, forged, f"{base}{folder}/algebra.mp4", "/"):
                    async with bare.get(client.base + path) as response:
                        assert response.status in (403, 404), path

    asyncio.run(main())


def test_no_key_in_any_page_or_response(sim: Simulator, tmp_path: Path) -> None:
    key = "AIzaSECRET-dashboard-key-0123456789abcd"
    sim.add_fault(Fault("echo_key", "generate", match="biology"))
    engine = engine_on(sim, tmp_path, key=key)
    fingerprint = engine.keys[0].fingerprint

    async def main() -> list[bytes]:
        bodies = []
        async with running(engine) as client:
            batch_id = await client.start(lectures(tmp_path / "videos"))
            await client.until(batch_id, "partial")
            paths = ["/", "/api/batches", "/api/keys", f"/batches/{batch_id}"]
            paths += [f"/api/batches/{batch_id}", f"/batches/{batch_id}/download.zip"]
            for path in paths:
                async with await client.get(path) as response:
                    bodies.append(await response.read())
            timeout = aiohttp.ClientTimeout(total=5)
            async with await client.get(f"/batches/{batch_id}/events", timeout=timeout) as r:
                bodies.append(await r.content.readuntil(b"\n\n"))
        return bodies

    bodies = asyncio.run(main())
    assert fingerprint.encode() in bodies[2]  # keys are named by fingerprint
    for body in bodies:
        assert key.encode() not in body
    zipped = zipfile.ZipFile(io.BytesIO(bodies[5]))
    for name in zipped.namelist():
        assert key.encode() not in zipped.read(name)


def test_the_eta_is_the_pace_of_this_run_so_far() -> None:
    from gs_video_report.batch.api import BatchView
    from gs_video_report.models import BatchStatus, TaskStage
    from gs_video_report.web.runs import Run, Runs
    from gs_video_report.web.views import _eta

    def view(done: int, total: int, pid: int | None = None) -> BatchView:
        counts = {TaskStage.DONE: done, TaskStage.PENDING: total - done}
        return BatchView("b", BatchStatus.RUNNING, "", "", 100.0, None, counts, pid)

    runs = Runs(engine=None, simulated=True)  # type: ignore[arg-type]
    assert _eta(view(2, 10), runs, 200.0) is None  # nobody runs it
    assert _eta(view(2, 10, pid=7), runs, 200.0) == pytest.approx(400.0)  # 50 s a video
    runs.running["b"] = Run(None, None, 150.0, 2)  # type: ignore[arg-type]
    assert _eta(view(2, 10), runs, 160.0) is None  # none finished in this run yet
    assert _eta(view(4, 10), runs, 170.0) == pytest.approx(60.0)  # 10 s a video, 6 left
    assert _eta(view(10, 10), runs, 170.0) == 0.0


def test_a_batch_run_elsewhere_is_followed_and_cancelled_from_the_page(
    sim: Simulator, tmp_path: Path
) -> None:
    """A batch another front-end runs (here the engine's API itself, as a script or the
    CLI would): the page reads it from the database and its Cancel stops it through the
    database's cancel request, as ``gs_videoreport cancel`` does."""
    from gs_video_report.batch.api import PlanRequest, RunOptions

    sim.add_fault(Fault("hold", "generate", match="biology"))
    engine = engine_on(sim, tmp_path)
    request = PlanRequest(output=tmp_path / "out", input_dir=lectures(tmp_path / "videos"))

    async def main() -> None:
        planned = await engine.plan(request)
        elsewhere = asyncio.create_task(
            engine.start(planned, RunOptions(parallel=2, simulated=True), batch_id="batch_x")
        )
        async with running(engine) as client:
            await asyncio.to_thread(sim.wait_until, _held, 20)
            busy = await client.snapshot("batch_x")
            assert (busy["status"], busy["running"], busy["here"]) == ("running", True, False)
            assert busy["tasks"][1]["stage"] in ("processing", "generating")  # in flight
            async with await client.post("/batches/batch_x/cancel") as response:
                assert response.status == 303
            sim.release()
            outcome = await asyncio.wait_for(elsewhere, 30)
            left = await client.until("batch_x", "cancelled")
        assert outcome.status.value == "cancelled"
        assert left["tasks"][1]["stage"] == "cancelled"  # resumable

    asyncio.run(main())


def test_costs_per_batch_and_day_are_unknown_where_a_model_has_no_price() -> None:
    from gs_video_report.batch.cost import Prices
    from gs_video_report.models import Usage

    prices = Prices()
    one, two = Usage(1_000_000, 100_000), Usage(2_000_000, 0, 50_000)
    rows = [
        ("b1", "2026-12-01", "gemini-3.8-flash", one),
        ("b1", "2026-12-02", "gemini-3.8-flash", two),
        ("b2", "2026-12-02", "no-such-model", Usage(10, 1)),
    ]
    by_batch, by_day = prices.of_grouped_usage(rows)
    first, second = (prices.of_usage("gemini-3.8-flash", u) for u in (one, two))
    assert first and second
    assert by_batch == {"b1": pytest.approx(first + second), "b2": None}
    assert by_day == {"2026-12-01": pytest.approx(first), "2026-12-02": None}


async def _markdown_batch(engine: Any, tmp_path: Path, batch_id: str) -> None:
    """A batch run to done with Markdown only (as `batch` does by default), to out/."""
    from gs_video_report.batch.api import PlanRequest, RunOptions

    request = PlanRequest(output=tmp_path / "out", input_dir=lectures(tmp_path / "videos"))
    planned = await engine.plan(request)
    outcome = await engine.start(planned, RunOptions(simulated=True), batch_id=batch_id)
    assert outcome.status.value == "done"


def test_render_html_pages_for_a_markdown_batch_pays_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    """A batch run with Markdown only (as `batch` does by default): open shows the
    Markdown as text; Render HTML pages writes the pages from the answers kept, with no
    API call, and open shows them."""
    engine = engine_on(sim, tmp_path)

    async def main() -> None:
        await _markdown_batch(engine, tmp_path, "batch_md")
        paid = sim.api_calls()
        async with running(engine) as client:
            async with await client.get("/batches/batch_md/lessons/1") as response:
                first = response.headers["Location"]
            async with await client.get(first) as response:
                assert response.headers["Content-Type"].startswith("text/plain")
            async with await client.post("/batches/batch_md/render") as response:
                assert response.status == 303
            async with await client.get("/batches/batch_md/lessons/1") as response:
                page = response.headers["Location"]
            assert first.endswith(".md") and page == first.removesuffix(".md") + ".html"
            async with await client.get(page) as response:
                assert response.status == 200 and "<video" in await response.text()
        assert sim.api_calls() == paid

    asyncio.run(main())


def test_a_batch_whose_process_died_reads_interrupted_not_running(
    sim: Simulator, tmp_path: Path
) -> None:
    """``running`` in the database with the lease of a process that is gone (killed, its
    terminal closed) is shown as what the next resume finds: interrupted. A live
    holder's batch still reads running."""
    import socket
    import subprocess

    from gs_video_report.batch import lease
    from gs_video_report.batch.api import PlanRequest, RunOptions
    from gs_video_report.models import BatchStatus

    engine = engine_on(sim, tmp_path)
    child = subprocess.Popen(["sleep", "30"])
    dead = f"{socket.gethostname()}:{child.pid}:t0:{lease._identity(child.pid)}"
    child.kill()
    child.wait()

    async def main() -> None:
        request = PlanRequest(output=tmp_path / "out", input_dir=lectures(tmp_path / "videos"))
        ids = [await engine.record(await engine.plan(request), RunOptions()) for _ in range(2)]
        now = engine.clock.time()
        async with engine._store() as store:
            for batch_id, owner in zip(ids, (dead, lease.lease_owner()), strict=True):
                await store.acquire_lease(batch_id, owner=owner, pid=1, now=now, ttl_s=600)
                await store.set_batch_status(batch_id, BatchStatus.RUNNING, now)
        gone, live = [await engine.status(i) for i in ids]
        assert (gone.status, gone.running_pid) == (BatchStatus.INTERRUPTED, None)
        assert (live.status, live.running_pid) == (BatchStatus.RUNNING, 1)
        listed = {v.id: v.status for v in await engine.batches()}
        assert listed == {ids[0]: BatchStatus.INTERRUPTED, ids[1]: BatchStatus.RUNNING}
        async with running(engine) as client:
            assert (await client.snapshot(ids[0]))["status"] == "interrupted"

    asyncio.run(main())
    assert sim.api_calls() == 0


def test_a_nul_byte_or_a_failing_handler_is_one_line_never_a_traceback(
    sim: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_on(sim, tmp_path)
    folder = lectures(tmp_path / "videos")

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the disk went away")

    async def main() -> None:
        async with running(engine) as client:
            async with await client.post("/batches", {"input_dir": f"{folder}\0x"}) as response:
                assert response.status == 400
                assert (await response.text()) == "error: a NUL byte in the request\n"
            for path in ("/batches/x%00y", f"/batches/b/files{folder}/a%00.mp4"):
                async with await client.get(path) as response:
                    assert response.status == 404, path
            engine.costs = broken  # type: ignore[method-assign]
            async with await client.get("/api/batches") as response:
                assert response.status == 500
                text = await response.text()
                assert text == "internal error: RuntimeError: the disk went away\n"

    with caplog.at_level("INFO"):
        asyncio.run(main())
    assert await_nothing_recorded(engine)
    loud = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert [r.getMessage() for r in loud] == [
        "GET /api/batches: internal error: RuntimeError: the disk went away"
    ]
    assert loud[0].exc_info is None  # the terminal's one line; the traceback is INFO (the file)
    assert any(r.exc_info for r in caplog.records if r.levelname == "INFO")
    assert sim.api_calls() == 0


def await_nothing_recorded(engine: Any) -> bool:
    return asyncio.run(engine.batches()) == []


def test_a_run_s_error_goes_once_the_batch_moves_on_elsewhere(
    sim: Simulator, tmp_path: Path
) -> None:
    """The page's message of a run here that failed is in memory; once the batch is
    resumed and finished in a terminal it is stale and is no longer shown."""
    from gs_video_report.batch.api import PlanRequest, RunOptions

    engine = engine_on(sim, tmp_path)
    request = PlanRequest(output=tmp_path / "out", input_dir=lectures(tmp_path / "videos"))

    async def main() -> None:
        batch_id = await engine.record(await engine.plan(request), RunOptions(simulated=True))
        dashboard = Dashboard(engine, simulated=True)
        dashboard.runs.errors[batch_id] = "error: the output folder is not writable"
        url = await dashboard.start("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as tab:
                api = f"{url.split('/?token=')[0]}/api/batches/{batch_id}?token={dashboard.token}"
                async with tab.get(api) as response:
                    assert (await response.json())["error"].startswith("error: the output")
                async with tab.get(api) as response:  # still as it left it: still said
                    assert (await response.json())["error"]
                outcome = await engine.resume(batch_id)  # "another terminal"
                assert outcome.status.value == "done"
                async with tab.get(api) as response:
                    snapshot = await response.json()
                assert (snapshot["status"], snapshot["error"]) == ("done", "")
        finally:
            await dashboard.stop()

    asyncio.run(main())


def test_render_html_pages_names_the_lesson_it_could_not_render(
    sim: Simulator, tmp_path: Path
) -> None:
    engine = engine_on(sim, tmp_path)

    async def main() -> None:
        await _markdown_batch(engine, tmp_path, "batch_r")
        sidecar = next((tmp_path / "out").rglob("biology.json"))
        sidecar.write_text("{ not json")  # its answer damaged on disk
        async with running(engine) as client:
            async with await client.post("/batches/batch_r/render") as response:
                assert response.status == 303
            error = (await client.snapshot("batch_r"))["error"]
            assert error.startswith("Render HTML pages failed for 1 of 2 lessons: biology: ")
            assert "\n" not in error
            assert not sidecar.with_suffix(".html").exists()
            assert sidecar.with_name("algebra.html").is_file()

    asyncio.run(main())
