"""The terminal renderings: one aligned table per suite, the ``saeval`` command's lines and the pytest
summary section."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pytest_saeval.report.table import command_lines, format_table, summary_lines
from pytest_saeval.run.provenance import Note
from tests.helpers import hand_run

SUITE = """\
model: {path: m}
data: {tokens: t.npy}
baseline: b.json
saes:
  - id: first
    path: a
    gates:
      l0: [">= 10", "<= 60"]
      explained_variance: ">= 0.8"
  - id: second-sae
    path: b
    gates:
      cossim: ">= baseline - 0.01"
      mse: "<= 1"
"""

FIRST = {"l0": 32.0, "explained_variance": 0.7812}
SECOND = {"cossim": 0.9, "mse": 0.5}
INTERVALS = {"first": {"explained_variance": (0.777, 0.7853)}}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    suite = tmp_path / "demo.yaml"
    suite.write_text(SUITE)
    return suite


def _run(path: Path, **fields: object):
    return hand_run(path, {"first": FIRST, "second-sae": SECOND}, recording=True, intervals=INTERVALS, **fields)


def test_one_aligned_row_per_gate_in_suite_file_order(path: Path) -> None:
    lines = format_table(_run(path)).splitlines()
    assert lines == [
        str(path),
        "  sae         metric              value   95% interval      bound               result   ",
        "  ----------  ------------------  ------  ----------------  ------------------  ---------",
        "  first       l0                  32                        >= 10 and <= 60     PASS     ",
        "  first       explained_variance  0.7812  [0.7770, 0.7853]  >= 0.8              FAIL     ",
        "  second-sae  cossim              0.9000                    >= baseline - 0.01  UNCHECKED",
        "  second-sae  mse                 0.5000                    <= 1                PASS     ",
        "  2 passed, 1 failed, 1 unchecked (no baseline value yet)",
    ]


def test_a_baseline_gate_shows_the_value_it_compared_with(path: Path) -> None:
    from pytest_saeval.spec.baseline import Baseline

    baseline = Baseline(path=path.parent / "b.json", values={"second-sae": {"cossim": 0.95}})
    table = format_table(hand_run(path, {"second-sae": SECOND}, baseline=baseline))
    assert "cossim  0.9000                >= baseline - 0.01 (= 0.9400)  FAIL" in table
    assert table.splitlines()[-1] == "  1 passed, 1 failed"


def test_no_gates_and_nan_values(path: Path) -> None:
    bare = path.parent / "bare.yaml"
    bare.write_text("model: {path: m}\ndata: {tokens: t.npy}\nsaes:\n  - id: x\n    path: x\n")
    assert format_table(hand_run(bare, {"x": {"l0": 1.0, "explained_variance": 0.81234}})).splitlines()[1:] == [
        "  no gates; measured 1 SAE:",
        "    x: explained_variance 0.8123, l0 1",
        f"  propose gates from these measurements with `saeval init {bare}`",
    ]
    table = format_table(hand_run(path, {"first": {"l0": math.nan, "explained_variance": 0.9}}))
    assert "  first  l0                  NaN" in table and table.splitlines()[-1] == "  1 passed, 1 failed"


def test_command_lines(path: Path) -> None:
    run = _run(path, notes=[Note("first", "[first] a note about first")])
    lines = command_lines([run])
    table = format_table(run).splitlines()
    assert lines[:len(table)] == table
    assert lines[len(table):] == [
        f"FAILED [first] explained_variance = 0.7812 [0.7770, 0.7853], needs >= 0.8 (short by 0.0188) — {path}:9",
        "UNCHECKED [second-sae] cossim >= baseline - 0.01: the baseline has no value yet; "
        f"this run records it — {path}:13",
        f"NOTE {path}: [first] a note about first",
        "saeval: 2 passed, 1 failed, 1 unchecked (2 SAEs in 1 suite)",
    ]
    other = path.parent / "other.yaml"
    other.write_text(SUITE)
    two = command_lines([hand_run(path, {"first": {"l0": 20.0, "explained_variance": 0.9}}),
                         hand_run(other, {"first": FIRST})])
    assert two[-1] == "saeval: 3 passed, 1 failed (2 SAEs in 2 suites)"
    assert sum(line.startswith("FAILED ") for line in two) == 1 and not any(line.startswith("NOTE") for line in two)


def test_summary_lines(path: Path) -> None:
    run = _run(path, notes=[Note("first", "[first] a note about first")])
    table = format_table(run).splitlines()
    lines = summary_lines([run], {"gw0": 2, "gw1": 1, "main": 0}, ["s.yaml:3: saes[0].d_in: does not fit"])
    assert lines[:len(table)] == table
    assert lines[len(table):] == [
        "  not checked: [second-sae] cossim >= baseline - 0.01: the baseline has no value yet; "
        f"this run records it — {path}:13",
        "  note: [first] a note about first",
        "3 SAE evaluations (gw0: 2, gw1: 1)",
        "ERROR s.yaml:3: saes[0].d_in: does not fit",
    ]
    assert summary_lines([run], {"main": 1}, [])[-1] == "1 SAE evaluation"  # one process: no per-worker counts
    assert summary_lines([], {"main": 0}, []) == []
    assert summary_lines([], {}, ["boom"]) == ["ERROR boom"]
