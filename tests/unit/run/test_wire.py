"""Runs as plain data for pytest-xdist: ``run_to_wire`` gives only plain values (NaN kept), and
``run_from_wire`` rebuilds the same run, checking the gates again from the sent values."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pytest_saeval.run.provenance import Note, Provenance
from pytest_saeval.run.wire import run_from_wire, run_to_wire
from pytest_saeval.spec.baseline import load_baseline, write_baseline
from pytest_saeval.spec.loader import load_suite
from tests.helpers import demo_suite_file, hand_run

NAN = float("nan")

SUITE = """\
model: {path: m}
data: {tokens: t.npy}
baseline: b.json
gate_mode: interval
saes:
  - id: a
    path: a
    gates:
      l0: "<= 10"
      explained_variance: ">= 0.8"
      cossim: ">= baseline - 0.01"
      kl_div_score: ">= 0.9"
  - id: b
    path: b
    gates:
      cossim: ">= baseline - 0.01"
"""

A = {"l0": 4.0, "explained_variance": 0.79, "cossim": 0.95, "kl_div_score": NAN, "mse": 0.25}
B = {"cossim": 0.5}
INTERVALS = {"a": {"explained_variance": (0.78, 0.81), "l0": (3.5, 4.5), "kl_div_score": (NAN, NAN)}}


def _same(x: object, y: object) -> bool:
    """Equality that treats NaN as equal to NaN, through lists, tuples and dicts."""
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)) and type(x) is type(y):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return x == y


def _plain(value: object) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _run(tmp_path: Path):
    path = demo_suite_file(tmp_path, SUITE)
    write_baseline(path.parent / "b.json", {"a": {"cossim": 0.955}})
    run = hand_run(path, {"a": A, "b": B}, baseline=load_baseline(path.parent / "b.json"), recording=True,
                   intervals=INTERVALS, notes=[Note("a", "a note", loud=True)],
                   provenance={"a": Provenance.from_dict({"device": "cpu", "sae_xxh3": "f" * 32})},
                   sae_cfgs={"a": {"d_in": 8, "architecture": "topk", "k": None}})
    run.results["a"].feature_metrics.update({"feature_density": [0.0, 0.5, NAN, 1.0]})
    return run


def _checks(run) -> list[tuple[str, str, bool, str]]:
    return [(c.sae_id, c.gate.metric, c.passed, c.message) for c in run.checks]


def test_the_wire_holds_only_plain_values_and_survives_json(tmp_path: Path) -> None:
    wire = run_to_wire(_run(tmp_path))
    assert _plain(wire)
    assert isinstance(wire, dict)
    assert wire["suite"] == str(tmp_path / "thresholds" / "demo.yaml")
    assert wire["entries"] == [["a", "a", None], ["b", "b", None]]
    assert wire["checks"] == [["a", "l0"], ["a", "explained_variance"], ["a", "cossim"], ["a", "kl_div_score"]]
    assert wire["unchecked"] == [["b", "cossim"]]
    assert math.isnan(wire["results"]["a"]["metrics"]["kl_div_score"])  # NaN is kept, not nulled
    assert wire["intervals"]["a"]["l0"] == [3.5, 4.5]
    assert "sequence_stats" not in wire["results"]["a"]  # per-sequence sums stay with the worker
    assert _same(json.loads(json.dumps(wire)), wire)


def test_a_run_comes_back_equal(tmp_path: Path) -> None:
    run = _run(tmp_path)
    back = run_from_wire(json.loads(json.dumps(run_to_wire(run))), load_suite)
    assert back.suite == run.suite
    assert back.entries == run.entries
    assert back.results.keys() == run.results.keys()
    for uid, result in run.results.items():
        again = back.results[uid]
        assert (again.sae_id, again.hook_name, again.hook_head_index, again.d_in, again.d_sae) == \
               (result.sae_id, result.hook_name, result.hook_head_index, result.d_in, result.d_sae)
        assert _same(again.metrics, result.metrics) and _same(again.feature_metrics, result.feature_metrics)
    assert _checks(back) == _checks(run)
    assert [(uid, g) for uid, g in back.unchecked] == [(uid, g) for uid, g in run.unchecked]
    assert back.eval_cfg == run.eval_cfg and back.provenance == run.provenance
    assert back.sae_cfgs == run.sae_cfgs and back.notes == run.notes
    assert _same(back.intervals, run.intervals)
    assert all(type(iv) is tuple for ivs in back.intervals.values() for iv in ivs.values())


def test_gates_are_checked_again_with_the_sent_values_and_intervals(tmp_path: Path) -> None:
    run = _run(tmp_path)
    checks = {c.gate.metric: c for c in run.checks}
    # gate_mode interval: 0.79 passes because its interval reaches 0.8; NaN never passes
    assert checks["explained_variance"].passed and "the interval reaches the bound" in checks["explained_variance"].message
    assert not checks["kl_div_score"].passed and "NaN never passes" in checks["kl_div_score"].message
    assert checks["cossim"].passed  # 0.95 >= 0.955 - 0.01
    back = run_from_wire(run_to_wire(run), load_suite)
    assert _checks(back) == _checks(run)
    # the controller reads the same baseline file: a value recorded meanwhile is what it compares with
    write_baseline(tmp_path / "thresholds" / "b.json", {"a": {"cossim": 0.99}})
    again = {c.gate.metric: c for c in run_from_wire(run_to_wire(run), load_suite).checks}
    assert not again["cossim"].passed and "(= 0.9800)" in again["cossim"].message
