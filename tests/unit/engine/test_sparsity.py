"""Accumulators and extra metrics on hand-set inputs with closed-form answers."""

from __future__ import annotations

import math

import pytest
import torch

from pytest_saeval.engine.losses import distribution_summary, next_token_losses, summary_losses
from pytest_saeval.engine.results import SequenceSums
from pytest_saeval.engine.sparsity import SparsityAccumulator, SparsityTotals, density_summary, explained_variance
from pytest_saeval.engine.weights import max_other_cosine_sim, weight_metrics


class _HandSAE:
    """W_enc columns / W_dec rows chosen so every cosine is known."""

    def __init__(self) -> None:
        # features: e0, e1, (e0+e1)/sqrt2 (encoder); decoder: e0, -e1, e1
        self.W_enc = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]])  # [d_in=2, d_sae=3]
        self.W_dec = torch.tensor([[3.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # [d_sae=3, d_in=2]
        self.b_enc = torch.tensor([0.5, -0.5, 0.0])


def test_weight_metrics_closed_form():
    scalars, lists = weight_metrics(_HandSAE())
    r = 1 / math.sqrt(2)
    assert lists["encoder_norm"] == pytest.approx([1.0, 2.0, math.sqrt(2)])
    assert lists["decoder_norm"] == pytest.approx([3.0, 1.0, 1.0])
    assert lists["encoder_decoder_cosine_sim"] == pytest.approx([1.0, -1.0, r])
    assert lists["encoder_bias"] == pytest.approx([0.5, -0.5, 0.0])
    # encoder: cos(e0,e1)=0, cos(e0,d)=r, cos(e1,d)=r -> max per feature: r, r, r
    assert lists["max_encoder_cosine_sim"] == pytest.approx([r, r, r])
    # decoder: e0 vs -e1: 0; e0 vs e1: 0; -e1 vs e1: -1 -> maxima 0, 0, 0
    assert lists["max_decoder_cosine_sim"] == pytest.approx([0.0, 0.0, 0.0])
    assert scalars["average_max_encoder_cosine_sim"] == pytest.approx(r)
    assert scalars["average_max_decoder_cosine_sim"] == pytest.approx(0.0)


def test_max_other_cosine_chunks_agree():
    torch.manual_seed(0)
    v = torch.randn(37, 5)
    full = max_other_cosine_sim(v, chunk_size=1000)
    chunked = max_other_cosine_sim(v, chunk_size=4)
    assert torch.allclose(full, chunked)
    unit = v / v.norm(dim=1, keepdim=True)
    sims = unit @ unit.T
    sims.fill_diagonal_(-2)
    assert torch.allclose(full, sims.max(dim=1).values, atol=1e-6)


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


@pytest.mark.parametrize(
    ("scale", "offset", "vocab"),
    [(0.05, 0.0, 300), (1.0, 0.0, 300), (6.0, 0.0, 300), (0.3, -100.0, 5000), (3.0, -100.0, 5000)],
    ids=["near-uniform", "typical", "peaked", "spread-gpt2-offset", "peaked-gpt2-offset"],
)
def test_summary_losses_as_accurate_as_the_direct_computation(scale, offset, vocab):
    """KL from the clean summary (top tokens exact, tail through its moment) against the exact float64
    KL: per position no worse than the direct float32 computation (``next_token_losses``), for variants
    near the clean run (tiny KL, where rounding would show) and far from it."""
    gen = torch.Generator().manual_seed(3)
    n, d = 37, 16
    w = torch.randn(d, vocab, generator=gen) * scale
    b = torch.randn(vocab, generator=gen) + offset
    x_p = torch.randn(n, d, generator=gen)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    summary = distribution_summary(x_p @ w + b, w, step_rows=5)
    exact_z = x_p.double() @ w.double() + b.double()
    assert summary.lse.dtype == torch.float64 and summary.tail_moment.shape == (n, d)
    # lse of the float32 logits, carried in float64 (no rounding of a log V sized number to float32)
    assert torch.allclose(summary.lse, torch.logsumexp((x_p @ w + b).double(), dim=-1), rtol=0, atol=1e-6)
    p = torch.softmax(exact_z, dim=-1)
    assert torch.allclose(summary.top_prob.double(), p.topk(32).values, rtol=1e-4, atol=1e-7)
    tail = p.scatter(-1, summary.top_index, 0.0)
    assert torch.allclose(summary.tail_moment.double(), tail @ w.double().T, rtol=1e-4, atol=1e-6)
    for eps in (1e-3, 0.1, 2.0):
        x_q = x_p + eps * torch.randn(n, d, generator=gen)
        kl, ce = summary_losses(x_p, summary, x_q, x_q @ w + b, targets, step_rows=7)
        _, kl32, ce32 = next_token_losses(x_p @ w + b, [x_q @ w + b], targets, clean_ce=False)
        _, kl_exact, ce_exact = next_token_losses(exact_z, [x_q.double() @ w.double() + b.double()], targets,
                                                  clean_ce=False)
        direct_err = (kl32[0].double() - kl_exact[0]).abs().max().item()
        err = (kl.double() - kl_exact[0]).abs().max().item()
        assert err <= 2 * direct_err + 1e-7, (eps, err, direct_err)
        assert torch.allclose(ce.double(), ce_exact[0], rtol=1e-6, atol=(ce32[0].double() - ce_exact[0]).abs().max() * 2)


def test_summary_losses_zero_kl_for_the_clean_run():
    gen = torch.Generator().manual_seed(4)
    w, b, x = torch.randn(8, 50, generator=gen), torch.randn(50, generator=gen), torch.randn(6, 8, generator=gen)
    z = x @ w + b
    kl, ce = summary_losses(x, distribution_summary(z, w, top=5), x, z, torch.arange(6))
    assert torch.equal(kl, torch.zeros(6)), "identical logits: every term cancels exactly"
    assert torch.allclose(ce, -torch.log_softmax(z, -1)[torch.arange(6), torch.arange(6)])
