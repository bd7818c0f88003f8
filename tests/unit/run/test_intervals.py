"""Bootstrap intervals over sequences: closed-form widths, coverage, determinism, agreement with the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytest_saeval.engine.collect import reconstruction_scores
from pytest_saeval.engine.results import SAEResult, SequenceStats, SequenceSums
from pytest_saeval.engine.sparsity import SparsityTotals
from pytest_saeval.errors import InputError
from pytest_saeval.run.intervals import INTERVAL_METRICS, intervals, percentile_interval, replicates, resample_counts

F64 = torch.float64
Z = 1.959963984540054


def _sums(sums, counts) -> SequenceSums:
    return SequenceSums(torch.as_tensor(np.asarray(sums, dtype=np.float64)),
                        torch.as_tensor(np.asarray(counts, dtype=np.float64)))


def _result(metrics, *, reconstruction=None, sparsity=None, sum_x=None, sum_sq_norm=None) -> SAEResult:
    stats = SequenceStats(
        reconstruction=reconstruction or {},
        sparsity=sparsity or {},
        sum_x=None if sum_x is None else torch.as_tensor(np.asarray(sum_x, dtype=np.float64)),
        sum_sq_norm=None if sum_sq_norm is None else torch.as_tensor(np.asarray(sum_sq_norm, dtype=np.float64)),
    )
    return SAEResult(sae_id="s", hook_name="blocks.0.hook_resid_pre", hook_head_index=None, d_in=4, d_sae=8,
                     metrics=dict(metrics), feature_metrics={}, sequence_stats=stats)


def _mean_result(sums, counts, name: str = "l0") -> SAEResult:
    s = _sums(sums, counts)
    return _result({name: s.mean()}, sparsity={name: s})


def _random_full_result(rng: np.random.Generator, n_rec: int = 24, n_sp: int = 30, d: int = 4, t: int = 8) -> SAEResult:
    """Per-sequence sums built from simulated tokens, with metrics computed as the engine does."""
    recon = {}
    ce_counts = rng.integers(t // 2, t, n_rec).astype(float)
    kl_counts = ce_counts + 1
    for name, mu in (("kl_div_with_sae", 0.2), ("kl_div_with_ablation", 2.0)):
        recon[name] = _sums(rng.gamma(4.0, mu / 4.0, n_rec) * kl_counts, kl_counts)
    for name, mu in (("ce_loss_with_sae", 3.3), ("ce_loss_without_sae", 3.0), ("ce_loss_with_ablation", 6.0)):
        recon[name] = _sums(rng.normal(mu, 0.3, n_rec) * ce_counts, ce_counts)
    counts = rng.integers(t // 2, t + 1, n_sp).astype(float)
    x = [rng.normal(0.5, 1.0, (int(c), d)) for c in counts]
    x_hat = [xi + rng.normal(0, 0.4, xi.shape) for xi in x]
    per_token = {
        "l2_norm_in": [np.linalg.norm(xi, axis=1) for xi in x],
        "l2_norm_out": [np.linalg.norm(xh, axis=1) for xh in x_hat],
        "l2_ratio": [np.linalg.norm(xh, axis=1) / np.linalg.norm(xi, axis=1) for xi, xh in zip(x, x_hat)],
        "l0": [rng.integers(0, 9, len(xi)).astype(float) for xi in x],
        "l1": [rng.exponential(2.0, len(xi)) for xi in x],
        "explained_variance_legacy": [rng.normal(0.8, 0.1, len(xi)) for xi in x],
        "mse": [((xi - xh) ** 2).sum(axis=1) for xi, xh in zip(x, x_hat)],
        "cossim": [rng.uniform(0.5, 1.0, len(xi)) for xi in x],
    }
    sparsity = {k: _sums([v.sum() for v in vals], counts) for k, vals in per_token.items()}
    sum_x = np.stack([xi.sum(axis=0) for xi in x])
    sum_sq = np.array([(xi**2).sum() for xi in x])
    totals = SparsityTotals(token_sums=sparsity, sum_x=torch.as_tensor(sum_x), sum_sq_norm=torch.as_tensor(sum_sq),
                            batch_bias=torch.zeros(0, dtype=F64), feature_acts=torch.ones(8, dtype=F64),
                            feature_rows=torch.ones(8, dtype=F64))
    metrics = {k: v.mean() for k, v in recon.items()}
    metrics.update(reconstruction_scores(metrics))
    metrics.update(totals.scalar_metrics())
    return _result(metrics, reconstruction=recon, sparsity=sparsity, sum_x=sum_x, sum_sq_norm=sum_sq)


# -- closed form ---------------------------------------------------------------------------------


def test_mean_of_iid_values_matches_normal_interval():
    """One token per sequence: the bootstrap interval of the mean is mean ± 1.96·sd/sqrt(n) (sd with ddof=0)."""
    rng = np.random.default_rng(1)
    n = 400
    values = rng.normal(3.0, 2.0, n)
    lo, hi = intervals(_mean_result(values, np.ones(n)), n_boot=4000)["l0"]
    mean, half = values.mean(), Z * values.std() / math.sqrt(n)
    assert lo == pytest.approx(mean - half, abs=0.08 * half)
    assert hi == pytest.approx(mean + half, abs=0.08 * half)


def test_ratio_of_means_matches_delta_method():
    """Unequal token counts: half-width ≈ 1.96·sqrt(Σ(S_r − m·N_r)²)/ΣN (the ratio estimator's standard error)."""
    rng = np.random.default_rng(2)
    n = 300
    counts = rng.integers(1, 30, n).astype(float)
    sums = rng.normal(0.7, 0.5, n) * counts + rng.normal(0, 1.0, n)
    m = sums.sum() / counts.sum()
    half = Z * math.sqrt(((sums - m * counts) ** 2).sum()) / counts.sum()
    lo, hi = intervals(_mean_result(sums, counts, "mse"), n_boot=4000)["mse"]
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.08)
    assert (lo + hi) / 2 == pytest.approx(m, abs=0.1 * half)


