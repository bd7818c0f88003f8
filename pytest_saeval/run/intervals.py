"""Bootstrap confidence intervals over sequences, from the engine's per-sequence sums (no second pass).

Every token-mean metric is a ratio of two sums over rows of the token array:
``metric = Σ_r S_r / Σ_r N_r`` (``S_r`` the row's sum of the per-token quantity, ``N_r`` its kept
tokens). A bootstrap replicate draws ``n_rows`` row indices with replacement; with ``w_r`` the number
of times row ``r`` was drawn (one row of a multinomial count matrix ``W [n_boot, n_rows]``), the
replicate is ``Σ_r w_r S_r / Σ_r w_r N_r``, so all replicates are two matrix-vector products.
Ratios of means (``kl_div_score``, ``ce_loss_score``, ``ce_loss_increase``) and
``explained_variance`` (from the resampled ``Σx``, ``Σ‖x‖²`` and ``Σ‖x − x̂‖²``) are computed from
the same replicate's means, so their intervals carry the correlation between numerator and
denominator. The interval is the percentile interval of the replicates.

Reconstruction rows (CE / KL batches) and sparsity rows (sparsity / variance batches) are resampled
independently, each with its own stream derived from ``seed``. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pytest_saeval.catalogue import RECONSTRUCTION_TOKEN_METRICS, SPARSITY_TOKEN_METRICS
from pytest_saeval.engine.results import SAEResult
from pytest_saeval.errors import InputError

__all__ = [
    "INTERVAL_METRICS",
    "Interval",
    "gate_interval",
    "intervals",
    "percentile_interval",
    "replicates",
    "resample_counts",
]

Interval = tuple[float, float]
"""``(lo, hi)``: a confidence interval for one metric."""

RECONSTRUCTION_MEANS: tuple[str, ...] = RECONSTRUCTION_TOKEN_METRICS
RECONSTRUCTION_RATIOS: tuple[str, ...] = ("kl_div_score", "ce_loss_score", "ce_loss_increase")
SPARSITY_MEANS: tuple[str, ...] = SPARSITY_TOKEN_METRICS
INTERVAL_METRICS: tuple[str, ...] = (*RECONSTRUCTION_MEANS, *RECONSTRUCTION_RATIOS, *SPARSITY_MEANS, "explained_variance")
"""Metrics that get an interval: token means and ratios of token means (not per-batch or per-feature ones)."""

_MAX_CELLS = 1 << 22
"""Weight-matrix cells per chunk (32 MiB of float64), so memory stays bounded for many rows."""


def _np(t: Any) -> np.ndarray:
    """A float64 numpy copy of a CPU tensor or array."""
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=np.float64)


def _check_options(n_boot: object, level: object, seed: object) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InputError(f"n_boot must be a whole number >= 1, got {n_boot!r}", key="n_boot",
                         fix="use e.g. n_boot=1000 bootstrap replicates")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise InputError(f"level must be a number strictly between 0 and 1, got {level!r}", key="level",
                         fix="use e.g. level=0.95 for a 95% interval")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}", key="seed", fix="use e.g. seed=0")


def resample_counts(rng: np.random.Generator, n_rows: int, n_boot: int) -> np.ndarray:
    """``[n_boot, n_rows]`` float64: how often each row is drawn in each replicate (each row sums to ``n_rows``)."""
    return rng.multinomial(n_rows, np.full(n_rows, 1.0 / n_rows), size=n_boot).astype(np.float64)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)


def _reconstruction_replicates(stats: Mapping[str, Any], w: np.ndarray) -> dict[str, np.ndarray]:
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf sums give NaN replicates, never a number
        out = {name: _div(w @ _np(s.sums), w @ _np(s.counts)) for name, s in stats.items()}
    if all(name in out for name in RECONSTRUCTION_MEANS):
        kl_abl, kl_sae = out["kl_div_with_ablation"], out["kl_div_with_sae"]
        ce_abl, ce_sae, ce_clean = out["ce_loss_with_ablation"], out["ce_loss_with_sae"], out["ce_loss_without_sae"]
        out["kl_div_score"] = _div(kl_abl - kl_sae, kl_abl)
        out["ce_loss_score"] = _div(ce_abl - ce_sae, ce_abl - ce_clean)
        out["ce_loss_increase"] = ce_sae - ce_clean
    return out


def _explained_variance(sum_x: np.ndarray, sum_sq: np.ndarray, sum_rss: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Vectorised :func:`pytest_saeval.engine.sparsity.explained_variance` (same edge cases) over replicates."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_x = sum_x / n[:, None]
        variance = sum_sq / n - (mean_x**2).sum(axis=1)
        mse = sum_rss / n
        ev = 1.0 - mse / np.where(variance < 1e-10, 1.0, variance)
    ev = np.where(variance < 1e-10, np.where(mse < 1e-10, 1.0, 0.0), ev)
    return np.where(n > 0, ev, np.nan)


def _sparsity_replicates(result: SAEResult, w: np.ndarray) -> dict[str, np.ndarray]:
    st = result.sequence_stats
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf sums (a broken SAE) give NaN replicates
        out = {name: _div(w @ _np(s.sums), w @ _np(s.counts)) for name, s in st.sparsity.items()}
        mse = st.sparsity.get("mse")
        if mse is not None and st.sum_x is not None and st.sum_sq_norm is not None:
            out["explained_variance"] = _explained_variance(
                w @ _np(st.sum_x), w @ _np(st.sum_sq_norm), w @ _np(mse.sums), w @ _np(mse.counts)
            )
    return out


def _rows(stats: Mapping[str, Any]) -> int:
    return int(next(iter(stats.values())).sums.shape[0]) if stats else 0


def replicates(
    result: SAEResult,
    reconstruction_weights: np.ndarray | None,
    sparsity_weights: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Metric values under given row weights: ``{name: [n_weightings]}``.

    ``reconstruction_weights`` ``[k, n_reconstruction_rows]`` and ``sparsity_weights``
    ``[k, n_sparsity_rows]`` (either may be None to skip that family). All-ones weights reproduce
    the engine's own values.
    """
    out: dict[str, np.ndarray] = {}
    st = result.sequence_stats
    if reconstruction_weights is not None and st.reconstruction:
        out.update(_reconstruction_replicates(st.reconstruction, np.asarray(reconstruction_weights, dtype=np.float64)))
    if sparsity_weights is not None and st.sparsity:
        out.update(_sparsity_replicates(result, np.asarray(sparsity_weights, dtype=np.float64)))
    return out


