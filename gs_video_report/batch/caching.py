"""Context caching for a video answered with several templates: whether it pays, and
the cache's life beside its tasks.

Without a cache every template's call pays the whole video as input. With one, the
video is written once (billed as input — the reference's assumption), each call reads
it at the cached rate, and the cache is billed for storage while it lives:

    no cache:  N·V·p_in          cache:  V·p_in + N·V·p_cached + V·storage·hours

``cache_choice`` is that comparison, pure. A cache holds the video only (never a
template's system instruction: a request that uses a cache may not set one, so each
template's instruction goes into its prompt — ``GeminiService.generate``). A cache that does not
pay is not made; the tasks of one video run back to back with the video first in the
request, so the implicit cache may still help.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from gs_video_report.batch.cost import Prices, estimate_input_tokens
from gs_video_report.batch.parts import input_limit, spans
from gs_video_report.catalog import MODELS, PricePoint
from gs_video_report.errors import ApiError, FileAccessError
from gs_video_report.models import Usage

if TYPE_CHECKING:
    from gs_video_report.batch.pipeline import PreparedVideo
    from gs_video_report.batch.planner import PlannedTask
    from gs_video_report.clock import Clock
    from gs_video_report.config import Settings
    from gs_video_report.services.gemini import GeminiService, VideoRef
    from gs_video_report.storage.checkpoint import CheckpointManager, TaskRow

logger = logging.getLogger(__name__)

CALL_S = 120.0  # expected time one template's call keeps the cache busy
MARGIN_S = 300.0  # the cache outlives the calls by this much (retries, slow answers)
REUSE_MARGIN_S = 60.0  # a cache left with less than this is not used again


@dataclass(frozen=True)
class CacheChoice:
    use: bool
    saving_usd: float | None  # expected, against no cache (negative: it would cost more)
    ttl_s: float
    reason: str


def cache_ttl_s(uses: int) -> float:
    """How long a cache for ``uses`` calls is asked to live: deleted when they are done,
    the TTL only bounds what a crash leaves behind (and what storage may cost)."""
    return MARGIN_S + CALL_S * max(1, uses)


def cache_choice(
    price: PricePoint | None, *, video_tokens: int, uses: int, min_tokens: int
) -> CacheChoice:
    """Cache the video for ``uses`` calls? Only where the price table has cache prices,
    the video reaches the model's minimum and the saving is positive."""
    ttl = cache_ttl_s(uses)
    if uses < 2:
        return CacheChoice(False, None, ttl, "one template")
    if price is None or price.cached_input is None or price.cache_storage_hour is None:
        return CacheChoice(False, None, ttl, "no cache prices for the model")
    if video_tokens < min_tokens:
        return CacheChoice(False, None, ttl, f"video below the {min_tokens:,}-token minimum")
    million = 1_000_000
    plain = uses * video_tokens * price.input / million
    cached = (
        video_tokens * price.input
        + uses * video_tokens * price.cached_input
        + video_tokens * price.cache_storage_hour * ttl / 3600
    ) / million
    saving = plain - cached
    if saving <= 0:
        return CacheChoice(False, saving, ttl, "storage and writing cost more than it saves")
    return CacheChoice(True, saving, ttl, f"saves ~${saving:.4f} over {uses} calls")


def task_cost(
    prices: Prices, model: str, usage: Usage, cache_usd: float
) -> tuple[float | None, float | None]:
    """A task's cost (cached input at the cached rate, plus the cache it made, if any)
    and what caching saved it against the same calls with no cache (None: no cache)."""
    cost = prices.of_usage(model, usage)
    if cost is None or not (usage.cached_tokens or cache_usd):
        return cost, None
    plain = prices.of_usage(model, replace(usage, cached_tokens=0)) or 0.0
    return cost + cache_usd, plain - cost - cache_usd


def storage_usd(price: PricePoint | None, tokens: int, ttl_s: float) -> float:
    """What keeping ``tokens`` cached for ``ttl_s`` costs (billed on the TTL)."""
    if price is None or price.cache_storage_hour is None:
        return 0.0
    return tokens * price.cache_storage_hour * ttl_s / 3600 / 1_000_000


def cacheable(video: PreparedVideo, settings: Settings) -> bool:
    """One cache serves a video's calls only if they see the video alike: one request
    each (no parts), no clip (the cache holds the whole video at the template's fps)."""
    generation = video.template.generation
    if generation.start_offset_s is not None or generation.end_offset_s is not None:
        return False
    limit = input_limit(settings.model)
    return not spans(video.duration_s, settings.video.part_minutes * 60, generation, limit)


@dataclass(frozen=True)
class SharingEstimate:
    """What ``--dry-run`` shows of a plan's shared uploads and caches."""

    uploads: int  # one a (video file); YouTube videos need none
    calls: int
    cached_videos: int  # videos an explicit cache pays for
    saving_usd: float  # expected, by those caches


