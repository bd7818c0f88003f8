"""Helpers for the ``saeval`` command's tests: suite files on the shared tiny assets (the ``tiny``
fixture), the command run in-process, and its JSON outputs read strictly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_saeval.cli import main
from tests.integration.badinput.cases import Assets

NO_CACHE = ("--no-cache", "--no-progress")


def write_suite(
    path: Path,
    tiny: Assets,
    *,
    gates0: str = 'l0: ">= 0"',
    gates1: str = 'frac_alive: ">= 0"',
    sae0: Path | None = None,
    tokens: Path | None = None,
    baseline: str | None = None,
    context: int = 8,
    second: bool = True,
) -> Path:
    """A valid suite with two SAEs (``sae0`` on block 0, ``topk`` on block 1; ``second=False``: ``sae0`` only)."""
    lines = [
        "model:",
        f"  path: {tiny.model}",
        "  device: cpu",
        "data:",
        f"  tokens: {tokens or tiny.tokens}",
        f"  context_size: {context}",
        "  batch_size_prompts: 2",
        "  n_reconstruction_batches: 2",
        "  n_sparsity_batches: 2",
    ]
    if baseline is not None:
        lines.append(f"baseline: {baseline}")
    lines += [
        "saes:",
        "  - id: sae0",
        f"    path: {sae0 or tiny.sae}",
        "    gates:",
        f"      {gates0}",
    ]
    if second:
        lines += [
            "  - id: topk",
            f"    path: {tiny.sae_topk}",
            "    gates:",
            f"      {gates1}",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(needle)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["run", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def load(path: Path) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{path.name}: non-JSON number {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)