def test_constant_rows_give_a_point_interval():
    lo, hi = intervals(_mean_result(np.full(10, 6.0), np.full(10, 3.0)), n_boot=200)["l0"]
    assert lo == hi == pytest.approx(2.0)


def test_single_row_gives_its_own_value():
    assert intervals(_mean_result([5.0], [2.0]), n_boot=50)["l0"] == (2.5, 2.5)


# -- coverage ------------------------------------------------------------------------------------


def test_coverage_of_a_token_mean_with_skewed_values():
    """400 datasets of 40 sequences (5-15 tokens each, exponential tokens, true mean 1): ~95% coverage."""
    rng = np.random.default_rng(3)
    hits, trials = 0, 400
    for trial in range(trials):
        counts = rng.integers(5, 16, 40)
        sums = np.array([rng.exponential(1.0, c).sum() for c in counts])
        lo, hi = intervals(_mean_result(sums, counts), n_boot=400, seed=trial)["l0"]
        hits += lo <= 1.0 <= hi
    assert 0.90 <= hits / trials <= 0.98, hits / trials


def test_coverage_of_explained_variance():
    """x ~ N(mu, I_4), x̂ = x + N(0, 0.5² I_4): true explained variance 1 − 0.25 = 0.75."""
    rng = np.random.default_rng(4)
    d, n_rows, t, sigma = 4, 40, 6, 0.5
    mu = np.array([1.0, -2.0, 0.5, 3.0])
    hits, trials = 0, 300
    for trial in range(trials):
        x = rng.normal(mu, 1.0, (n_rows, t, d))
        err = rng.normal(0.0, sigma, (n_rows, t, d))
        counts = np.full(n_rows, float(t))
        mse = _sums((err**2).sum(axis=(1, 2)), counts)
        res = _result({"explained_variance": 0.75}, sparsity={"mse": mse}, sum_x=x.sum(axis=1),
                      sum_sq_norm=(x**2).sum(axis=(1, 2)))
        lo, hi = intervals(res, n_boot=400, seed=trial)["explained_variance"]
        hits += lo <= 1 - sigma**2 <= hi
    assert 0.90 <= hits / trials <= 0.98, hits / trials


# -- agreement with the engine's formulas ------------------------------------------------------


def test_unit_weights_reproduce_every_engine_metric():
    res = _random_full_result(np.random.default_rng(5))
    st = res.sequence_stats
    n_rec = st.reconstruction["ce_loss_with_sae"].sums.shape[0]
    n_sp = st.sparsity["l0"].sums.shape[0]
    reps = replicates(res, np.ones((1, n_rec)), np.ones((1, n_sp)))
    assert set(reps) == set(INTERVAL_METRICS)
    for name, values in reps.items():
        assert values[0] == pytest.approx(res.metrics[name], rel=1e-12, abs=1e-12), name


