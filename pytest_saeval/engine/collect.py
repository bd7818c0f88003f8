"""The end of a pass: every device sum copied to the host in one transfer, then turned into results."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from pytest_saeval.catalogue import METRICS
from pytest_saeval.engine.hooks import Group
from pytest_saeval.engine.losses import LossAccumulator
from pytest_saeval.engine.protocols import SAELike
from pytest_saeval.engine.results import SAEResult, SequenceStats, SequenceSums
from pytest_saeval.engine.sparsity import SparsityAccumulator, SparsityTotals
from pytest_saeval.engine.tensors import F64
from pytest_saeval.engine.weights import weight_metrics
from pytest_saeval.settings import EvalSettings

__all__ = ["SAEState", "collect", "reconstruction_scores"]


@dataclass
class SAEState:
    """One SAE's accumulators during a pass (mutable: the pass fills its fields batch by batch)."""

    sae: SAELike
    """The SAE."""
    group: Group
    """Its hook group."""
    d_in: int
    """Width of its input."""
    d_sae: int
    """Number of its features."""
    recon: LossAccumulator | None = None
    """KL / CE of its spliced forwards."""
    sparsity: SparsityAccumulator | None = None
    """Its sparsity / variance / density sums."""
    token_counts: dict[str, float] = field(default_factory=dict)
    """The pass's nominal token counts (:func:`token_counts`)."""


class _HostCopy:
    """Device tensors registered one by one, copied to the host in one transfer, then read back by index."""

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.host: list[torch.Tensor] = []

    def reg(self, t: torch.Tensor) -> int:
        self.tensors.append(t.reshape(-1).to(F64))
        return len(self.tensors) - 1

    def copy(self, device: torch.device) -> None:
        sizes = [t.numel() for t in self.tensors]
        flat = torch.cat([t.to(device) for t in self.tensors]).cpu() if self.tensors else torch.zeros(0, dtype=F64)
        self.host = list(torch.split(flat, sizes))

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.host[i]


def token_counts(settings: EvalSettings, ctx: int) -> dict[str, float]:
    """The nominal token counts of a pass (context x batches x batch size, as SAE Lens reports them)."""
    rows = settings.batch_size_prompts
    return {"total_tokens_eval_reconstruction": float(ctx * settings.n_reconstruction_batches * rows),
            "total_tokens_eval_sparsity_variance": float(ctx * settings.n_sparsity_batches * rows)}


def collect(states: Mapping[str, SAEState], clean: LossAccumulator, ablation: Mapping[Group, LossAccumulator],
            cosines: frozenset[str], device: torch.device) -> dict[str, SAEResult]:
    """One :class:`SAEResult` per SAE from the pass's accumulators (one host transfer for all sums)."""
    copy = _HostCopy()
    assert clean.ce is not None
    clean_ce = (copy.reg(clean.ce), copy.reg(clean.ce_count))
    abl = {g: (copy.reg(acc.kl), copy.reg(acc.ce), copy.reg(acc.kl_count))  # type: ignore[arg-type]
           for g, acc in ablation.items()}
    sparse: dict[str, dict[str, Any]] = {}
    recon: dict[str, tuple[int, int]] = {}
    for sae_id, st in states.items():
        sp = st.sparsity
        assert sp is not None
        sparse[sae_id] = {
            "tok": {k: copy.reg(v) for k, v in sp.token_sums.items()},
            "count": copy.reg(sp.count), "sum_x": copy.reg(sp.sum_x), "sq": copy.reg(sp.sum_sq_norm),
            "bias": copy.reg(torch.stack(sp.batch_bias)) if sp.batch_bias else None,
            "fa": copy.reg(sp.feature_acts), "fr": copy.reg(sp.feature_rows),
        }
        if st.recon is not None:
            recon[sae_id] = (copy.reg(st.recon.kl), copy.reg(st.recon.ce))  # type: ignore[arg-type]
    copy.copy(device)

    results: dict[str, SAEResult] = {}
    ce_c, ce_n = copy[clean_ce[0]], copy[clean_ce[1]]
    for sae_id, st in states.items():
        metrics: dict[str, float] = {}
        recon_stats: dict[str, SequenceSums] = {}
        if sae_id in recon:
            a_kl, a_ce, kl_n = (copy[j] for j in abl[st.group])
            r_kl, r_ce = (copy[j] for j in recon[sae_id])
            recon_stats = {
                "kl_div_with_sae": SequenceSums(r_kl, kl_n),
                "kl_div_with_ablation": SequenceSums(a_kl, kl_n),
                "ce_loss_with_sae": SequenceSums(r_ce, ce_n),
                "ce_loss_without_sae": SequenceSums(ce_c, ce_n),
                "ce_loss_with_ablation": SequenceSums(a_ce, ce_n),
            }
            metrics.update({k: v.mean() for k, v in recon_stats.items()})
            metrics.update(reconstruction_scores(metrics))
        results[sae_id] = _result(sae_id, st, metrics, recon_stats, _totals(copy, sparse[sae_id], st.d_in), cosines)
    return results


