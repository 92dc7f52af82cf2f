"""What the dashboard's tests share: an engine on the simulator, a folder of lectures, and
the dashboard listening on loopback (in the test's loop, or in a thread for a browser)."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from gs_video_report.batch.api import Engine
from gs_video_report.config import ApiKey, PoolKey, load_settings
from gs_video_report.simulator import Simulator
from gs_video_report.web import Dashboard
from tests.conftest import SAMPLES, TEST_KEY
from tests.virtual_time import SteppingClock

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, never a browser Playwright downloads
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright: Any, profile: Path, **options: Any) -> Any:
    """The system's Chromium, headless, on a fresh profile (``profile``, a new folder)."""
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, **options
    )
    context.set_default_timeout(30_000)
    return context


def engine_on(sim: Simulator, tmp_path: Path, key: str = TEST_KEY, **config: Any) -> Engine:
    sim.set_limits(polls_until_active=0)
    env = {"GS_VIDEOREPORT_BASE_URL": sim.url}
    config_file = None
    if config:
        config_file = tmp_path / "config.yaml"
        config_file.write_text(json.dumps(config))  # JSON is YAML
    settings = load_settings(config_path=config_file, env=env, cwd=tmp_path)
    return Engine(
        settings,
        keys=[PoolKey.of(ApiKey(key, "test"))],
        home=tmp_path / "home",
        clock=SteppingClock().clock,
    )


def lectures(root: Path, names: tuple[str, ...] = ("algebra", "biology")) -> Path:
    """A folder of distinct videos (each its own content, so none reuses another's)."""
    root.mkdir(parents=True, exist_ok=True)
    sources = ["intro_to_fractions.mp4", "photosynthesis_basics.mp4"]
    for i, name in enumerate(names):
        target = root / f"{name}.mp4"
        shutil.copy(SAMPLES / sources[i % 2], target)
        with open(target, "ab") as handle:
            handle.write(f"\0lecture {name}".encode())
    return root


class Client:
    """A browser-like client of a running dashboard: real HTTP on loopback, the token
    from the printed URL, then its cookie."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self.session = session
        self.base = base
        self.token = token
        self.seen: list[tuple[str, int]] = []  # (status, finished) of each update streamed

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.session.get(self.base + path, allow_redirects=False, **kw)

    async def post(self, path: str, data: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        form = {"token": self.token, **(data or {})}
        return await self.session.post(self.base + path, data=form, allow_redirects=False)

    async def snapshot(self, batch_id: str) -> dict[str, Any]:
        async with await self.get(f"/api/batches/{batch_id}") as response:
            assert response.status == 200, await response.text()
            data: dict[str, Any] = await response.json()
            return data

    async def until(self, batch_id: str, status: str, seconds: float = 30) -> dict[str, Any]:
        """Read the batch's event stream until it says ``status`` (and nothing runs)."""
        timeout = aiohttp.ClientTimeout(total=seconds)
        async with await self.get(f"/batches/{batch_id}/events", timeout=timeout) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for line in response.content:
                if line.startswith(b"data: "):
                    data: dict[str, Any] = json.loads(line[6:])
                    self.seen.append((data["status"], data["finished"]))
                    if data["status"] == status and not data["here"]:
                        return data
        raise AssertionError(f"the stream ended before {batch_id} was {status}")

    async def start(self, folder: Path, **form: str) -> str:
        async with await self.post("/batches", {"input_dir": str(folder), **form}) as response:
            assert response.status == 303, await response.text()
            location = response.headers["Location"]
            assert location.startswith("/batches/"), location
            return location.removeprefix("/batches/")


@asynccontextmanager
async def running(engine: Engine, *, simulated: bool = True) -> AsyncIterator[Client]:
    dashboard = Dashboard(engine, simulated=simulated, parallel=2)
    url = await dashboard.start("127.0.0.1", 0)
    base = url.split("/?token=")[0]
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
    try:
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            async with session.get(url) as first:  # the printed URL sets the cookie
                assert first.status == 200
            yield Client(session, base, dashboard.token)
    finally:
        await dashboard.stop()
