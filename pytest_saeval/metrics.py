"""Streaming metric accumulators and weight-based metrics (pure torch, no I/O).

Every accumulator keeps float64 sums *per sequence* (one slot per row of the token array), so the
final means need no second pass and the report layer can bootstrap over sequences. Memory is
``O(rows)`` scalars (plus ``O(rows * d_in)`` for explained variance), independent of how the rows
are batched; all sums stay on the device until :meth:`finish` is called once at the end.

Notation, per kept token ``t`` (a position not excluded as a special token): ``x_t`` the SAE input,
``x̂_t`` its reconstruction, ``f_t`` the feature activations, ``p_t`` / ``q_t`` the clean / modified
next-token distributions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pytest_saeval.catalogue import SPARSITY_TOKEN_METRICS

F64 = torch.float64


@dataclass(frozen=True)
class SequenceSums:
    """Per-sequence float64 sums of one per-token quantity and the matching token counts (CPU)."""

    sums: torch.Tensor
    """``[n_rows]``: Σ over kept tokens of the row."""
    counts: torch.Tensor
    """``[n_rows]``: number of kept tokens of the row."""

    def mean(self) -> float:
        n = float(self.counts.sum())
        return float(self.sums.sum()) / n if n > 0 else math.nan


def _row_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t values[r, t] over kept positions, per row, in float64 (masked values never leak NaN)."""
    return torch.where(mask, values.to(F64), torch.zeros((), dtype=F64, device=values.device)).sum(dim=1)


class LossAccumulator:
    """Next-token KL divergence and cross-entropy of one forward variant against the clean run.

    Per kept position ``t`` (all positions for KL, positions ``0..T-2`` for CE):
    ``KL_t = Σ_v [xlogy(p_t(v), p_t(v)) − p_t(v) log q_t(v)]`` (KL(clean ‖ variant) summed over the
    vocabulary, with ``p = softmax(clean logits)``: the same arithmetic as ``torch.nn.functional.kl_div``,
    which matters when KL is small and the two terms nearly cancel; see :func:`next_token_losses`)
    and ``CE_t = −log q_t(token_{t+1})``. The reported values are ``Σ_t KL_t / N_KL`` and
    ``Σ_t CE_t / N_CE`` over every kept token of every reconstruction batch (SAE Lens's token means).
    """

    def __init__(self, n_rows: int, device: torch.device, *, with_kl: bool = True) -> None:
        self.kl = torch.zeros(n_rows, dtype=F64, device=device) if with_kl else None
        self.ce = torch.zeros(n_rows, dtype=F64, device=device)
        self.kl_count = torch.zeros(n_rows, dtype=F64, device=device)
        self.ce_count = torch.zeros(n_rows, dtype=F64, device=device)

    def add(
        self,
        rows: slice,
        mask: torch.Tensor,
        ce_tok: torch.Tensor,
        kl_tok: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
    ) -> None:
        """Add one batch of per-token values.

        ``mask``: ``[B, T]`` kept positions; ``ce_tok``: ``[B, T-1]`` next-token losses;
        ``kl_tok``: ``[B, T]`` KL values (required when the accumulator keeps KL). ``loss_mask``
        (``[B, T-1]``, optional) is TransformerLens's padding mask for the loss: CE is 0 where it is
        False, as ``lm_cross_entropy_loss`` does with an attention mask.
        """
        if loss_mask is not None:
            ce_tok = ce_tok.masked_fill(~loss_mask, 0.0)
        ce_mask = mask[:, :-1]
        self.ce[rows] += _row_sum(ce_tok, ce_mask)
        self.ce_count[rows] += ce_mask.sum(dim=1, dtype=F64)
        if self.kl is not None:
            if kl_tok is None:
                raise ValueError("this accumulator keeps KL: pass kl_tok")
            self.kl[rows] += _row_sum(kl_tok, mask)
            self.kl_count[rows] += mask.sum(dim=1, dtype=F64)


SUB_CHUNK_ELEMENTS = 1 << 21
"""Logit elements per step of :func:`next_token_losses` (8 MiB in float32: the softmax, ``xlogy`` and
KL temporaries of a step mostly stay in a 32 MiB L3 cache instead of spanning ``[batch, ctx, vocab]``,
and the steps are few enough that thread hand-offs per operation stay cheap)."""