def percentile_interval(values: np.ndarray, level: float) -> Interval:
    """The ``level`` percentile interval of bootstrap replicates.

    Non-finite replicates (a resample whose denominator is 0) are dropped; when more than half are
    non-finite the interval is ``(nan, nan)``.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0 or finite.size * 2 < v.size:
        return (math.nan, math.nan)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def _family_replicates(n_rows: int, n_boot: int, rng: np.random.Generator,
                       compute: Callable[[np.ndarray], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    chunk = max(1, min(n_boot, _MAX_CELLS // max(n_rows, 1)))
    parts: dict[str, list[np.ndarray]] = {}
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        for name, values in compute(resample_counts(rng, n_rows, size)).items():
            parts.setdefault(name, []).append(values)
        done += size
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def intervals(result: SAEResult, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Interval]:
    """Percentile bootstrap intervals over sequences for every metric in :data:`INTERVAL_METRICS`.

    Args:
        result: one engine result (its ``sequence_stats`` hold the per-sequence sums).
        n_boot: bootstrap replicates.
        seed: fixes the resampling (same seed, same result -> same intervals).
        level: coverage, e.g. 0.95 for the 2.5% and 97.5% percentiles.

    Returns:
        ``{metric: (lo, hi)}`` for the metrics the result has sums for; ``(nan, nan)`` where the
        metric itself is not finite.

    Raises:
        InputError: ``n_boot``, ``level`` or ``seed`` out of range.
    """
    _check_options(n_boot, level, seed)
    st = result.sequence_stats
    reps: dict[str, np.ndarray] = {}
    n_recon = _rows(st.reconstruction)
    if n_recon:
        rng = np.random.default_rng([seed, 0])
        reps.update(_family_replicates(n_recon, n_boot, rng, lambda w: _reconstruction_replicates(st.reconstruction, w)))
    n_sparse = _rows(st.sparsity)
    if n_sparse:
        rng = np.random.default_rng([seed, 1])
        reps.update(_family_replicates(n_sparse, n_boot, rng, lambda w: _sparsity_replicates(result, w)))
    out: dict[str, Interval] = {}
    for name in INTERVAL_METRICS:
        if name not in reps:
            continue
        point = result.metrics.get(name, math.nan)
        out[name] = percentile_interval(reps[name], level) if math.isfinite(point) else (math.nan, math.nan)
    return out


def gate_interval(found: Mapping[str, Interval] | None, metric: str) -> Interval | None:
    """The interval to check a gate on ``metric`` with: ``found[metric]`` when both ends are finite, else None."""
    if not found:
        return None
    iv = found.get(metric)
    if iv is None or not all(math.isfinite(v) for v in iv):
        return None
    return (float(iv[0]), float(iv[1]))
