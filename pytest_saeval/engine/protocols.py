"""The SAE protocol: what ``evaluate`` needs of an SAE (SAE Lens's ``SAE`` fits it as it is).

A factory in a suite file (``factory: module:function``) may return any object with these members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["SAEConfig", "SAELike", "SAEMetadata"]


class SAEMetadata(Protocol):
    """``cfg.metadata``: where the SAE sits in the model."""

    hook_name: str
    """The TransformerLens hook the SAE reads and is spliced into, e.g. ``blocks.1.hook_resid_pre``."""
    hook_head_index: int | None
    """For a per-head ``attn.hook_z`` SAE, the head it reads; None for all heads (flattened) or other hooks."""


class SAEConfig(Protocol):
    """``cfg``: the SAE's sizes and metadata."""

    d_in: int
    """Input width: the size of the hook's activation (``n_heads * d_head`` for an all-heads ``hook_z``)."""
    d_sae: int
    """Number of features."""
    metadata: SAEMetadata
    """Where the SAE sits in the model."""


@runtime_checkable
class SAELike(Protocol):
    """An SAE ``evaluate`` can measure.

    ``encode(x)`` maps activations ``[..., d_in]`` to *dense* feature activations ``[..., d_sae]``
    (a feature is active where its value is non-zero); ``decode(f)`` maps them back to
    ``[..., d_in]``. Both take and return tensors on the SAE's device in its dtype (the engine moves
    the inputs there and casts the reconstruction to the activation's dtype); the engine passes
    ``[batch, pos, d_in]``. Top-k values with indices, or a sparse tensor, are not dense activations:
    other shapes are an :class:`~pytest_saeval.errors.InputError` naming the SAE. ``W_enc`` is
    ``[d_in, d_sae]`` and ``W_dec`` ``[d_sae, d_in]``; ``b_enc`` ``[d_sae]`` is optional. An SAE
    with tied weights (``cfg.tied_weights``) and no ``W_enc`` encodes with ``W_dec.T``. A factory's
    SAE may also offer ``to(device=..., dtype=...)`` and ``eval()``, which the loader calls.
    """

    cfg: SAEConfig
    W_dec: torch.Tensor

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., d_in]`` activations -> ``[..., d_sae]`` dense feature activations."""

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """``[..., d_sae]`` feature activations -> ``[..., d_in]`` reconstruction."""
