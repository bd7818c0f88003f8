"""Sparsity, shrinkage, variance and feature-density statistics of one SAE, accumulated per sequence.

Notation, per kept token ``t`` (a position not excluded as a special token): ``x_t`` the SAE input,
``x̂_t`` its reconstruction, ``f_t`` the feature activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pytest_saeval.catalogue import SPARSITY_TOKEN_METRICS
from pytest_saeval.engine.results import SequenceSums
from pytest_saeval.engine.tensors import F64, row_sum

__all__ = ["SparsityAccumulator", "SparsityTotals", "density_summary", "explained_variance"]


class SparsityAccumulator:
    """Sparsity, shrinkage, variance and feature-density statistics of one SAE.

    Per kept token: ``l0 = #{i: f_i ≠ 0}``, ``l1 = Σ_i |f_i|``, ``l2_norm_in = ‖x‖``,
    ``l2_norm_out = ‖x̂‖``, ``l2_ratio = ‖x̂‖ / ‖x‖`` (``‖x‖ < 1e-4`` divides by 1),
    ``mse = ‖x − x̂‖²``, ``cossim = (x/‖x‖)·(x̂/‖x̂‖)``,
    ``explained_variance_legacy = 1 − ‖x − x̂‖² / ‖x − x̄_batch‖²`` (``x̄_batch``: mean over the
    batch's kept tokens); each reported as the mean over all kept tokens.

    ``explained_variance = 1 − (Σ_t ‖x_t − x̂_t‖² / N) / (Σ_t ‖x_t‖² / N − ‖Σ_t x_t / N‖²)``
    (global mean; 1 if both the variance and the error are < 1e-10, 0 if only the variance is).

    ``relative_reconstruction_bias``: per batch ``mean_t ‖x̂_t‖² / mean_t (x_t · x̂_t)``, then the
    mean of the per-batch values.

    Per feature ``i``: ``feature_density_i = #{t: f_{t,i} ≠ 0} / N``,
    ``consistent_activation_heuristic_i = #{t: f_{t,i} ≠ 0} / #{rows with f_{·,i} ≠ 0}``.
    """

    TOKEN_METRICS = SPARSITY_TOKEN_METRICS

    def __init__(self, n_rows: int, d_in: int, d_sae: int, device: torch.device) -> None:
        def z(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, dtype=F64, device=device)

        self.token_sums = {name: z(n_rows) for name in self.TOKEN_METRICS}
        self.count = z(n_rows)
        self.sum_x = z(n_rows, d_in)
        self.sum_sq_norm = z(n_rows)
        self.batch_bias: list[torch.Tensor] = []
        self.feature_acts = z(d_sae)
        self.feature_rows = z(d_sae)

    def add(self, rows: slice, x: torch.Tensor, x_hat: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor) -> None:
        """Add one batch: ``x``, ``x_hat``: ``[B, T, d_in]``; ``feats``: ``[B, T, d_sae]``; ``mask``: ``[B, T]``."""
        if feats.is_sparse:
            feats = feats.to_dense()
        x = x.to(x_hat.device)
        mask_d = mask.to(x.device)
        l2_in = torch.norm(x, dim=-1)
        l2_out = torch.norm(x_hat, dim=-1)
        l2_in_div = torch.where(l2_in.abs() < 0.0001, torch.ones_like(l2_in), l2_in)
        rss = (x - x_hat).pow(2).sum(dim=-1)
        n_kept = mask_d.sum()
        x_mean = torch.where(mask_d[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(
            dim=(0, 1)
        ) / n_kept
        centred = (x - x_mean).pow(2).sum(dim=-1)
        cossim = (x / torch.norm(x, dim=-1, keepdim=True) * (x_hat / torch.norm(x_hat, dim=-1, keepdim=True))).sum(
            dim=-1
        )
        active = feats != 0
        per_token = {
            "l2_norm_in": l2_in,
            "l2_norm_out": l2_out,
            "l2_ratio": l2_out / l2_in_div,
            "l0": active.sum(dim=-1).float(),
            "l1": feats.abs().sum(dim=-1),
            "explained_variance_legacy": 1 - rss / centred,
            "mse": rss,
            "cossim": cossim,
        }
        for name, values in per_token.items():
            self.token_sums[name][rows] += row_sum(values, mask_d)
        self.count[rows] += mask_d.sum(dim=1, dtype=F64)

        x64 = torch.where(mask_d[..., None], x.to(F64), torch.zeros((), dtype=F64, device=x.device))
        self.sum_x[rows] += x64.sum(dim=1)
        self.sum_sq_norm[rows] += x64.pow(2).sum(dim=(1, 2))

        x_hat_sq = torch.where(mask_d, l2_out.pow(2), torch.zeros((), dtype=l2_out.dtype, device=l2_out.device))
        dot = torch.where(mask_d, (x * x_hat).sum(dim=-1), torch.zeros((), dtype=x.dtype, device=x.device))
        self.batch_bias.append((x_hat_sq.sum() / n_kept) / (dot.sum() / n_kept))

        active_kept = active & mask_d[..., None].to(active.device)
        self.feature_acts += active_kept.sum(dim=(0, 1), dtype=F64)
        self.feature_rows += active_kept.any(dim=1).sum(dim=0, dtype=F64)


@dataclass(frozen=True)
class SparsityTotals:
    """The CPU copy of a :class:`SparsityAccumulator` after the single host transfer."""

    token_sums: dict[str, SequenceSums]
    """Per-token metric (``l0``, ``mse``, ...) -> its per-row sums and kept-token counts."""
    sum_x: torch.Tensor
    """``[rows, d_in]``: Σ_t x_t per row (explained variance)."""
    sum_sq_norm: torch.Tensor
    """``[rows]``: Σ_t ‖x_t‖² per row."""
    batch_bias: torch.Tensor
    """``[batches]``: each batch's ``mean_t ‖x̂_t‖² / mean_t (x_t · x̂_t)`` (relative reconstruction bias)."""
    feature_acts: torch.Tensor
    """``[d_sae]``: kept tokens on which each feature was active (non-zero)."""
    feature_rows: torch.Tensor
    """``[d_sae]``: rows in which each feature was active on a kept token."""

    def scalar_metrics(self) -> dict[str, float]:
        out = {name: s.mean() for name, s in self.token_sums.items()}
        counts = next(iter(self.token_sums.values())).counts
        out["explained_variance"] = explained_variance(self.sum_x.sum(0), float(self.sum_sq_norm.sum()),
                                                       float(self.token_sums["mse"].sums.sum()), float(counts.sum()))
        out["relative_reconstruction_bias"] = float(self.batch_bias.mean()) if len(self.batch_bias) else math.nan
        density = self.feature_density()
        out.update(density_summary(density))
        return out

    def feature_density(self) -> torch.Tensor:
        total = float(next(iter(self.token_sums.values())).counts.sum())
        return self.feature_acts / total if total > 0 else torch.full_like(self.feature_acts, math.nan)

    def consistent_activation_heuristic(self) -> torch.Tensor:
        return self.feature_acts / self.feature_rows


def explained_variance(sum_x: torch.Tensor, sum_sq_norm: float, sum_sq_residual: float, n: float) -> float:
    """``1 − (Σ‖x − x̂‖²/N) / (Σ‖x‖²/N − ‖Σx/N‖²)`` in float64; NaN when ``N = 0``.

    A (near) constant input (variance < 1e-10) gives 1.0 when the error is also < 1e-10, else 0.0.
    """
    if n <= 0:
        return math.nan
    mean_x = sum_x.to(F64) / n
    total_variance = sum_sq_norm / n - float(mean_x.pow(2).sum())
    mse = sum_sq_residual / n
    if total_variance < 1e-10:
        return 1.0 if mse < 1e-10 else 0.0
    return 1.0 - mse / total_variance


def density_summary(density: torch.Tensor) -> dict[str, float]:
    """SAEBench-core summaries of per-feature densities ``d_i``.

    ``frac_alive = mean_i [d_i > 0]``; ``freq_over_p = mean_i [d_i > p]``;
    ``normalized_freq_over_p = Σ_{i: d_i > p} d_i / Σ_i d_i`` for p = 1% and 10%.
    """
    d = density.to(F64)
    total = float(d.sum())
    out = {"frac_alive": float((d > 0).to(F64).mean())}
    for label, p in (("1", 0.01), ("10", 0.1)):
        over = d > p
        out[f"freq_over_{label}_percent"] = float(over.to(F64).mean())
        out[f"normalized_freq_over_{label}_percent"] = float(d[over].sum()) / total if total > 0 else math.nan
    return out
