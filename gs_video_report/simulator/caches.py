"""The simulator's context caches (``cachedContents``): create, get, list, delete, with a
TTL on the simulator's clock, and their use by generateContent.

As the real API: a cache belongs to the key that made it and to its model; an expired or
deleted one is "not found (or permission denied)" (403); a generate request naming a
cache may not set its own system instruction (400); usage reports the cached part of
the prompt as ``cachedContentTokenCount`` (and still counts it in ``promptTokenCount``).
Counters: ``caches_created``, ``caches_deleted``, ``caches_expired``, ``caches_live``,
``cached_generates``.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gs_video_report.simulator.state import SimState

_VERSION = r"(?:v1beta|v1|v1alpha)"
ROUTES = [
    ("POST", re.compile(rf"^/{_VERSION}/cachedContents$"), "create_cache"),
    ("GET", re.compile(rf"^/{_VERSION}/cachedContents$"), "list_caches"),
    ("GET", re.compile(rf"^/{_VERSION}/cachedContents/(?P<cid>[a-z0-9-]+)$"), "get_cache"),
    ("DELETE", re.compile(rf"^/{_VERSION}/cachedContents/(?P<cid>[a-z0-9-]+)$"), "delete_cache"),
]
DEFAULT_TTL_S = 3600.0  # the API's default when none is given


@dataclass
class SimCache:
    id: str
    owner: str
    model: str
    contents: list[dict[str, Any]]
    display_name: str
    created: float
    expires: float
    tokens: int = 0  # set by the handler, which knows the video's length
    deleted: bool = False

    @property
    def name(self) -> str:
        return f"cachedContents/{self.id}"


@dataclass
class CacheBook:
    clock: Callable[[], float]
    lock: threading.RLock
    caches: dict[str, SimCache] = field(default_factory=dict)
    created: int = 0
    deleted: int = 0
    cached_generates: int = 0

    def add(
        self, owner: str, model: str, contents: list[Any], display: str, ttl: float
    ) -> SimCache:
        now = self.clock()
        cache = SimCache(secrets.token_hex(6), owner, model, contents, display, now, now + ttl)
        with self.lock:
            self.caches[cache.id] = cache
            self.created += 1
        return cache

    def live(self, cache_id: str, owner: str) -> SimCache | None:
        with self.lock:
            cache = self.caches.get(cache_id)
            if cache is None or cache.deleted or cache.owner != owner:
                return None
            return cache if self.clock() < cache.expires else None

    def delete(self, cache: SimCache) -> None:
        with self.lock:
            cache.deleted = True
            self.deleted += 1

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            now = self.clock()
            gone = [c for c in self.caches.values() if not c.deleted and c.expires <= now]
            live = [c for c in self.caches.values() if not c.deleted and c.expires > now]
            return {
                "caches_created": self.created,
                "caches_deleted": self.deleted,
                "caches_expired": len(gone),
                "caches_live": len(live),
                "cached_generates": self.cached_generates,
            }


def _model_name(model: str) -> str:
    return model.removeprefix("models/")


def _ttl(body: dict[str, Any]) -> float:
    text = str(body.get("ttl") or "")
    if text.endswith("s"):
        return float(text[:-1])
    expire = body.get("expireTime")
    if expire:
        return datetime.fromisoformat(str(expire).replace("Z", "+00:00")).timestamp()
    return DEFAULT_TTL_S


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class CacheRoutes:
    """Handler methods for the cache routes; mixed into the simulator's ``Handler``,
    which provides ``_owner``, ``_body``, ``_send``, ``_error``, ``_video_subject``."""

    state: SimState  # set on the handler class built per server

    @property
    def caches(self) -> CacheBook:
        return self.state.caches

    # (the Handler's helpers; typed loosely: this module must not import the server)
    _owner: Callable[[], str]
    _body: Callable[[], bytes]
    _send: Callable[..., None]
    _error: Callable[..., None]
    _video_subject: Callable[[str, str], tuple[str | None, float]]

    def _cache_json(self, cache: SimCache) -> dict[str, Any]:
        return {
            "name": cache.name,
            "model": f"models/{cache.model}",
            "displayName": cache.display_name,
            "createTime": _iso(cache.created),
            "updateTime": _iso(cache.created),
            "expireTime": _iso(cache.expires),
            "usageMetadata": {"totalTokenCount": cache.tokens},
        }

    def _not_found(self, cache_id: str) -> None:
        self._error(
            403, "PERMISSION_DENIED", f"CachedContent not found (or permission denied): {cache_id}"
        )

    def _create_cache(self, match: re.Match[str], parsed: Any) -> None:
        import json

        body = json.loads(self._body() or b"{}")
        owner = self._owner()
        contents = body.get("contents") or []
        if body.get("systemInstruction") is None and not contents:
            self._error(400, "INVALID_ARGUMENT", "A cached content needs contents.")
            return
        parts = [p for c in contents for p in c.get("parts", [])]
        video = next((p for p in parts if "fileData" in p or "file_data" in p), None)
        tokens = sum(len(p.get("text", "")) // 4 for p in parts)
        if video is not None:
            data = video.get("fileData") or video.get("file_data") or {}
            uri = data.get("fileUri") or data.get("file_uri") or ""
            subject, duration = self._video_subject(uri, owner)
            if subject is None:
                return  # answered: the file is missing or not ACTIVE
            clip = video.get("videoMetadata") or video.get("video_metadata") or {}
            fps = float(clip.get("fps") or 1.0)
            tokens += int(duration * (66 * fps + 32))
        minimum = 1024
        if tokens < minimum:
            self._error(
                400,
                "INVALID_ARGUMENT",
                "Cached content is too small. "
                f"total_token_count={tokens}, min_total_token_count={minimum}",
            )
            return
        ttl = _ttl(body)
        cache = self.caches.add(
            owner,
            _model_name(str(body.get("model", ""))),
            contents,
            body.get("displayName", ""),
            ttl,
        )
        cache.tokens = tokens
        self._send(200, self._cache_json(cache))

    def _get_cache(self, match: re.Match[str], parsed: Any) -> None:
        self._body()
        cache = self.caches.live(match.group("cid"), self._owner())
        if cache is None:
            self._not_found(match.group("cid"))
            return
        self._send(200, self._cache_json(cache))

    def _list_caches(self, match: re.Match[str], parsed: Any) -> None:
        self._body()
        owner = self._owner()
        with self.caches.lock:
            ids = list(self.caches.caches)
        mine = [c for c in (self.caches.live(i, owner) for i in ids) if c is not None]
        self._send(200, {"cachedContents": [self._cache_json(c) for c in mine]})

    def _delete_cache(self, match: re.Match[str], parsed: Any) -> None:
        self._body()
        cache = self.caches.live(match.group("cid"), self._owner())
        if cache is None:
            self._not_found(match.group("cid"))
            return
        self.caches.delete(cache)
        self._send(200, {})

    def _with_cache(self, request: dict[str, Any], owner: str, model: str) -> dict[str, Any] | None:
        """The request with its cache's contents in front (as the model sees it), or None
        once an error has been answered. A request without a cache comes back as is."""
        name = request.get("cachedContent")
        if not name:
            return request
        if request.get("systemInstruction") or request.get("tools"):
            self._error(
                400,
                "INVALID_ARGUMENT",
                "CachedContent can not be used with GenerateContent request setting "
                "system_instruction, tools or tool_config.",
            )
            return None
        cache_id = str(name).rsplit("/", 1)[-1]
        cache = self.caches.live(cache_id, owner)
        if cache is None:
            self._not_found(cache_id)
            return None
        if cache.model != _model_name(model):
            self._error(
                400,
                "INVALID_ARGUMENT",
                "Cached content can be only used with model it was created for.",
            )
            return None
        with self.caches.lock:
            self.caches.cached_generates += 1
        cached_parts = [p for c in cache.contents for p in c.get("parts", [])]
        own = request.get("contents") or [{"role": "user", "parts": []}]
        merged = [{"role": "user", "parts": cached_parts + list(own[0].get("parts", []))}]
        return {**request, "contents": merged + list(own[1:]), "_cached": True}
