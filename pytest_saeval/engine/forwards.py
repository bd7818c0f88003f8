"""The model's forwards in the fused pass: the clean capture, the zero-ablation and SAE-spliced variants.

On the fast path (a ``HookedTransformer``, every hook inside a block) a variant forward starts at
the hook's block from the clean run's residual there, and stops after the last block, so the final
residuals of all runs of a batch can be unembedded together (:class:`~pytest_saeval.engine.head.Head`).
Models without ``start_at_layer`` (``TransformerBridge``) run each variant as a full forward with hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from pytest_saeval.engine.hooks import RESID_HOOK_RE, Group, ablate
from pytest_saeval.engine.inputs import model_device
from pytest_saeval.engine.records import entry_name

__all__ = ["TAIL_POSITIONS", "Forwards"]

TAIL_POSITIONS = 1 << 14
"""Most positions in one stacked SAE-tail forward (rows of several SAEs on one hook, see
:meth:`Forwards.spliced`)."""

HookFn = Callable[[torch.Tensor, Any], torch.Tensor]


def _constant(value: torch.Tensor) -> HookFn:
    """A hook that replaces the activation with ``value`` (TransformerLens passes ``hook=`` by name)."""

    def replaced(act: torch.Tensor, hook: Any) -> torch.Tensor:
        return value

    return replaced


class Forwards:
    """The forwards of one pass over one model and its hook groups."""

    def __init__(self, model: Any, groups: Sequence[Group], fast: bool) -> None:
        self.model = model
        self.groups = list(groups)
        self.fast = fast
        """Forwards may start at a block (``start_at_layer``)."""
        self.device = model_device(model)
        layers = [g.layer for g in self.groups if g.layer is not None]
        self.stop_layer = max(layers) + 1 if len(layers) == len(self.groups) else None
        """Sparsity-only batches stop here (after the deepest needed block); None runs the whole model."""
        self.n_layers = int(getattr(model.cfg, "n_layers", 0) or 0)
        self.resid_head = self.fast and self.stop_layer is not None and self.n_layers > 0
        """Variant forwards stop after the last block and return final residuals (else logits)."""

    def capture(self, rows: torch.Tensor, *, full: bool) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Clean forward; returns (final residual or logits or None, captured activations by hook name).

        ``full`` on the fast path stops after the last block (the final residual); otherwise it
        returns the logits. Not ``full``: stops after the deepest needed block.
        """
        captured: dict[str, torch.Tensor] = {}

        def capture(name: str) -> HookFn:
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

    def variant(self, rows: torch.Tensor, group: Group, captured: dict[str, torch.Tensor], hook_fn: HookFn,
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

    def ablation(self, rows: torch.Tensor, group: Group, captured: dict[str, torch.Tensor],
                 attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The zero-ablation forward of a hook group.

        Zeroing a whole residual-stream hook (``hook_resid_pre/mid/post``) leaves every position with
        the same residual, and every later block maps equal positions to equal positions (attention
        averages identical values), so the ablated logits are one vector for every token: that
        forward runs on a single position and its ``[1, d]`` result stands for all of them.
        """
        def ablated(act: torch.Tensor, hook: Any) -> torch.Tensor:
            return ablate(act, group.head_index)

        if (self.resid_head and attention_mask is None and group.head_index is None
                and RESID_HOOK_RE.match(group.hook_name)):
            assert group.layer is not None
            one = {entry_name(group.layer): captured[entry_name(group.layer)][:1, :1]}
            return self.variant(rows[:1, :1], group, one, ablated, None)
        return self.variant(rows, group, captured, ablated, attention_mask)

    def spliced(self, rows: torch.Tensor, group: Group, captured: dict[str, torch.Tensor],
                replacements: Sequence[torch.Tensor], attn: torch.Tensor | None) -> Iterator[torch.Tensor]:
        """The SAE-spliced forwards of one hook group, one output per replacement, in order.

        On the fast path the tails of several SAEs on one hook run as one forward over their rows
        stacked along the batch (the block-entry residual repeated; at most :data:`TAIL_POSITIONS`
        positions per forward): the same arithmetic per row, fewer and larger operations. Otherwise
        one forward per SAE, each produced only when the previous one has been used.
        """
        if not self.resid_head or len(replacements) < 2:
            for r in replacements:
                yield self.variant(rows, group, captured, _constant(r), attn)
            return
        assert group.layer is not None
        entry = captured[entry_name(group.layer)]
        per_forward = max(1, TAIL_POSITIONS // rows.numel())
        for start in range(0, len(replacements), per_forward):
            part = replacements[start:start + per_forward]
            n = len(part)
            stacked = torch.cat(list(part))
            big = {entry_name(group.layer): entry.repeat(n, *([1] * (entry.ndim - 1)))}
            out = self.variant(rows, group, big, _constant(stacked), None if attn is None else attn.repeat(n, 1))
            yield from out.split(rows.numel())

    def attention_mask(self, rows: torch.Tensor) -> torch.Tensor | None:
        """TransformerLens's padding mask, computed as its forward does (left padding only)."""
        tokenizer = getattr(self.model, "tokenizer", None)
        if not self.fast or tokenizer is None or getattr(tokenizer, "padding_side", None) != "left":
            return None
        from transformer_lens import utils

        return utils.get_attention_mask(tokenizer, rows, self.model.cfg.default_prepend_bos)