def test_a_replicate_equals_the_metric_of_the_resampled_rows():
    """Weights w reproduce the metrics of the dataset that repeats row r w_r times."""
    res = _random_full_result(np.random.default_rng(6), n_rec=5, n_sp=6)
    w_rec = np.array([[2.0, 0, 1, 0, 2]])
    w_sp = np.array([[0.0, 3, 1, 1, 0, 1]])
    reps = replicates(res, w_rec, w_sp)
    st = res.sequence_stats
    idx_sp = np.repeat(np.arange(6), w_sp[0].astype(int))
    mse = st.sparsity["mse"]
    totals = SparsityTotals(
        token_sums={k: SequenceSums(v.sums[idx_sp], v.counts[idx_sp]) for k, v in st.sparsity.items()},
        sum_x=st.sum_x[idx_sp], sum_sq_norm=st.sum_sq_norm[idx_sp], batch_bias=torch.zeros(0, dtype=F64),
        feature_acts=torch.ones(8, dtype=F64), feature_rows=torch.ones(8, dtype=F64))
    expected = totals.scalar_metrics()
    assert reps["explained_variance"][0] == pytest.approx(expected["explained_variance"], rel=1e-12)
    assert reps["mse"][0] == pytest.approx(float(mse.sums[idx_sp].sum() / mse.counts[idx_sp].sum()), rel=1e-12)
    idx_rec = np.repeat(np.arange(5), w_rec[0].astype(int))
    means = {k: float(v.sums[idx_rec].sum() / v.counts[idx_rec].sum()) for k, v in st.reconstruction.items()}
    for name, value in reconstruction_scores(means).items():
        assert reps[name][0] == pytest.approx(value, rel=1e-12), name


def test_every_interval_metric_is_covered_and_contains_the_value():
    res = _random_full_result(np.random.default_rng(7))
    out = intervals(res, n_boot=500)
    assert tuple(out) == INTERVAL_METRICS
    for name, (lo, hi) in out.items():
        assert lo < hi, name
        assert lo <= res.metrics[name] <= hi, name


def test_ratio_interval_uses_the_same_resample_for_numerator_and_denominator():
    """Sequences whose SAE loss tracks the clean loss: ce_loss_increase is far tighter than either CE."""
    rng = np.random.default_rng(8)
    n = 60
    counts = np.full(n, 10.0)
    clean = rng.normal(3.0, 1.0, n)
    recon = {
        "kl_div_with_sae": _sums(np.full(n, 1.0), counts),
        "kl_div_with_ablation": _sums(np.full(n, 20.0), counts),
        "ce_loss_without_sae": _sums(clean * counts, counts),
        "ce_loss_with_sae": _sums((clean + 0.1) * counts, counts),
        "ce_loss_with_ablation": _sums((clean + 3.0) * counts, counts),
    }
    metrics = {k: v.mean() for k, v in recon.items()}
    metrics.update(reconstruction_scores(metrics))
    out = intervals(_result(metrics, reconstruction=recon), n_boot=300)
    assert out["ce_loss_increase"] == pytest.approx((0.1, 0.1), abs=1e-9)
    assert out["ce_loss_score"] == pytest.approx((29 / 30, 29 / 30), abs=1e-9)
    assert out["ce_loss_with_sae"][1] - out["ce_loss_with_sae"][0] > 0.2
    assert "l0" not in out and "explained_variance" not in out


# -- determinism and edge cases ------------------------------------------------------------------


def test_deterministic_with_the_seed():
    res = _random_full_result(np.random.default_rng(9))
    a = intervals(res, n_boot=300, seed=3)
    assert intervals(res, n_boot=300, seed=3) == a
    assert intervals(res, n_boot=300, seed=4) != a


def test_reconstruction_and_sparsity_streams_are_independent_of_each_other():
    """Dropping one family does not change the other's intervals (each has its own stream)."""
    res = _random_full_result(np.random.default_rng(10))
    both = intervals(res, n_boot=200)
    st = res.sequence_stats
    only_sparsity = _result(res.metrics, sparsity=st.sparsity, sum_x=st.sum_x, sum_sq_norm=st.sum_sq_norm)
    assert intervals(only_sparsity, n_boot=200) == {k: v for k, v in both.items() if k not in
                                                    ("kl_div_with_sae", "kl_div_with_ablation", "ce_loss_with_sae",
                                                     "ce_loss_without_sae", "ce_loss_with_ablation", "kl_div_score",
                                                     "ce_loss_score", "ce_loss_increase")}


