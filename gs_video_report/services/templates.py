"""Lesson templates: one YAML file each (name, version, parameters, model settings,
Jinja2 prompt, JSON Schema of the answer, Jinja2 Markdown layout).

Built-ins ship inside the package; folders from ``templates.dirs`` override them by
name; ``-t path/to/file.yaml`` loads one file directly. A template is checked when it
is loaded: its schema must be valid JSON Schema, and its prompt may use only its own
parameters and the built-in variables, so a missing value is found before any API call.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jsonschema
import yaml

from gs_video_report.errors import TemplateError
from gs_video_report.models import GenerationSettings
from gs_video_report.services import sandbox

# Variables every prompt may use without declaring them; filled from the video.
BUILTIN_VARIABLES = frozenset(
    {"video_title", "video_duration", "video_duration_seconds", "source_kind", "current_date"}
)
MEDIA_RESOLUTIONS = ("low", "medium", "high")
_REQUIRED_KEYS = ("name", "version", "description", "prompt", "schema", "layout")
_KNOWN_KEYS = {*_REQUIRED_KEYS, "parameters", "model", "system_instruction", "title_field"}
_MODEL_KEYS = {"temperature", "max_output_tokens", "media_resolution", "fps", "thinking_level"}

# A name becomes a folder under the output directory: one plain path segment.
_NAME = re.compile(r"\w[\w.-]{0,99}")


@dataclass(frozen=True)
class Parameter:
    name: str
    default: str | None
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class LessonTemplate:
    name: str
    version: str
    description: str
    parameters: tuple[Parameter, ...]
    generation: GenerationSettings
    prompt: str
    schema: dict[str, Any]
    layout: str
    path: Path
    system_instruction: str | None = None
    title_field: str | None = None
    _compiled: dict[str, jinja2.Template] = field(default_factory=dict, compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        """Changes whenever the prompt, schema, layout or settings change (for skip-existing)."""
        blob = json.dumps(
            [
                self.version,
                self.prompt,
                self.schema,
                self.layout,
                self.system_instruction,
                [(p.name, p.default) for p in self.parameters],
                self.generation.__dict__,
            ],
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def resolve_parameters(self, given: Mapping[str, str]) -> dict[str, str]:
        """Defaults overlaid with ``given``; unknown or missing parameters are errors."""
        known = {p.name for p in self.parameters}
        unknown = sorted(set(given) - known)
        if unknown:
            listed = ", ".join(sorted(known)) or "none"
            raise TemplateError(
                f"template '{self.name}' has no parameter '{unknown[0]}' (parameters: {listed})"
            )
        values = {p.name: p.default for p in self.parameters if p.default is not None}
        values.update(given)
        missing = [p.name for p in self.parameters if p.name not in values]
        if missing:
            raise TemplateError(
                f"template '{self.name}' needs parameter '{missing[0]}': "
                f"pass --param {missing[0]}=..."
            )
        return values

    def render_prompt(self, params: Mapping[str, str], builtins: Mapping[str, Any]) -> str:
        return self._render("prompt", self.prompt, {**builtins, **params})

    def render_system_instruction(
        self, params: Mapping[str, str], builtins: Mapping[str, Any]
    ) -> str | None:
        if not self.system_instruction:
            return None
        return self._render("system_instruction", self.system_instruction, {**builtins, **params})

    def render_layout(
        self, context: Mapping[str, Any], helpers: Mapping[str, Callable[..., Any]]
    ) -> str:
        return self._render("layout", self.layout, {**context, **helpers})

    def validate_answer(self, answer: Any) -> list[str]:
        """Schema problems in ``answer`` (empty when it conforms), each as ``path: message``."""
        validator = jsonschema.Draft202012Validator(self.schema)
        problems = []
        for error in sorted(validator.iter_errors(answer), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            problems.append(f"{where}: {error.message}")
        return problems

    def _render(self, part: str, source: str, context: Mapping[str, Any]) -> str:
        try:
            compiled = self._compiled.get(part)
            if compiled is None:
                compiled = sandbox.compile_template(source)
                self._compiled[part] = compiled
            return sandbox.render(compiled, context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"template '{self.name}' ({self.path}): {part}: {exc.message}"
            ) from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template '{self.name}' ({self.path}): {part}: {exc}") from exc


def _fail(path: Path, reason: str) -> TemplateError:
    return TemplateError(f"broken template {path}: {reason}")


def _parse_parameters(path: Path, raw: Any) -> tuple[Parameter, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise _fail(path, "'parameters' must be a mapping of name to {default, description}")
    params = []
    for name, spec in raw.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise _fail(path, f"parameter name {name!r} is not a valid identifier")
        if name in BUILTIN_VARIABLES:
            raise _fail(path, f"parameter '{name}' clashes with a built-in variable")
        if isinstance(spec, dict):
            unknown = set(spec) - {"default", "description"}
            if unknown:
                raise _fail(path, f"parameter '{name}': unknown key '{sorted(unknown)[0]}'")
            default = spec.get("default")
            desc = str(spec.get("description") or "")
        else:
            default, desc = spec, ""
        params.append(Parameter(name, None if default is None else str(default), desc))
    return tuple(params)


def _parse_generation(path: Path, raw: Any) -> GenerationSettings:
    if raw is None:
        return GenerationSettings()
    if not isinstance(raw, dict):
        raise _fail(path, "'model' must be a mapping")
    unknown = set(raw) - _MODEL_KEYS
    if unknown:
        raise _fail(path, f"model: unknown key '{sorted(unknown)[0]}'")
    resolution = raw.get("media_resolution")
    if resolution is not None and resolution not in MEDIA_RESOLUTIONS:
        raise _fail(path, f"model.media_resolution must be one of {', '.join(MEDIA_RESOLUTIONS)}")
    fps = raw.get("fps")
    if fps is not None and not (isinstance(fps, int | float) and 0 < fps <= 24):
        raise _fail(path, "model.fps must be a number in (0, 24]")
    try:
        return GenerationSettings(
            temperature=None if raw.get("temperature") is None else float(raw["temperature"]),
            max_output_tokens=(
                None if raw.get("max_output_tokens") is None else int(raw["max_output_tokens"])
            ),
            media_resolution=resolution,
            fps=None if fps is None else float(fps),
            thinking_level=raw.get("thinking_level"),
        )
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"model: {exc}") from exc


def _check_variables(path: Path, part: str, source: str, allowed: set[str]) -> None:
    try:
        ast = sandbox.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _fail(
            path, f"{part}: Jinja2 syntax error at line {exc.lineno}: {exc.message}"
        ) from exc
    try:
        sandbox.check(ast)
    except jinja2.exceptions.SecurityError as exc:
        raise _fail(path, f"{part}: {exc}") from exc
    unknown = sorted(jinja2.meta.find_undeclared_variables(ast) - allowed)
    if unknown:
        raise _fail(
            path,
            f"{part} uses {{{{ {unknown[0]} }}}}, which is neither a declared parameter "
            "nor a built-in variable",
        )


def load_template(path: Path) -> LessonTemplate:
    """Load and check one template file; ``TemplateError`` names the file and the reason."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _fail(path, f"malformed YAML ({exc})".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise _fail(path, "the file must be a YAML mapping")
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise _fail(path, f"missing key '{missing[0]}'")
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise _fail(path, f"unknown key '{unknown[0]}'")
    name = str(data["name"])
    if not _NAME.fullmatch(name) or name.endswith("."):
        raise _fail(path, f"name {name!r} must be letters, digits, '_', '-' or '.' (a folder name)")
    for key in ("prompt", "layout"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise _fail(path, f"'{key}' must be a non-empty string")
    schema = data["schema"]
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise _fail(path, "'schema' must be a JSON Schema of type object")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise _fail(path, f"invalid JSON Schema: {exc.message}") from exc
    params = _parse_parameters(path, data.get("parameters"))
    allowed = {p.name for p in params} | BUILTIN_VARIABLES
    _check_variables(path, "prompt", data["prompt"], allowed)
    system = data.get("system_instruction")
    if system is not None:
        _check_variables(path, "system_instruction", str(system), allowed)
    _check_variables(path, "layout", data["layout"], {"answer", "meta", "ts", "mmss"})
    return LessonTemplate(
        name=name,
        version=str(data["version"]),
        description=str(data["description"]).strip(),
        parameters=params,
        generation=_parse_generation(path, data.get("model")),
        prompt=data["prompt"],
        schema=schema,
        layout=data["layout"],
        path=path,
        system_instruction=None if system is None else str(system),
        title_field=data.get("title_field"),
    )


def builtin_templates_dir() -> Path:
    """Inside an installed wheel the templates sit in the package; in a source
    checkout (editable install) they are the repo's top-level ``templates/``."""
    packaged = resources.files("gs_video_report").joinpath("_builtin_templates")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True)
