"""The HTML lesson page: a hostile answer cannot inject markup or script, timestamps seek
the player, local videos are linked relatively, YouTube sources are embedded."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from gs_video_report.models import Usage
from gs_video_report.services.formatter import LessonMeta
from gs_video_report.services.html import render_page
from gs_video_report.services.sources import parse_source
from gs_video_report.services.templates import TemplateRegistry

EVIL = '<script>alert(1)</script><img src=x onerror="alert(2)"> [x](javascript:alert(3))'


class Page(HTMLParser):
    """Every tag with its attributes, and the text of each script."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]


def _answer(text: str = "Hello") -> dict[str, Any]:
    return {
        "title": f"</title>{EVIL}",
        "summary": EVIL,
        "speakers": [{"label": '"><script>alert(4)</script>', "description": EVIL}],
        "transcript": [
            {"start_seconds": 0, "speaker": "讲师", "text": text},
            {"start_seconds": 75, "speaker": "<b>x</b>", "text": EVIL},
        ],
        "visual_notes": [{"start_seconds": 10, "description": "<iframe src=//evil>"}],
        "key_terms": [{"term": "[a](vbscript:x)", "explanation": "<svg onload=alert(5)>"}],
        "people": [],
        "learnings": [EVIL],
        "key_moments": [{"start_seconds": 75, "description": "moment"}],
    }


def _meta(source: str, duration: float | None = 90.0) -> LessonMeta:
    template = TemplateRegistry.with_builtins().get("chinese_transcript")
    return LessonMeta(
        source=parse_source(source),
        duration_s=duration,
        template=template,
        model="gemini-3.8-flash",
        created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        usage=Usage(),
        simulated=True,
        parameters={},
    )


def test_hostile_answer_text_is_shown_not_run(tmp_path: Path) -> None:
    video = tmp_path / "videos" / "lecture.mp4"
    html = render_page(_answer(), _meta(str(video)), tmp_path / "out" / "lecture.html")
    page = Page(html)
    script = Path(__file__).parents[1] / "gs_video_report/services/pages/lesson.js"
    assert page.scripts == [script.read_text(encoding="utf-8")]  # ours, and only ours
    for tag, attrs in page.tags:
        assert tag not in {"img", "svg", "iframe"}, (tag, attrs)  # the answer's stay text
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for name in ("href", "src"):
            assert not attrs.get(name, "").lower().startswith(("javascript:", "vbscript:"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # visible, escaped
    # the CSP allows exactly our script, by its hash
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    csp = next(a["content"] for a in page.all("meta") if "http-equiv" in a)
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp


def test_local_video_player_and_timestamps_seek_it(tmp_path: Path) -> None:
    video = tmp_path / "course" / "week 1" / "odd #name? 50%.mp4"
    page_path = tmp_path / "course" / "out" / "chinese_transcript" / "odd.html"
    page = Page(render_page(_answer(), _meta(str(video)), page_path))
    (player,) = page.all("video")
    assert player["id"] == "player" and not player["src"].startswith(("/", "file:"))
    assert (page_path.parent / unquote(player["src"])).resolve() == video.resolve()
    stamps = [a for a in page.all("a") if a.get("class") == "ts"]
    assert [a["data-t"] for a in stamps] == ["0", "75", "10", "75"]
    assert all(a["href"] == f"{player['src']}#t={a['data-t']}" for a in stamps)  # no-JS
    (track,) = page.all("track")
    vtt = base64.b64decode(track["src"].split(",", 1)[1]).decode()
    assert vtt.startswith("WEBVTT") and "00:01:15.000 --> 00:01:30.000" in vtt  # ends at 90 s
    assert not page.all("iframe")


def test_youtube_source_embeds_the_youtube_player(tmp_path: Path) -> None:
    meta = _meta("https://youtu.be/dQw4w9WgXcQ", duration=None)
    page = Page(render_page(_answer(), meta, tmp_path / "yt.html"))
    (frame,) = page.all("iframe")
    assert frame["data-embed"] == "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ"
    assert frame["src"].startswith(frame["data-embed"] + "?start=0")
    stamps = [a for a in page.all("a") if a.get("class") == "ts"]
    assert stamps[1]["href"] == "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=75s"
    assert not page.all("video")


def test_page_is_for_phones_and_paper(tmp_path: Path) -> None:
    html = render_page(_answer(), _meta(str(tmp_path / "v.mp4")), tmp_path / "v.html")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "@media print" in html and "@media (max-width" in html
    assert '<html lang="zh">' in html
    assert not re.search(r"""(src|href)=["']https?://(?!www\.youtube)""", html)  # no fetches


def test_an_answer_s_image_is_never_fetched_and_a_fence_swallows_nothing(tmp_path: Path) -> None:
    answer = _answer()
    answer["summary"] = "see ![p](https://evil.example/p.png)\n\n- item\n\n  ```\n  code"
    answer["learnings"] = ["x ![q](http://evil.example/q.png)", "the last learning"]
    html = render_page(answer, _meta(str(tmp_path / "v.mp4")), tmp_path / "out" / "v.html")
    page = Page(html)
    assert page.all("img") == []  # an image is a link, never loaded
    assert "https://evil.example/p.png" in [a.get("href") for a in page.all("a")]
    csp = next(a["content"] for a in page.all("meta") if "http-equiv" in a)
    assert "img-src 'self' data:;" in csp and "img-src *" not in csp
    assert page.all("pre") == []  # the answer's fence opened no code block...
    assert "the last learning" in html and "<h2>" in html.split("code", 1)[1]  # ...to the end
