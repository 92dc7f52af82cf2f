"""The API key never leaves the process in anything it shows or stores, even when the
server's error text repeats it: one-line errors, -v tracebacks (chained SDK errors
included), the log file, the state database, the output folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import typer

from gs_video_report.cli.common import Runtime, handle_errors, setup_logging
from gs_video_report.errors import ExitCode
from gs_video_report.simulator import Fault, Simulator
from gs_video_report.simulator.state import fingerprint
from tests.conftest import make_lectures

# Distinctive, so a hit can only be a leak: no other text in the tool looks like it.
KEY = "AIzaLEAK-9f3b7c1e-never-print-me-Qx42"


def assert_nowhere(root: Path, *texts: str, skip: Path | None = None) -> None:
    for text in texts:
        assert KEY not in text, text
    files = [p for p in root.rglob("*") if p.is_file() and p != skip]
    assert any(p.suffix == ".log" for p in files), files  # something was written
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("endpoint", ["generate", "upload_start"])
def test_main_verbose_never_shows_an_echoed_key(
    cli, sim: Simulator, sample: Path, tmp_path: Path, endpoint: str
) -> None:  # type: ignore[no-untyped-def]
    sim.add_fault(Fault("echo_key", endpoint))
    result = cli("main", str(sample), "--simulate", "-v", "-k", KEY, "-o", str(tmp_path / "o"))
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert sim.stats()["faults_injected"] == {"echo_key": 1}
    assert fingerprint(KEY) in sim.stats()["keys_seen"]  # the key really was sent
    # the echo came back and was shown, scrubbed (in the -v log lines and the error)
    assert "?key=[key]" in result.stderr and "error: 400 INVALID_ARGUMENT" in result.stderr
    assert_nowhere(tmp_path, result.stdout, result.stderr)


def test_batch_verbose_never_stores_or_shows_an_echoed_key(
    cli, sim: Simulator, tmp_path: Path, isolated_env: Path
) -> None:  # type: ignore[no-untyped-def]
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{KEY} label=leaky\n")
    sim.add_fault(Fault("echo_key", "generate", times=10))
    out = tmp_path / "out"
    result = cli(
        "batch",
        "-d",
        str(make_lectures(tmp_path / "lectures")),
        "-o",
        str(out),
        "-t",
        "summary_report",
        "--simulate",
        "-v",
        "--keys-file",
        str(keys),
    )
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert sim.stats()["faults_injected"] == {"echo_key": 3}
    assert sim.stats()["keys_seen"] == [fingerprint(KEY)]
    assert "?key=[key]" in result.stderr  # the failures were reported, scrubbed
    db = isolated_env / "state.db"
    assert b"?key=[key]" in db.read_bytes()  # and stored, scrubbed
    assert any(out.rglob("*.md"))  # the batch report
    assert_nowhere(tmp_path, result.stdout, result.stderr, skip=keys)


def test_internal_error_tracebacks_and_the_log_file_are_scrubbed(
    capsys: pytest.CaptureFixture[str], isolated_env: Path
) -> None:
    rt = Runtime(secrets={KEY})
    setup_logging(rt, verbose=True, to_file=True)
    # handle_errors redacts what the command registered with setup_logging
    with pytest.raises(typer.Exit), handle_errors(verbose=True):
        try:
            raise ValueError(f"the SDK said {KEY}")
        except ValueError as exc:
            raise RuntimeError(f"wrapped: key={KEY}") from exc
    for handler in logging.getLogger().handlers:
        handler.flush()
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: the SDK said [key]" in err
    assert "internal error: RuntimeError: wrapped: key=[key]" in err
    log = (isolated_env / "logs" / "gs_videoreport.log").read_text()
    assert "RuntimeError: wrapped: key=[key]" in log
    assert_nowhere(isolated_env, err)
