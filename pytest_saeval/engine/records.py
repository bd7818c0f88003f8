"""The SAE-independent part of a pass (:class:`ModelRecords`) and how a cold pass collects it.

A :class:`ModelStore` (e.g. :mod:`pytest_saeval.store.model`) keeps records per (model, token rows,
settings); with them, :func:`~pytest_saeval.engine.evaluate` runs only a new SAE's encode/decode and
its own tail forward: no clean forward through the blocks, no ablation forward and, on a model
without a logit soft-cap, no clean unembedding either (the clean distribution enters the KL through
its moment, see :func:`~pytest_saeval.engine.losses.distribution_summary`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from pytest_saeval.engine.hooks import Group
from pytest_saeval.engine.losses import DistributionSummary


def entry_name(layer: int) -> str:
    """The hook on the residual stream entering block ``layer``."""
    return f"blocks.{layer}.hook_resid_pre"


@dataclass(frozen=True)
class HookRecord:
    """What an SAE on one hook (and head) needs from the model for one token set; no SAE enters it."""

    acts: torch.Tensor
    """``[rows, T, ...]``: the hook's clean activations on every row the pass reads."""
    block_resid: torch.Tensor | None
    """``[recon_rows, T, d_model]``: the residual stream entering the hook's block; None when the
    hook is that block's ``hook_resid_pre`` (then it equals ``acts``)."""
    ablation_kl: torch.Tensor
    """``[recon_rows, T]``: per-token KL(clean ‖ zero-ablated), before any token mask."""
    ablation_ce: torch.Tensor
    """``[recon_rows, T-1]``: per-token CE of the zero-ablated forward, before any token mask."""


@dataclass(frozen=True)
class CleanSummary(DistributionSummary):
    """What the KL and CE of any variant need from the clean next-token distribution ``p``: the
    :class:`~pytest_saeval.engine.losses.DistributionSummary` of every position, its tensors shaped
    ``[recon_rows, T, ...]``, and the clean per-token CE. With it the clean logits need not be made
    again."""

    ce: torch.Tensor
    """``[recon_rows, T]``: the clean per-token CE (last position: a wrapped target, never used)."""

    def rows(self, rows: slice, to: Callable[[torch.Tensor], torch.Tensor]) -> tuple[DistributionSummary, torch.Tensor]:
        """The summary of ``rows`` flattened to positions (``[rows*T, ...]``), each tensor passed
        through ``to`` (e.g. onto the model's device), and the clean CE ``[rows*T]``."""
        def flat(t: torch.Tensor) -> torch.Tensor:
            part = to(t[rows])
            return part.reshape(-1, *part.shape[2:])

        return self.map(flat), flat(self.ce)

    def fits(self, recon_rows: int, ctx: int, d_model: int) -> bool:
        lead = (recon_rows, ctx)
        k = self.top_index.shape[-1]
        return (tuple(self.lse.shape) == lead == tuple(self.ce.shape)
                and tuple(self.tail_moment.shape) == (*lead, d_model)
                and all(tuple(t.shape) == (*lead, k) for t in (self.top_index, self.top_prob, self.top_logit)))


CLEAN_FIELDS = tuple(f.name for f in dataclasses.fields(CleanSummary))
"""The tensors of a :class:`CleanSummary` (their names in a store, prefixed ``clean_``)."""


