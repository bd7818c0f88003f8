"""``evaluate()``: every catalogue metric for many SAEs on one model, in one fused pass.

Schedule per batch of ``B`` rows (DESIGN §4):

* reconstruction batches: one clean forward that captures every needed hook activation and the
  residual stream entering each needed block; per hook group (hook name + head index) one
  zero-ablation forward starting at the hook's block, shared by every SAE on it; per SAE one
  encode/decode (feeding both metric families) and one SAE-spliced forward from the hook's block;
* sparsity-only batches: one forward that stops after the deepest needed block.

Models without ``start_at_layer`` (TransformerLens 3's ``TransformerBridge``) run the ablation and
spliced forwards as full forwards with hooks; both paths give the same numbers.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .catalogue import METRICS
from .errors import InputError, did_you_mean
from .metrics import F64, LossAccumulator, SequenceSums, SparsityAccumulator, SparsityTotals, weight_metrics
from .settings import EvalSettings

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


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


def model_device(model: Any) -> torch.device:
    """The device of the model's parameters (``cpu`` for a parameter-less model)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def supports_start_at_layer(model: Any) -> bool:
    """True for ``HookedTransformer`` (whose forward can start at a block); False for bridges."""
    try:
        from transformer_lens import HookedTransformer
    except ImportError:  # pragma: no cover - transformer_lens is a dependency
        return False
    if not isinstance(model, HookedTransformer):
        return False
    return getattr(model.cfg, "positional_embedding_type", "standard") != "shortformer"


def special_token_ids(model: Any, setting: bool | Sequence[int]) -> list[int]:
    """Token ids to exclude: the tokenizer's BOS/EOS/PAD/SEP/decoder-start ids for ``True`` (as SAE Lens)."""
    if setting is False:
        return []
    if setting is True:
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            return []
        from sae_lens.util import get_special_token_ids

        return sorted(int(i) for i in get_special_token_ids(tokenizer))
    return sorted(int(i) for i in setting)


def _hook_layer(hook_name: str) -> int | None:
    m = _BLOCK_RE.match(hook_name)
    return int(m.group(1)) if m else None


def _sae_hook(sae: Any, sae_id: str) -> tuple[str, int | None]:
    cfg = getattr(sae, "cfg", None)
    meta = getattr(cfg, "metadata", None)
    hook_name = getattr(meta, "hook_name", None) or getattr(cfg, "hook_name", None)
    if not isinstance(hook_name, str) or not hook_name:
        raise InputError(
            "the SAE has no hook name (cfg.metadata.hook_name)",
            key=f"saes.{sae_id}",
            fix="load it with SAE Lens or set cfg.metadata.hook_name to the model hook it was trained on",
        )
    head = getattr(meta, "hook_head_index", None)
    if head is None:
        head = getattr(cfg, "hook_head_index", None)
    return hook_name, (int(head) if head is not None else None)


def _as_token_tensor(tokens: Any) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor):
        try:
            import numpy as np

            tokens = torch.from_numpy(np.asarray(tokens))
        except (TypeError, ValueError) as e:
            raise InputError(
                f"tokens must be a 2-D integer array, got {type(tokens).__name__}",
                key="tokens",
                fix="pass a torch.LongTensor or numpy int array of shape [n_sequences, context_size]",
            ) from e
    if tokens.ndim != 2:
        raise InputError(
            f"tokens must be 2-D [n_sequences, context_size], got shape {tuple(tokens.shape)}",
            key="tokens",
            fix="reshape the token array to [n_sequences, context_size]",
        )
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise InputError(
            f"tokens must be integers, got dtype {tokens.dtype}",
            key="tokens",
            fix="store token ids as an integer array (int32/int64)",
        )
    if tokens.shape[1] < 2:
        raise InputError(
            f"sequences must have at least 2 tokens, got context size {tokens.shape[1]}",
            key="tokens",
            fix="use a context size of at least 2 (next-token losses need a next token)",
        )
    return tokens.long()


