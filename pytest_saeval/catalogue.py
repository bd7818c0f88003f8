"""The metric catalogue: every metric the engine reports, what it means, and which way is better.

Pure Python (no torch) so that suite files can be validated without loading anything heavy.
Scalar metrics can be gated; per-feature metrics are reported in outputs (and plotted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["reconstruction", "sparsity", "weights", "tokens"]


@dataclass(frozen=True)
class MetricInfo:
    """One catalogue entry."""

    name: str
    """Flat name, as SAE Lens's ``run_evals`` (or SAEBench core) reports it."""
    description: str
    """What the number means, in one sentence."""
    higher_is_better: bool | None
    """True / False for quality metrics; None where neither direction is better (e.g. ``l0``)."""
    family: Family
    """Which part of the pass produces it: CE/KL batches, sparsity/variance batches, weights, counts."""
    per_feature: bool = False
    """True for per-feature lists (``feature_metrics``); those cannot be gated directly."""
    source: Literal["sae_lens", "saebench", "saeval"] = "sae_lens"
    """Where the definition comes from: SAE Lens's ``run_evals``, SAEBench's core eval, or this project
    (metrics neither reports)."""


def _m(name: str, description: str, higher: bool | None, family: Family, *, per_feature: bool = False,
       source: Literal["sae_lens", "saebench", "saeval"] = "sae_lens") -> MetricInfo:
    return MetricInfo(name, description, higher, family, per_feature, source)


_ENTRIES: tuple[MetricInfo, ...] = (
    # model behaviour / performance preservation (reconstruction batches)
    _m("kl_div_with_sae", "Mean KL(clean || SAE-spliced) next-token distribution, over kept tokens.", False, "reconstruction"),
    _m("kl_div_with_ablation", "Mean KL(clean || zero-ablated) next-token distribution, over kept tokens.", None, "reconstruction"),
    _m("kl_div_score", "(KL_ablation - KL_sae) / KL_ablation: 1 = the SAE preserves the output distribution.", True, "reconstruction"),
    _m("ce_loss_with_sae", "Mean next-token cross-entropy with the SAE reconstruction spliced in.", False, "reconstruction"),
    _m("ce_loss_without_sae", "Mean next-token cross-entropy of the unmodified model.", None, "reconstruction"),
    _m("ce_loss_with_ablation", "Mean next-token cross-entropy with the hook zero-ablated.", None, "reconstruction"),
    _m("ce_loss_score", "(CE_ablation - CE_sae) / (CE_ablation - CE_clean): 1 = no loss increase.", True, "reconstruction"),
    _m("ce_loss_increase", "CE_sae - CE_clean: the loss added by splicing in the SAE.", False, "reconstruction", source="saeval"),
    # shrinkage
    _m("l2_norm_in", "Mean L2 norm of the SAE input per token.", None, "sparsity"),
    _m("l2_norm_out", "Mean L2 norm of the SAE reconstruction per token.", None, "sparsity"),
    _m("l2_ratio", "Mean per-token ||x_hat|| / ||x|| (inputs with norm < 1e-4 divide by 1).", None, "sparsity"),
    _m("relative_reconstruction_bias", "Mean over batches of E||x_hat||^2 / E[x . x_hat] (1 = unbiased scale).", None, "sparsity"),
    # sparsity
    _m("l0", "Mean number of non-zero feature activations per token.", None, "sparsity"),
    _m("l1", "Mean sum of |feature activations| per token.", None, "sparsity"),
    # reconstruction quality
    _m("explained_variance", "1 - E||x - x_hat||^2 / total variance of x (global mean, float64 sums).", True, "sparsity"),
    _m("explained_variance_legacy", "Mean per-token 1 - ||x - x_hat||^2 / ||x - batch mean||^2 (SAE Lens's older formula).", True, "sparsity"),
    _m("mse", "Mean per-token squared error ||x - x_hat||^2 (summed over dimensions).", False, "sparsity"),
    _m("cossim", "Mean per-token cosine similarity between x and x_hat.", True, "sparsity"),
    # token counts
    _m("total_tokens_eval_reconstruction", "Nominal tokens in the CE/KL batches (context x batches x batch size).", None, "tokens"),
    _m("total_tokens_eval_sparsity_variance", "Nominal tokens in the sparsity/variance batches.", None, "tokens"),
    # SAEBench core extras
    _m("frac_alive", "Share of features that fire at least once in the sparsity batches.", True, "sparsity", source="saebench"),
    _m("freq_over_1_percent", "Share of features with density > 1%.", False, "sparsity", source="saebench"),
    _m("freq_over_10_percent", "Share of features with density > 10% (dense, often uninterpretable features).", False, "sparsity", source="saebench"),
    _m("normalized_freq_over_1_percent", "Share of all feature firings that come from features with density > 1%.", False, "sparsity", source="saebench"),
    _m("normalized_freq_over_10_percent", "Share of all feature firings that come from features with density > 10%.", False, "sparsity", source="saebench"),
    _m("average_max_encoder_cosine_sim", "Mean over features of the largest cosine similarity to another feature's encoder vector.", False, "weights", source="saebench"),
    _m("average_max_decoder_cosine_sim", "Mean over features of the largest cosine similarity to another feature's decoder vector.", False, "weights", source="saebench"),
    # per feature
    _m("feature_density", "Per feature: share of kept tokens on which it is active.", None, "sparsity", per_feature=True),
    _m("consistent_activation_heuristic", "Per feature: active tokens / prompts with it active (NaN if dead).", None, "sparsity", per_feature=True),
    _m("encoder_norm", "Per feature: L2 norm of its encoder column.", None, "weights", per_feature=True),
    _m("encoder_decoder_cosine_sim", "Per feature: cosine similarity of its encoder and decoder vectors.", None, "weights", per_feature=True),
    _m("encoder_bias", "Per feature: encoder bias b_enc (absent for SAEs without one).", None, "weights", per_feature=True),
    _m("decoder_norm", "Per feature: L2 norm of its decoder row.", None, "weights", per_feature=True, source="saeval"),
    _m("max_encoder_cosine_sim", "Per feature: largest cosine similarity to another feature's encoder vector.", None, "weights", per_feature=True, source="saebench"),
    _m("max_decoder_cosine_sim", "Per feature: largest cosine similarity to another feature's decoder vector.", None, "weights", per_feature=True, source="saebench"),
)

