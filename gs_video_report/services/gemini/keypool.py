"""A pool of Gemini API keys: health, selection, and a small public API.

Health is per key (successes, failures by class, consecutive failures, cooldown, disabled
with the reason); quotas are per Google Cloud project, so a 429 cools down every key of
the key's project. A cooled-down key comes back on its own; a disabled key (invalid,
permission denied) stays out until ``enable``. The pool never holds a key in anything it
prints: keys are named by fingerprint.

The batch uses the pool for selection and health (and persists it); people who script
Gemini themselves use it directly::

    pool = KeyPool.from_keys_file("keys.txt")
    answer = await pool.run(lambda client: client.aio.models.generate_content(...))
    answer = pool.run_sync(lambda client: client.models.generate_content(...))

    with pool.client() as client:         # records success or failure of the block
        client.models.generate_content(...)

    @pool.retrying()
    def summarise(client, text): ...

``fn`` gets a fresh ``genai.Client`` per attempt; a key-level error (invalid key,
permission denied, quota) moves the next attempt to another key; other retryable errors
back off (RetryInfo honoured) up to ``max_retries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

from gs_video_report.config import (
    ApiSettings,
    PoolKey,
    Settings,
    load_settings,
    read_keys_file,
    resolve_keys,
)
from gs_video_report.errors import (
    ApiError,
    AuthError,
    GsVideoReportError,
    QuotaScope,
    RateLimitError,
)
from gs_video_report.retry import RetryPolicy

if TYPE_CHECKING:
    from google import genai

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_PACIFIC = ZoneInfo("America/Los_Angeles")
_DEFAULT_COOLDOWN_S = 60.0  # a 429 without RetryInfo
DAILY = "daily quota used up"


def daily_reset_at(now: float) -> float:
    """When per-day quotas reset: the next midnight Pacific time (wall-clock seconds)."""
    local = datetime.fromtimestamp(now, _PACIFIC)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp()


class NoUsableKey(GsVideoReportError):
    """Every key is disabled or cooling down. ``available_at`` is when one comes back
    (None: none will without the user)."""

    kind = "NoUsableKey"

    def __init__(self, message: str, available_at: float | None, *, auth: bool) -> None:
        super().__init__(message)
        self.available_at = available_at
        self.auth = auth
        self.exit_code = AuthError.exit_code if auth else RateLimitError.exit_code


@dataclass
class KeyState:
    fingerprint: str
    label: str
    project: str
    successes: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    consecutive_failures: int = 0
    cooldown_until: float | None = None  # wall-clock seconds
    cooldown_reason: str | None = None
    disabled: str | None = None  # why; None = enabled
    last_error: str | None = None

    def usable(self, now: float) -> bool:
        return self.disabled is None and (self.cooldown_until or 0.0) <= now

    def daily_exhausted(self, now: float) -> bool:
        return self.cooldown_reason == DAILY and (self.cooldown_until or 0.0) > now

    def describe(self, now: float) -> str:
        if self.disabled is not None:
            return f"disabled: {self.disabled}"
        if self.cooldown_until is not None and self.cooldown_until > now:
            left = self.cooldown_until - now
            return f"cooling down {_duration(left)} ({self.cooldown_reason or 'quota'})"
        return "ok"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds}s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def is_key_level(error: ApiError) -> bool:
    """Errors another key (of another project, for quotas) may not have."""
    return isinstance(error, AuthError | RateLimitError)


class KeyPool:
    def __init__(
        self,
        keys: Sequence[PoolKey],
        *,
        api: ApiSettings | None = None,
        states: Mapping[str, KeyState] | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[KeyState], None] | None = None,
        max_retries: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not keys:
            raise AuthError("the key pool is empty")
        self.keys = list(keys)
        self.api = api or ApiSettings.model_validate({})
        self.clock = clock
        self.on_change = on_change
        # the batch's policy, with shorter waits: a script's caller is usually waiting
        self.retry = RetryPolicy(max_retries, 1.0, 60.0, rng or random.Random())
        self._sleep = sleep
        self._by_fp = {k.fingerprint: k for k in self.keys}
        self.states: dict[str, KeyState] = {}
        for key in self.keys:
            known = (states or {}).get(key.fingerprint)
            state = known or KeyState(key.fingerprint, key.label, key.project)
            # the configuration names keys and projects; the database keeps their health
            state.label, state.project = key.label, key.project
            self.states[key.fingerprint] = state

    # -- building ---------------------------------------------------------------------
    @classmethod
    def from_keys_file(cls, path: str | Path, **options: Any) -> KeyPool:
        return cls(read_keys_file(Path(path)), **options)

    @classmethod
    def from_config(
        cls, path: str | Path | None = None, *, settings: Settings | None = None, **options: Any
    ) -> KeyPool:
        """Keys from ``api.keys`` of a config file (or the usual single key)."""
        settings = settings or load_settings(config_path=Path(path) if path else None)
        options.setdefault("api", settings.api)
        options.setdefault("max_retries", settings.api.max_retries)
        return cls(resolve_keys(settings), **options)

    # -- health -------------------------------------------------------------------------
    def key(self, fingerprint: str) -> PoolKey:
        return self._by_fp[fingerprint]

    def usable(self) -> list[PoolKey]:
        now = self.clock()
        return [k for k in self.keys if self.states[k.fingerprint].usable(now)]

    def usable_share(self) -> float:
        return len(self.usable()) / len(self.keys)

    def choose(
        self,
        *,
        load: Callable[[PoolKey], float] | None = None,
        avoid: Sequence[str] = (),
    ) -> PoolKey:
        """A usable key, healthiest and least loaded first; ``avoid`` (fingerprints) only
        when nothing else is usable. Raises ``NoUsableKey``."""
        usable = self.usable()
        if not usable:
            raise self.none_usable()
        preferred = [k for k in usable if k.fingerprint not in avoid] or usable
        if len(preferred) == 1:
            return preferred[0]

        def rank(key: PoolKey) -> tuple[float, int, int]:
            state = self.states[key.fingerprint]
            return (load(key) if load else 0.0, state.consecutive_failures, -state.successes)

        return min(preferred, key=rank)

    def none_usable(self) -> NoUsableKey:
        now = self.clock()
        states = [self.states[k.fingerprint] for k in self.keys]
        waits = [s.cooldown_until for s in states if s.disabled is None and s.cooldown_until]
        if not waits:
            reasons = "; ".join(f"{s.fingerprint}: {s.disabled}" for s in states)
            return NoUsableKey(
                f"every key is disabled ({reasons}); fix them, then `gs_videoreport keys"
                " enable FINGERPRINT`",
                None,
                auth=True,
            )
        back = min(waits)
        return NoUsableKey(
            f"every key is cooling down; the first is back in {_duration(back - now)}",
            back,
            auth=False,
        )

    def succeeded(self, fingerprint: str) -> None:
        state = self.states[fingerprint]
        state.successes += 1
        state.consecutive_failures = 0
        self._changed(state)

    def failed(self, fingerprint: str, error: ApiError) -> None:
        """Count the failure; cool down the key's project on a 429, disable the key on an
        auth error."""
        state = self.states[fingerprint]
        state.failures[error.kind] = state.failures.get(error.kind, 0) + 1
        state.consecutive_failures += 1
        state.last_error = error.message[:300]
        if isinstance(error, AuthError):
            state.disabled = error.message[:200]
            logger.warning("key %s disabled: %s", fingerprint, state.disabled)
        self._changed(state)
        if isinstance(error, RateLimitError):
            now = self.clock()
            if error.quota is QuotaScope.PER_DAY:
                until, reason = daily_reset_at(now), DAILY
            else:
                until = now + (error.retry_after or _DEFAULT_COOLDOWN_S)
                reason = "per-minute quota"
            self.cool_down(state.project, until, reason)

    def cool_down(self, project: str, until: float, reason: str) -> None:
        for state in self.states.values():
            if state.project == project and (state.cooldown_until or 0.0) < until:
                state.cooldown_until, state.cooldown_reason = until, reason
                self._changed(state)

    def enable(self, fingerprint: str) -> None:
        state = self.states[fingerprint]
        state.disabled = None
        state.cooldown_until = state.cooldown_reason = None
        state.consecutive_failures = 0
        self._changed(state)

    def _changed(self, state: KeyState) -> None:
        if self.on_change is not None:
            self.on_change(state)

    # -- the public API: run a function with a client, moving keys on key-level errors --
    def make_client(self, key: PoolKey, **http: Any) -> genai.Client:
        """A client as the service builds it; ``http`` overrides HttpOptions fields."""
        # google-genai loads on the first call, not with the pool: the batch's decisions
        # and ``keys``/``status`` use its bookkeeping alone
        from gs_video_report.services.gemini.client import build_client

        return build_client(key.key, self.api, **http)

    def _translate(self, exc: BaseException, key: PoolKey) -> ApiError | None:
        from gs_video_report.services.gemini.errors import translate  # see make_client

        return translate(exc, stage="call", touches_file=False, secret=key.key.reveal())

    def _after_failure(self, exc: Exception, key: PoolKey, attempt: int) -> float:
        """Record the failure; seconds to wait before the next attempt. Raises (as our
        error class) when there is no next attempt, or when ``exc`` is not an API error."""
        error = self._translate(exc, key)
        if error is None:
            raise exc
        self.failed(key.fingerprint, error)
        wait: float | None = None
        if not is_key_level(error):
            wait = self.retry.delay(error, attempt)
        elif attempt <= self.retry.max_retries:
            if self.usable():
                wait = 0.0  # another key is ready now
            elif not isinstance(error, AuthError):
                back = self.none_usable().available_at
                wait = None if back is None else max(0.0, back - self.clock())
        if wait is None:
            raise error from exc
        logger.info("attempt %d failed on %s (%s); retrying", attempt, key.fingerprint, error.kind)
        return wait

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``await fn(client, *args, **kwargs)`` (or call it, when it is not async) with a
        fresh client per attempt, on the best key; key-level errors move to another key."""
        attempt = 0
        while True:
            attempt += 1
            key = self.choose()
            client = self.make_client(key)
            try:
                result = fn(client, *args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                wait = self._after_failure(exc, key, attempt)
            else:
                self.succeeded(key.fingerprint)
                return result
            finally:
                await client.aio.aclose()
                client.close()
            await self._sleep(wait)  # with the client closed: a backoff holds no connection

    def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(client, *args, **kwargs)``, synchronously, with the same policy as ``run``."""
        attempt = 0
        while True:
            attempt += 1
            key = self.choose()
            client = self.make_client(key)
            try:
                result = fn(client, *args, **kwargs)
            except Exception as exc:
                wait = self._after_failure(exc, key, attempt)
            else:
                self.succeeded(key.fingerprint)
                return result
            finally:
                client.close()
            time.sleep(wait)

    @contextlib.contextmanager
    def client(self) -> Iterator[genai.Client]:
        """A client on the best key; the block's success or failure is recorded (and a
        failure re-raised as our error class)."""
        key = self.choose()
        client = self.make_client(key)
        try:
            yield client
        except Exception as exc:
            error = self._translate(exc, key)
            if error is None:
                raise
            self.failed(key.fingerprint, error)
            raise error from exc
        else:
            self.succeeded(key.fingerprint)
        finally:
            client.close()

    def retrying(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: the function gets a client as its first argument, from ``run`` (for
        ``async def``) or ``run_sync``."""

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    return await self.run(fn, *args, **kwargs)

                return run_async

            @functools.wraps(fn)
            def run_blocking(*args: Any, **kwargs: Any) -> Any:
                return self.run_sync(fn, *args, **kwargs)

            return run_blocking

        return wrap
