"""``evaluate()``: every catalogue metric for many SAEs on one model, in one fused pass.

Schedule per batch of ``B`` rows (DESIGN §4):

* reconstruction batches: one clean forward that captures every needed hook activation and the
  residual stream entering each needed block; per hook group (hook name + head index) one
  zero-ablation forward starting at the hook's block, shared by every SAE on it; per SAE one
  encode/decode (feeding both metric families) and one SAE-spliced forward from the hook's block;
* sparsity-only batches: one forward that stops after the deepest needed block.

On the fast path (a ``HookedTransformer``, every hook inside a block) the forwards stop after the
last block; the final residuals of the clean run and of every variant are then unembedded together,
a chunk of positions at a time, and scored in small row steps (:func:`~pytest_saeval.metrics.next_token_losses`),
so no ``[batch, ctx, vocab]`` tensor is ever held. Zero-ablating a whole residual-stream hook makes
every position equal, so that ablation forward runs on one position (see ``_Runner._ablation_forward``).

Models without ``start_at_layer`` (TransformerLens 3's ``TransformerBridge``) run the ablation and
spliced forwards as full forwards with hooks; both paths give the same numbers.

A :class:`~pytest_saeval.records.ModelStore` can keep the SAE-independent part of a pass
(:class:`~pytest_saeval.records.ModelRecords`, with a summary of the clean next-token distribution);
a later call with the same model, tokens and settings then runs only the new SAEs' own tails and
unembeds only those (:meth:`~pytest_saeval.head.Head.summary_losses`).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pytest_saeval.catalogue import METRICS
from pytest_saeval.errors import InputError, did_you_mean
from pytest_saeval.metrics import COSINE_METRICS, F64, DistributionSummary, LossAccumulator, SequenceSums, SparsityAccumulator, SparsityTotals, next_token_losses, weight_metrics
from pytest_saeval.head import Head
from pytest_saeval.inputs import _as_token_tensor, _check_inputs, _hook_layer, _sae_hook, model_device, special_token_ids, supports_start_at_layer
from pytest_saeval.records import HookRecord, ModelRecords, ModelStore, Recording, entry_name
from pytest_saeval.settings import EvalSettings

__all__ = ["HookRecord", "ModelRecords", "ModelStore", "SAEResult", "SequenceStats", "evaluate"]



@dataclass(frozen=True)
class SequenceStats:
    """Per-sequence sums kept by the engine, for bootstrap intervals over sequences (CPU, float64)."""

    reconstruction: dict[str, SequenceSums] = field(default_factory=dict)
    """``kl_div_with_sae``, ``kl_div_with_ablation``, ``ce_loss_*`` per reconstruction row."""
    sparsity: dict[str, SequenceSums] = field(default_factory=dict)
    """Per-token metrics (``l0``, ``mse``, ...) per sparsity row."""
    sum_x: torch.Tensor | None = None
    """``[rows, d_in]``: Σ_t x_t per sparsity row (for explained variance)."""
    sum_sq_norm: torch.Tensor | None = None
    """``[rows]``: Σ_t ‖x_t‖² per sparsity row."""


@dataclass(frozen=True)
class SAEResult:
    """Everything measured for one SAE."""

    sae_id: str
    """The key the SAE had in the ``saes`` mapping."""
    hook_name: str
    """The model hook the SAE reads and is spliced into."""
    hook_head_index: int | None
    """The attention head for single-head ``hook_z`` SAEs, else None."""
    d_in: int
    """Input width of the SAE."""
    d_sae: int
    """Number of features."""
    metrics: dict[str, float]
    """Scalar metrics by flat catalogue name."""
    feature_metrics: dict[str, list[float]]
    """Per-feature lists by catalogue name (length ``d_sae``)."""
    sequence_stats: SequenceStats = field(default_factory=SequenceStats, repr=False)
    """Per-sequence sums behind the token-mean metrics."""


@dataclass(frozen=True)
class _Group:
    """SAEs sharing one hook (and head): they share the zero-ablation forward."""

    hook_name: str
    head_index: int | None
    layer: int | None
    sae_ids: tuple[str, ...]


@dataclass
class _SAEState:
    sae: Any
    group: _Group
    d_in: int
    d_sae: int
    recon: LossAccumulator | None = None
    sparsity: SparsityAccumulator | None = None


@contextlib.contextmanager
def _plain_hook_z(saes: Mapping[str, Any]) -> Iterator[None]:
    """Turn off SAE Lens's hook_z reshaping while we feed flattened activations (as run_evals does)."""
    switched = []
    for sae in saes.values():
        if getattr(sae, "hook_z_reshaping_mode", False):
            sae.turn_off_forward_pass_hook_z_reshaping()
            switched.append(sae)
    try:
        yield
    finally:
        for sae in switched:
            sae.turn_on_forward_pass_hook_z_reshaping()