def _totals(copy: _HostCopy, p: Mapping[str, Any], d_in: int) -> SparsityTotals:
    count = copy[p["count"]]
    return SparsityTotals(
        token_sums={k: SequenceSums(copy[j], count) for k, j in p["tok"].items()},
        sum_x=copy[p["sum_x"]].reshape(-1, d_in),
        sum_sq_norm=copy[p["sq"]],
        batch_bias=copy[p["bias"]] if p["bias"] is not None else torch.zeros(0, dtype=F64),
        feature_acts=copy[p["fa"]],
        feature_rows=copy[p["fr"]],
    )


def _result(sae_id: str, st: SAEState, metrics: dict[str, float], recon_stats: dict[str, SequenceSums],
            totals: SparsityTotals, cosines: frozenset[str]) -> SAEResult:
    metrics.update(totals.scalar_metrics())
    metrics.update(st.token_counts)
    w_scalars, w_lists = weight_metrics(st.sae, encoder_cosines="encoder" in cosines,
                                        decoder_cosines="decoder" in cosines)
    metrics.update(w_scalars)
    feature_metrics = {
        "feature_density": totals.feature_density().tolist(),
        "consistent_activation_heuristic": totals.consistent_activation_heuristic().tolist(),
        **w_lists,
    }
    ordered = {name: metrics[name] for name in METRICS if name in metrics}
    return SAEResult(
        sae_id=sae_id, hook_name=st.group.hook_name, hook_head_index=st.group.head_index,
        d_in=st.d_in, d_sae=st.d_sae, metrics=ordered, feature_metrics=feature_metrics,
        sequence_stats=SequenceStats(reconstruction=recon_stats, sparsity=dict(totals.token_sums),
                                     sum_x=totals.sum_x, sum_sq_norm=totals.sum_sq_norm),
    )


def reconstruction_scores(m: Mapping[str, float]) -> dict[str, float]:
    """``kl_div_score = (KL_abl − KL_sae)/KL_abl``, ``ce_loss_score = (CE_abl − CE_sae)/(CE_abl − CE_clean)``,
    ``ce_loss_increase = CE_sae − CE_clean`` (NaN where a denominator is 0)."""

    def div(a: float, b: float) -> float:
        return a / b if b != 0 else math.nan

    return {
        "kl_div_score": div(m["kl_div_with_ablation"] - m["kl_div_with_sae"], m["kl_div_with_ablation"]),
        "ce_loss_score": div(m["ce_loss_with_ablation"] - m["ce_loss_with_sae"],
                             m["ce_loss_with_ablation"] - m["ce_loss_without_sae"]),
        "ce_loss_increase": m["ce_loss_with_sae"] - m["ce_loss_without_sae"],
    }
