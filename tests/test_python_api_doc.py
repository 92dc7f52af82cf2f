"""docs/python-api.md's example runs as documented (from a copy of the repository root)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, SAMPLES


def test_the_documented_example_runs(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "python-api.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)
    shutil.copytree(SAMPLES, tmp_path / "examples" / "videos")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GS_VIDEOREPORT_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "3 to run, 0 skipped" in result.stdout
    assert "done exit 0" in result.stdout and "3 lessons written" in result.stdout
    assert len(list((tmp_path / "lessons" / "summary_report").glob("*.md"))) == 3
    assert "one video:" in result.stdout and "done" in result.stdout.splitlines()[-1]
    assert list((tmp_path / "notes").rglob("intro_to_fractions.md"))
    assert (tmp_path / "state" / "state.db").is_file()  # state where the script said