METRICS: dict[str, MetricInfo] = {m.name: m for m in _ENTRIES}
"""All metrics by name."""

_SHARE = (0.0, 1.0)
_NON_NEGATIVE = (0.0, None)
LIMITS: dict[str, tuple[float | None, float | None]] = {
    **dict.fromkeys(("frac_alive", "freq_over_1_percent", "freq_over_10_percent", "normalized_freq_over_1_percent",
                     "normalized_freq_over_10_percent"), _SHARE),
    **dict.fromkeys(("l0", "l1", "l2_norm_in", "l2_norm_out", "l2_ratio", "mse", "kl_div_with_sae",
                     "kl_div_with_ablation", "ce_loss_with_sae", "ce_loss_without_sae", "ce_loss_with_ablation",
                     "total_tokens_eval_reconstruction", "total_tokens_eval_sparsity_variance"), _NON_NEGATIVE),
    **dict.fromkeys(("cossim", "average_max_encoder_cosine_sim", "average_max_decoder_cosine_sim"), (-1.0, 1.0)),
    # 1 - error / variance and (KL_abl - KL_sae) / KL_abl with KL_sae >= 0: at most 1, no lower limit
    **dict.fromkeys(("explained_variance", "explained_variance_legacy", "kl_div_score"), (None, 1.0)),
}
"""The values a scalar metric can take, ``(lowest, highest)`` (None: no limit on that side); metrics not
listed (``ce_loss_score``, ``ce_loss_increase``, ``relative_reconstruction_bias``) have none. A bound at or
beyond a limit can never fail."""

SCALAR_METRICS: tuple[str, ...] = tuple(m.name for m in _ENTRIES if not m.per_feature)
"""Names that can be gated."""

FEATURE_METRICS: tuple[str, ...] = tuple(m.name for m in _ENTRIES if m.per_feature)
"""Per-feature list names."""

SAE_LENS_SCALAR_METRICS: tuple[str, ...] = tuple(
    m.name for m in _ENTRIES if not m.per_feature and m.source == "sae_lens"
)
"""Scalar names that ``sae_lens.run_evals`` reports (parity targets)."""

SAE_LENS_FEATURE_METRICS: tuple[str, ...] = tuple(
    m.name for m in _ENTRIES if m.per_feature and m.source == "sae_lens"
)
"""Per-feature names that ``sae_lens.run_evals`` reports (parity targets)."""


SPARSITY_TOKEN_METRICS: tuple[str, ...] = (
    "l2_norm_in",
    "l2_norm_out",
    "l2_ratio",
    "l0",
    "l1",
    "explained_variance_legacy",
    "mse",
    "cossim",
)
"""Sparsity-family metrics that are a mean over kept tokens of a per-token value (their per-sequence
sums are kept, so they get bootstrap intervals)."""

RECONSTRUCTION_TOKEN_METRICS: tuple[str, ...] = (
    "kl_div_with_sae",
    "kl_div_with_ablation",
    "ce_loss_with_sae",
    "ce_loss_without_sae",
    "ce_loss_with_ablation",
)
"""Reconstruction-family metrics that are a mean over kept tokens of a per-token loss."""
