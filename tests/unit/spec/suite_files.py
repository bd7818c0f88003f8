"""Suite files written for the spec tests, and how their errors are checked."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_saeval.errors import SuiteError
from pytest_saeval.spec.loader import load_suite

MINIMAL = """\
model:
  name: gpt2
data:
  tokens: eval.npy
saes:
  - id: a
    path: sae_a
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / "thresholds" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def error(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return str(info.value), path


def assert_error(tmp_path: Path, text: str, line: int, key: str | None, *needles: str) -> str:
    message, path = error(tmp_path, text)
    prefix = f"{path}:{line}: " + (f"{key}: " if key else "")
    assert message.startswith(prefix), message
    assert "Fix: " in message, message
    for needle in needles:
        assert needle in message, message
    return message
