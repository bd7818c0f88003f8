"""The fused schedule: every SAE of one model over one token array, batch by batch.

Per reconstruction batch: one clean forward that captures every needed hook activation and the
residual stream entering each needed block; per hook group (hook name + head index) one
zero-ablation forward starting at the hook's block, shared by every SAE on it; per SAE one
encode/decode (feeding both metric families) and one SAE-spliced forward from the hook's block.
Sparsity-only batches run one forward that stops after the deepest needed block.

On the fast path (see :mod:`.forwards`) the final residuals of the clean run and of every variant of
a batch are unembedded together, a chunk of positions at a time (:class:`~.head.Head`), so no
``[batch, ctx, vocab]`` tensor is ever held. With a model-side store (:mod:`.records`) a later pass
on the same model, tokens and settings runs only the new SAEs' own tails and unembeds only those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pytest_saeval.engine.collect import SAEState, collect, token_counts
from pytest_saeval.engine.forwards import Forwards
from pytest_saeval.engine.head import Head
from pytest_saeval.engine.hooks import Group, replace, sae_device, sae_input
from pytest_saeval.engine.inputs import check_code, code_failed, special_token_ids
from pytest_saeval.engine.losses import DistributionSummary, LossAccumulator, next_token_losses
from pytest_saeval.engine.protocols import SAELike
from pytest_saeval.engine.records import CleanSummary, ModelRecords, ModelStore, Recording, entry_name
from pytest_saeval.engine.results import SAEResult
from pytest_saeval.engine.sparsity import SparsityAccumulator
from pytest_saeval.settings import EvalSettings

__all__ = ["FusedPass", "Scoring"]


@dataclass(frozen=True)
class Scoring:
    """What the layers above :func:`evaluate` add to a pass."""

    store: ModelStore | None = None
    """Where the SAE-independent part of the pass (:class:`~pytest_saeval.engine.records.ModelRecords`)
    is read from and written to; with a hit only the SAEs' own forwards run. Fast path only."""
    by_summary: bool = False
    """Score each SAE's KL / CE through the clean distribution's summary (its top tokens exactly,
    the rest through their moment) instead of directly from both runs' logits as SAE Lens does;
    equal to float rounding. Always so with a ``store``, so that a result does not depend on what the
    store held; the plugin and ``saeval`` always score this way. Fast path only, and not for a model
    with a logit soft-cap."""