@dataclass(frozen=True)
class ModelRecords:
    """The SAE-independent part of a pass over one model, token set and settings (CPU tensors)."""

    final_resid: torch.Tensor
    """``[recon_rows, T, d_model]``: the clean residual stream after the last block."""
    hooks: dict[tuple[str, int | None], HookRecord]
    """By ``(hook_name, hook_head_index)``."""
    clean: CleanSummary | None = None
    """The clean distribution's summary; None for a model with a logit soft-cap (not linear in
    ``x``): the clean logits are then unembedded again from ``final_resid``."""

    def fits(self, recon_rows: int, rows: int, ctx: int, keys: Sequence[tuple[str, int | None]]) -> bool:
        """Whether the records cover a pass of ``rows`` rows (``recon_rows`` of them reconstruction
        rows) of ``ctx`` tokens on the hooks ``keys`` (else they are recomputed)."""
        if tuple(self.final_resid.shape[:2]) != (recon_rows, ctx):
            return False
        if self.clean is not None and not self.clean.fits(recon_rows, ctx, self.final_resid.shape[-1]):
            return False
        for key in keys:
            h = self.hooks.get(key)
            if h is None or tuple(h.acts.shape[:2]) != (rows, ctx):
                return False
            if tuple(h.ablation_kl.shape) != (recon_rows, ctx) or tuple(h.ablation_ce.shape) != (recon_rows, ctx - 1):
                return False
            if h.block_resid is not None and tuple(h.block_resid.shape[:2]) != (recon_rows, ctx):
                return False
        return True


class ModelStore(Protocol):
    """Where :func:`~pytest_saeval.engine.evaluate` keeps :class:`ModelRecords` (bound to one model,
    token set and settings)."""

    def load(self, hooks: Sequence[tuple[str, int | None]]) -> ModelRecords | None:
        """The records when the clean residual and every hook in ``hooks`` are stored, else None."""

    def save(self, records: ModelRecords) -> None:
        """Keep ``records`` (merging with hooks stored before)."""


class Recording:
    """Collects the model-side tensors of a cold pass, batch by batch (kept on the model's device
    until :meth:`finish` moves them to the CPU at once)."""

    def __init__(self, groups: Sequence[Group], *, with_summary: bool) -> None:
        self.groups = list(groups)
        self.with_summary = with_summary
        self.final: list[torch.Tensor] = []
        self.clean: dict[str, list[torch.Tensor]] = {name: [] for name in CLEAN_FIELDS}
        self.acts: dict[Group, list[torch.Tensor]] = {g: [] for g in groups}
        self.entry: dict[Group, list[torch.Tensor]] = {g: [] for g in groups}
        self.kl: dict[Group, list[torch.Tensor]] = {g: [] for g in groups}
        self.ce: dict[Group, list[torch.Tensor]] = {g: [] for g in groups}

    def add(self, captured: dict[str, torch.Tensor], final: torch.Tensor | None,
            abl_tokens: dict[Group, tuple[torch.Tensor, torch.Tensor]],
            summary: tuple[DistributionSummary, torch.Tensor] | None = None) -> None:
        """One batch: its captured activations, and on a reconstruction batch the final residual
        ``[B, T, d]``, the ablation KL/CE per group and the clean summary and CE (flat positions)."""
        if final is not None:
            self.final.append(final)
            if self.with_summary:
                assert summary is not None
                dist, ce = summary
                lead = final.shape[:2]
                for name in CLEAN_FIELDS:
                    t = ce if name == "ce" else getattr(dist, name)
                    self.clean[name].append(t.reshape(*lead, *t.shape[1:]))
        for g in self.groups:
            self.acts[g].append(captured[g.hook_name])
            if final is not None:
                assert g.layer is not None
                if g.hook_name != entry_name(g.layer):
                    self.entry[g].append(captured[entry_name(g.layer)])
                kl, ce = abl_tokens[g]
                self.kl[g].append(kl)
                self.ce[g].append(ce)

    def finish(self, keys: Sequence[tuple[str, int | None]]) -> ModelRecords:
        def cpu(parts: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat(parts).detach().to("cpu").contiguous()

        hooks = {
            key: HookRecord(acts=cpu(self.acts[g]), block_resid=cpu(self.entry[g]) if self.entry[g] else None,
                            ablation_kl=cpu(self.kl[g]), ablation_ce=cpu(self.ce[g]))
            for g, key in zip(self.groups, keys)
        }
        clean = (CleanSummary(**{name: cpu(parts) for name, parts in self.clean.items()})
                 if self.with_summary else None)
        return ModelRecords(final_resid=cpu(self.final), hooks=hooks, clean=clean)
