"""Sparsity and reconstruction accumulators, density summaries and explained variance on hand-set inputs
with closed-form answers."""

from __future__ import annotations

import math

import pytest
import torch

from pytest_saeval.engine.results import SequenceSums
from pytest_saeval.engine.sparsity import SparsityAccumulator, SparsityTotals, density_summary, explained_variance


def test_density_summary_closed_form():
    d = torch.tensor([0.0, 0.005, 0.02, 0.5])
    out = density_summary(d)
    assert out["frac_alive"] == pytest.approx(0.75)
    assert out["freq_over_1_percent"] == pytest.approx(0.5)
    assert out["freq_over_10_percent"] == pytest.approx(0.25)
    total = 0.525
    assert out["normalized_freq_over_1_percent"] == pytest.approx(0.52 / total)
    assert out["normalized_freq_over_10_percent"] == pytest.approx(0.5 / total)


def test_explained_variance_closed_form():
    # x in {(1,0), (-1,0)}, x_hat = 0 -> mse 1, variance 1 -> EV 0; x_hat = x/2 -> mse .25 -> EV .75
    sum_x = torch.tensor([0.0, 0.0], dtype=torch.float64)
    assert explained_variance(sum_x, 2.0, 2.0, 2) == pytest.approx(0.0)
    assert explained_variance(sum_x, 2.0, 0.5, 2) == pytest.approx(0.75)
    # constant input: perfect reconstruction -> 1, otherwise 0; no tokens -> NaN
    assert explained_variance(torch.tensor([2.0, 0.0]), 2.0, 0.0, 2) == 1.0
    assert explained_variance(torch.tensor([2.0, 0.0]), 2.0, 1.0, 2) == 0.0
    assert math.isnan(explained_variance(sum_x, 0.0, 0.0, 0))


def _totals(acc: SparsityAccumulator) -> SparsityTotals:
    count = acc.count.cpu()
    return SparsityTotals(
        token_sums={k: SequenceSums(v.cpu(), count) for k, v in acc.token_sums.items()},
        sum_x=acc.sum_x, sum_sq_norm=acc.sum_sq_norm, batch_bias=torch.stack(acc.batch_bias),
        feature_acts=acc.feature_acts, feature_rows=acc.feature_rows,
    )


def test_sparsity_accumulator_hand_values():
    # one batch, 2 rows x 2 tokens, d_in 2, d_sae 3; the last token of row 1 is masked out
    x = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 2.0], [9.0, 9.0]]])
    x_hat = torch.tensor([[[3.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]])
    feats = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], [[0.0, -3.0, 0.0], [5.0, 5.0, 5.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    acc = SparsityAccumulator(n_rows=2, d_in=2, d_sae=3, device=torch.device("cpu"))
    acc.add(slice(0, 2), x, x_hat, feats, mask)
    t = _totals(acc)
    m = t.scalar_metrics()
    assert m["l0"] == pytest.approx(1.0)
    assert m["l1"] == pytest.approx((1 + 2 + 3) / 3)
    assert m["l2_norm_in"] == pytest.approx((5 + 1 + 2) / 3)
    assert m["l2_norm_out"] == pytest.approx((3 + 1 + 1) / 3)
    assert m["l2_ratio"] == pytest.approx((3 / 5 + 1 + 0.5) / 3)
    assert m["mse"] == pytest.approx((16 + 0 + 1) / 3)
    assert m["cossim"] == pytest.approx((3 / 5 + 1 + 1) / 3)
    # EV: mean x = (4/3, 2); E||x||^2 = (25+1+4)/3 = 10; var = 10 - (16/9 + 4)
    var = 10 - (16 / 9 + 4)
    assert m["explained_variance"] == pytest.approx(1 - (17 / 3) / var)
    # legacy: per token 1 - rss / ||x - mean||^2
    mean = torch.tensor([4 / 3, 2.0])
    legacy = [1 - r / float((xx - mean).pow(2).sum()) for r, xx in
              ((16, torch.tensor([3.0, 4.0])), (0, torch.tensor([1.0, 0.0])), (1, torch.tensor([0.0, 2.0])))]
    assert m["explained_variance_legacy"] == pytest.approx(sum(legacy) / 3)
    # relative reconstruction bias: mean||x_hat||^2 / mean(x.x_hat) = (9+1+1)/3 / ((9+1+2)/3)
    assert m["relative_reconstruction_bias"] == pytest.approx(11 / 12)
    # densities over the 3 kept tokens; feature 2 only fires on the masked token -> dead
    assert t.feature_density().tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    cah = t.consistent_activation_heuristic().tolist()
    assert cah[:2] == pytest.approx([1.0, 1.0]) and math.isnan(cah[2])
    assert m["frac_alive"] == pytest.approx(2 / 3)
