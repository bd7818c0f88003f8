"""saeval init's proposals: margins, rounding, directions, limits, kept gates."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import pytest

from pytest_saeval.catalogue import LIMITS
from pytest_saeval.errors import InputError, SuiteError
from pytest_saeval.propose import (
    SAEProposal,
    format_proposals,
    propose_bounds,
    propose_gates,
    to_write,
)
from pytest_saeval.run.outcome import EvalConfig, SuiteRun
from pytest_saeval.run.plan import SAEEntry, entries_of
from pytest_saeval.settings import MarginPolicy
from pytest_saeval.spec.gates import parse_bound, parse_gate
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.verdict import check_gate
from tests.unit.init_helpers import SUITE, write_suite


def _result(metrics, sae_id="s"):
    from pytest_saeval.engine.results import SAEResult

    return SAEResult(sae_id=sae_id, hook_name="blocks.0.hook_resid_pre", hook_head_index=None, d_in=4, d_sae=8,
                     metrics=dict(metrics), feature_metrics={})


EVAL_CFG = EvalConfig(suite="suite.yaml", dataset="t.npy", context_size=16, batch_size_prompts=4,
                      n_eval_reconstruction_batches=2, n_eval_sparsity_variance_batches=3,
                      exclude_special_tokens=True, library_version="x", saeval_version="y")


def _run(path: Path, metrics_by_id, entries=None, intervals=None) -> SuiteRun:
    suite = load_suite(path)
    entries = entries if entries is not None else entries_of(suite)
    results = {e.unique_id: _result(metrics_by_id[e.unique_id], e.unique_id) for e in entries}
    return SuiteRun(suite=suite, entries=entries, results=results, checks=[], eval_cfg=EVAL_CFG,
                    intervals=dict(intervals or {}))


MEASURED = {
    "explained_variance": 0.8012, "kl_div_score": 0.95, "ce_loss_score": 0.9, "ce_loss_increase": 0.05,
    "l0": 34.75, "frac_alive": 1.0, "freq_over_10_percent": 0.0,
}
INTERVALS = {
    "explained_variance": (0.7950, 0.8071), "kl_div_score": (0.94, 0.96), "ce_loss_score": (0.88, 0.92),
    "ce_loss_increase": (0.04, 0.06), "l0": (34.24, 35.29),
}


def _gates(proposal: SAEProposal) -> dict[str, tuple[str, ...]]:
    return {g.metric: g.expressions for g in proposal.gates}


# -- proposing -------------------------------------------------------------------------------------


def test_margins_directions_and_rounding(tmp_path):
    path = write_suite(tmp_path)
    run = _run(path, {"first": MEASURED, "second": MEASURED}, intervals={"first": INTERVALS, "second": INTERVALS})
    proposals = propose_gates([run])
    assert [p.sae_id for p in proposals] == ["first", "second"]
    gates = _gates(proposals[0])
    # margin max(2 * 0.00605, 0.005, 0.02 * 0.8012) = 0.016 below 0.7950 -> 0.779, rounded down to 0.01
    assert gates["explained_variance"] == (">= 0.77",)
    # 0.06 + max(0.02, 0.005, 0.001) = 0.08
    assert gates["ce_loss_increase"] == ("<= 0.08",)
    # a range: margin max(1.05, 3.475) -> [30.765, 38.765] rounded outward to whole numbers
    assert gates["l0"] == (">= 30", "<= 39")
    # no interval: the floors alone (0.02 * 1.0)
    assert gates["frac_alive"] == (">= 0.98",)
    assert gates["freq_over_10_percent"] == ("<= 0.005",)
    assert gates["kl_div_score"] == (">= 0.92",)  # 0.94 - 0.02
    # catalogue order
    assert [g.metric for g in proposals[0].gates] == [
        "kl_div_score", "ce_loss_score", "ce_loss_increase", "l0", "explained_variance", "frac_alive",
        "freq_over_10_percent"]


def test_proposed_bounds_always_pass_on_the_measured_value():
    rnd = random.Random(0)
    policy = MarginPolicy()
    for metric in ("explained_variance", "mse", "l0", "ce_loss_increase", "kl_div_score", "l2_ratio", "frac_alive"):
        for _ in range(300):
            value = rnd.choice([1, -1]) * 10 ** rnd.uniform(-6, 4)
            half = abs(value) * 10 ** rnd.uniform(-5, 0) if rnd.random() < 0.8 else 0.0
            shift = rnd.uniform(-half, half) * 0.3
            interval = (value - half + shift, value + half + shift) if half else None
            expressions = propose_bounds(metric, value, interval, policy)
            if not expressions:  # no bound could fail: only for metrics with limits (shares)
                assert metric in LIMITS, (metric, value, interval)
                continue
            gate = parse_gate(metric, list(expressions))
            result = check_gate(gate, value)
            assert result.passed, (metric, value, interval, expressions)
            for e in expressions:  # readable: short plain decimals
                assert "e" not in e.lower() and len(e) < 24, e


def test_non_negative_range_drops_a_lower_bound_below_zero(tmp_path):
    path = write_suite(tmp_path)
    run = _run(path, {"first": {"l0": 0.5}, "second": {"l0": 0.5}}, intervals={"first": {"l0": (0.3, 0.7)}})
    proposals = propose_gates([run], metrics=("l0",))
    assert _gates(proposals[0])["l0"] == ("<= 1.1",)


def test_margin_policy_is_used(tmp_path):
    path = write_suite(tmp_path)
    run = _run(path, {"first": MEASURED, "second": MEASURED}, intervals={"first": INTERVALS})
    loose = propose_gates([run], metrics=("explained_variance",), policy=MarginPolicy(k=10, rel_floor=0))
    # 0.7950 - 10 * 0.00605 = 0.7345 -> step 0.01
    assert _gates(loose[0])["explained_variance"] == (">= 0.73",)
    with pytest.raises(InputError, match="abs_floor must be a number from 1e-9 to 1e9, got 0") as info:
        MarginPolicy(abs_floor=0)
    assert info.value.location.key == "abs_floor" and "e.g. 0.005" in (info.value.fix or "")
    with pytest.raises(InputError, match="k must be a number from 0 to 100"):
        MarginPolicy(k=-1)
    with pytest.raises(InputError, match="rel_floor must be"):
        MarginPolicy(rel_floor=float("nan"))


@pytest.mark.parametrize(("field", "low", "high", "beyond"), [
    ("k", 0, 100, 1e308), ("abs_floor", 1e-9, 1e9, 1.7e308), ("rel_floor", 0, 10, 1e308),
    ("range_rel_floor", 0, 10, 1e308)])
def test_margins_have_sensible_ranges(field: str, low: float, high: float, beyond: float) -> None:
    """``--margin-rel 1e308`` ended in an OverflowError, ``--margin-k 1e308`` in a 300-digit gate."""
    assert MarginPolicy(**{field: low}) and MarginPolicy(**{field: high})
    for value in (beyond, high * 1.001, low - 1e-12, math.inf):
        with pytest.raises(InputError, match=f"{field} must be a number from ") as info:
            MarginPolicy(**{field: value})
        assert "Fix: set " in str(info.value) and info.value.location.key == field


@pytest.mark.parametrize("metric", ["explained_variance", "mse", "l0"])
@pytest.mark.parametrize(("value", "interval"), [
    (1.7e308, None), (-1.7e308, None), (1.0, (-1.7e308, 1.7e308)), (1e30, (1e30 - 1e15, 1e30 + 1e15)),
    (1e-30, None), (123456789012345.0, (123456789012344.0, 123456789012346.0))])
def test_every_proposed_bound_is_a_short_finite_number_the_loader_reads(metric: str, value: float,
                                                                        interval: tuple[float, float] | None) -> None:
    """Values near the largest float give no bound (never an OverflowError or an 'inf' one); huge and tiny values
    and the smallest margins (which used to outgrow Decimal's precision) give short bounds that pass the value."""
    for policy in (MarginPolicy(), MarginPolicy(k=100, rel_floor=10, range_rel_floor=10, abs_floor=1e9),
                   MarginPolicy(k=0, rel_floor=0, range_rel_floor=0, abs_floor=1e-9)):
        expressions = propose_bounds(metric, value, interval, policy)
        for e in expressions:
            assert len(e) <= 3 + 20 and math.isfinite(parse_bound(e).constant or math.nan), e
        if expressions:
            assert check_gate(parse_gate(metric, list(expressions)), value).passed, (value, expressions)
        elif abs(value) < 1e300 and interval is None:
            raise AssertionError(f"no bound for {metric} = {value} with {policy}")


def test_a_bound_beyond_the_largest_float_is_skipped_with_its_reason(tmp_path):
    path = write_suite(tmp_path)
    measured = {**MEASURED, "mse": 1.7e308}
    first = propose_gates([_run(path, {"first": measured, "second": measured})], metrics=("mse",),
                          policy=MarginPolicy(rel_floor=10))[0]
    assert "mse" not in _gates(first)
    assert first.skipped[0] == "mse: measured 1.700e+308 for first; no finite bound at this margin"


def test_already_gated_metrics_are_proposed_and_baseline_gates_kept(tmp_path):
    text = SUITE.replace('explained_variance: ">= 0.99"', 'ce_loss_score: ">= baseline - 0.01"\n      mse: "<= 5"')
    text = text.replace("saes:\n", "baseline: ../baselines/b.json\nsaes:\n")
    path = write_suite(tmp_path, text)
    run = _run(path, {"first": {**MEASURED, "mse": 2.0}, "second": MEASURED})
    first, second = propose_gates([run], metrics=("l0",))
    assert set(_gates(first)) == {"l0", "mse", "frac_alive"}  # frac_alive comes from defaults.gates
    assert first.skipped == ("ce_loss_score: relative to the baseline, kept as written",)
    assert set(_gates(second)) == {"l0", "frac_alive"}


def test_non_finite_values_are_skipped_with_a_reason(tmp_path):
    path = write_suite(tmp_path)
    run = _run(path, {"first": {**MEASURED, "kl_div_score": math.nan}, "second": MEASURED})
    first = propose_gates([run])[0]
    assert "kl_div_score" not in _gates(first)
    assert first.skipped == ("kl_div_score: measured NaN for first, no gate proposed",)
    assert "skipped kl_div_score" in format_proposals([first])


def test_intervals_are_computed_when_not_given(tmp_path):
    """A run without intervals: the bootstrap runs on the result's sums (none here: floors only)."""
    path = write_suite(tmp_path)
    run = _run(path, {"first": MEASURED, "second": MEASURED})
    gates = _gates(propose_gates([run])[0])
    assert gates["explained_variance"] == (">= 0.78",)  # 0.8012 - 0.016 = 0.7852 -> 0.78


def test_several_saes_of_one_entry_get_the_loosest_bounds(tmp_path):
    path = write_suite(tmp_path)
    suite = load_suite(path)
    spec = suite.sae("first")
    entries = [SAEEntry(path, spec, f"first/{k}", k) for k in ("a", "b")] + [SAEEntry(path, suite.sae("second"), "second")]
    run = _run(path, {"first/a": {"l0": 20.0, "explained_variance": 0.9},
                      "first/b": {"l0": 40.0, "explained_variance": 0.7},
                      "second": {"l0": 10.0}}, entries)
    first = propose_gates([run], metrics=("l0", "explained_variance"))[0]
    gates = {g.metric: g for g in first.gates}
    assert gates["l0"].expressions == (">= 18", "<= 44")
    assert gates["explained_variance"].expressions == (">= 0.68",)
    assert gates["explained_variance"].n_saes == 2
    assert "loosest of 2 SAEs" in gates["explained_variance"].comment


def test_unknown_metric_is_a_suite_error(tmp_path):
    path = write_suite(tmp_path)
    with pytest.raises(SuiteError, match="did you mean 'explained_variance'"):
        propose_gates([_run(path, {"first": {}, "second": {}})], metrics=("explained_varience",))


def test_intervals_carried_by_the_run_are_used(tmp_path):
    path = write_suite(tmp_path)
    run = _run(path, {"first": MEASURED, "second": MEASURED}, intervals={"first": {"explained_variance": (0.70, 0.90)}})
    gates = _gates(propose_gates([run], metrics=("explained_variance",))[0])
    # half-width 0.1: 0.70 - 2 * 0.1 = 0.50
    assert gates["explained_variance"] == (">= 0.5",)


def test_the_comment_shows_value_and_interval_in_the_reports_one_format(tmp_path):
    """``measured 0.009444 [0.007060, 0.011738]``: the interval's ends with the value's decimals, as every
    report prints them (not ``[0.007060, 0.0117]``)."""
    path = write_suite(tmp_path)
    run = _run(path, {"first": {"freq_over_1_percent": 0.009444}, "second": MEASURED},
               intervals={"first": {"freq_over_1_percent": (0.007060, 0.011738)}})
    gate = {g.metric: g for g in propose_gates([run], metrics=("freq_over_1_percent",))[0].gates}
    assert gate["freq_over_1_percent"].comment == "measured 0.009444 [0.007060, 0.011738]"


# -- gates the suite has, limits, the printed summary -------------------------------------------


def test_existing_gates_are_kept_unless_asked(tmp_path):
    path = write_suite(tmp_path)
    run = _run(path, {"first": MEASURED, "second": MEASURED}, intervals={"first": INTERVALS, "second": INTERVALS})
    first = propose_gates([run])[0]
    by_metric = {g.metric: g for g in first.gates}
    assert by_metric["explained_variance"].existing == (">= 0.99",)
    assert by_metric["l0"].existing == (">= 1", "<= 2")
    assert by_metric["frac_alive"].existing == (">= 0.5",)  # from defaults.gates: reviewed too
    assert by_metric["kl_div_score"].existing is None
    assert {g.metric for g in to_write(first)} == {"kl_div_score", "ce_loss_score", "ce_loss_increase",
                                                     "freq_over_10_percent"}
    assert {g.metric for g in to_write(first, update_gates=True)} == set(by_metric)

    kept = format_proposals([first])
    assert (f"{path} [first]") in kept
    assert ('  explained_variance: ">= 0.99" kept (proposed ">= 0.77"; measured 0.8012 [0.7950, 0.8071];'
            " --update-gates replaces it)") in kept
    assert '  kl_div_score: (none) -> ">= 0.92" (measured 0.9500 [0.9400, 0.9600])' in kept
    updated = format_proposals([first], update_gates=True)
    assert '  explained_variance: ">= 0.99" -> ">= 0.77" (measured 0.8012 [0.7950, 0.8071])' in updated
    assert '  l0: ">= 1", "<= 2" -> ">= 30", "<= 39"' in updated


def test_an_unchanged_gate_says_so(tmp_path):
    path = write_suite(tmp_path, SUITE.replace('explained_variance: ">= 0.99"', 'explained_variance: ">= 0.77"'))
    run = _run(path, {"first": MEASURED, "second": MEASURED}, intervals={"first": INTERVALS})
    first = propose_gates([run], metrics=("explained_variance",))[0]
    assert "explained_variance" not in {g.metric for g in to_write(first, update_gates=True)}
    assert '  explained_variance: ">= 0.77" kept, as proposed' in format_proposals([first], update_gates=True)


@pytest.mark.parametrize(("metric", "value", "interval", "expected"), [
    ("frac_alive", 1.0, (0.99, 1.0), (">= 0.97",)),       # no "<= 1.02": a share is never above 1
    ("frac_alive", 0.999, None, (">= 0.97",)),
    ("freq_over_10_percent", 0.0, None, ("<= 0.005",)),   # never ">= -0.005"
    ("freq_over_10_percent", 0.995, None, ()),            # "<= 1.02" could never fail
    ("explained_variance", 1.0, None, (">= 0.98",)),      # no upper limit in the catalogue: kept as is
])
def test_bounds_beyond_a_metrics_limits_are_not_proposed(metric, value, interval, expected):
    assert propose_bounds(metric, value, interval, MarginPolicy()) == expected


def test_a_metric_without_a_bound_that_could_fail_is_skipped_with_a_reason(tmp_path):
    path = write_suite(tmp_path)
    measured = {**MEASURED, "freq_over_10_percent": 0.995}
    first = propose_gates([_run(path, {"first": measured, "second": measured})])[0]
    assert "freq_over_10_percent" not in _gates(first)
    assert first.skipped == ("freq_over_10_percent: measured 0.9950 for first; no bound at this margin could fail",)


def test_a_gate_kept_because_nothing_can_be_proposed_says_when_it_fails_now(tmp_path):
    from pytest_saeval.run.checks import check_suite

    text = SUITE.replace('explained_variance: ">= 0.99"   # too strict on purpose',
                         'freq_over_10_percent: "<= 0.148"   # measured 0.1426')
    path = write_suite(tmp_path, text)
    measured = {**MEASURED, "freq_over_10_percent": 0.995}
    run = _run(path, {"first": measured, "second": measured})
    checks, _ = check_suite(run.suite, run.entries, run.results, None, {})
    first = propose_gates([dataclasses.replace(run, checks=checks)])[0]
    (kept,) = [s for s in first.skipped if s.startswith("freq_over_10_percent")]
    assert kept == ('freq_over_10_percent: measured 0.9950 for first; no bound at this margin could fail; kept '
                    '"<= 0.148" as written (it fails now: freq_over_10_percent = 0.9950, needs <= 0.148 (over by '
                    '0.8470); edit or remove it by hand)')
    passing = propose_gates([dataclasses.replace(run, checks=[c for c in checks if c.passed])])[0]
    assert 'kept "<= 0.148" as written' in passing.skipped[-1] and "fails now" not in passing.skipped[-1]


def test_every_share_in_the_catalogue_has_limits_0_and_1():
    from pytest_saeval.catalogue import METRICS

    shares = [m for m in ("frac_alive", "freq_over_1_percent", "freq_over_10_percent") if m in METRICS]
    assert shares and all(LIMITS[m] == (0.0, 1.0) for m in shares)