def test_level_widens_the_interval():
    res = _mean_result(np.random.default_rng(11).normal(size=100), np.ones(100))
    lo90, hi90 = intervals(res, n_boot=1000, level=0.90)["l0"]
    lo99, hi99 = intervals(res, n_boot=1000, level=0.99)["l0"]
    assert lo99 < lo90 < hi90 < hi99


def test_resample_counts_rows_sum_to_n():
    w = resample_counts(np.random.default_rng(0), 7, 50)
    assert w.shape == (50, 7)
    assert (w.sum(axis=1) == 7).all()


def test_non_finite_metric_has_a_nan_interval():
    s = _sums([1.0, 2.0], [1.0, 1.0])
    lo, hi = intervals(_result({"l0": math.nan}, sparsity={"l0": s}), n_boot=20)["l0"]
    assert math.isnan(lo) and math.isnan(hi)


def test_percentile_interval_drops_a_few_non_finite_replicates():
    values = np.concatenate([np.linspace(0, 1, 101), [np.nan, np.inf]])
    assert percentile_interval(values, 0.9) == pytest.approx((0.05, 0.95))
    lo, hi = percentile_interval(np.array([np.nan, np.nan, 1.0]), 0.9)
    assert math.isnan(lo) and math.isnan(hi)


def test_constant_input_matches_the_engine_edge_case():
    """Variance < 1e-10: explained variance is 1 when the error is also ~0, else 0 (as metrics.explained_variance)."""
    counts = np.full(5, 3.0)
    sum_x = np.tile([3.0, 6.0], (5, 1))  # x = (1, 2) at every token
    sum_sq = np.full(5, 15.0)
    for rss, expected in ((0.0, 1.0), (3.0, 0.0)):
        res = _result({"explained_variance": expected}, sparsity={"mse": _sums(np.full(5, rss), counts)},
                      sum_x=sum_x, sum_sq_norm=sum_sq)
        assert intervals(res, n_boot=50)["explained_variance"] == (expected, expected)


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"n_boot": 0}, "n_boot"), ({"n_boot": 2.5}, "n_boot"), ({"level": 1.0}, "level"),
    ({"level": 0}, "level"), ({"seed": -1}, "seed"), ({"seed": True}, "seed"),
])
def test_bad_options_are_input_errors(kwargs, key):
    with pytest.raises(InputError) as info:
        intervals(_mean_result([1.0], [1.0]), **kwargs)
    assert info.value.location.key == key
    assert "Fix:" in str(info.value)


def test_gate_interval_only_gives_finite_intervals():
    from pytest_saeval.run.intervals import gate_interval

    found = {"l0": (1.0, 2.0), "mse": (math.nan, math.nan)}
    assert gate_interval(found, "l0") == (1.0, 2.0)
    assert gate_interval(found, "mse") is None
    assert gate_interval(found, "cossim") is None
    assert gate_interval(None, "l0") is None


def test_engine_sums_reproduce_the_engine_metrics():
    """On a real (tiny) engine pass, unit weights over its per-sequence sums give its own metrics."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from pytest_saeval import EvalSettings, evaluate
    from tests.helpers import build_tiny_sae

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=50, n_ctx=8,
                                  act_fn="gelu")
    model = HookedTransformer(cfg)
    sae = build_tiny_sae(seed=3, hook_name="blocks.1.hook_resid_pre", d_in=16, d_sae=24)
    tokens = torch.randint(0, 50, (12, 8), generator=torch.Generator().manual_seed(1))
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=3,
                            exclude_special_tokens=(0,))
    res = evaluate(model, {"s": sae}, tokens, settings)["s"]
    reps = replicates(res, np.ones((1, 8)), np.ones((1, 12)))
    assert set(reps) == set(INTERVAL_METRICS)
    for name, values in reps.items():
        assert values[0] == pytest.approx(res.metrics[name], rel=1e-9, abs=1e-12), name
    out = intervals(res, n_boot=200)
    assert set(out) == set(INTERVAL_METRICS)
    for name, (lo, hi) in out.items():
        assert lo <= hi, name
