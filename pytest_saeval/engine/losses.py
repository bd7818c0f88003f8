"""Next-token losses of forward variants against the clean run: per-token KL and CE, their
accumulators, and the clean distribution's summary that lets a later variant skip the clean logits.

Notation, per kept token ``t``: ``p_t`` / ``q_t`` the clean / modified next-token distributions.
Every accumulator keeps float64 sums *per sequence* (one slot per row of the token array) on the
device, so the final means need no second pass and intervals can bootstrap over sequences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pytest_saeval.engine.tensors import F64, lse64, row_sum

__all__ = [
    "SUB_CHUNK_ELEMENTS",
    "SUMMARY_TOP",
    "DistributionSummary",
    "LossAccumulator",
    "distribution_summary",
    "next_token_losses",
    "summary_losses",
]


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
        self.ce[rows] += row_sum(ce_tok, ce_mask)
        self.ce_count[rows] += ce_mask.sum(dim=1, dtype=F64)
        if self.kl is not None:
            if kl_tok is None:
                raise ValueError("this accumulator keeps KL: pass kl_tok")
            self.kl[rows] += row_sum(kl_tok, mask)
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
    kl = torch.empty(k_count, n, dtype=clean_logits.dtype, device=clean_logits.device)
    ce = torch.empty(k_count, n, dtype=clean_logits.dtype, device=clean_logits.device)
    cce = torch.empty(n, dtype=clean_logits.dtype, device=clean_logits.device) if clean_ce else None
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
    out = DistributionSummary(
        top_index=torch.empty(n, k, dtype=torch.long, device=logits.device), top_prob=torch.empty(n, k, dtype=logits.dtype, device=logits.device),
        top_logit=torch.empty(n, k, dtype=logits.dtype, device=logits.device), tail_moment=torch.empty(n, weight.shape[0], dtype=logits.dtype, device=logits.device),
        lse=torch.empty(n, dtype=F64, device=logits.device))
    for start in range(0, n, step):
        rows = slice(start, start + step)
        z = logits[rows]
        p = torch.softmax(z, dim=-1)
        out.lse[rows] = lse64(z, p)
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
        lse_q[start:start + step] = lse64(logits_variant[start:start + step])
    ce = lse_q - logits_variant.gather(-1, targets[:, None])[:, 0].to(F64)
    top = (clean.top_prob.to(F64) * (clean.top_logit.to(F64)
                                     - logits_variant.gather(-1, clean.top_index).to(F64))).sum(dim=-1)
    tail = ((x_clean.to(F64) - x_variant.to(F64)) * clean.tail_moment.to(F64)).sum(dim=-1)
    kl = top + tail + lse_q - clean.lse
    return kl.to(logits_variant.dtype), ce.to(logits_variant.dtype)
