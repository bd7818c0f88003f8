"""Checking the gates of evaluated SAEs: each gate against its value, its baseline value and, in
``gate_mode: interval``, its interval (only a whole interval on the wrong side fails); unchecked gates
while a baseline is recorded; the located messages."""

from __future__ import annotations

import pytest

from pytest_saeval.errors import BaselineError, Subject, SuiteError
from pytest_saeval.run.checks import check_one, check_suite, no_baseline_reason
from pytest_saeval.run.plan import entries_of
from pytest_saeval.spec.baseline import Baseline
from pytest_saeval.spec.loader import load_suite
from tests.helpers import sae_result

SUITE = """\
model:
  path: model
data:
  tokens: tokens.npy
{mode}saes:
  - id: a
    path: sae
    gates:
      explained_variance: ">= 0.80"
      l0: "<= 60"
"""


def _suite(tmp_path, mode_line: str):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(mode=mode_line))
    return load_suite(path)


@pytest.mark.parametrize(("mode_line", "passes"), [("", False), ("gate_mode: point\n", False),
                                                     ("gate_mode: interval\n", True)])
def test_interval_straddling_the_bound(tmp_path, mode_line, passes):
    suite = _suite(tmp_path, mode_line)
    gate = suite.sae("a").gate("explained_variance")
    check = check_one(suite, "a", gate, {"explained_variance": 0.79}, None,
                      intervals={"explained_variance": (0.78, 0.81)})
    assert check.passed is passes
    assert "0.79" in check.message and "[0.78" in check.message


def test_interval_mode_still_fails_when_the_whole_interval_is_below(tmp_path):
    suite = _suite(tmp_path, "gate_mode: interval\n")
    gate = suite.sae("a").gate("explained_variance")
    check = check_one(suite, "a", gate, {"explained_variance": 0.70}, None,
                      intervals={"explained_variance": (0.68, 0.72)})
    assert not check.passed


def test_interval_mode_without_an_interval_checks_the_value(tmp_path):
    suite = _suite(tmp_path, "gate_mode: interval\n")
    gate = suite.sae("a").gate("l0")
    assert not check_one(suite, "a", gate, {"l0": 61.0}, None, intervals={}).passed
    assert check_one(suite, "a", gate, {"l0": 59.0}, None, intervals=None).passed


def test_bad_gate_mode_is_a_located_suite_error(tmp_path):
    with pytest.raises(SuiteError) as info:
        _suite(tmp_path, "gate_mode: strict\n")
    message = str(info.value)
    assert "suite.yaml:5" in message and "gate_mode" in message and "Fix:" in message


# -- check_suite and the messages ----------------------------------------------------------------------

BASELINE_SUITE = """\
model:
  path: model
data:
  tokens: tokens.npy
baseline: b.json
saes:
  - id: a
    path: sae
    gates:
      l0: "<= 60"
      cossim: ">= baseline - 0.01"
  - id: b
    path: sae
    gates:
      mse: "<= 1"
defaults:
  gates:
    frac_alive: ">= 0.5"
"""


def _baseline_suite(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(BASELINE_SUITE)
    return load_suite(path)


def test_check_suite_checks_every_gate_in_file_order(tmp_path):
    suite = _baseline_suite(tmp_path)
    entries = entries_of(suite)
    results = {"a": sae_result("a", {"l0": 61.0, "cossim": 0.95, "frac_alive": 1.0}),
               "b": sae_result("b", {"mse": 0.5, "frac_alive": 0.25})}
    baseline = Baseline(path=tmp_path / "b.json", values={"a": {"cossim": 0.955}})
    checks, unchecked = check_suite(suite, entries, results, baseline, {})
    assert [(c.sae_id, c.gate.metric, c.passed) for c in checks] == [
        ("a", "l0", False), ("a", "cossim", True), ("a", "frac_alive", True), ("b", "mse", True),
        ("b", "frac_alive", False)]
    assert unchecked == []
    # numbers first (pytest's short summary cuts long lines at the end), where last
    assert checks[0].message == f"[a] l0 = 61, needs <= 60 (over by 1) — {suite.path}:10"
    assert checks[0].reading == f"61, needs <= 60 (over by 1) — {suite.path}:10"
    assert checks[0].where == f"{suite.path}:10"
    on = " (with saeval_tokens from tests/conftest.py)"  # a conftest's inputs: said before file:line
    assert checks[0].message_on(on) == f"[a] l0 = 61, needs <= 60 (over by 1){on} — {suite.path}:10"
    assert checks[0].reading_on(on) == f"61, needs <= 60 (over by 1){on} — {suite.path}:10"
    assert checks[1].message == f"[a] cossim = 0.9500 (>= baseline - 0.01 (= 0.9450)) — {suite.path}:11"
    assert checks[4].message == f"[b] frac_alive = 0.2500, needs >= 0.5 (short by 0.2500) — {suite.path}:18"  # defaults: line
    # an entry without a result (deselected, or set aside after an error) has no checks
    only_b, _ = check_suite(suite, entries, {"b": results["b"]}, baseline, {})
    assert [c.sae_id for c in only_b] == ["b", "b"]


def test_a_missing_baseline_value_is_an_error_unless_recording(tmp_path):
    suite = _baseline_suite(tmp_path)
    entries = entries_of(suite)
    results = {"a": sae_result("a", {"l0": 6.0, "cossim": 0.95, "frac_alive": 1.0})}
    with pytest.raises(BaselineError) as info:
        check_suite(suite, entries, results, None, {})
    e = info.value
    assert (e.location.file, e.location.line, e.location.key) == (str(suite.path), 11, "saes[0].gates.cossim")
    assert e.subject == Subject(suite=str(suite.path), sae="a")
    assert "the baseline file has no value of cossim for SAE 'a'" in str(e) and "--saeval-update-baseline" in str(e)
    checks, unchecked = check_suite(suite, entries, results, None, {}, recording=True)
    assert [c.gate.metric for c in checks] == ["l0", "frac_alive"]
    assert [(uid, g.metric) for uid, g in unchecked] == [("a", "cossim")]
    # recording with a value already there: the gate is checked against it
    recorded = Baseline(path=tmp_path / "b.json", values={"a": {"cossim": 0.5}})
    checks, unchecked = check_suite(suite, entries, results, recorded, {}, recording=True)
    assert [c.gate.metric for c in checks] == ["l0", "cossim", "frac_alive"] and unchecked == []


def test_a_metric_the_engine_did_not_produce_fails_as_nan(tmp_path):
    suite = _suite(tmp_path, "")
    check = check_one(suite, "a", suite.sae("a").gate("l0"), {}, None)
    assert not check.passed and check.result.message == "l0 = NaN, needs <= 60 (NaN never passes)"


def test_intervals_are_shown_in_point_mode(tmp_path):
    suite = _suite(tmp_path, "")
    check = check_one(suite, "a", suite.sae("a").gate("l0"), {"l0": 30.0}, None, intervals={"l0": (28.0, 32.0)})
    assert check.passed and check.result.interval == (28.0, 32.0) and check.result.mode == "point"
    assert check.message == f"[a] l0 = 30 [28, 32] (<= 60) — {suite.path}:10"


def test_no_baseline_reason(tmp_path):
    suite = _baseline_suite(tmp_path)
    gate = suite.sae("a").gate("cossim")
    assert no_baseline_reason(suite, "a", gate) == (
        f"[a] cossim >= baseline - 0.01: the baseline has no value yet; this run records it — {suite.path}:11")
    assert no_baseline_reason(None, "a", gate).startswith("[a] cossim >= baseline - 0.01: the baseline has no value yet")
