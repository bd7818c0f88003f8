"""Content hashes of tensors, state dicts and models, for provenance and a results cache.

A hash covers dtype, shape and the raw bytes (on the CPU, contiguous), so it does not depend on the
device a tensor lives on, and changes when any value, the dtype or the shape changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _update_with_tensor(h: Any, t: torch.Tensor) -> None:
    import torch

    data = t.detach().to("cpu").contiguous()
    h.update(f"{str(data.dtype).removeprefix('torch.')}|{tuple(data.shape)}|".encode())
    flat = data.reshape(-1)
    if flat.numel():
        if data.dtype == torch.bool:
            flat = flat.to(torch.uint8)
        h.update(flat.view(torch.uint8).numpy().tobytes())


def tensor_hash(t: torch.Tensor) -> str:
    """sha256 hex digest of ``t``'s dtype, shape and bytes."""
    h = hashlib.sha256()
    _update_with_tensor(h, t)
    return h.hexdigest()


def state_dict_hash(module_or_state_dict: Any) -> str:
    """sha256 over every entry of a state dict (keys sorted); accepts an ``nn.Module`` too.

    Tensor entries hash as in :func:`tensor_hash`; other entries (rare extra state) by ``repr``.
    """
    import torch

    state = module_or_state_dict
    if not isinstance(state, Mapping):
        state = state.state_dict()
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        h.update(f"{key}\x00".encode())
        if isinstance(value, torch.Tensor):
            _update_with_tensor(h, value)
        else:
            h.update(repr(value).encode())
        h.update(b"\x00")
    return h.hexdigest()


def model_hash(model: Any) -> str:
    """sha256 of a model's class name and its state dict (so a weight change changes the hash)."""
    h = hashlib.sha256()
    h.update(f"{type(model).__module__}.{type(model).__qualname__}\x00".encode())
    h.update(state_dict_hash(model).encode())
    return h.hexdigest()
