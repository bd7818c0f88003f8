"""One checked gate as a row: failures first, the headroom to the nearest bound, the interval a gate was
checked with (else the run's own), and how values, intervals and headrooms are spelled."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from pytest_saeval.report.rows import format_headroom, format_interval, gate_rows
from pytest_saeval.run.outcome import Inputs
from tests.helpers import demo_suite_file, hand_run

SUITE = """\
model: {path: m}
data: {tokens: t.npy}
saes:
  - id: a
    path: a
    gates:
      explained_variance: ">= 0.80"
      l0: [">= 10", "<= 60"]
  - id: b
    path: b
    gates:
      mse: "< 0.5"
"""


@pytest.fixture
def suite_path(tmp_path: Path) -> Path:
    return demo_suite_file(tmp_path, SUITE)


def test_failures_come_first_and_keep_their_order(suite_path: Path) -> None:
    run = hand_run(suite_path, {"a": {"explained_variance": 0.7, "l0": 70.0}, "b": {"mse": 0.2}})
    rows = gate_rows([run])
    assert [(r.sae_id, r.metric, r.passed) for r in rows] == [
        ("a", "explained_variance", False), ("a", "l0", False), ("b", "mse", True)]
    assert rows[0].where == f"{run.suite.path}:{rows[0].line}" and rows[0].line is not None
    assert rows[0].inputs == ""


def test_headroom_is_the_distance_to_the_nearest_bound(suite_path: Path) -> None:
    run = hand_run(suite_path, {"a": {"explained_variance": 0.85, "l0": 20.0}, "b": {"mse": 0.7}})
    rows = {r.metric: r for r in gate_rows([run])}
    assert rows["explained_variance"].headroom == pytest.approx(0.85 - 0.80)
    assert rows["l0"].headroom == pytest.approx(min(20 - 10, 60 - 20))  # both bounds of a range count
    assert rows["l0"].thresholds == ((">=", 10.0), ("<=", 60.0))
    assert rows["mse"].headroom == pytest.approx(0.5 - 0.7) and not rows["mse"].passed  # negative: failing
    nan = hand_run(suite_path, {"a": {"explained_variance": math.nan, "l0": 20.0}})
    (row,) = [r for r in gate_rows([nan]) if r.metric == "explained_variance"]
    assert math.isnan(row.headroom) and not row.passed


def test_the_interval_is_the_checks_else_the_runs_own(suite_path: Path) -> None:
    run = hand_run(suite_path, {"a": {"explained_variance": 0.85, "l0": 20.0}},
                   intervals={"a": {"l0": (18.0, 22.0), "explained_variance": (0.8, 0.9)}})
    rows = {r.metric: r for r in gate_rows([run])}
    assert rows["l0"].interval == (18.0, 22.0)
    assert rows["explained_variance"].interval == (0.8, 0.9)


def test_rows_of_another_evaluation_say_what_replaced_the_inputs(suite_path: Path) -> None:
    run = hand_run(suite_path, {"b": {"mse": 0.1}})
    other = dataclasses.replace(run, inputs=Inputs(overridden=("saeval_tokens from tests/conftest.py",)))
    (row,) = gate_rows([other])
    assert row.inputs == " (with saeval_tokens from tests/conftest.py)"


def test_format_interval() -> None:
    assert format_interval(None) == ""
    assert format_interval((math.nan, 1.0)) == ""
    assert format_interval((0.777, 0.7853)) == "[0.7770, 0.7853]"
    assert format_interval((0.777, 0.7853), 3) == "[0.777, 0.785]"
    assert format_interval((32.38, 33.15), value=32.83) == "[32.38, 33.15]"  # the decimals the value shows


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_headroom_is_signed(value: float) -> None:
    assert format_headroom(value) == ("+0" if value == 0 else "+1")


def test_headroom_spelling() -> None:
    assert format_headroom(-0.0188).startswith("-") and float(format_headroom(-0.0188)) == -0.0188
    assert format_headroom(0.0123).startswith("+") and float(format_headroom(0.0123)) == 0.0123
    assert len(format_headroom(0.012345678, 2)) < len(format_headroom(0.012345678))  # fewer digits asked for
    assert format_headroom(math.nan) == ""
