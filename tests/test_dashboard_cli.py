"""``gs_videoreport serve`` as users run it: a real process that prints its URL, refuses
requests without the token, runs a batch started from the page, stops on a signal with
nothing lost (a second server on the same home shows and resumes it), and says in one
line why it cannot listen."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_kit import lectures

pytestmark = pytest.mark.timeout(90)


class Served:
    def __init__(self, home: Path, *args: str) -> None:
        env = {**os.environ, "GS_VIDEOREPORT_HOME": str(home)}
        command = [sys.executable, "-m", "gs_video_report", "serve", "--port", "0", *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the first line is the URL
        assert "http://127.0.0.1:" in line, line + self.process.stderr.read()  # type: ignore[union-attr]
        self.url = line.split(": ", 1)[1].strip()
        self.base, self.token = self.url.split("/?token=")

    def get(self, path: str, token: bool = True) -> tuple[int, bytes]:
        query = f"{'&' if '?' in path else '?'}token={self.token}" if token else ""
        try:
            with urllib.request.urlopen(self.base + path + query, timeout=20) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, form: dict[str, str]) -> str:
        data = urllib.parse.urlencode({"token": self.token, **form}).encode()

        class Keep(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        opener = urllib.request.build_opener(Keep)
        try:
            opener.open(urllib.request.Request(self.base + path, data=data), timeout=20)
        except urllib.error.HTTPError as exc:
            assert exc.code == 303, exc.read()
            return str(exc.headers["Location"])
        raise AssertionError("no redirect")

    def batch(self, batch_id: str) -> dict[str, Any]:
        status, body = self.get(f"/api/batches/{batch_id}")
        assert status == 200, body
        data: dict[str, Any] = json.loads(body)
        return data

    def until(self, batch_id: str, *statuses: str) -> dict[str, Any]:
        """The batch's event stream, read until it is in one of ``statuses``, idle."""
        return self.watch(batch_id, lambda b: b["status"] in statuses and not b["here"])

    def watch(self, batch_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        url = f"{self.base}/batches/{batch_id}/events?token={self.token}"
        with urllib.request.urlopen(url, timeout=30) as stream:
            for line in stream:
                if line.startswith(b"data: "):
                    data: dict[str, Any] = json.loads(line[6:])
                    if done(data):
                        return data
        raise AssertionError("the stream ended")

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        self.process.send_signal(signum)
        _, err = self.process.communicate(timeout=30)
        return self.process.returncode, err


def test_serve_runs_a_batch_and_a_restart_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = lectures(tmp_path / "videos")
    first = Served(home, "--simulate")
    try:
        assert first.get("/", token=False)[0] == 403
        status, page = first.get("/")
        assert status == 200 and b"Start a batch" in page
        location = first.post("/batches", {"input_dir": str(folder), "parallel": "2"})
        batch_id = location.rsplit("/", 1)[1]
        # hostile input: one line back, and no traceback on the terminal (checked below)
        assert first.get(f"/batches/{batch_id}/files{folder}/%00.mp4")[0] == 404
        assert first.get("/?error=%00")[0] == 400
    finally:
        code, err = first.stop(signal.SIGHUP)  # a closed terminal, at once: mid-way
    assert code == 0, err
    assert "dashboard stopped" in err and "Traceback" not in err
    second = Served(home, "--simulate")
    try:
        left = second.batch(batch_id)
        assert left["status"] in {"interrupted", "done"}  # stated, never "running"
        if left["status"] == "interrupted":
            second.post(f"/batches/{batch_id}/resume", {})
        done = second.until(batch_id, "done")
        assert [t["stage"] for t in done["tasks"]] == ["done"] * 2
        pages = sorted(p.name for p in (folder / "lessons").rglob("*.html"))
        assert pages == ["algebra.html", "biology.html"]
    finally:
        code, _ = second.stop(signal.SIGINT)
    assert code == 0


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "GS_VIDEOREPORT_HOME": str(tmp_path / "home")}
        result = subprocess.run(
            [sys.executable, "-m", "gs_video_report", "serve", "--simulate", "-p", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_killed_server_loses_nothing_the_next_one_resumes_it(tmp_path: Path) -> None:
    """SIGKILL while the page's batch runs: the next server shows it and its Resume takes
    the dead process's lease over at once; every video ends done, none paid twice
    (the lessons already written are not generated again)."""
    home = tmp_path / "home"
    folder = lectures(tmp_path / "videos")
    first = Served(home, "--simulate")
    location = first.post("/batches", {"input_dir": str(folder), "parallel": "1"})
    batch_id = location.rsplit("/", 1)[1]
    seen = first.watch(batch_id, lambda b: b["tasks"][0]["stage"] == "done")  # one of two
    first.stop(signal.SIGKILL)
    done_then = {t["video"] for t in seen["tasks"] if t["stage"] == "done"}
    written = {
        p: p.read_bytes() for p in (folder / "lessons").rglob("*.json") if p.stem in done_then
    }
    assert len(written) >= 1
    second = Served(home, "--simulate")
    try:
        left = second.batch(batch_id)
        assert left["tasks"][0]["stage"] == "done"
        # the lease of a process that is gone reads as what it is: resumable, not running
        assert left["status"] in ("interrupted", "done") and not left["running"]
        _, listing = second.get("/api/batches")
        assert json.loads(listing)["batches"][0]["status"] == left["status"]
        if left["status"] == "interrupted":
            second.post(f"/batches/{batch_id}/resume", {})
        done = second.until(batch_id, "done")
        assert [t["stage"] for t in done["tasks"]] == ["done"] * 2
        assert not done["error"]
        for path, data in written.items():  # its answer was kept, not asked for again
            assert path.read_bytes() == data
    finally:
        second.stop()