def _check_inputs(model: Any, saes: Mapping[str, Any], tokens: torch.Tensor, settings: EvalSettings) -> None:
    if not saes:
        raise InputError("no SAEs to evaluate", key="saes", fix="pass a mapping {id: sae} with at least one SAE")
    d_vocab = getattr(model.cfg, "d_vocab", None)
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or (d_vocab is not None and hi >= d_vocab):
        raise InputError(
            f"token ids must lie in [0, {d_vocab}), found min {lo} and max {hi}",
            key="tokens",
            fix="tokenize with the model's own tokenizer (the ids outside the vocabulary come from another one)",
        )
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx is not None and tokens.shape[1] > n_ctx:
        raise InputError(
            f"context size {tokens.shape[1]} exceeds the model's n_ctx {n_ctx}",
            key="context_size",
            fix=f"set context_size to at most {n_ctx}",
        )
    needed = settings.rows_needed
    if tokens.shape[0] < needed:
        raise InputError(
            f"{tokens.shape[0]} token rows, but {needed} are needed "
            f"({max(settings.n_reconstruction_batches, settings.n_sparsity_batches)} batches x "
            f"{settings.batch_size_prompts} rows)",
            key="tokens",
            fix="provide more rows, or lower batch_size_prompts / n_reconstruction_batches / n_sparsity_batches",
        )
    hooks = getattr(model, "hook_dict", {})
    for sae_id, sae in saes.items():
        hook_name, _ = _sae_hook(sae, sae_id)
        if hook_name not in hooks:
            raise InputError(
                f"the model has no hook '{hook_name}'{did_you_mean(hook_name, hooks)}",
                key=f"saes.{sae_id}.hook_name",
                fix="train/load the SAE for a hook this model has (see model.hook_dict)",
            )


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


