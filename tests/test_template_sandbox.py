"""Hostile templates: the classic server-side template-injection payloads, in each part of
a template, loaded by ``-t`` and by a CSV row, through the real CLI. None may run a
command, read a file or stall; each is one ``error:`` line, exit 3, before any API call."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gs_video_report.errors import ExitCode, TemplateError
from gs_video_report.services import sandbox
from gs_video_report.services.templates import load_template
from gs_video_report.simulator import Simulator

PARTS = ("prompt", "system_instruction", "layout")
# {marker} is a file the payload would create if it ran.
PAYLOADS = {
    "mro subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler globals": "{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}",
    "lipsum globals": "{{ lipsum.__globals__['os'].popen('touch {marker}').read() }}",
    "template reference": "{{ self._TemplateReference__context }}",
    "flask config": "{{ config.items() }}",
    "flask request": "{{ request.application.__globals__ }}",
    "include a file": "{% include '/etc/passwd' %}",
    "import a module": "{% import 'os' as o %}{{ o.popen('touch {marker}') }}",
    "extends a file": "{% extends '/etc/passwd' %}",
    "base subclasses": "{{ ''.__class__.__base__.__subclasses__() }}",
    "attr filter": "{{ (''|attr('__class__')).__mro__ }}",
    "huge repetition": "{{ 'a' * 10**9 }}",
    "huge range": "{% for i in range(10**10) %}x{% endfor %}",
    "popen through subclasses": (
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == "
        "'Popen' %}{{ c(['touch', '{marker}']) }}{% endif %}{% endfor %}"
    ),
}
# Payloads the load-time check cannot see (names and sizes computed at render time):
# the sandbox itself must refuse them. X stands for a short text, N for 5,000,000: just
# past the size cap, so each payload still fits in memory if its own check were gone, and
# values are built with {% set %} (not printed) so the text cap cannot stand in for it.
DYNAMIC = {
    "computed attribute": "{{ X|attr('_' ~ '_class__') }}",
    "computed item": "{{ X['_' ~ '_class__']['_' ~ '_mro__'] }}",
    "repetition": "{% set s = X * (N|int) %}",
    "concatenation": "{% set ns = namespace(s=X * 3000000) %}{% set t = ns.s + ns.s %}",
    "power": "{% set p = 2 ** (N|int) %}",
    "range": "{% set r = range(N|int) %}",
    "nested loops": "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
    "text in a loop": "{% for a in range(100000) %}{{ X * 100 }}{% endfor %}",
    "text in a set block": "{% set s %}{% for a in range(100000) %}{{ X * 100 }}{% endfor %}"
    "{% endset %}",
    "doubling in a namespace": (
        "{% set ns = namespace(s=X) %}{% for i in range(23) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}"
    ),
    "center width": "{% set s = X|center(N|int) %}",
    "str method width": "{% set s = X.ljust(N|int) %}",
    "format filter width": "{% set s = ('%0' ~ N ~ 'd')|format(1) %}",
    "percent width": "{% set s = ('%0' ~ N ~ 'd') % 1 %}",
    "str.format width": "{% set s = ('{:>' ~ N ~ '}').format(1) %}",
    "empty replace": "{% set s = (X * 1000000)|replace('', 'bbbbbbbbbb') %}",
    "indent": "{% set s = ('\\n' * 100000)|indent(100) %}",
    "join filter": "{% set s = ([X * 100000] * 100)|join %}",
    "str join": "{% set s = ''.join([X * 100000] * 100) %}",
    "recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "exponential macro": (
        "{% macro f(k) %}{% if k %}{{ f(k - 1) }}{{ f(k - 1) }}{% endif %}{% endmacro %}{{ f(20) }}"
    ),
}


def template_text(part: str, source: str, name: str = "hostile") -> str:
    doc: dict[str, Any] = {
        "name": name,
        "version": "1",
        "description": "d",
        "parameters": {"x": {"default": "a"}, "n": {"default": "5000000"}},
        "prompt": "Summarise {{ video_title }}.",
        "schema": {
            "type": "object",
            "required": ["main_topic"],
            "properties": {"main_topic": {"type": "string"}},
        },
        "layout": "# {{ answer.main_topic }}\n",
    }
    doc[part] = source
    return yaml.safe_dump(doc, allow_unicode=True)


def write_hostile(folder: Path, part: str, source: str) -> Path:
    path = folder / "hostile.yaml"
    path.write_text(template_text(part, source), encoding="utf-8")
    return path


def passwd_lines() -> list[str]:
    try:
        return [line for line in Path("/etc/passwd").read_text().splitlines() if line]
    except OSError:
        return []


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_payloads_are_refused_when_the_template_loads(
    tmp_path: Path, part: str, payload: str
) -> None:
    marker = tmp_path / "PWNED"
    path = write_hostile(tmp_path, part, payload.replace("{marker}", str(marker)))
    with pytest.raises(TemplateError) as err:
        load_template(path)
    message = str(err.value)
    assert "hostile.yaml" in message and part in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("part", ["prompt", "system_instruction"])
@pytest.mark.parametrize("payload", DYNAMIC.values(), ids=DYNAMIC.keys())
def test_the_sandbox_refuses_what_only_rendering_shows(
    tmp_path: Path, part: str, payload: str
) -> None:
    source = payload.replace("X", "x").replace("N", "n")
    tpl = load_template(write_hostile(tmp_path, part, source))  # nothing to see yet
    params = tpl.resolve_parameters({})
    started = time.monotonic()
    with pytest.raises(TemplateError) as err:
        tpl.render_prompt(params, {"video_title": "t"})
        tpl.render_system_instruction(params, {"video_title": "t"})
    assert time.monotonic() - started < 15  # refused, not ground through
    assert part in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("payload", DYNAMIC.values(), ids=DYNAMIC.keys())
def test_the_layout_sandbox_refuses_them_too(tmp_path: Path, payload: str) -> None:
    source = payload.replace("X", "answer.t").replace("N", "answer.n")
    tpl = load_template(write_hostile(tmp_path, "layout", source))
    with pytest.raises(TemplateError, match="layout"):
        tpl.render_layout({"answer": {"t": "a", "n": "5000000"}, "meta": {}}, {})


def test_what_templates_may_do_still_works(tmp_path: Path) -> None:
    layout = (
        "{% set ns = namespace(n=0) %}{% macro item(p) %}- {{ p.t|title }}{% endmacro %}"
        "{% for p in answer.points %}{% set ns.n = ns.n + 1 %}{{ loop.index }}{{ item(p) }}\n"
        "{% endfor %}{{ ns.n }} {{ '%05.1f'|format(3.14159) }} {{ '{:>4}'.format('x') }} "
        "{{ answer.points|map(attribute='t')|join(', ') }} {{ 'a b'|replace(' ', '_') }} "
        "{{ 'l1\nl2'|indent(2) }} {{ '-' * 3 }} {{ range(3)|list }} {{ 'x'|center(5) }}"
    )
    tpl = load_template(write_hostile(tmp_path, "layout", layout))
    answer = {"points": [{"t": "one"}, {"t": "two"}]}
    out = tpl.render_layout({"answer": answer, "meta": {}}, {})
    assert out == "1- One\n2- Two\n2 003.1    x one, two a_b l1\n  l2 --- [0, 1, 2]   x  "


def test_limits_are_what_the_docs_say() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "templates.md").read_text()
    assert f"{sandbox.MAX_TEXT_CHARS:,}" in docs and f"{sandbox.MAX_STEPS:,}" in docs


def _invocations(tmp_path: Path, template: Path, sample: Path) -> dict[str, list[str]]:
    out = str(tmp_path / "out")
    table = tmp_path / "course.csv"
    table.write_text(f"path,template\n{sample},{template}\n", encoding="utf-8")
    folder = str(sample.parent)
    return {
        "batch -t --dry-run": ["batch", "-d", folder, "-o", out, "-t", str(template), "--dry-run"],
        "batch -t --simulate": ["batch", "-d", folder, "-o", out, "-t", str(template)],
        "batch csv --dry-run": ["batch", "-u", str(table), "-o", out, "--dry-run"],
        "batch csv --simulate": ["batch", "-u", str(table), "-o", out],
        "main --simulate": ["main", str(sample), "-o", out, "-t", str(template)],
    }


CLI_PAYLOADS = {k: PAYLOADS[k] for k in ("cycler globals", "lipsum globals", "include a file")}
CLI_PAYLOADS |= {
    "read a file": "{{ cycler.__init__.__globals__.os.popen('cat /etc/passwd').read() }}",
    "huge repetition": PAYLOADS["huge repetition"],
    "huge range": PAYLOADS["huge range"],
    "popen through subclasses": PAYLOADS["popen through subclasses"],
}


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("payload", CLI_PAYLOADS.values(), ids=CLI_PAYLOADS.keys())
def test_hostile_templates_through_the_cli(
    cli: Any, sim: Simulator, sample: Path, tmp_path: Path, part: str, payload: str
) -> None:
    marker = tmp_path / "PWNED"
    template = write_hostile(tmp_path, part, payload.replace("{marker}", str(marker)))
    secrets = passwd_lines()
    for how, args in _invocations(tmp_path, template, sample).items():
        result = cli(*args, "--simulate")
        assert not marker.exists(), how  # first: what must never happen at all
        written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
        for line in secrets:
            assert line not in result.output, how
            assert not any(line in text for text in written), how
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.exit_code == ExitCode.INPUT, (how, result.output)
        assert len(errors) == 1, (how, result.stderr)
        assert "Traceback" not in result.output, how
        if "csv" in how:  # the row says why; the batch says none was usable
            said = result.stdout + result.stderr  # a dry run's plan is on stdout
            assert "course.csv:2: broken template" in said, (how, said)
            assert "no usable video" in errors[0]
        else:
            assert "hostile.yaml" in errors[0] and part in errors[0], (how, errors)
        assert sim.api_calls() == 0, (how, sim.stats()["calls"])
    assert not (tmp_path / "out").exists()


def test_a_layout_refused_at_render_fails_the_lesson_with_one_line(
    cli: Any, sim: Simulator, sample: Path, tmp_path: Path
) -> None:
    """A layout refusal that only the answer can show comes after the call, but still
    writes nothing and still is one line."""
    payload = "{{ answer.main_topic|attr('_' ~ '_class__') }}"
    template = write_hostile(tmp_path, "layout", payload)
    out = tmp_path / "out"
    result = cli("main", str(sample), "--simulate", "-o", str(out), "-t", str(template))
    assert result.exit_code == ExitCode.INPUT, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unsafe" in lines[0], lines
    assert not list(out.rglob("*.md"))
    batch = cli(
        "batch", "-d", str(sample.parent), "-o", str(out), "-t", str(template), "--simulate"
    )
    assert batch.exit_code == ExitCode.PARTIAL and "Traceback" not in batch.output
    assert not list(out.rglob("hostile/*.md"))