@dataclass
class _Batch:
    """One batch of rows and what the pass knows about it (mutable: the pass adds to it as it goes)."""

    rows_slice: slice
    """The batch's rows of the token array."""
    rows: torch.Tensor
    """``[B, T]``: those rows, on the model's device."""
    mask: torch.Tensor
    """``[B, T]``: positions kept (not special tokens)."""
    do_recon: bool
    """A reconstruction (CE / KL) batch."""
    do_sparse: bool
    """A sparsity / variance batch."""
    attn: torch.Tensor | None
    """TransformerLens's padding mask (left padding only), else None."""
    loss_mask: torch.Tensor | None
    """``[B, T-1]``: positions whose next-token loss counts under that mask."""
    targets: torch.Tensor
    """``[B*T]``: next-token ids (the last position wraps and is never used)."""
    captured: dict[str, torch.Tensor] = field(default_factory=dict)
    """Hook activations (and block-entry residuals) of the clean run, by hook name."""
    clean_out: torch.Tensor | None = None
    """The clean final residual (fast path) or logits of a reconstruction batch."""
    abl_sources: dict[Group, torch.Tensor] = field(default_factory=dict)
    """Ablation forwards' outputs still to be scored."""
    abl_tokens: dict[Group, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    """Per group: ablation KL ``[B, T]`` and CE ``[B, T-1]``."""


class FusedPass:
    """Executes the fused schedule for one ``evaluate`` call."""

    def __init__(self, model: Any, saes: Mapping[str, SAELike], tokens: torch.Tensor, settings: EvalSettings,
                 forwards: Forwards, scoring: Scoring, cosines: frozenset[str]) -> None:
        self.saes = saes
        self.settings = settings
        self.tokens = tokens
        self.forwards = forwards
        self.device = forwards.device
        self.groups = forwards.groups
        self.keys = [g.key for g in self.groups]
        self.ignore = torch.tensor(special_token_ids(model, settings.exclude_special_tokens), dtype=torch.long)
        self.resid_head = forwards.resid_head
        self.store = scoring.store if self.resid_head else None
        self.head = Head(model)
        # On a model whose logits are linear in the final residual, each SAE's KL / CE can come from
        # the clean distribution's summary, on cold and warm passes alike (always so with a store).
        self.by_summary = (self.resid_head and self.head.soft_cap is None
                           and (scoring.by_summary or self.store is not None))
        self.cosines = cosines
        self.states: dict[str, SAEState] = {}
        n_recon_rows = settings.n_reconstruction_batches * settings.batch_size_prompts
        self.clean = LossAccumulator(n_recon_rows, self.device, with_kl=False)
        self.ablation = {g: LossAccumulator(n_recon_rows, self.device) for g in self.groups}

    # -- the loop -------------------------------------------------------------------------------
    def run(self, progress: bool) -> dict[str, SAEResult]:
        s = self.settings
        stored = self.store.load(self.keys) if self.store is not None else None
        if stored is not None and not stored.fits(s.n_reconstruction_batches * s.batch_size_prompts, s.rows_needed,
                                                  self.tokens.shape[1], self.keys):
            stored = None
        # records for the store, with the clean summary when SAEs are scored through it
        record = Recording(self.groups, with_summary=self.by_summary) if self.store is not None and stored is None else None
        batches: Any = range(max(s.n_reconstruction_batches, s.n_sparsity_batches))
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="saeval batches", leave=False)
        for i in batches:
            batch = self._batch(i)
            if stored is not None:
                self._stored_model_side(batch, stored)
            else:
                self._model_side(batch)
            if batch.do_recon and not self.resid_head:
                self._score_clean_logits(batch)
            sae_sources = self._sae_side(batch)
            summary = None
            if batch.do_recon and self.resid_head:
                summary = self._score_final_residuals(batch, sae_sources, stored.clean if stored is not None else None)
            for g, (kl_tok, ce_tok) in batch.abl_tokens.items():
                self.ablation[g].add(batch.rows_slice, batch.mask, ce_tok, kl_tok, batch.loss_mask)
            if record is not None:
                record.add(batch.captured, batch.clean_out if batch.do_recon else None, batch.abl_tokens, summary)
            del batch, sae_sources
        if record is not None and self.store is not None:
            self.store.save(record.finish(self.keys))
        return collect(self.states, self.clean, self.ablation, self.cosines, self.device)

    def _batch(self, i: int) -> _Batch:
        s = self.settings
        b = s.batch_size_prompts
        rows_slice = slice(i * b, (i + 1) * b)
        rows = self.tokens[rows_slice].to(self.device)
        do_recon = i < s.n_reconstruction_batches
        attn = self.forwards.attention_mask(rows) if do_recon else None
        return _Batch(
            rows_slice=rows_slice, rows=rows, mask=self._mask(rows), do_recon=do_recon,
            do_sparse=i < s.n_sparsity_batches, attn=attn,
            loss_mask=None if attn is None else torch.logical_and(attn[:, :-1], attn[:, 1:]).bool(),
            targets=torch.cat([rows[:, 1:], rows[:, :1]], dim=1).reshape(-1),
        )

    def _mask(self, rows: torch.Tensor) -> torch.Tensor:
        if self.ignore.numel() == 0:
            return torch.ones_like(rows, dtype=torch.bool)
        return ~torch.isin(rows, self.ignore.to(rows.device))

    # -- the model side: clean forward and ablations, or their stored records ---------------------
    def _model_side(self, batch: _Batch) -> None:
        batch.clean_out, batch.captured = self.forwards.capture(batch.rows, full=batch.do_recon)
        if batch.do_recon:
            for g in self.groups:
                batch.abl_sources[g] = self.forwards.ablation(batch.rows, g, batch.captured, batch.attn)

    def _stored_model_side(self, batch: _Batch, stored: ModelRecords) -> None:
        rows = batch.rows_slice
        for g in self.groups:
            h = stored.hooks[g.key]
            batch.captured[g.hook_name] = self._upload(h.acts[rows])
            if batch.do_recon:
                assert g.layer is not None
                entry = h.block_resid if h.block_resid is not None else h.acts
                batch.captured[entry_name(g.layer)] = self._upload(entry[rows])
                batch.abl_tokens[g] = (self._upload(h.ablation_kl[rows]), self._upload(h.ablation_ce[rows]))
        if batch.do_recon:
            batch.clean_out = self._upload(stored.final_resid[rows])

    def _upload(self, t: torch.Tensor) -> torch.Tensor:
        """A stored (CPU) tensor on the model's device; asynchronous when the source is pinned."""
        return t.to(self.device, non_blocking=t.is_pinned()) if t.device != self.device else t

    # -- scoring --------------------------------------------------------------------------------
    def _score_clean_logits(self, batch: _Batch) -> None:
        """Logits path: the clean CE and each ablation against the clean logits, as soon as they exist."""
        b = self.settings.batch_size_prompts
        assert batch.clean_out is not None
        clean_flat = batch.clean_out.reshape(-1, batch.clean_out.shape[-1])
        cce, _, _ = next_token_losses(clean_flat, [], batch.targets)
        assert cce is not None
        self.clean.add(batch.rows_slice, batch.mask, cce.view(b, -1)[:, :-1], loss_mask=batch.loss_mask)
        for g, logits in batch.abl_sources.items():
            _, kl, ce = next_token_losses(clean_flat, [logits], batch.targets, clean_ce=False)
            self.ablation[g].add(batch.rows_slice, batch.mask, ce[0].view(b, -1)[:, :-1], kl[0].view(b, -1),
                                 batch.loss_mask)
        batch.abl_sources.clear()

    def _score_final_residuals(self, batch: _Batch, sae_sources: Sequence[tuple[str, torch.Tensor]],
                               stored_clean: CleanSummary | None) -> tuple[DistributionSummary, torch.Tensor] | None:
        """Fast path: unembed and score the clean run, the ablations and the SAE variants of a batch.

        Returns the clean summary and CE made now, for the store's records (None when not made)."""
        b = self.settings.batch_size_prompts
        assert batch.clean_out is not None
        clean_flat = batch.clean_out.reshape(-1, batch.clean_out.shape[-1])
        abl_groups = list(batch.abl_sources)  # none on stored records: their ablation losses are stored
        abl_variants = [batch.abl_sources[g] for g in abl_groups]
        sae_variants = [src for _, src in sae_sources]
        summary = None
        if not self.by_summary:
            cce, kl, ce, _ = self.head.stacked_losses(clean_flat, abl_variants + sae_variants, batch.targets)
        else:
            # SAEs are scored through the clean summary, stored or made now, so their numbers do not
            # depend on what the store held
            if stored_clean is not None:  # only the SAE variants are unembedded
                dist, cce = stored_clean.rows(batch.rows_slice, self._upload)
                kl = ce = clean_flat.new_empty(0, clean_flat.shape[0])
            else:
                cce, kl, ce, made = self.head.stacked_losses(clean_flat, abl_variants, batch.targets, summarize=True)
                assert made is not None
                dist = made
                summary = (dist, cce)
            kl_sae, ce_sae = self.head.summary_losses(clean_flat, dist, sae_variants, batch.targets)
            kl, ce = torch.cat([kl, kl_sae]), torch.cat([ce, ce_sae])
        self.clean.add(batch.rows_slice, batch.mask, cce.view(b, -1)[:, :-1], loss_mask=batch.loss_mask)
        for j, g in enumerate(abl_groups):
            batch.abl_tokens[g] = (kl[j].view(b, -1), ce[j].view(b, -1)[:, :-1])
        for j, (sae_id, _) in enumerate(sae_sources, start=len(abl_groups)):
            self._recon(sae_id).add(batch.rows_slice, batch.mask, ce[j].view(b, -1)[:, :-1], kl[j].view(b, -1),
                                    batch.loss_mask)
        return summary

    # -- the SAE side ---------------------------------------------------------------------------
    def _sae_side(self, batch: _Batch) -> list[tuple[str, torch.Tensor]]:
        """Encode/decode every SAE and run its spliced forward; on the logits path score it at once.

        Returns the spliced final residuals (fast path) still to be scored, by SAE id."""
        b = self.settings.batch_size_prompts
        sae_sources: list[tuple[str, torch.Tensor]] = []
        for group in self.groups:
            act = batch.captured[group.hook_name]
            spliced: list[tuple[str, torch.Tensor]] = []
            for sae_id in group.sae_ids:
                replacement = self._sae_batch(sae_id, group, act, batch)
                if replacement is not None:
                    spliced.append((sae_id, replacement))
            outs = self.forwards.spliced(batch.rows, group, batch.captured, [r for _, r in spliced], batch.attn)
            for (sae_id, _), out in zip(spliced, outs):
                if self.resid_head:
                    sae_sources.append((sae_id, out))
                    continue
                assert batch.clean_out is not None
                clean_flat = batch.clean_out.reshape(-1, batch.clean_out.shape[-1])
                _, kl, ce = next_token_losses(clean_flat, [out], batch.targets, clean_ce=False)
                self._recon(sae_id).add(batch.rows_slice, batch.mask, ce[0].view(b, -1)[:, :-1], kl[0].view(b, -1),
                                        batch.loss_mask)
                del out
            del spliced
        return sae_sources

    def _recon(self, sae_id: str) -> LossAccumulator:
        acc = self.states[sae_id].recon
        assert acc is not None
        return acc

    def _state(self, sae_id: str, group: Group, d_in: int) -> SAEState:
        state = self.states.get(sae_id)
        if state is None:
            s = self.settings
            sae = self.saes[sae_id]
            state = SAEState(sae=sae, group=group, d_in=d_in, d_sae=int(sae.cfg.d_sae),
                             token_counts=token_counts(s, int(self.tokens.shape[1])))
            state.recon = LossAccumulator(s.n_reconstruction_batches * s.batch_size_prompts, self.device)
            state.sparsity = SparsityAccumulator(s.n_sparsity_batches * s.batch_size_prompts, d_in, state.d_sae,
                                                 self.device)
            self.states[sae_id] = state
        return state

    def _sae_batch(self, sae_id: str, group: Group, act: torch.Tensor, batch: _Batch) -> torch.Tensor | None:
        """Encode/decode one SAE on one batch, feed its sparsity sums, and return the hook activation
        with the reconstruction spliced in at kept positions (``None`` for a sparsity-only batch)."""
        sae = self.saes[sae_id]
        x = sae_input(act, group.head_index)
        state = self._state(sae_id, group, x.shape[-1])
        dev = sae_device(sae, self.device)
        feats = _called(sae_id, "encode", sae.encode, x.to(dev))
        check_code(sae_id, "encode", x, feats, state.d_sae)
        x_hat = _called(sae_id, "decode", sae.decode, feats)
        check_code(sae_id, "decode", x, x_hat, x.shape[-1])
        x_hat = x_hat.to(x.dtype)
        if batch.do_sparse:
            assert state.sparsity is not None
            state.sparsity.add(batch.rows_slice, x, x_hat.to(x.device), feats, batch.mask.to(feats.device))
        if not batch.do_recon:
            return None
        new = torch.where(batch.mask.to(dev)[..., None], x_hat, x.to(dev)).to(act.device)
        del feats, x_hat
        return replace(act, group.head_index, new)


def _called(sae_id: str, part: str, call: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``call(x)``: the SAE's ``encode`` or ``decode``; an exception it raises (other than running out of
    GPU memory, which is the machine's) becomes :func:`~pytest_saeval.engine.inputs.code_failed`."""
    try:
        return call(x)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as e:  # the SAE's own code: whatever it raises is named as its failure
        raise code_failed(sae_id, part, x, e) from e
