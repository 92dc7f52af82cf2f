from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gs_video_report.errors import TemplateError
from gs_video_report.services.templates import (
    TemplateRegistry,
    builtin_templates_dir,
    load_template,
    parse_params,
)

REPO = Path(__file__).resolve().parents[1]
BUILTINS = ("chinese_transcript", "comprehensive_lesson", "summary_report")
BUILTIN_CONTEXT = {
    "video_title": "t",
    "video_duration": "01:00",
    "video_duration_seconds": 60,
    "source_kind": "file",
    "current_date": "2026-11-22",
}

MINIMAL = """name: {name}
version: "1"
description: test
parameters:
  topic: {{default: null, description: required}}
prompt: "Explain {{{{ topic }}}} in {{{{ video_title }}}}"
schema: {{type: object, required: [a], properties: {{a: {{type: string}}}}}}
layout: "# {{{{ answer.a }}}}"
"""


def test_builtins_are_the_originals_three() -> None:
    registry = TemplateRegistry.with_builtins()
    assert registry.names() == sorted(BUILTINS)
    for name in BUILTINS:
        tpl = registry.get(name)
        assert tpl.generation.media_resolution == "low"
        assert tpl.generation.max_output_tokens and tpl.generation.max_output_tokens >= 8192
        prompt = tpl.render_prompt(tpl.resolve_parameters({}), BUILTIN_CONTEXT)
        assert "{{" not in prompt and "{%" not in prompt  # every placeholder filled


def test_parameters_override_defaults_and_reach_the_prompt() -> None:
    tpl = TemplateRegistry.with_builtins().get("comprehensive_lesson")
    params = tpl.resolve_parameters({"subject_area": "art history"})
    assert params["subject_area"] == "art history" and params["language"] == "English"
    assert "art history" in tpl.render_prompt(params, BUILTIN_CONTEXT)


def test_unknown_and_missing_parameters(tmp_path: Path) -> None:
    (tmp_path / "needs.yaml").write_text(MINIMAL.format(name="needs"))
    tpl = load_template(tmp_path / "needs.yaml")
    with pytest.raises(TemplateError, match="needs parameter 'topic'"):
        tpl.resolve_parameters({})
    with pytest.raises(TemplateError, match="no parameter 'colour'"):
        tpl.resolve_parameters({"topic": "x", "colour": "red"})
    assert (
        tpl.render_prompt(tpl.resolve_parameters({"topic": "X"}), BUILTIN_CONTEXT)
        == "Explain X in t"
    )


def test_prompt_using_an_undeclared_variable_is_a_broken_template(tmp_path: Path) -> None:
    bad = MINIMAL.format(name="bad").replace("{{ topic }}", "{{ current_timestamp }}")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(TemplateError, match=r"bad.yaml.*current_timestamp"):
        load_template(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t.replace("layout:", "layoutx:"), "missing key 'layout'"),
        (lambda t: t.replace("type: string", "type: strang"), "invalid JSON Schema"),
        (lambda t: t + "\nextra: 1\n", "unknown key 'extra'"),
        (lambda t: t.replace('"# {{ answer.a }}"', '"{% for %}"'), "Jinja2 syntax error"),
        (lambda t: t + "model: {fps: 99}\n", "fps"),
    ],
)
def test_broken_templates_are_reported_with_file_and_reason(tmp_path: Path, mutate, reason) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "broken.yaml").write_text(mutate(MINIMAL.format(name="broken")))
    registry = TemplateRegistry.with_builtins([folder])
    with pytest.raises(TemplateError) as err:
        registry.get("broken")
    assert "broken.yaml" in str(err.value) and reason in str(err.value)
    assert registry.names() == sorted(BUILTINS)  # the others still load


def test_user_folder_overrides_builtin_and_path_selection(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "summary_report.yaml").write_text(MINIMAL.format(name="summary_report"))
    registry = TemplateRegistry.with_builtins([folder])
    assert registry.get("summary_report").description == "test"
    direct = registry.get(str(folder / "summary_report.yaml"))
    assert direct.path == folder / "summary_report.yaml"
    with pytest.raises(TemplateError, match="template file not found"):
        registry.get(str(tmp_path / "none.yaml"))
    with pytest.raises(TemplateError, match=r"unknown template 'nope' \(available: "):
        registry.get("nope")


def test_fingerprint_changes_with_the_prompt(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL.format(name="a"))
    (tmp_path / "b.yaml").write_text(MINIMAL.format(name="a").replace("Explain", "Describe"))
    assert (
        load_template(tmp_path / "a.yaml").fingerprint
        != load_template(tmp_path / "b.yaml").fingerprint
    )


def test_parse_params() -> None:
    assert parse_params(["a=1", "b = two=2"]) == {"a": "1", "b": " two=2"}
    with pytest.raises(TemplateError, match="key=value"):
        parse_params(["novalue"])


def test_templates_ship_inside_the_wheel_and_load_from_it(tmp_path: Path) -> None:
    """An installed wheel finds its templates without the source tree."""
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("*.whl"))
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(unpacked)
    for name in BUILTINS:
        assert f"gs_video_report/_builtin_templates/{name}.yaml" in names
    for asset in ("lesson.html.j2", "lesson.js", "lesson.css"):  # the HTML lesson page's
        assert f"gs_video_report/services/pages/{asset}" in names
    for asset in ("templates/index.html", "templates/batch.html", "static/batch.js"):
        assert f"gs_video_report/web/{asset}" in names  # the dashboard's pages
    code = (
        "from gs_video_report.services.templates import TemplateRegistry, builtin_templates_dir;"
        "print(builtin_templates_dir()); print(TemplateRegistry.with_builtins().names())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        check=True,
        text=True,
        capture_output=True,
        env={"PYTHONPATH": str(unpacked), "PATH": ""},
    )
    assert str(unpacked) in out.stdout.splitlines()[0]
    assert out.stdout.splitlines()[1] == str(sorted(BUILTINS))


def test_source_checkout_uses_repo_templates() -> None:
    assert builtin_templates_dir() == REPO / "templates"


@pytest.mark.parametrize(
    "name",
    ["..", ".", "../x", "/abs", "a/../../b", "a\\b", "a\x00b", "a\nb", "a\x1bb", ".hidden", "x."],
)
def test_a_name_that_is_not_one_plain_folder_name_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(MINIMAL.format(name=json.dumps(name)))
    with pytest.raises(TemplateError) as err:
        load_template(path)
    assert "evil.yaml" in str(err.value) and "name" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["summary_report", "v2.1-draft", "课程_一", "_mine"])
def test_plain_names_load(tmp_path: Path, name: str) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(MINIMAL.format(name=json.dumps(name, ensure_ascii=False)), encoding="utf-8")
    assert load_template(path).name == name
