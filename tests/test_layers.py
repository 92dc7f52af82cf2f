"""The layer contracts (pyproject.toml, import-linter) hold, and they can fail: a copy of
the package whose CLI imports storage directly breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command;"
    " sys.exit(lint_imports_command())",
]


def _lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(LINT, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_layer_contracts_are_kept() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module", ["cli/info.py", "web/views.py"])
def test_a_front_end_that_imports_storage_breaks_them(tmp_path: Path, module: str) -> None:
    shutil.copytree(REPO / "gs_video_report", tmp_path / "gs_video_report")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "gs_video_report" / module
    line = "\nfrom gs_video_report.storage import open_db  # noqa\n"
    target.write_text(target.read_text() + line)
    result = _lint(tmp_path, pythonpath=tmp_path)
    assert result.returncode != 0
    assert "the CLI and the dashboard go through the engine's API BROKEN" in result.stdout
