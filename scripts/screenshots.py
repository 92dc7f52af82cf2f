"""Regenerate the dashboard's screenshots in docs/ (docs/dashboard.md shows them).

    python scripts/screenshots.py            # needs /usr/bin/chromium and playwright

Everything runs here, with nothing of yours touched: a temporary home (state database),
the bundled sample videos copied to a temporary folder, the built-in Gemini simulator
(one video made to fail, so the page shows a Retry button) and the dashboard on a
loopback port, driven by headless Chromium as the browser tests drive it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
sys.path.insert(0, str(REPO))  # the browser set-up is the browser tests' own


def main() -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="gs-shots-") as tmp:
        work = Path(tmp)
        os.environ["GS_VIDEOREPORT_HOME"] = str(work / "home")
        from gs_video_report.batch.api import Engine
        from gs_video_report.config import ApiKey, PoolKey, load_settings
        from gs_video_report.simulator import SIMULATED_KEY, Fault, Simulator
        from gs_video_report.web import Dashboard
        from gs_video_report.web.app import in_thread
        from tests.dashboard_kit import launch_chromium

        videos = work / "lectures"
        shutil.copytree(REPO / "examples" / "videos", videos)
        with Simulator() as sim:
            sim.set_limits(polls_until_active=0)
            sim.add_fault(Fault("safety", "generate", match="color_theory"))
            settings = load_settings(env={"GS_VIDEOREPORT_BASE_URL": sim.url}, cwd=work)
            engine = Engine(settings, keys=[PoolKey.of(ApiKey(SIMULATED_KEY, "simulator"))])
            dashboard = Dashboard(engine, simulated=True, parallel=2)
            with in_thread(dashboard) as url, sync_playwright() as playwright:
                viewport = {"width": 1200, "height": 800}
                context = launch_chromium(playwright, work / "profile", viewport=viewport)
                page = context.new_page()
                page.goto(url)
                page.fill("#input_dir", str(videos))
                page.fill("#output_dir", str(work / "lessons"))
                page.select_option("#template", "comprehensive_lesson")
                page.click("#start-button")
                page.wait_for_selector("#batch[data-status='partial'][data-live='no']")
                page.screenshot(path=DOCS / "dashboard-batch.png", full_page=True)
                page.click("a.home")
                page.screenshot(path=DOCS / "dashboard-batches.png", full_page=True)
                page.go_back()
                page.click("#tasks a.lesson >> nth=0")
                page.wait_for_load_state()
                page.screenshot(path=DOCS / "dashboard-lesson.png")
                context.close()
    for name in ("batches", "batch", "lesson"):
        print(f"wrote docs/dashboard-{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
