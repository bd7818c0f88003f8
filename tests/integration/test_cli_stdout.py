"""``saeval``'s stdout failing: a full disk (``/dev/full``) ends the command with ``cannot write stdout: reason``
and exit 2 after the outputs are written; a reader that leaves the pipe early (``| head``) keeps the verdict's
exit code and the outputs. Never a traceback, never an exit 3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.badinput.cases import Assets, shared_assets
from tests.integration.badinput.kit import base_suite, write_suite

COMMAND = "import sys; from pytest_saeval.cli import console; sys.exit(console(sys.argv[1:]))"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return shared_assets(tmp_path_factory)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _saeval(*args: str, stdout: int | object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", COMMAND, *args], stdout=stdout, stderr=subprocess.PIPE,  # type: ignore[arg-type]
                            env=_env())


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("command", ["run", "schema"])
def test_a_full_disk_under_stdout_is_one_line_after_the_outputs(tiny: Assets, tmp_path: Path, command: str) -> None:
    suite = write_suite(tmp_path, base_suite(tiny))
    args = ["run", str(suite), "--output-dir", str(tmp_path / "out"), "--no-progress"] if command == "run" else ["schema"]
    with open("/dev/full", "wb") as full:
        proc = _saeval(*args, stdout=full)
        _, err = proc.communicate(timeout=900)
    assert proc.returncode == 2, err
    assert err.decode().splitlines() == ["saeval: error: cannot write stdout: No space left on device"]
    if command == "run":
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
            "all_eval_results.csv", "all_eval_results.json", "suite__sae0.json", "summary.md"]


def test_a_reader_leaving_the_pipe_keeps_the_verdict_and_the_outputs(tiny: Assets, tmp_path: Path) -> None:
    suite = write_suite(tmp_path, base_suite(tiny))
    proc = _saeval("run", str(suite), "--output-dir", str(tmp_path / "out"), "--no-progress", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    assert err.decode() == ""
    assert (tmp_path / "out" / "all_eval_results.json").is_file() and (tmp_path / "out" / "summary.md").is_file()
