"""Settings: one typed object, resolved once.

Precedence, lowest first:
  1. built-in defaults (the field defaults below, mirrored in config.yaml.example)
  2. the config file: ``--config PATH``, else ``./config.yaml``, else
     ``config.yaml`` in the user config dir (``$GS_VIDEOREPORT_HOME`` when set)
  3. environment: ``GS_VIDEOREPORT_<SECTION>__<KEY>`` (e.g.
     ``GS_VIDEOREPORT_API__REQUEST_TIMEOUT``), plus the short aliases in ``ENV_ALIASES``
  4. command-line flags

The API key is *not* a setting: it never enters this object, its dumps or the
state database. ``resolve_api_key`` finds it and wraps it in ``ApiKey``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
import yaml
from dotenv import dotenv_values
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from gs_video_report.errors import AuthError, ConfigError
from gs_video_report.models import LessonFormat, parse_formats

APP_NAME = "gs_videoreport"
ENV_PREFIX = "GS_VIDEOREPORT_"
ENV_ALIASES = {
    "GS_VIDEOREPORT_BASE_URL": ("api", "base_url"),
}
HOME_ENV = "GS_VIDEOREPORT_HOME"
DEFAULT_MODEL = "gemini-3.8-flash"
DEFAULT_TEMPLATE = "chinese_transcript"
STANDARD_KEY_ENVS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")

# Upper bounds far beyond any real use, so a typo (1e308, a few zeros too many) is caught
# up front instead of becoming a wait of centuries, or an overflow once a timeout is grown
# (x3) and turned into milliseconds for the HTTP client.
MAX_SECONDS = 7 * 24 * 3600.0
MAX_FILE_MB = 100 * 1024  # the Files API takes 2 GB per file
MAX_PART_MINUTES = 24 * 60.0
MAX_RPM = 1e6
MAX_TPM = 1e10
MAX_USD_PER_M_TOKENS = 1e4

# A model id goes into the request path (models/{id}:generateContent): nothing that can
# change the path or point elsewhere (``/``, ``..``, ``:``, a URL).
_MODEL_ID = re.compile(r"(models/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_API_VERSION = re.compile(r"v[0-9]+[a-z0-9]*")


def _number(value: Any) -> Any:
    # YAML reads yes/no/on/off as booleans, which pydantic would take as 1 and 0.
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


def _model_id(value: str) -> str:
    if not _MODEL_ID.fullmatch(value):
        raise ValueError(
            f"'{value}' is not a model id (letters, digits, '-', '.', '_', optionally after "
            "'models/'; no paths or URLs)"
        )
    return value


def _api_version(value: str) -> str:
    if not _API_VERSION.fullmatch(value):
        raise ValueError(f"'{value}' is not an API version (like v1beta or v1)")
    return value


ModelId = Annotated[str, AfterValidator(_model_id)]
_Int = Annotated[int, BeforeValidator(_number)]
_Float = Annotated[float, BeforeValidator(_number)]
Seconds = Annotated[_Float, Field(gt=0, le=MAX_SECONDS)]
ExtraSeconds = Annotated[_Float, Field(ge=0, le=MAX_SECONDS)]
Usd = Annotated[_Float, Field(ge=0, le=MAX_USD_PER_M_TOKENS)]


class _Section(BaseModel):
    # Finite numbers only: inf and nan pass a "> 0" check, then wait forever or compare false.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class KeySource(_Section):
    """One key of the pool: where to read it, and which Google Cloud project it bills.
    Quotas are per project, so keys naming one project share one limiter."""

    env: str | None = Field(None, description="Environment variable holding the key")
    file: Path | None = Field(None, description="File holding the key (first line)")
    label: str | None = Field(None, description="A name for `gs_videoreport keys`")
    project: str | None = Field(
        None, description="Google Cloud project of the key (default: its own project)"
    )


class ApiSettings(_Section):
    keys: list[KeySource] = Field(
        default_factory=list,
        description="A pool of keys (env or file each, label, project); tasks stay on the key"
        " that uploaded their video",
    )
    key_env: str | None = Field(
        None, description="Environment variable to read the API key from (before the standard ones)"
    )
    base_url: str | None = Field(
        None, description="Send every Gemini call, uploads included, to this endpoint"
    )
    api_version: Annotated[str, AfterValidator(_api_version)] = Field(
        "v1beta", description="Gemini API version (the Files API needs v1beta)"
    )
    request_timeout: Seconds = Field(600.0, description="Seconds a generate call may take")
    upload_timeout: Seconds = Field(300.0, description="Seconds one 8 MiB upload chunk may take")
    processing_timeout: Seconds = Field(
        600.0, description="Seconds to wait for an uploaded file to become ACTIVE (base)"
    )
    processing_timeout_per_gb: ExtraSeconds = Field(
        900.0, description="Extra processing wait per GB of video"
    )
    max_retries: _Int = Field(3, ge=0, le=20, description="Retries of a retryable error per call")
    offline_wait: Seconds = Field(
        1800.0,
        description="Seconds a batch waits for the network to come back (probing with"
        " backoff, no video failed) before it stops, resumable (exit 6)",
    )


class TemplateSettings(_Section):
    default: str = Field(DEFAULT_TEMPLATE, description="Template used when -t is not given")
    dirs: list[Path] = Field(
        default_factory=list,
        description="Extra template folders (relative to the config file); they override built-ins",
    )


def _formats(value: Any) -> Any:
    # "md,html" from the environment or a flag-like string; a YAML list otherwise
    if isinstance(value, str | list | tuple):
        return parse_formats(value)
    return value


class OutputSettings(_Section):
    dir: Path = Field(Path("output"), description="Where `main` writes lessons")
    template_subfolders: bool = Field(
        True, description="Put each template's lessons in its own folder"
    )
    formats: Annotated[tuple[LessonFormat, ...], BeforeValidator(_formats)] = Field(
        (LessonFormat.MD,),
        description="What each lesson is written as: md, html, srt, vtt (all from its sidecar)",
    )


class VideoSettings(_Section):
    max_file_size_mb: _Int = Field(
        2048,
        gt=0,
        le=MAX_FILE_MB,
        description="Largest local video accepted (Files API limit: 2 GB per file)",
    )
    part_minutes: _Float = Field(
        20.0,
        ge=1,
        le=MAX_PART_MINUTES,
        description="Longest part when a video is processed in parts (too long for one"
        " request, or its answer cut off at the largest output budget)",
    )


class RunSettings(_Section):
    mode: Literal["live", "flex", "batch"] = Field(
        "live",
        description="live: standard calls; flex: the Flex tier (half price, best effort);"
        " batch: Gemini Batch Mode jobs (half price, within 24 h; resume collects them)",
    )
    batch_poll: Annotated[_Float, Field(ge=0.1, le=3600)] = Field(
        30.0,
        description="Seconds between polls of a running Batch Mode job, backing off to"
        " twice that (the docs poll every 30 s)",
    )
    lease_ttl: Annotated[_Float, Field(ge=1, le=3600)] = Field(
        30.0,
        description="Seconds a running batch's lease lasts without a heartbeat (every third"
        " of it); after that another process may take the batch over",
    )


class ModelLimits(_Section):
    """Rate limits of one model for your project (AI Studio shows them; Google no longer
    publishes a table). Unset = not paced up front, only slowed down by 429s."""

    rpm: _Float | None = Field(None, gt=0, le=MAX_RPM, description="Requests per minute")
    tpm: _Float | None = Field(None, gt=0, le=MAX_TPM, description="Input tokens per minute")


class PriceOverride(_Section):
    """USD per 1M tokens, replacing the shipped price table for one model on every date."""

    input: Usd
    output: Usd = Field(description="Output, thinking included")
    batch_input: Usd | None = None
    batch_output: Usd | None = None


class Preset(_Section):
    """A saved set of template parameters (the dashboard's start form offers them)."""

    template: str | None = Field(None, description="Template it is for (none: any)")
    params: dict[str, str] = Field(default_factory=dict, description="Template parameters")


class Settings(_Section):
    model: ModelId = Field(DEFAULT_MODEL, description="Gemini model name")
    api: ApiSettings = Field(default_factory=ApiSettings)  # type: ignore[arg-type]
    templates: TemplateSettings = Field(default_factory=TemplateSettings)  # type: ignore[arg-type]
    output: OutputSettings = Field(default_factory=OutputSettings)  # type: ignore[arg-type]
    video: VideoSettings = Field(default_factory=VideoSettings)  # type: ignore[arg-type]
    run: RunSettings = Field(default_factory=RunSettings)  # type: ignore[arg-type]
    limits: dict[ModelId, ModelLimits] = Field(
        default_factory=dict,
        description="Per model (or 'default'): rpm and tpm the batch paces itself to",
    )
    prices: dict[ModelId, PriceOverride] = Field(
        default_factory=dict, description="Per model: prices replacing the shipped table"
    )

    presets: dict[str, Preset] = Field(
        default_factory=dict,
        description="Named parameter presets for the dashboard (it saves its own beside them)",
    )

    def limits_for(self, model: str) -> ModelLimits:
        return (
            self.limits.get(model) or self.limits.get("default") or ModelLimits(rpm=None, tpm=None)
        )

    # Not user settings: where the values came from, for messages and `config show`.
    config_file: Path | None = Field(None, exclude=True)


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    """All state and caches live here (``$GS_VIDEOREPORT_HOME`` or the user data dir)."""
    env = os.environ if env is None else env
    if env.get(HOME_ENV):
        home = Path(env[HOME_ENV]).expanduser()
        # Said before anything is planned, not found out when the state database opens.
        if home.exists() and not home.is_dir():
            raise ConfigError(f"{HOME_ENV} is not a folder: {home}")
        return home
    return Path(platformdirs.user_data_dir(APP_NAME))


def user_config_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser() / "config.yaml"
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.yaml"


def find_config_file(explicit: Path | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file not found: {explicit}")
        return explicit
    for candidate in (cwd / "config.yaml", user_config_file(env)):
        if candidate.is_file():
            return candidate
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = target
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _env_layer(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Settings from the environment, and which variable set each path (for errors)."""
    layer: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, raw in env.items():
        path: tuple[str, ...]
        if name in ENV_ALIASES:
            path = ENV_ALIASES[name]
        elif name.startswith(ENV_PREFIX) and name != HOME_ENV:
            path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        else:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        # A bare string like "on" would become a bool; keep plain words as text
        # unless the target is obviously not a string (pydantic coerces numbers).
        if isinstance(value, bool) and raw.strip().lower() not in {"true", "false"}:
            value = raw
        _set_path(layer, path, value)
        origin[path] = name
    return layer, origin


def _origin(loc: tuple[str, ...], origin: Mapping[tuple[str, ...], str], source: str) -> str:
    """Who set ``loc``: the variable or flag that set it, or a section holding it
    (GS_VIDEOREPORT_API='{request_timeout: 0}'), or a key inside it (a bad model name in
    GS_VIDEOREPORT_LIMITS__A/B__RPM); else the layer's source."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in origin:
            return origin[loc[:end]]
    inside = [name for path, name in origin.items() if loc and path[: len(loc)] == loc]
    return inside[0] if inside else source


def _validate(data: dict[str, Any], source: str, origin: Mapping[tuple[str, ...], str]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err["loc"] if p != "[key]")
        key = ".".join(loc) or "(top level)"
        where = _origin(loc, origin, source)
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{where}: unknown setting '{key}'") from exc
        message = err["msg"].removeprefix("Value error, ")  # our validators' own words
        raise ConfigError(f"{where}: setting '{key}': {message}") from exc


def load_settings(
    *,
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve settings once. ``overrides`` maps dotted keys (``"api.base_url"``) to flag values;
    ``None`` values mean "flag not given"."""
    env = dict(os.environ) if env is None else dict(env)
    cwd = Path.cwd() if cwd is None else cwd
    data: dict[str, Any] = {}
    file = find_config_file(config_path, env, cwd)
    if file is not None:
        file_data = _read_yaml(file)
        data = _deep_merge(data, file_data)
        settings = _validate(data, str(file), {})
        # Template folders in the file are relative to the file, not to the cwd.
        dirs = [d if d.is_absolute() else (file.parent / d) for d in settings.templates.dirs]
        data = _deep_merge(data, {"templates": {"dirs": [str(d) for d in dirs]}})
    env_data, env_origin = _env_layer(env)
    data = _deep_merge(data, env_data)
    _validate(data, "environment", env_origin)
    flag_data: dict[str, Any] = {}
    flag_origin: dict[tuple[str, ...], str] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        path = tuple(dotted.split("."))
        _set_path(flag_data, path, value)
        flag_origin[path] = "command line"
    data = _deep_merge(data, flag_data)
    settings = _validate(data, "command line", flag_origin)
    return settings.model_copy(update={"config_file": file})


class ApiKey:
    """An API key that never prints itself. Identify it by ``fingerprint``."""

    __slots__ = ("_fingerprint", "_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value.strip()
        self.source = source
        # Hashed once: the pool asks for it several times per task.
        self._fingerprint = key_fingerprint(self._value)

    def reveal(self) -> str:
        """The key itself: only for the HTTP client, never for logs or storage."""
        return self._value

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def __repr__(self) -> str:
        return f"ApiKey({self.fingerprint}, from {self.source})"

    __str__ = __repr__


def key_fingerprint(value: str) -> str:
    """A short, stable, non-reversible name for a key (``key-1a2b3c4d``)."""
    return "key-" + hashlib.sha256(value.strip().encode()).hexdigest()[:8]


def resolve_api_key(
    settings: Settings,
    *,
    flag: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ApiKey:
    """``--api-key``, else the configured variable, else GEMINI_API_KEY / GOOGLE_API_KEY,
    else the same names in ``./.env``. Raises ``AuthError`` when there is none."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    if flag and flag.strip():
        return ApiKey(flag, "--api-key")
    names = [n for n in (settings.api.key_env, *STANDARD_KEY_ENVS) if n]
    for name in names:
        if env.get(name, "").strip():
            return ApiKey(env[name], f"${name}")
    dotenv_file = cwd / ".env"
    if dotenv_file.is_file():
        values = dotenv_values(dotenv_file)
        for name in names:
            value = values.get(name)
            if value and value.strip():
                return ApiKey(value, f"{dotenv_file.name} {name}")
    wanted = " or ".join(f"${n}" for n in names)
    raise AuthError(
        f"no Gemini API key: set {wanted}, put it in ./.env, pass --api-key, "
        "or use --simulate to try the tool without one"
    )


@dataclass(frozen=True)
class PoolKey:
    """A key of the pool with what the pool needs to know about it."""

    key: ApiKey
    label: str
    project: str  # quota owner: keys of one project share limits

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint

    @classmethod
    def of(cls, key: ApiKey, label: str | None = None, project: str | None = None) -> PoolKey:
        # Without a project, a key is taken to be its own project (its own quota).
        return cls(key, label or key.fingerprint, project or key.fingerprint)


def _pool_key(value: str, source: str, label: str | None, project: str | None) -> PoolKey:
    return PoolKey.of(ApiKey(value, source), label, project)


def read_keys_file(path: Path) -> list[PoolKey]:
    """One key per line, optionally followed by ``project=NAME`` and ``label=NAME``;
    ``#`` starts a comment. Errors name the line, never the key."""
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"keys file {path}: cannot read it ({exc.__class__.__name__})") from exc
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        extra: dict[str, str] = {}
        for word in words[1:]:
            name, sep, value = word.partition("=")
            if not sep or name not in ("project", "label") or not value:
                raise ConfigError(
                    f"keys file {path}, line {number}: expected 'KEY [project=NAME] [label=NAME]'"
                )
            extra[name] = value
        keys.append(
            _pool_key(words[0], f"{path.name}:{number}", extra.get("label"), extra.get("project"))
        )
    if not keys:
        raise ConfigError(f"keys file {path}: no keys in it")
    return keys


def resolve_keys(
    settings: Settings,
    *,
    flag: str | None = None,
    keys_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> list[PoolKey]:
    """The key pool: ``--api-key`` (one key), else ``--keys-file``, else ``api.keys`` in the
    config, else the single key ``resolve_api_key`` finds. Duplicates count once."""
    env = os.environ if env is None else env
    keys: list[PoolKey]
    if flag and flag.strip():
        keys = [_pool_key(flag, "--api-key", None, None)]
    elif keys_file is not None:
        keys = read_keys_file(keys_file)
    elif settings.api.keys:
        keys = []
        for number, source in enumerate(settings.api.keys, 1):
            where = f"api.keys[{number}]"
            if source.env:
                value = env.get(source.env, "")
                if not value.strip():
                    raise AuthError(f"{where}: ${source.env} is not set")
                origin = f"${source.env}"
            elif source.file:
                path = source.file.expanduser()
                try:
                    value = path.read_text(encoding="utf-8").strip().splitlines()[0]
                except (OSError, UnicodeDecodeError, IndexError) as exc:
                    raise ConfigError(f"{where}: cannot read a key from {path}") from exc
                origin = str(path)
            else:
                raise ConfigError(f"{where}: give 'env' or 'file'")
            keys.append(_pool_key(value, origin, source.label, source.project))
    else:
        key = resolve_api_key(settings, env=env, cwd=cwd)
        keys = [_pool_key(key.reveal(), key.source, None, None)]
    unique: dict[str, PoolKey] = {}
    for pool_key in keys:
        unique.setdefault(pool_key.fingerprint, pool_key)
    return list(unique.values())