def estimate_sharing(tasks: list[PlannedTask], settings: Settings, calls: int) -> SharingEstimate:
    groups: dict[str, list[PlannedTask]] = {}
    for task in tasks:
        if task.video.source.path is not None:
            groups.setdefault(task.content_fingerprint, []).append(task)
    price = Prices(settings.prices).on(settings.model)
    info = MODELS.get(settings.model)
    cached, saving = 0, 0.0
    for group in groups.values():
        video = group[0].video
        if len({t.video.template.name for t in group}) < 2 or not cacheable(video, settings):
            continue
        choice = cache_choice(
            price,
            video_tokens=estimate_input_tokens(video.duration_s, video.template.generation, ""),
            uses=len(group),
            min_tokens=info.cache_min_tokens if info else 4096,
        )
        if choice.use and choice.saving_usd is not None:
            cached, saving = cached + 1, saving + choice.saving_usd
    return SharingEstimate(len(groups), calls, cached, saving)


class CacheKeeper:
    """The caches of a pool's videos: made by the first of a video's tasks when it pays,
    reused by the others (and by a resume while it lives), deleted by the last."""

    def __init__(
        self, store: CheckpointManager, clock: Clock, prices: Prices, settings: Settings
    ) -> None:
        self.store = store
        self.clock = clock
        self.prices = prices
        self.settings = settings
        self._made: set[str] = set()

    async def attach(
        self, task: TaskRow, video: PreparedVideo, ref: VideoRef, service: GeminiService
    ) -> tuple[VideoRef, float]:
        """``ref`` pointing at the video's cache where one is there or pays, and what
        making it cost this task (writing and storage; 0 when none was made now)."""
        if not ref.file_name:
            return ref, 0.0
        now = self.clock.time()
        if task.cache_name:
            if task.cache_name in self._made:  # made by this process, for these tasks
                return replace(ref, cache=task.cache_name), 0.0
            if (task.cache_expires_at or 0) > now + REUSE_MARGIN_S:
                try:
                    await service.get_cache(task.cache_name)  # left by an earlier run?
                    return replace(ref, cache=task.cache_name), 0.0
                except FileAccessError:
                    pass  # expired or deleted on the server
            else:  # too close to its end to serve every call: not left to bill storage
                await _delete_quietly(service, task.cache_name)
            await self.store.forget_cache(task.cache_name, now)
        uses = await self.store.upload_templates(ref.file_name)
        if len(set(uses)) < 2 or not cacheable(video, self.settings):
            return ref, 0.0
        price = self.prices.on(task.model)
        info = MODELS.get(task.model)
        tokens = estimate_input_tokens(video.duration_s, video.template.generation, "")
        choice = cache_choice(
            price,
            video_tokens=tokens,
            uses=len(uses),
            min_tokens=info.cache_min_tokens if info else 4096,
        )
        if not choice.use:
            logger.debug("%s: no context cache (%s)", task.display_name, choice.reason)
            return ref, 0.0
        try:
            cache = await service.create_cache(
                model=task.model,
                video=ref,
                fps=video.template.generation.fps,
                ttl_s=choice.ttl_s,
                display_name=f"gs_videoreport {task.content_fingerprint[:16]}",
            )
        except ApiError as exc:  # the calls go on without one: dearer, never wrong
            logger.info("%s: no context cache: %s", task.display_name, exc)
            return ref, 0.0
        expires = cache.expires_at.timestamp() if cache.expires_at else now + choice.ttl_s
        await self.store.share_cache(ref.file_name, cache.name, expires, self.clock.time())
        self._made.add(cache.name)
        logger.info("%s: cached for %d templates (%s)", task.display_name, len(uses), choice.reason)
        written = self.prices.usd(task.model, cache.tokens, 0) or 0.0
        return replace(ref, cache=cache.name), written + storage_usd(
            price, cache.tokens, choice.ttl_s
        )

    async def release(self, task: TaskRow, ref: VideoRef, service: GeminiService) -> None:
        """After the task's "done": the cache goes once no other unfinished task uses it."""
        if not ref.cache or (await self.store.task(task.id)).cache_name != ref.cache:
            return  # none, or another of the video's tasks deleted it already
        if await self.store.cache_users(ref.cache, besides=task.id):
            return
        await _delete_quietly(service, ref.cache)
        await self.store.forget_cache(ref.cache, self.clock.time())


async def sweep_caches(
    store: CheckpointManager, batch_id: str, services: Mapping[str, GeminiService], now: float
) -> int:
    """At the start of a run (a resume): delete the batch's caches no task needs any
    more — storage is billed by the hour, and their TTL may still be minutes long."""
    swept = 0
    for name, key in await store.idle_caches(batch_id):
        service = services.get(key or "")
        if service is not None:
            await _delete_quietly(service, name)
            swept += 1
        await store.forget_cache(name, now)
    return swept


async def _delete_quietly(service: GeminiService, name: str) -> None:
    try:
        await service.delete_cache(name)
    except ApiError as exc:  # its TTL is short: it ends soon anyway
        logger.info("could not delete %s (%s); it expires with its TTL", name, exc)