class _Runner:
    """Executes the fused schedule for one ``evaluate`` call."""

    def __init__(self, model: Any, saes: Mapping[str, Any], tokens: torch.Tensor, settings: EvalSettings,
                 use_start_at_layer: bool) -> None:
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
        self.states: dict[str, _SAEState] = {}

    # -- forwards -------------------------------------------------------------------------------
    def _mask(self, rows: torch.Tensor) -> torch.Tensor:
        if self.ignore.numel() == 0:
            return torch.ones_like(rows, dtype=torch.bool)
        return ~torch.isin(rows, self.ignore.to(rows.device))

    def _capture_forward(self, rows: torch.Tensor, *, full: bool) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Clean forward; returns (logits or None, captured activations by hook name)."""
        captured: dict[str, torch.Tensor] = {}

        def capture(name: str) -> Callable[[torch.Tensor, Any], torch.Tensor]:
            # keyed by the requested name: bridges may report an aliased hook.name
            def fn(act: torch.Tensor, hook: Any) -> torch.Tensor:
                captured[name] = act
                return act

            return fn

        names = {g.hook_name for g in self.groups}
        if full and self.fast:
            names |= {f"blocks.{g.layer}.hook_resid_pre" for g in self.groups if g.layer is not None}
        hooks = [(name, capture(name)) for name in sorted(names)]
        if full:
            logits = self.model.run_with_hooks(rows, return_type="logits", fwd_hooks=hooks)
            return logits, captured
        self.model.run_with_hooks(rows, return_type=None if self.stop_layer is None else "logits",
                                  fwd_hooks=hooks, stop_at_layer=self.stop_layer)
        return None, captured

    def _variant_forward(self, rows: torch.Tensor, group: _Group, captured: dict[str, torch.Tensor],
                         hook_fn: Callable[[torch.Tensor, Any], torch.Tensor],
                         attention_mask: torch.Tensor | None) -> torch.Tensor:
        hooks = [(group.hook_name, hook_fn)]
        if self.fast and group.layer is not None:
            resid = captured[f"blocks.{group.layer}.hook_resid_pre"]
            return self.model.run_with_hooks(resid, start_at_layer=group.layer, return_type="logits",
                                             fwd_hooks=hooks, attention_mask=attention_mask)
        return self.model.run_with_hooks(rows, return_type="logits", fwd_hooks=hooks)

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
        n_sparse_rows = s.n_sparsity_batches * B
        clean = LossAccumulator(n_recon_rows, self.device, with_kl=False)
        ablation = {g: LossAccumulator(n_recon_rows, self.device) for g in self.groups}
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
            logits, captured = self._capture_forward(rows, full=do_recon)
            attn = self._attention_mask(rows) if do_recon else None
            loss_mask = None if attn is None else torch.logical_and(attn[:, :-1], attn[:, 1:]).bool()
            if do_recon:
                assert logits is not None
                clean.add(rows_slice, torch.log_softmax(logits, dim=-1), rows, mask, None, None, loss_mask)
                clean_p = torch.softmax(logits, dim=-1)
                clean_plogp = torch.xlogy(clean_p, clean_p)
                del logits
            for group in self.groups:
                act = captured[group.hook_name]
                for sae_id in group.sae_ids:
                    self._sae_batch(sae_id, group, act, rows, rows_slice, mask, do_recon, do_sparse,
                                    captured, attn, loss_mask, clean_plogp if do_recon else None,
                                    clean_p if do_recon else None, n_recon_rows, n_sparse_rows)
                if do_recon:
                    log_q = torch.log_softmax(
                        self._variant_forward(rows, group, captured, lambda a, hook, g=group: _ablate(a, g.head_index),
                                              attn), dim=-1)
                    ablation[group].add(rows_slice, log_q, rows, mask, clean_plogp, clean_p, loss_mask)
                    del log_q
            del captured
        return self._finish(clean, ablation)

    def _sae_batch(self, sae_id: str, group: _Group, act: torch.Tensor, rows: torch.Tensor, rows_slice: slice,
                   mask: torch.Tensor, do_recon: bool, do_sparse: bool, captured: dict[str, torch.Tensor],
                   attn: torch.Tensor | None, loss_mask: torch.Tensor | None, clean_plogp: torch.Tensor | None,
                   clean_p: torch.Tensor | None, n_recon_rows: int, n_sparse_rows: int) -> None:
        sae = self.saes[sae_id]
        x = _sae_input(act, group.head_index)
        state = self.states.get(sae_id)
        if state is None:
            d_in = x.shape[-1]
            state = _SAEState(sae=sae, group=group, d_in=d_in, d_sae=int(sae.cfg.d_sae))
            if s_rows := (n_recon_rows if self.settings.n_reconstruction_batches else 0):
                state.recon = LossAccumulator(s_rows, self.device)
            state.sparsity = SparsityAccumulator(n_sparse_rows, d_in, state.d_sae, self.device)
            self.states[sae_id] = state
        dev = _sae_device(sae, self.device)
        feats = sae.encode(x.to(dev))
        x_hat = sae.decode(feats).to(x.dtype)
        if do_sparse:
            assert state.sparsity is not None
            state.sparsity.add(rows_slice, x, x_hat.to(x.device), feats, mask.to(feats.device))
        if do_recon:
            assert state.recon is not None
            new = torch.where(mask.to(dev)[..., None], x_hat, x.to(dev)).to(act.device)
            replacement = _replace(act, group.head_index, new)
            logits = self._variant_forward(rows, group, captured, lambda a, hook: replacement, attn)
            log_q = torch.log_softmax(logits, dim=-1)
            del logits
            state.recon.add(rows_slice, log_q, rows, mask, clean_plogp, clean_p, loss_mask)

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
            w_scalars, w_lists = weight_metrics(st.sae)
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

    Returns:
        ``{id: SAEResult}`` in the order of ``saes``.

    Raises:
        InputError: bad tokens, too few rows, unknown hooks, ``d_in`` mismatches, no SAEs.
    """
    settings = settings or EvalSettings()
    token_tensor = _as_token_tensor(tokens)
    _check_inputs(model, saes, token_tensor, settings)
    fast = supports_start_at_layer(model) if use_start_at_layer is None else use_start_at_layer
    runner = _Runner(model, saes, token_tensor, settings, fast)
    with _plain_hook_z(saes):
        _check_shapes(runner, token_tensor)
        results = runner.run(progress)
    return {sae_id: results[sae_id] for sae_id in saes}
