"""The fast path's unembedding and next-token scoring (see :mod:`pytest_saeval.engine.fused`).

The final residuals of the clean run and of every variant of a batch are unembedded together, a
chunk of positions at a time, and scored in small row steps, so no ``[batch, ctx, vocab]`` tensor
is ever held; with a stored clean summary only the variants are unembedded.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from pytest_saeval.engine.losses import DistributionSummary, distribution_summary, next_token_losses, summary_losses


def _rows(t: torch.Tensor, rows: slice) -> torch.Tensor:
    return t[rows]


STACK_ELEMENTS = 1 << 25
"""Logit elements per unembedding call on the fast path (128 MiB in float32): the final residuals of
the clean run and of every variant of a batch are stacked, a chunk of positions at a time."""


class Head:
    """``ln_final`` + unembedding (+ logit soft-cap) of one model, and the KL / CE scoring built on it."""

    def __init__(self, model: Any) -> None:
        self.model = model
        cfg = model.cfg
        self.vocab = int(cfg.d_vocab_out if getattr(cfg, "d_vocab_out", -1) > 0 else cfg.d_vocab)
        cap = getattr(cfg, "output_logits_soft_cap", None)
        self.soft_cap = float(cap) if cap is not None and cap > 0 else None
        """Logits ``cap·tanh(z/cap)``; None when the logits are linear in the normalised residual."""
        self._w_u_t: torch.Tensor | None = None

    def normalize(self, resid: torch.Tensor) -> torch.Tensor:
        """``[M, d]`` final residuals -> ``[M, d]`` inputs of the unembedding (``ln_final``)."""
        if getattr(self.model.cfg, "normalization_type", None) is not None:
            return self.model.ln_final(resid[None])[0]
        return resid

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, d]`` normalised residuals -> ``[M, V]`` logits: unembedding and logit soft-cap.

        The unembedding is TransformerLens's ``F.linear(x, W_U.T.contiguous(), b_U)`` with the
        transposed weight made once per :class:`Head` (one per ``evaluate`` call) instead of once per forward.
        """
        model = self.model
        if self._w_u_t is None:
            self._w_u_t = model.unembed.W_U.T.contiguous()
        logits = torch.nn.functional.linear(x[None], self._w_u_t, model.unembed.b_U)[0]
        if self.soft_cap is not None:
            logits = self.soft_cap * torch.tanh(logits / self.soft_cap)
        return logits

    def logits(self, resid: torch.Tensor) -> torch.Tensor:
        """``[M, d]`` final residuals -> ``[M, V]`` logits."""
        return self.unembed(self.normalize(resid))

    def chunk_rows(self, n_stacked: int) -> int:
        """Positions per stacked unembedding call when ``n_stacked`` runs share it."""
        return max(1, STACK_ELEMENTS // (self.vocab * max(1, n_stacked)))

    def stacked_losses(self, clean: torch.Tensor, variants: Sequence[torch.Tensor], targets: torch.Tensor, *,
                        summarize: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, DistributionSummary | None]:
        """Clean CE and each variant's KL / CE per position from final residuals (``[N, d]`` or ``[1, d]``).

        The positions go in chunks; per chunk one unembedding call covers the clean run and every
        variant (their rows stacked), so no ``[B, T, V]`` tensor is ever made. ``summarize``: also
        return the clean :func:`~pytest_saeval.engine.losses.distribution_summary` (for a model store).
        """
        n_pos = clean.shape[0]
        full = [k for k, v in enumerate(variants) if v.shape[0] == n_pos]
        single = [k for k, v in enumerate(variants) if v.shape[0] != n_pos]
        per_chunk = self.chunk_rows(1 + len(full))
        single_rows = torch.cat([variants[k] for k in single]) if single else None
        cce = torch.empty(n_pos, dtype=clean.dtype, device=clean.device)
        kl = torch.empty(len(variants), n_pos, dtype=clean.dtype, device=clean.device)
        ce = torch.empty(len(variants), n_pos, dtype=clean.dtype, device=clean.device)
        parts_of_summary: list[DistributionSummary] = []
        for start in range(0, n_pos, per_chunk):
            stop = min(n_pos, start + per_chunk)
            n = stop - start
            parts = [clean[start:stop], *(variants[k][start:stop] for k in full)]
            if single_rows is not None:
                parts.append(single_rows)
            logits = self.logits(torch.cat(parts))
            clean_logits = logits[:n]
            if summarize:
                parts_of_summary.append(distribution_summary(clean_logits, self.model.unembed.W_U))
            chunk: list[torch.Tensor] = [logits] * len(variants)
            for j, k in enumerate(full):
                chunk[k] = logits[(j + 1) * n:(j + 2) * n]
            base = (len(full) + 1) * n
            for j, k in enumerate(single):
                chunk[k] = logits[base + j:base + j + 1]
            c, kk, cc = next_token_losses(clean_logits, chunk, targets[start:stop])
            assert c is not None
            cce[start:stop], kl[:, start:stop], ce[:, start:stop] = c, kk, cc
        return cce, kl, ce, DistributionSummary.concat(parts_of_summary) if summarize else None

    def summary_losses(self, clean: torch.Tensor, summary: DistributionSummary, variants: Sequence[torch.Tensor],
                       targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each variant's KL / CE per position from final residuals ``[N, d]`` and the clean
        summary of the same positions: only the variants are unembedded.

        Each variant is unembedded on its own, in chunks whose size depends only on the number of
        positions, so an SAE gets the same bits whether it is scored alone or next to others, from
        a fresh summary or a stored one.
        """
        n_pos = clean.shape[0]
        per_chunk = self.chunk_rows(1)
        kl = torch.empty(len(variants), n_pos, dtype=clean.dtype, device=clean.device)
        ce = torch.empty(len(variants), n_pos, dtype=clean.dtype, device=clean.device)
        for start in range(0, n_pos, per_chunk):
            stop = min(n_pos, start + per_chunk)
            x_clean = self.normalize(clean[start:stop])
            part_summary = summary.map(functools.partial(_rows, rows=slice(start, stop)))
            for k, variant in enumerate(variants):
                x = self.normalize(variant[start:stop])
                kl[k, start:stop], ce[k, start:stop] = summary_losses(
                    x_clean, part_summary, x, self.unembed(x), targets[start:stop])
        return kl, ce
