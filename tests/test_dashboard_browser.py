"""The dashboard in a real browser: headless Chromium (the system's, driven by Playwright)
against the dashboard and the simulator on loopback. A batch started from the page runs
to done while two tabs watch; a lesson opens and its timestamp seeks the video; a failed
video is retried with its button; "Download all" gives the batch's files.

Skipped only when /usr/bin/chromium is missing and GS_REQUIRE_BROWSER is not set (CI
sets it, so a missing browser fails there)."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gs_video_report.simulator import Fault, Simulator
from gs_video_report.web import Dashboard
from gs_video_report.web.app import in_thread
from tests.dashboard_kit import CHROMIUM, engine_on, launch_chromium, lectures

if not CHROMIUM.exists() and not os.environ.get("GS_REQUIRE_BROWSER"):
    pytest.skip(
        "no /usr/bin/chromium (apt-get install chromium chromium-driver; CI sets"
        " GS_REQUIRE_BROWSER=1 so it is never skipped there)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user-data-dir
    with sync_playwright() as playwright:
        context = launch_chromium(playwright, profile, accept_downloads=True)
        try:
            yield context
        finally:
            context.close()


def _start_from_the_page(page: Any, url: str, folder: Path, out: Path, template: str) -> str:
    page.goto(url)
    page.fill("#input_dir", str(folder))
    page.fill("#output_dir", str(out))
    page.select_option("#template", template)
    page.click("#start-button")
    page.wait_for_url("**/batches/batch_*")
    return str(page.url.rsplit("/", 1)[1])


def test_start_watch_open_a_lesson_seek_and_download_all(
    browser: Any, sim: Simulator, tmp_path: Path
) -> None:
    engine = engine_on(sim, tmp_path)
    folder = lectures(tmp_path / "videos")
    out = tmp_path / "lessons"
    with in_thread(Dashboard(engine, simulated=True, parallel=2)) as url:
        page = browser.new_page()
        batch_id = _start_from_the_page(page, url, folder, out, "comprehensive_lesson")
        second = browser.new_page()  # a second tab on the same batch, while it runs
        second.goto(page.url)
        for tab in (page, second):
            tab.wait_for_selector("#batch[data-status='done'][data-live='no']")
            assert tab.locator("#tasks tbody tr[data-stage='done']").count() == 2
            assert tab.inner_text("#count") == "2/2"
        second.close()
        assert sim.stats()["calls"]["generate"] == 2

        with page.expect_download() as download:
            page.click("#download")
        zipped = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
        lessons = out / "comprehensive_lesson"
        for name in ("algebra", "biology"):
            for suffix in (".md", ".json", ".html"):
                rel = f"comprehensive_lesson/{name}{suffix}"
                assert zipped.read(rel) == (lessons / f"{name}{suffix}").read_bytes()
        assert f"_reports/{batch_id}/summary.md" in zipped.namelist()

        page.click("#task-1 a.lesson")
        page.wait_for_url("**/files/**algebra.html")
        stamp = page.locator("a[data-t]").nth(1)
        seconds = float(stamp.get_attribute("data-t") or "nan")
        assert seconds > 0
        stamp.click()
        at = page.evaluate("document.getElementById('player').currentTime")
        assert at == pytest.approx(seconds, abs=0.5)
        src = page.evaluate("document.getElementById('player').currentSrc")
        assert src.endswith(f"{folder}/algebra.mp4")  # the relative link, served by batch
        # it loads on the opaque origin (the batch's capability, no cookie)
        page.wait_for_function("document.getElementById('player').readyState >= 1")
        assert page.evaluate("window.origin") == "null"  # cannot reach the dashboard's pages
        page.close()


def test_retry_a_failed_video_with_its_button(browser: Any, sim: Simulator, tmp_path: Path) -> None:
    sim.add_fault(Fault("safety", "generate", match="biology"))
    engine = engine_on(sim, tmp_path)
    folder = lectures(tmp_path / "videos")
    with in_thread(Dashboard(engine, simulated=True, parallel=2)) as url:
        page = browser.new_page()
        _start_from_the_page(page, url, folder, tmp_path / "out", "summary_report")
        page.wait_for_selector("#batch[data-status='partial'][data-live='no']")
        failed = page.locator("#tasks tbody tr[data-stage='failed']")
        assert failed.count() == 1 and "biology" in failed.inner_text()
        failed.locator("button.retry").click()
        page.wait_for_selector("#batch[data-status='done'][data-live='no']")
        assert page.locator("#tasks tbody tr[data-stage='done']").count() == 2
        assert page.locator("button.retry").count() == 0
        page.close()
    assert sim.stats()["calls"]["generate"] == 3
