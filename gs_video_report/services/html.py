"""A lesson as one self-contained HTML page: its video in a player, every timestamp a
link that seeks it, readable on a phone and on paper.

The body is the template's own layout (the Markdown the ``.md`` lesson has), rendered by
markdown-it with raw HTML off: the answer is untrusted text, so anything in it that looks
like a tag is shown as text, and links with a ``javascript:`` (or other script) scheme are
not made. The page around it is a Jinja2 template with autoescape. The page's one inline
script is allowed by its hash in the page's Content-Security-Policy, so a script that got
in anyway would not run. CSS and script are inline; nothing is fetched but the video (a
path relative to the page, so the folder can be moved with its videos) or, for a YouTube
source, YouTube's embedded player: an image in an answer is a link, never loaded, and
the policy allows no remote image.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, MutableMapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markupsafe import Markup

from gs_video_report.models import mmss
from gs_video_report.services import subtitles
from gs_video_report.services.formatter import LessonFormatter, LessonMeta, timestamp_target

_PAGES = Path(__file__).with_name("pages")
_TIMESTAMP = re.compile(r"#t=(\d+)")  # what the body's ts() writes; made a real link below
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
YOUTUBE_EMBED = "https://www.youtube-nocookie.com/embed/"


@cache
def _assets() -> tuple[jinja2.Template, str, str]:
    # Our own page templates, but they render untrusted answer text: sandboxed anyway, so
    # a value can never reach attributes or methods it should not.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(_PAGES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    script = (_PAGES / "lesson.js").read_text(encoding="utf-8")
    style = (_PAGES / "lesson.css").read_text(encoding="utf-8")
    return env.get_template("lesson.html.j2"), script, style


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'sha256-{digest}'",
            "style-src 'unsafe-inline'",
            "media-src * data:",  # the video beside the page (file: or http), the subtitles
            "img-src 'self' data:",  # never a remote image (an answer's, a tracker)
            f"frame-src {YOUTUBE_EMBED.rsplit('/', 2)[0]}/",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _link_open(
    renderer: RendererHTML,
    tokens: Sequence[Token],
    idx: int,
    options: Any,
    env: MutableMapping[str, Any],
) -> str:
    token = tokens[idx]
    href = str(token.attrGet("href") or "")
    found = _TIMESTAMP.fullmatch(href)
    if found:
        seconds = int(found[1])
        token.attrSet("href", env["target"](seconds))
        token.attrSet("data-t", str(seconds))
        token.attrSet("class", "ts")
    else:
        token.attrSet("rel", "noopener noreferrer")
    return renderer.renderToken(tokens, idx, options, env)


@cache
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    # an answer's text is not the page's markup: a ``` in it would open a code block that
    # swallows the rest of the lesson, and ![x](https://…) would fetch a remote image (a
    # tracker) — the layouts use neither, so both stay text (the image as a plain link)
    md.disable(["fence", "image"])
    md.add_render_rule("link_open", _link_open)
    return md


def _track(answer: Mapping[str, Any], meta: LessonMeta) -> str | None:
    """The answer's subtitles as a ``data:`` URL: they show in the player also when the
    page is opened from disk (browsers load no ``file:`` track beside a ``file:`` page)."""
    subs = subtitles.from_answer(meta.template.schema, answer, meta.duration_s)
    if subs is None or not subs.cues:
        return None
    vtt = base64.b64encode(subtitles.to_vtt(subs).encode("utf-8")).decode("ascii")
    return f"data:text/vtt;charset=utf-8;base64,{vtt}"


def render_page(answer: Mapping[str, Any], meta: LessonMeta, page_path: Path) -> str:
    """The page, as it is to be opened from ``page_path`` (the video link is relative)."""
    formatter = LessonFormatter(meta.template)
    source = meta.source

    def target(seconds: int) -> str:
        return timestamp_target(source, page_path, seconds)

    body = formatter.body(answer, meta, page_path, lambda s: f"[{mmss(s)}](#t={s})")
    html_body = _markdown().render(body, {"target": target})
    page, script, style = _assets()
    title = formatter.title(answer, source)
    local = target(0).removesuffix("#t=0") if not source.is_youtube else None
    return page.render(
        lang="zh" if _CJK.search(body) else "en",
        csp=_csp(script),
        title=title,
        style=Markup(style),
        script=Markup(script),
        body=Markup(html_body),
        source_name=source.identity if source.is_youtube else source.display_name,
        source_href=source.identity if source.is_youtube else local,
        duration=mmss(meta.duration_s) if meta.duration_s is not None else None,
        template=meta.template.name,
        template_version=meta.template.version,
        model=meta.model,
        created=meta.created.isoformat(timespec="seconds"),
        simulated=meta.simulated,
        youtube_id=source.youtube_id,
        embed=f"{YOUTUBE_EMBED}{source.youtube_id}" if source.youtube_id else None,
        video_src=local,
        subtitles=None if source.is_youtube else _track(answer, meta),
    )
