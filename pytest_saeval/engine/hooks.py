"""Hook-level helpers of the fused pass: which SAEs share a hook, and how an SAE's input is read from
a hook activation and its reconstruction (or a zero ablation) written back."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from pytest_saeval.engine.inputs import hook_layer, sae_hook
from pytest_saeval.engine.protocols import SAELike

__all__ = ["RESID_HOOK_RE", "Group", "ablate", "group_saes", "plain_hook_z", "replace", "sae_device", "sae_input"]

RESID_HOOK_RE = re.compile(r"^blocks\.\d+\.hook_resid_(pre|mid|post)$")
"""Residual-stream hooks: zero-ablating one makes every later position equal."""


@dataclass(frozen=True)
class Group:
    """SAEs sharing one hook (and head): they share the zero-ablation forward."""

    hook_name: str
    """The model hook."""
    head_index: int | None
    """The attention head of a per-head ``hook_z`` group, else None."""
    layer: int | None
    """The block the hook is in (``blocks.<layer>.``), None for hooks outside the blocks."""
    sae_ids: tuple[str, ...]
    """The SAEs on this hook, in the order of the ``saes`` mapping."""

    @property
    def key(self) -> tuple[str, int | None]:
        """``(hook_name, head_index)``: how a model-side store names the group's records."""
        return (self.hook_name, self.head_index)


def group_saes(saes: Mapping[str, SAELike]) -> list[Group]:
    """The SAEs grouped by hook (and head), groups in order of first appearance."""
    groups: dict[tuple[str, int | None], list[str]] = {}
    for sae_id, sae in saes.items():
        groups.setdefault(sae_hook(sae, sae_id), []).append(sae_id)
    return [Group(hook_name=h, head_index=head, layer=hook_layer(h), sae_ids=tuple(ids))
            for (h, head), ids in groups.items()]


@contextlib.contextmanager
def plain_hook_z(saes: Mapping[str, SAELike]) -> Iterator[None]:
    """Turn off SAE Lens's hook_z reshaping while we feed flattened activations (as run_evals does)."""
    switched: list[Any] = [sae for sae in saes.values() if getattr(sae, "hook_z_reshaping_mode", False)]
    for sae in switched:  # SAE Lens's own switch (not part of SAELike)
        sae.turn_off_forward_pass_hook_z_reshaping()
    try:
        yield
    finally:
        for sae in switched:
            sae.turn_on_forward_pass_hook_z_reshaping()


def sae_input(act: torch.Tensor, head: int | None) -> torch.Tensor:
    """The SAE's input from a hook activation: one head, or all heads flattened, or the activation."""
    if head is not None:
        return act[:, :, head]
    if act.ndim == 4:
        return act.flatten(-2, -1)
    return act


def replace(act: torch.Tensor, head: int | None, new: torch.Tensor) -> torch.Tensor:
    """The hook activation with the SAE's part replaced by ``new``."""
    if head is not None:
        out = act.clone()
        out[:, :, head] = new
        return out
    return new.reshape(act.shape)


def ablate(act: torch.Tensor, head: int | None) -> torch.Tensor:
    """The hook activation with the SAE's part set to zero."""
    if head is not None:
        out = act.clone()
        out[:, :, head] = 0
        return out
    return torch.zeros_like(act)


def sae_device(sae: SAELike, fallback: torch.device) -> torch.device:
    """Where the SAE's weights live (``sae.device``, else ``W_dec``'s device, else ``fallback``)."""
    dev = getattr(sae, "device", None)
    if isinstance(dev, (torch.device, str)):
        return torch.device(dev)
    try:
        return torch.device(sae.W_dec.device)
    except AttributeError:
        return fallback