def next_token_losses(
    clean_logits: torch.Tensor,
    variant_logits: Sequence[torch.Tensor],
    targets: torch.Tensor,
    *,
    clean_ce: bool = True,
    step_rows: int | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Per-position CE and KL of several forward variants against the clean logits, in row steps.

    ``clean_logits``: ``[n, V]`` (n positions); each variant: ``[n, V]``, or ``[1, V]`` for a variant
    whose logits are the same at every position (a zero-ablated residual stream); ``targets``:
    ``[n]`` next-token ids. Per position ``i`` and variant ``k``, with ``z = clean_logits_i``,
    ``p = softmax(z)`` and ``log q_k = log_softmax(variant_k_i)``:

    * ``kl_ki = Σ_v (xlogy(p, p) − p · log q_k)`` — elementwise first, then the sum over the
      vocabulary, exactly as ``kl_div(log q, p, reduction="none").sum(-1)`` (SAE Lens's ``_kl``),
    * ``ce_ki = −log q_k[targets_i]`` (TransformerLens's per-token loss),
    * ``clean_ce_i = −log_softmax(z)[targets_i]``, computed as ``z_j − log p_j − z_targets_i`` with
      ``j = argmax p`` (``z_j − log p_j`` is the log-sum-exp; ``p_j ≥ 1/V`` never underflows), so
      ``p`` serves both the KL and the clean CE. Without variants: ``log_softmax`` directly.

    Work proceeds ``step_rows`` positions at a time (default: :data:`SUB_CHUNK_ELEMENTS` / V), so no
    temporary spans all positions; ``p`` and ``xlogy(p, p)`` are computed once per step and shared by
    every variant. Returns ``(clean_ce [n] or None, kl [K, n], ce [K, n])`` in the logits' dtype.
    """
    n, vocab = clean_logits.shape
    k_count = len(variant_logits)
    step = step_rows or max(1, SUB_CHUNK_ELEMENTS // max(vocab, 1))
    like = {"dtype": clean_logits.dtype, "device": clean_logits.device}
    kl = torch.empty(k_count, n, **like)
    ce = torch.empty(k_count, n, **like)
    cce = torch.empty(n, **like) if clean_ce else None
    shared = {k: torch.log_softmax(v, dim=-1) for k, v in enumerate(variant_logits) if v.shape[0] == 1 and n != 1}
    for start in range(0, n, step):
        stop = min(start + step, n)
        z = clean_logits[start:stop]
        y = targets[start:stop, None]
        if not k_count:
            if cce is not None:
                cce[start:stop] = -torch.log_softmax(z, dim=-1).gather(-1, y)[:, 0]
            continue
        p = torch.softmax(z, dim=-1)
        if cce is not None:
            p_max, j = p.max(dim=-1, keepdim=True)
            cce[start:stop] = (z.gather(-1, j) - torch.log(p_max) - z.gather(-1, y))[:, 0]
        plogp = torch.xlogy(p, p)
        for k, v in enumerate(variant_logits):
            if k in shared:
                log_q = shared[k]
                ce[k, start:stop] = -log_q[0, y[:, 0]]
            else:
                log_q = torch.log_softmax(v[start:stop], dim=-1)
                ce[k, start:stop] = -log_q.gather(-1, y)[:, 0]
            kl[k, start:stop] = torch.addcmul(plogp, p, log_q, value=-1).sum(dim=-1)
    return cce, kl, ce


def _lse64(z: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
    """``log Σ_v exp z_v`` per row in float64, as ``z_j − log p_j`` with ``p = softmax(z)`` (given or
    computed) and ``j = argmax p`` (``p_j ≥ 1/V`` never underflows): float32 ``p`` has a relative
    error of ~1e-7, so the result carries no rounding of a ~log V sized number to float32."""
    if p is None:
        p = torch.softmax(z, dim=-1)
    top, j = p.max(dim=-1, keepdim=True)
    return z.gather(-1, j)[:, 0].to(F64) - torch.log(top[:, 0].to(F64))


SUMMARY_TOP = 32
"""Most probable tokens per position that :func:`distribution_summary` keeps exactly."""


@dataclass(frozen=True)
class DistributionSummary:
    """A next-token distribution ``p = softmax(z)``, ``z = x W + b``, reduced to what the KL of any
    other run against it needs (see :func:`distribution_summary`), per position."""

    top_index: torch.Tensor
    """``[n, K]`` (int64): the ``K`` most probable tokens."""
    top_prob: torch.Tensor
    """``[n, K]``: their probabilities."""
    top_logit: torch.Tensor
    """``[n, K]``: their logits."""
    tail_moment: torch.Tensor
    """``[n, d]``: ``Σ_{v ∉ top} p_v W[:, v]``."""
    lse: torch.Tensor
    """``[n]`` float64: ``log Σ_v exp z_v``."""

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> DistributionSummary:
        """The summary with ``fn`` applied to each of its tensors (e.g. a slice of positions)."""
        return DistributionSummary(**{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(DistributionSummary)})

    @staticmethod
    def concat(parts: Sequence[DistributionSummary]) -> DistributionSummary:
        """The summaries of consecutive position ranges, joined."""
        return DistributionSummary(**{f.name: torch.cat([getattr(p, f.name) for p in parts])
                                      for f in dataclasses.fields(DistributionSummary)})


def distribution_summary(logits: torch.Tensor, weight: torch.Tensor, *, top: int = SUMMARY_TOP,
                         step_rows: int | None = None) -> DistributionSummary:
    """Summarise the distributions ``p = softmax(z)`` of ``logits`` ``[n, V]``, with ``weight`` the
    ``[d, V]`` matrix of ``z = x W + b`` (``W_U``), for :func:`summary_losses`.

    Kept per position: the ``top`` most probable tokens exactly (index, ``p_v``, ``z_v``), the tail's
    moment ``m = Σ_{v ∉ top} p_v W[:, v]`` and ``lse = log Σ_v exp z_v`` (float64). The clean logits
    need not exist again. Work goes in row steps of :data:`SUB_CHUNK_ELEMENTS` logits.
    """
    n, vocab = logits.shape
    k = min(top, vocab)
    step = step_rows or max(1, SUB_CHUNK_ELEMENTS // max(vocab, 1))
    like = {"dtype": logits.dtype, "device": logits.device}
    out = DistributionSummary(
        top_index=torch.empty(n, k, dtype=torch.long, device=logits.device), top_prob=torch.empty(n, k, **like),
        top_logit=torch.empty(n, k, **like), tail_moment=torch.empty(n, weight.shape[0], **like),
        lse=torch.empty(n, dtype=F64, device=logits.device))
    for start in range(0, n, step):
        rows = slice(start, start + step)
        z = logits[rows]
        p = torch.softmax(z, dim=-1)
        out.lse[rows] = _lse64(z, p)
        prob, index = p.topk(k, dim=-1)
        out.top_index[rows], out.top_prob[rows], out.top_logit[rows] = index, prob, z.gather(-1, index)
        out.tail_moment[rows] = torch.nn.functional.linear(p.scatter_(-1, index, 0.0), weight)
    return out


def summary_losses(x_clean: torch.Tensor, clean: DistributionSummary, x_variant: torch.Tensor,
                   logits_variant: torch.Tensor, targets: torch.Tensor, *, step_rows: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position KL(clean ‖ variant) and variant CE from the clean run's :func:`distribution_summary`.

    With ``log p_v = z_p,v − lse_p``, ``log q_v = z_q,v − lse_q`` and ``z = x W + b`` for both runs
    (``x``: the final-normalised residual, ``[n, d]``):
    ``KL = Σ_v p_v (z_p,v − z_q,v) + lse_q − lse_p``, where the top tokens' terms use the actual
    logits and the tail's are ``Σ_{v ∉ top} p_v (z_p,v − z_q,v) = (x_p − x_q) · m`` (the bias cancels).
    ``ce = lse_q − z_q[target]``. The sums run in float64; the variant's logits ``[n, V]`` are still
    needed for ``lse_q``, the target logit and the top tokens' logits.

    Accuracy: rounding of the float32 logits enters through the tail only (about ``|δz| · Σ_tail p_v``
    per position, where the direct computation's errors of the two runs cancel); with most of ``p``'s
    mass in the top tokens, or small logits, the result agrees with the direct computation to float32
    rounding. Returns ``(kl [n], ce [n])`` in the logits' dtype.
    """
    n, vocab = logits_variant.shape
    step = step_rows or max(1, SUB_CHUNK_ELEMENTS // max(vocab, 1))
    lse_q = torch.empty(n, dtype=F64, device=logits_variant.device)
    for start in range(0, n, step):
        lse_q[start:start + step] = _lse64(logits_variant[start:start + step])
    ce = lse_q - logits_variant.gather(-1, targets[:, None])[:, 0].to(F64)
    top = (clean.top_prob.to(F64) * (clean.top_logit.to(F64)
                                     - logits_variant.gather(-1, clean.top_index).to(F64))).sum(dim=-1)
    tail = ((x_clean.to(F64) - x_variant.to(F64)) * clean.tail_moment.to(F64)).sum(dim=-1)
    kl = top + tail + lse_q - clean.lse
    return kl.to(logits_variant.dtype), ce.to(logits_variant.dtype)


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
            self.token_sums[name][rows] += _row_sum(values, mask_d)
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
    sum_x: torch.Tensor
    sum_sq_norm: torch.Tensor
    batch_bias: torch.Tensor
    feature_acts: torch.Tensor
    feature_rows: torch.Tensor

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


def max_other_cosine_sim(vectors: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """For each row ``v_i`` of ``vectors`` ``[n, d]``: ``max_{j ≠ i} cos(v_i, v_j)`` (chunked; float32+).

    Rows with zero norm have cosine 0 to everything. A single row gives NaN. The similarity matrix is
    symmetric, so only its upper block triangle is computed (each block updates the maxima of its rows
    and of its columns): half the matrix products of the full ``n × n`` matrix.
    """
    v = vectors.to(torch.promote_types(vectors.dtype, torch.float32))
    n = v.shape[0]
    if n < 2:
        return torch.full((n,), math.nan, dtype=v.dtype, device=v.device)
    unit = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = torch.full((n,), -math.inf, dtype=v.dtype, device=v.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sims = unit[start:stop] @ unit[start:].T  # rows start:stop x columns start:n
        idx = torch.arange(stop - start, device=v.device)
        sims[idx, idx] = -math.inf
        out[start:stop] = torch.maximum(out[start:stop], sims.max(dim=1).values)
        out[start:] = torch.maximum(out[start:], sims.max(dim=0).values)
    return out


COSINE_METRICS: dict[str, str] = {
    "average_max_encoder_cosine_sim": "encoder",
    "max_encoder_cosine_sim": "encoder",
    "average_max_decoder_cosine_sim": "decoder",
    "max_decoder_cosine_sim": "decoder",
}
"""The metrics that need the all-pairs feature cosine similarities (``n² d`` work), by matrix."""


def encoder_weight(sae: object) -> torch.Tensor | None:
    """The SAE's encoder matrix ``[d_in, d_sae]``: ``W_enc``, or ``W_dec.T`` for an SAE with tied
    weights and no ``W_enc`` of its own (SAE Lens's ``TemporalSAE`` with ``tied_weights=True``);
    None when it has neither."""
    w_enc = getattr(sae, "W_enc", None)
    if isinstance(w_enc, torch.Tensor):
        return w_enc
    w_dec = getattr(sae, "W_dec", None)
    if isinstance(w_dec, torch.Tensor) and getattr(getattr(sae, "cfg", None), "tied_weights", False):
        return w_dec.T
    return None


def weight_metrics(
    sae: object, *, encoder_cosines: bool = True, decoder_cosines: bool = True
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Per-feature weight statistics (no data needed).

    With ``W_enc`` from :func:`encoder_weight` (``W_dec.T`` for tied weights):
    ``encoder_norm_i = ‖W_enc[:, i]‖``, ``decoder_norm_i = ‖W_dec[i]‖``,
    ``encoder_decoder_cosine_sim_i = cos(W_enc[:, i], W_dec[i])``, ``encoder_bias_i = b_enc[i]``
    (when the SAE has one), ``max_encoder_cosine_sim_i = max_{j≠i} cos(W_enc[:, i], W_enc[:, j])``
    and likewise for the decoder; the ``average_max_*`` scalars are their means over features.
    ``encoder_cosines`` / ``decoder_cosines`` False leave out the all-pairs ones (see :data:`COSINE_METRICS`).
    """
    w_enc = encoder_weight(sae)
    if w_enc is None:
        raise ValueError("the SAE has no W_enc and its weights are not tied")
    w_enc = w_enc.detach()
    w_dec = sae.W_dec.detach()  # type: ignore[attr-defined]
    enc_cols = w_enc.T  # [d_sae, d_in]
    unit_enc = enc_cols / enc_cols.norm(dim=1, keepdim=True)
    unit_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
    features: dict[str, torch.Tensor] = {
        "encoder_norm": w_enc.norm(dim=-2),
        "encoder_decoder_cosine_sim": torch.nn.functional.cosine_similarity(unit_dec, unit_enc),
        "decoder_norm": w_dec.norm(dim=-1),
    }
    scalars: dict[str, float] = {}
    for which, wanted, rows in (("encoder", encoder_cosines, enc_cols), ("decoder", decoder_cosines, w_dec)):
        if wanted:
            features[f"max_{which}_cosine_sim"] = max_other_cosine_sim(rows)
            scalars[f"average_max_{which}_cosine_sim"] = float(features[f"max_{which}_cosine_sim"].to(F64).mean())
    b_enc = getattr(sae, "b_enc", None)
    if isinstance(b_enc, torch.Tensor):
        features["encoder_bias"] = b_enc.detach()
    lists = {name: t.detach().to("cpu", F64).tolist() for name, t in features.items()}
    return scalars, lists