class TemplateEntry:
    """A template file found in a folder: loaded, or broken with its reason."""

    path: Path
    template: LessonTemplate | None
    error: str | None


class TemplateRegistry:
    """Templates by name; later folders override earlier ones."""

    def __init__(self, dirs: Iterable[Path]) -> None:
        self._entries: dict[str, TemplateEntry] = {}
        self._broken: list[TemplateEntry] = []
        for folder in dirs:
            if not folder.is_dir():
                raise TemplateError(f"template folder not found: {folder}")
            for file in sorted(folder.glob("*.y*ml")):
                try:
                    tpl = load_template(file)
                except TemplateError as exc:
                    self._broken.append(TemplateEntry(file, None, str(exc)))
                    # A broken file shadows the name so it is not silently replaced.
                    self._entries[file.stem] = TemplateEntry(file, None, str(exc))
                    continue
                self._entries[tpl.name] = TemplateEntry(file, tpl, None)

    @classmethod
    def with_builtins(cls, extra_dirs: Iterable[Path] = ()) -> TemplateRegistry:
        return cls([builtin_templates_dir(), *extra_dirs])

    def add(self, template: LessonTemplate) -> None:
        """A template given by path (``-t ./mine.yaml``), known by name from now on: a
        batch's tasks name their template, and a resume must find it again."""
        self._entries[template.name] = TemplateEntry(template.path, template, None)

    def entries(self) -> list[TemplateEntry]:
        return [self._entries[k] for k in sorted(self._entries)]

    def names(self) -> list[str]:
        return sorted(k for k, e in self._entries.items() if e.template is not None)

    def get(self, name_or_path: str) -> LessonTemplate:
        """By name, or by path when it looks like a file (``-t ./my_template.yaml``)."""
        candidate = Path(name_or_path).expanduser()
        if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
            if not candidate.is_file():
                raise TemplateError(f"template file not found: {name_or_path}")
            return load_template(candidate)
        entry = self._entries.get(name_or_path)
        if entry is None:
            available = ", ".join(self.names()) or "none"
            raise TemplateError(f"unknown template '{name_or_path}' (available: {available})")
        if entry.template is None:
            raise TemplateError(entry.error or f"broken template {entry.path}")
        return entry.template


def parse_params(pairs: Iterable[str]) -> dict[str, str]:
    """``--param key=value`` strings to a dict; a malformed pair is a ``TemplateError``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TemplateError(f"--param expects key=value, got '{pair}'")
        out[key] = value
    return out