def _sae_input(act: torch.Tensor, head: int | None) -> torch.Tensor:
    if head is not None:
        return act[:, :, head]
    if act.ndim == 4:
        return act.flatten(-2, -1)
    return act


def _replace(act: torch.Tensor, head: int | None, new: torch.Tensor) -> torch.Tensor:
    if head is not None:
        out = act.clone()
        out[:, :, head] = new
        return out
    return new.reshape(act.shape)


def _ablate(act: torch.Tensor, head: int | None) -> torch.Tensor:
    if head is not None:
        out = act.clone()
        out[:, :, head] = 0
        return out
    return torch.zeros_like(act)


def _sae_device(sae: Any, fallback: torch.device) -> torch.device:
    dev = getattr(sae, "device", None)
    if isinstance(dev, (torch.device, str)):
        return torch.device(dev)
    try:
        return sae.W_dec.device
    except AttributeError:
        return fallback


_RESID_HOOK_RE = re.compile(r"^blocks\.\d+\.hook_resid_(pre|mid|post)$")

TAIL_POSITIONS = 1 << 14
"""Most positions in one stacked SAE-tail forward (rows of several SAEs on one hook, see ``_spliced_forwards``)."""


class _Runner:
    """Executes the fused schedule for one ``evaluate`` call."""

    def __init__(self, model: Any, saes: Mapping[str, Any], tokens: torch.Tensor, settings: EvalSettings,
                 use_start_at_layer: bool, store: ModelStore | None, score_by_summary: bool = False) -> None:
        self.model = model
        self.saes = saes
        self.settings = settings
        self.device = model_device(model)
        self.tokens = tokens
        self.fast = use_start_at_layer
        self.ignore = torch.tensor(special_token_ids(model, settings.exclude_special_tokens), dtype=torch.long)
        groups: dict[tuple[str, int | None], list[str]] = {}
        for sae_id, sae in saes.items():
            groups.setdefault(_sae_hook(sae, sae_id), []).append(sae_id)
        self.groups = [
            _Group(hook_name=h, head_index=head, layer=_hook_layer(h), sae_ids=tuple(ids))
            for (h, head), ids in groups.items()
        ]
        layers = [g.layer for g in self.groups]
        self.stop_layer = None if any(layer is None for layer in layers) else max(layers) + 1  # type: ignore[type-var]
        self.n_layers = int(getattr(model.cfg, "n_layers", 0) or 0)
        # Fast path with every hook inside a block: variant forwards stop after the last block and the
        # unembedding of the clean run and all variants of a batch happens together (:class:`~pytest_saeval.head.Head`).
        self.resid_head = self.fast and self.stop_layer is not None and self.n_layers > 0
        self.store = store if self.resid_head else None
        self.states: dict[str, _SAEState] = {}
        self.head = Head(model)
        # On a model whose logits are linear in the final residual, each SAE's KL / CE can come from
        # the clean distribution's summary, on cold and warm passes alike (always so with a store).
        self.score_by_summary = (self.resid_head and self.head.soft_cap is None
                                 and (score_by_summary or self.store is not None))
        self.cosines: frozenset[str] = frozenset({"encoder", "decoder"})

    # -- forwards -------------------------------------------------------------------------------
    def _mask(self, rows: torch.Tensor) -> torch.Tensor:
        if self.ignore.numel() == 0:
            return torch.ones_like(rows, dtype=torch.bool)
        return ~torch.isin(rows, self.ignore.to(rows.device))

    def _capture_forward(self, rows: torch.Tensor, *, full: bool) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Clean forward; returns (final residual or logits or None, captured activations by hook name).

        ``full`` on the fast path stops after the last block (the final residual); otherwise it
        returns the logits. Not ``full``: stops after the deepest needed block.
        """
        captured: dict[str, torch.Tensor] = {}

        def capture(name: str) -> Callable[[torch.Tensor, Any], torch.Tensor]:
            # keyed by the requested name: bridges may report an aliased hook.name
            def fn(act: torch.Tensor, hook: Any) -> torch.Tensor:
                captured[name] = act
                return act

            return fn

        names = {g.hook_name for g in self.groups}
        if full and self.fast:
            names |= {entry_name(g.layer) for g in self.groups if g.layer is not None}
        hooks = [(name, capture(name)) for name in sorted(names)]
        if full and self.resid_head:
            out = self.model.run_with_hooks(rows, fwd_hooks=hooks, stop_at_layer=self.n_layers)
            return out, captured
        if full:
            return self.model.run_with_hooks(rows, return_type="logits", fwd_hooks=hooks), captured
        self.model.run_with_hooks(rows, return_type=None if self.stop_layer is None else "logits",
                                  fwd_hooks=hooks, stop_at_layer=self.stop_layer)
        return None, captured

    def _variant_forward(self, rows: torch.Tensor, group: _Group, captured: dict[str, torch.Tensor],
                         hook_fn: Callable[[torch.Tensor, Any], torch.Tensor],
                         attention_mask: torch.Tensor | None) -> torch.Tensor:
        """A forward with ``hook_fn`` on the group's hook: the final residual ``[B*T, d]`` on the fast
        path (from the hook's block to the end of the blocks), else the logits ``[B*T, V]``."""
        hooks = [(group.hook_name, hook_fn)]
        if self.fast and group.layer is not None:
            resid = captured[entry_name(group.layer)]
            if self.resid_head:
                out = self.model.run_with_hooks(resid, start_at_layer=group.layer, stop_at_layer=self.n_layers,
                                                fwd_hooks=hooks, attention_mask=attention_mask)
            else:
                out = self.model.run_with_hooks(resid, start_at_layer=group.layer, return_type="logits",
                                                fwd_hooks=hooks, attention_mask=attention_mask)
        else:
            out = self.model.run_with_hooks(rows, return_type="logits", fwd_hooks=hooks)
        return out.reshape(-1, out.shape[-1])

    def _ablation_forward(self, rows: torch.Tensor, group: _Group, captured: dict[str, torch.Tensor],
                          attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The zero-ablation forward of a hook group.

        Zeroing a whole residual-stream hook (``hook_resid_pre/mid/post``) leaves every position with
        the same residual, and every later block maps equal positions to equal positions (attention
        averages identical values), so the ablated logits are one vector for every token: that
        forward runs on a single position and its ``[1, d]`` result stands for all of them.
        """
        hook = lambda act, hook, g=group: _ablate(act, g.head_index)  # noqa: E731
        if (self.resid_head and attention_mask is None and group.head_index is None
                and _RESID_HOOK_RE.match(group.hook_name)):
            assert group.layer is not None
            one = {entry_name(group.layer): captured[entry_name(group.layer)][:1, :1]}
            return self._variant_forward(rows[:1, :1], group, one, hook, None)
        return self._variant_forward(rows, group, captured, hook, attention_mask)

    def _attention_mask(self, rows: torch.Tensor) -> torch.Tensor | None:
        """TransformerLens's padding mask, computed as its forward does (left padding only)."""
        tokenizer = getattr(self.model, "tokenizer", None)
        if not self.fast or tokenizer is None or getattr(tokenizer, "padding_side", None) != "left":
            return None
        from transformer_lens import utils

        return utils.get_attention_mask(tokenizer, rows, self.model.cfg.default_prepend_bos)

    # -- main loop ------------------------------------------------------------------------------
    def run(self, progress: bool) -> dict[str, SAEResult]:
        s = self.settings
        B = s.batch_size_prompts
        n_recon_rows = s.n_reconstruction_batches * B
        clean = LossAccumulator(n_recon_rows, self.device, with_kl=False)
        ablation = {g: LossAccumulator(n_recon_rows, self.device) for g in self.groups}
        keys = [(g.hook_name, g.head_index) for g in self.groups]
        stored = self.store.load(keys) if self.store is not None else None
        if stored is not None and not stored.fits(n_recon_rows, s.rows_needed, self.tokens.shape[1], keys):
            stored = None
        # records for the store, with the clean summary when SAEs are scored through it
        record = (Recording(self.groups, with_summary=self.score_by_summary)
                  if self.store is not None and stored is None else None)
        stored_clean = stored.clean if stored is not None else None
        n_batches = max(s.n_reconstruction_batches, s.n_sparsity_batches)
        batches: Any = range(n_batches)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="saeval batches", leave=False)
        for i in batches:
            rows_slice = slice(i * B, (i + 1) * B)
            rows = self.tokens[rows_slice].to(self.device)
            mask = self._mask(rows)
            do_recon = i < s.n_reconstruction_batches
            do_sparse = i < s.n_sparsity_batches
            attn = self._attention_mask(rows) if do_recon else None
            loss_mask = None if attn is None else torch.logical_and(attn[:, :-1], attn[:, 1:]).bool()
            # the model side: clean forward and ablations, or their stored records
            abl_tokens: dict[_Group, tuple[torch.Tensor, torch.Tensor]] = {}
            abl_sources: dict[_Group, torch.Tensor] = {}
            clean_out: torch.Tensor | None = None
            if stored is not None:
                captured = self._stored_batch(stored, rows_slice, do_recon)
                if do_recon:
                    clean_out = self._upload(stored.final_resid[rows_slice])
                    for g, key in zip(self.groups, keys):
                        h = stored.hooks[key]
                        abl_tokens[g] = (self._upload(h.ablation_kl[rows_slice]),
                                         self._upload(h.ablation_ce[rows_slice]))
            else:
                clean_out, captured = self._capture_forward(rows, full=do_recon)
                if do_recon:
                    for g in self.groups:
                        abl_sources[g] = self._ablation_forward(rows, g, captured, attn)
            targets = torch.cat([rows[:, 1:], rows[:, :1]], dim=1).reshape(-1)
            clean_flat: torch.Tensor | None = None
            if do_recon and not self.resid_head:
                # logits path: every variant is scored against the clean logits as soon as it exists
                assert clean_out is not None
                clean_flat = clean_out.reshape(-1, clean_out.shape[-1])
                cce, _, _ = next_token_losses(clean_flat, [], targets)
                assert cce is not None
                clean.add(rows_slice, mask, cce.view(B, -1)[:, :-1], loss_mask=loss_mask)
                for g, logits in abl_sources.items():
                    _, kl, ce = next_token_losses(clean_flat, [logits], targets, clean_ce=False)
                    ablation[g].add(rows_slice, mask, ce[0].view(B, -1)[:, :-1], kl[0].view(B, -1), loss_mask)
                abl_sources.clear()
            sae_sources: list[tuple[str, torch.Tensor]] = []
            for group in self.groups:
                act = captured[group.hook_name]
                spliced: list[tuple[str, torch.Tensor]] = []
                for sae_id in group.sae_ids:
                    replacement = self._sae_batch(sae_id, group, act, rows_slice, mask, do_sparse, do_recon)
                    if replacement is not None:
                        spliced.append((sae_id, replacement))
                outs = self._spliced_forwards(rows, group, captured, [r for _, r in spliced], attn)
                for (sae_id, _), out in zip(spliced, outs):
                    if self.resid_head:
                        sae_sources.append((sae_id, out))
                        continue
                    assert clean_flat is not None
                    _, kl, ce = next_token_losses(clean_flat, [out], targets, clean_ce=False)
                    acc = self.states[sae_id].recon
                    assert acc is not None
                    acc.add(rows_slice, mask, ce[0].view(B, -1)[:, :-1], kl[0].view(B, -1), loss_mask)
                    del out
                del spliced
            summary: tuple[DistributionSummary, torch.Tensor] | None = None
            if do_recon and self.resid_head:
                assert clean_out is not None
                clean_flat = clean_out.reshape(-1, clean_out.shape[-1])
                abl_groups = list(abl_sources)  # none on stored records: their ablation losses are stored
                abl_variants = [abl_sources[g] for g in abl_groups]
                sae_variants = [src for _, src in sae_sources]
                if not self.score_by_summary:
                    cce, kl, ce, _ = self.head.stacked_losses(clean_flat, abl_variants + sae_variants, targets)
                else:
                    # SAEs are scored through the clean summary, stored or made now, so their numbers
                    # do not depend on what the store held
                    if stored_clean is not None:  # only the SAE variants are unembedded
                        dist, cce = stored_clean.rows(rows_slice, self._upload)
                        kl = ce = clean_flat.new_empty(0, clean_flat.shape[0])
                    else:
                        cce, kl, ce, made = self.head.stacked_losses(clean_flat, abl_variants, targets, summarize=True)
                        assert made is not None
                        dist = made
                        summary = (dist, cce)  # for the record
                    kl_sae, ce_sae = self.head.summary_losses(clean_flat, dist, sae_variants, targets)
                    kl, ce = torch.cat([kl, kl_sae]), torch.cat([ce, ce_sae])
                clean.add(rows_slice, mask, cce.view(B, -1)[:, :-1], loss_mask=loss_mask)
                for j, g in enumerate(abl_groups):
                    abl_tokens[g] = (kl[j].view(B, -1), ce[j].view(B, -1)[:, :-1])
                for j, (sae_id, _) in enumerate(sae_sources, start=len(abl_groups)):
                    acc = self.states[sae_id].recon
                    assert acc is not None
                    acc.add(rows_slice, mask, ce[j].view(B, -1)[:, :-1], kl[j].view(B, -1), loss_mask)
                for g, (kl_tok, ce_tok) in abl_tokens.items():
                    ablation[g].add(rows_slice, mask, ce_tok, kl_tok, loss_mask)
            if record is not None:
                record.add(captured, clean_out if do_recon else None, abl_tokens, summary)
            del captured, clean_out, abl_sources, sae_sources
        if record is not None and self.store is not None:
            self.store.save(record.finish(keys))
        return self._finish(clean, ablation)

    def _upload(self, t: torch.Tensor) -> torch.Tensor:
        """A stored (CPU) tensor on the model's device; asynchronous when the source is pinned."""
        return t.to(self.device, non_blocking=t.is_pinned()) if t.device != self.device else t

    def _stored_batch(self, stored: ModelRecords, rows: slice, do_recon: bool) -> dict[str, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}
        for g in self.groups:
            h = stored.hooks[(g.hook_name, g.head_index)]
            captured[g.hook_name] = self._upload(h.acts[rows])
            if do_recon:
                assert g.layer is not None
                entry = h.block_resid if h.block_resid is not None else h.acts
                captured[entry_name(g.layer)] = self._upload(entry[rows])
        return captured

    def _sae_batch(self, sae_id: str, group: _Group, act: torch.Tensor, rows_slice: slice, mask: torch.Tensor,
                   do_sparse: bool, do_recon: bool) -> torch.Tensor | None:
        """Encode/decode one SAE on one batch, feed its sparsity sums, and return the hook activation
        with the reconstruction spliced in at kept positions (``None`` for a sparsity-only batch)."""
        sae = self.saes[sae_id]
        x = _sae_input(act, group.head_index)
        state = self.states.get(sae_id)
        if state is None:
            s = self.settings
            d_in = x.shape[-1]
            state = _SAEState(sae=sae, group=group, d_in=d_in, d_sae=int(sae.cfg.d_sae))
            state.recon = LossAccumulator(s.n_reconstruction_batches * s.batch_size_prompts, self.device)
            state.sparsity = SparsityAccumulator(s.n_sparsity_batches * s.batch_size_prompts, d_in, state.d_sae,
                                                 self.device)
            self.states[sae_id] = state
        dev = _sae_device(sae, self.device)
        feats = sae.encode(x.to(dev))
        x_hat = sae.decode(feats).to(x.dtype)
        if do_sparse:
            assert state.sparsity is not None
            state.sparsity.add(rows_slice, x, x_hat.to(x.device), feats, mask.to(feats.device))
        if not do_recon:
            return None
        new = torch.where(mask.to(dev)[..., None], x_hat, x.to(dev)).to(act.device)
        del feats, x_hat
        return _replace(act, group.head_index, new)

    def _spliced_forwards(self, rows: torch.Tensor, group: _Group, captured: dict[str, torch.Tensor],
                          replacements: Sequence[torch.Tensor], attn: torch.Tensor | None) -> Iterator[torch.Tensor]:
        """The SAE-spliced forwards of one hook group, one output per replacement, in order.

        On the fast path the tails of several SAEs on one hook run as one forward over their rows
        stacked along the batch (the block-entry residual repeated; at most :data:`TAIL_POSITIONS`
        positions per forward): the same arithmetic per row, fewer and larger operations. Otherwise
        one forward per SAE, each produced only when the previous one has been used.
        """
        if not self.resid_head or len(replacements) < 2:
            for r in replacements:
                yield self._variant_forward(rows, group, captured, lambda a, hook, r=r: r, attn)
            return
        assert group.layer is not None
        entry = captured[entry_name(group.layer)]
        per_forward = max(1, TAIL_POSITIONS // rows.numel())
        for start in range(0, len(replacements), per_forward):
            part = replacements[start:start + per_forward]
            n = len(part)
            stacked = torch.cat(list(part))
            big = {entry_name(group.layer): entry.repeat(n, *([1] * (entry.ndim - 1)))}
            out = self._variant_forward(rows, group, big, lambda a, hook, r=stacked: r,
                                        None if attn is None else attn.repeat(n, 1))
            yield from out.split(rows.numel())


    def _finish(self, clean: LossAccumulator, ablation: dict[_Group, LossAccumulator]) -> dict[str, SAEResult]:
        # One host transfer: gather every device sum into one flat buffer, copy once, split again.
        tensors: list[torch.Tensor] = []

        def reg(t: torch.Tensor) -> int:
            tensors.append(t.reshape(-1).to(F64))
            return len(tensors) - 1

        plan: dict[str, Any] = {}
        plan["clean_ce"] = (reg(clean.ce), reg(clean.ce_count))
        for g, acc in ablation.items():
            plan[("abl", g)] = (reg(acc.kl), reg(acc.ce), reg(acc.kl_count))  # type: ignore[arg-type]
        for sae_id, st in self.states.items():
            sp = st.sparsity
            assert sp is not None
            plan[("sp", sae_id)] = {
                "tok": {k: reg(v) for k, v in sp.token_sums.items()},
                "count": reg(sp.count), "sum_x": reg(sp.sum_x), "sq": reg(sp.sum_sq_norm),
                "bias": reg(torch.stack(sp.batch_bias)) if sp.batch_bias else None,
                "fa": reg(sp.feature_acts), "fr": reg(sp.feature_rows),
            }
            if st.recon is not None:
                plan[("rc", sae_id)] = (reg(st.recon.kl), reg(st.recon.ce))  # type: ignore[arg-type]
        sizes = [t.numel() for t in tensors]
        flat = torch.cat([t.to(self.device) for t in tensors]).cpu() if tensors else torch.zeros(0, dtype=F64)
        host = list(torch.split(flat, sizes))

        s = self.settings
        ctx = self.tokens.shape[1]
        results: dict[str, SAEResult] = {}
        ce_c, ce_n = host[plan["clean_ce"][0]], host[plan["clean_ce"][1]]
        for sae_id, st in self.states.items():
            metrics: dict[str, float] = {}
            recon_stats: dict[str, SequenceSums] = {}
            if st.recon is not None:
                a_kl, a_ce, kl_n = (host[j] for j in plan[("abl", st.group)])
                r_kl, r_ce = (host[j] for j in plan[("rc", sae_id)])
                recon_stats = {
                    "kl_div_with_sae": SequenceSums(r_kl, kl_n),
                    "kl_div_with_ablation": SequenceSums(a_kl, kl_n),
                    "ce_loss_with_sae": SequenceSums(r_ce, ce_n),
                    "ce_loss_without_sae": SequenceSums(ce_c, ce_n),
                    "ce_loss_with_ablation": SequenceSums(a_ce, ce_n),
                }
                metrics.update({k: v.mean() for k, v in recon_stats.items()})
                metrics.update(reconstruction_scores(metrics))
            p = plan[("sp", sae_id)]
            count = host[p["count"]]
            totals = SparsityTotals(
                token_sums={k: SequenceSums(host[j], count) for k, j in p["tok"].items()},
                sum_x=host[p["sum_x"]].reshape(-1, st.d_in),
                sum_sq_norm=host[p["sq"]],
                batch_bias=host[p["bias"]] if p["bias"] is not None else torch.zeros(0, dtype=F64),
                feature_acts=host[p["fa"]],
                feature_rows=host[p["fr"]],
            )
            metrics.update(totals.scalar_metrics())
            metrics["total_tokens_eval_reconstruction"] = float(ctx * s.n_reconstruction_batches * s.batch_size_prompts)
            metrics["total_tokens_eval_sparsity_variance"] = float(ctx * s.n_sparsity_batches * s.batch_size_prompts)
            w_scalars, w_lists = weight_metrics(st.sae, encoder_cosines="encoder" in self.cosines,
                                                decoder_cosines="decoder" in self.cosines)
            metrics.update(w_scalars)
            feature_metrics = {
                "feature_density": totals.feature_density().tolist(),
                "consistent_activation_heuristic": totals.consistent_activation_heuristic().tolist(),
                **w_lists,
            }
            ordered = {name: metrics[name] for name in METRICS if name in metrics}
            results[sae_id] = SAEResult(
                sae_id=sae_id, hook_name=st.group.hook_name, hook_head_index=st.group.head_index,
                d_in=st.d_in, d_sae=st.d_sae, metrics=ordered, feature_metrics=feature_metrics,
                sequence_stats=SequenceStats(reconstruction=recon_stats, sparsity=dict(totals.token_sums),
                                             sum_x=totals.sum_x, sum_sq_norm=totals.sum_sq_norm),
            )
        return results


def cosine_matrices(metrics: Collection[str] | None) -> frozenset[str]:
    """Which all-pairs cosine matrices (``"encoder"``, ``"decoder"``) the requested metrics need.

    Raises:
        InputError: a name that is not in the catalogue.
    """
    if metrics is None:
        return frozenset({"encoder", "decoder"})
    if isinstance(metrics, str):
        metrics = [metrics]
    for name in metrics:
        if name not in METRICS:
            raise InputError(
                f"unknown metric '{name}'{did_you_mean(name, METRICS)}",
                key="metrics",
                fix="use catalogue names (pytest_saeval.METRICS)",
            )
    return frozenset(COSINE_METRICS[name] for name in metrics if name in COSINE_METRICS)


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


def _check_shapes(runner: _Runner, tokens: torch.Tensor) -> None:
    """Probe 1 row x 2 tokens through the needed blocks to check each SAE's d_in against its hook."""
    probe = tokens[:1, :2].to(runner.device)
    _, captured = runner._capture_forward(probe, full=False)
    n_heads = None
    for group in runner.groups:
        act = captured.get(group.hook_name)
        if act is None:
            raise InputError(
                f"hook '{group.hook_name}' did not fire in a forward pass",
                key=f"saes.{group.sae_ids[0]}.hook_name",
                fix="use a hook on the model's forward path (e.g. blocks.N.hook_resid_pre)",
            )
        if group.head_index is not None:
            n_heads = act.shape[2] if act.ndim == 4 else None
            if n_heads is None or not 0 <= group.head_index < n_heads:
                raise InputError(
                    f"hook_head_index {group.head_index} is invalid for '{group.hook_name}' "
                    f"(activation shape {tuple(act.shape)})",
                    key=f"saes.{group.sae_ids[0]}.hook_head_index",
                    fix="use a head index in [0, n_heads) on a per-head hook such as attn.hook_z",
                )
        width = _sae_input(act, group.head_index).shape[-1]
        for sae_id in group.sae_ids:
            d_in = int(runner.saes[sae_id].cfg.d_in)
            if d_in != width:
                raise InputError(
                    f"SAE d_in is {d_in} but hook '{group.hook_name}' gives activations of size {width}",
                    key=f"saes.{sae_id}.d_in",
                    fix="evaluate the SAE on the model and hook it was trained on",
                )


@torch.no_grad()
def evaluate(
    model: Any,
    saes: Mapping[str, Any],
    tokens: Any,
    settings: EvalSettings | None = None,
    *,
    use_start_at_layer: bool | None = None,
    progress: bool = False,
    model_store: ModelStore | None = None,
    metrics: Collection[str] | None = None,
    score_by_summary: bool = False,
) -> dict[str, SAEResult]:
    """Evaluate every SAE in ``saes`` on ``model`` over ``tokens`` in one fused pass.

    Args:
        model: a TransformerLens ``HookedTransformer`` or ``TransformerBridge``; its device is used.
        saes: ``{id: sae}``, SAE Lens SAEs or objects with ``encode``, ``decode``, ``W_enc``, ``W_dec``,
            ``cfg.d_in``, ``cfg.d_sae`` and ``cfg.metadata.hook_name`` (optionally ``hook_head_index``).
        tokens: integer array ``[n_sequences, context_size]``; batch ``i`` is rows ``[i*B, (i+1)*B)``.
        settings: batch size, batch counts and special-token exclusion.
        use_start_at_layer: force (True) or forbid (False) forwards that start at the hook's block;
            default: whenever the model supports it.
        progress: show a tqdm bar on stderr.
        model_store: where the SAE-independent part of the pass (:class:`ModelRecords`: clean
            activations, block-entry residuals, final residuals, ablation losses) is read from and
            written to; with a hit, only the SAEs' own forwards run. Used on the fast path only
            (a ``HookedTransformer`` and hooks inside blocks); see :mod:`pytest_saeval.cache`.
        metrics: catalogue names the caller needs; None (default) means all. Work that only serves
            metrics outside this set is skipped (today: the all-pairs feature cosine similarities,
            :data:`~pytest_saeval.metrics.COSINE_METRICS`, ``n² d`` work per SAE); the results may
            still hold more metrics than asked for.
        score_by_summary: score each SAE's KL / CE through the clean distribution's summary
            (:func:`~pytest_saeval.metrics.summary_losses`: its top tokens exactly, the rest through
            their moment) instead of directly from both runs' logits, as SAE Lens does; equal to float
            rounding. Always so with a ``model_store``, so that a result does not depend on what the
            store held; the plugin and ``saeval`` always score this way. Fast path only, and not for
            a model with a logit soft-cap.

    Returns:
        ``{id: SAEResult}`` in the order of ``saes``.

    Raises:
        InputError: bad tokens, too few rows, unknown hooks, ``d_in`` mismatches, no SAEs.
    """
    settings = settings or EvalSettings()
    cosines = cosine_matrices(metrics)
    token_tensor = _as_token_tensor(tokens)
    _check_inputs(model, saes, token_tensor, settings)
    fast = supports_start_at_layer(model) if use_start_at_layer is None else use_start_at_layer
    runner = _Runner(model, saes, token_tensor, settings, fast, model_store, score_by_summary)
    runner.cosines = cosines
    with _plain_hook_z(saes):
        _check_shapes(runner, token_tensor)
        results = runner.run(progress)
    return {sae_id: results[sae_id] for sae_id in saes}
