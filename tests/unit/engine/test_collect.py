"""The end of a pass: accumulators turned into results in one host transfer -- token means from the
per-sequence sums, the scores from their formulas, the nominal token counts, catalogue order."""

from __future__ import annotations

import math

import pytest
import torch

from pytest_saeval.catalogue import METRICS
from pytest_saeval.engine.collect import SAEState, collect, reconstruction_scores, token_counts
from pytest_saeval.engine.hooks import Group
from pytest_saeval.engine.losses import LossAccumulator
from pytest_saeval.engine.sparsity import SparsityAccumulator
from pytest_saeval.settings import EvalSettings
from tests.helpers import ProtocolSAE

CPU = torch.device("cpu")
B, T, D_IN, D_SAE = 2, 4, 8, 12


def test_reconstruction_scores_formulas() -> None:
    m = {"kl_div_with_ablation": 2.0, "kl_div_with_sae": 0.5, "ce_loss_with_ablation": 5.0, "ce_loss_with_sae": 3.5,
         "ce_loss_without_sae": 3.0}
    assert reconstruction_scores(m) == {"kl_div_score": (2.0 - 0.5) / 2.0, "ce_loss_score": (5.0 - 3.5) / (5.0 - 3.0),
                                        "ce_loss_increase": 0.5}
    zero = reconstruction_scores({**m, "kl_div_with_ablation": 0.0, "ce_loss_with_ablation": 3.0})
    assert math.isnan(zero["kl_div_score"]) and math.isnan(zero["ce_loss_score"]) and zero["ce_loss_increase"] == 0.5


def test_token_counts_are_context_times_batches_times_batch_size() -> None:
    settings = EvalSettings(batch_size_prompts=3, n_reconstruction_batches=2, n_sparsity_batches=5)
    assert token_counts(settings, 16) == {"total_tokens_eval_reconstruction": 16.0 * 2 * 3,
                                          "total_tokens_eval_sparsity_variance": 16.0 * 5 * 3}


def _losses(gen: torch.Generator, mask: torch.Tensor, *, with_kl: bool = True) -> LossAccumulator:
    acc = LossAccumulator(B, CPU, with_kl=with_kl)
    acc.add(slice(0, B), mask, torch.rand(B, T - 1, generator=gen), torch.rand(B, T, generator=gen) if with_kl else None)
    return acc


def _state(sae: ProtocolSAE, group: Group, gen: torch.Generator, mask: torch.Tensor, *, recon: bool) -> SAEState:
    sparsity = SparsityAccumulator(B, D_IN, D_SAE, CPU)
    x = torch.randn(B, T, D_IN, generator=gen)
    feats = sae.encode(x)
    sparsity.add(slice(0, B), x, sae.decode(feats), feats, mask)
    return SAEState(sae=sae, group=group, d_in=D_IN, d_sae=D_SAE, sparsity=sparsity,
                    recon=_losses(gen, mask) if recon else None, token_counts={"total_tokens_eval_reconstruction": 8.0})


def test_collect_turns_the_sums_into_token_means_and_scores() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    group = Group("blocks.0.hook_resid_pre", None, 0, ("a", "b"))
    clean, ablation = _losses(gen, mask, with_kl=False), {group: _losses(gen, mask)}
    states = {"a": _state(ProtocolSAE(D_IN, D_SAE), group, gen, mask, recon=True),
              "b": _state(ProtocolSAE(D_IN, D_SAE, seed=1), group, gen, mask, recon=False)}
    results = collect(states, clean, ablation, frozenset(), CPU)
    a, b = results["a"], results["b"]
    rec = states["a"].recon
    assert rec is not None and rec.kl is not None and ablation[group].kl is not None
    assert a.metrics["kl_div_with_sae"] == pytest.approx(float(rec.kl.sum() / rec.kl_count.sum()))
    assert a.metrics["ce_loss_with_sae"] == pytest.approx(float(rec.ce.sum() / rec.ce_count.sum()))
    assert a.metrics["ce_loss_without_sae"] == pytest.approx(float(clean.ce.sum() / clean.ce_count.sum()))
    assert a.metrics["kl_div_with_ablation"] == pytest.approx(float(ablation[group].kl.sum() / ablation[group].kl_count.sum()))
    for name, value in reconstruction_scores(a.metrics).items():
        assert a.metrics[name] == pytest.approx(value, nan_ok=True)
    assert "kl_div_score" not in b.metrics and "l0" in b.metrics  # no spliced forward: sparsity metrics only
    kept = states["a"].sparsity
    assert kept is not None
    assert a.metrics["l0"] == pytest.approx(float(kept.token_sums["l0"].sum() / kept.count.sum()))
    assert a.metrics["total_tokens_eval_reconstruction"] == 8.0
    assert list(a.metrics) == [name for name in METRICS if name in a.metrics]  # catalogue order
    assert a.feature_metrics["feature_density"] == pytest.approx((kept.feature_acts / kept.count.sum()).tolist())
    assert "max_decoder_cosine_sim" not in a.feature_metrics  # no cosine matrices asked for
    assert (a.sae_id, a.hook_name, a.hook_head_index, a.d_in, a.d_sae) == ("a", group.hook_name, None, D_IN, D_SAE)
    assert a.sequence_stats.reconstruction["kl_div_with_sae"].mean() == a.metrics["kl_div_with_sae"]
    assert b.sequence_stats.reconstruction == {}


def test_collect_adds_the_cosine_metrics_asked_for() -> None:
    gen = torch.Generator().manual_seed(1)
    mask = torch.ones(B, T, dtype=torch.bool)
    group = Group("blocks.0.hook_resid_pre", None, 0, ("a",))
    states = {"a": _state(ProtocolSAE(D_IN, D_SAE), group, gen, mask, recon=False)}
    (a,) = collect(states, _losses(gen, mask, with_kl=False), {}, frozenset({"decoder"}), CPU).values()
    assert len(a.feature_metrics["max_decoder_cosine_sim"]) == D_SAE
    assert "max_encoder_cosine_sim" not in a.feature_metrics
