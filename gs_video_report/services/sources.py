"""Turn what the user typed into a ``VideoSource``: a local file or a public YouTube URL."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qs, quote_from_bytes, unquote_to_bytes, urlparse

from gs_video_report.errors import InputError
from gs_video_report.models import SourceKind, VideoSource

_YT_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_YT_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com"}
_YT_SHORT_HOSTS = {"youtu.be", "www.youtu.be"}


# A file name that is not valid UTF-8 (an old Windows archive on Linux) cannot go into the
# database, JSON or Markdown as it is. Its identity is the path's bytes, percent-encoded,
# behind this prefix; parse_source turns it back into the same path.
_BYTES_PREFIX = "fsbytes:"


def printable(text: str) -> str:
    """``text`` as valid UTF-8 (undecodable bytes become U+FFFD): for names shown and
    written, never for opening the file."""
    return os.fsencode(text).decode("utf-8", "replace")


def path_identity(path: Path) -> str:
    text = str(path)
    if printable(text) == text:
        return text
    return _BYTES_PREFIX + quote_from_bytes(os.fsencode(text), safe="/")


def looks_like_url(text: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text.strip()))


def youtube_id(url: str) -> str | None:
    """The 11-character video id of a YouTube watch/short/shorts/live/embed URL, else None."""
    parsed = urlparse(url.strip())
    host = (parsed.hostname or "").lower()
    if parsed.scheme not in {"http", "https"}:
        return None
    candidate: str | None = None
    if host in _YT_SHORT_HOSTS:
        candidate = parsed.path.lstrip("/").split("/")[0]
    elif host in _YT_HOSTS:
        parts = [p for p in parsed.path.split("/") if p]
        if parts[:1] == ["watch"]:
            candidate = (parse_qs(parsed.query).get("v") or [""])[0]
        elif len(parts) >= 2 and parts[0] in {"shorts", "live", "embed", "v"}:
            candidate = parts[1]
    if candidate and _YT_ID.match(candidate):
        return candidate
    return None


def parse_source(text: str, *, base_dir: Path | None = None) -> VideoSource:
    """A URL must be a public YouTube video; anything else is a local path (not checked here)."""
    raw = text.strip()
    if not raw:
        raise InputError("empty video argument")
    if raw.startswith(_BYTES_PREFIX):
        raw = os.fsdecode(unquote_to_bytes(raw[len(_BYTES_PREFIX) :]))
    elif looks_like_url(raw):
        vid = youtube_id(raw)
        if vid is None:
            host = urlparse(raw).hostname or raw
            if host.lower().endswith("youtube.com") or host.lower().endswith("youtu.be"):
                raise InputError(
                    f"not a YouTube video URL: {raw} "
                    "(expected youtube.com/watch?v=ID or youtu.be/ID)"
                )
            raise InputError(
                f"unsupported URL: {raw} — only public YouTube videos can be passed as URLs; "
                "download other videos and pass the file"
            )
        return VideoSource(
            kind=SourceKind.YOUTUBE,
            identity=f"https://www.youtube.com/watch?v={vid}",
            display_name=f"youtube-{vid}",
            youtube_id=vid,
        )
    path = Path(raw).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    absolute = Path(path).absolute()
    return VideoSource(
        kind=SourceKind.FILE,
        identity=path_identity(absolute),
        display_name=printable(absolute.stem),
        path=absolute,
    )
