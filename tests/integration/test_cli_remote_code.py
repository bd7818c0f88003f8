"""A model folder that ships its own Python code: refused in one line without reading stdin, even when stdin
answers "y"; ``model.trust_remote_code: true`` runs it (that is what the key is documented to do)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_saeval.cli import main
from tests.integration.badinput.cases import Assets, shared_assets
from tests.integration.badinput.hostile import custom_code_model
from tests.integration.badinput.kit import base_suite, write_suite


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return shared_assets(tmp_path_factory)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("saeval")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pytest_saeval.cli"]


def test_refused_without_reading_stdin_that_answers_yes(tiny: Assets, tmp_path: Path) -> None:
    custom_code_model(tmp_path, tiny)
    suite = write_suite(tmp_path, base_suite(tiny, model="model"))
    answers = b"y\n" * 32
    read_end, write_end = os.pipe()
    os.write(write_end, answers)
    os.close(write_end)
    try:
        proc = subprocess.run([*_command(), "run", str(suite), "--no-cache", "--no-progress"], stdin=read_end,
                              capture_output=True, text=True, cwd=tmp_path, timeout=600)
        left = os.read(read_end, 4096)
    finally:
        os.close(read_end)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{suite}:2: model.path: model folder" in lines[0] and "needs its own Python code to load" in lines[0]
    assert "[y/N]" not in proc.stdout + proc.stderr
    assert left == answers, "the command read stdin"
    assert not (tmp_path / "PWNED").exists(), "the folder's code ran"


def test_opting_in_runs_the_folders_code(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    custom_code_model(tmp_path, tiny)
    text = base_suite(tiny, model="model").replace("  device: cpu\n", "  device: cpu\n  trust_remote_code: true\n", 1)
    suite = write_suite(tmp_path, text)
    assert main(["run", str(suite), "--no-cache", "--no-progress"]) == 0, capsys.readouterr()
    assert "1 passed" in capsys.readouterr().out
    assert (tmp_path / "PWNED").exists()  # documented: the key runs that folder's code
