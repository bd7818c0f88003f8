"""The model-side cache: :class:`~pytest_saeval.engine.records.ModelRecords` per (model, token rows,
settings), on disk (``<root>/model/<context>/``: one file for the clean part, one per hook) and in a
memory tier (least recently used, :data:`DEFAULT_MEMORY_BYTES` by default).

What a pass computes without any SAE: the hook activations, the residual stream entering each hook's
block, the clean residual after the last block, a summary of the clean next-token distribution per
position (its top tokens, the moment ``Σ_v p_v W_U[:, v]`` of the rest, its log-sum-exp and the clean
CE) and the zero-ablation per-token KL/CE. A new SAE on a known model and token set then runs only
its own encode/decode, its tail from the hook's block and the unembedding of that tail. Disk holds
``rows × ctx × d_model`` floats per tensor (~63 MB for 160 rows of 128 tokens on GPT-2 small); clean
logits (``rows × ctx × vocab``) are never kept.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pytest_saeval.engine.records import CLEAN_FIELDS, CleanSummary, HookRecord, ModelRecords
from pytest_saeval.store.entries import Unusable, digest, read_entry, warn_unusable, write_entry

__all__ = ["DEFAULT_MEMORY_BYTES", "BoundModelStore", "ModelCache"]

DEFAULT_MEMORY_BYTES = 1 << 30
"""Bytes of model-side records the memory tier keeps per :class:`ModelCache` (1 GiB)."""


def _hook_file_key(context: str, hook: tuple[str, int | None]) -> str:
    return digest({"context": context, "hook": hook[0], "head": hook[1]})


class ModelCache:
    """Disk and memory tiers for :class:`~pytest_saeval.engine.records.ModelRecords` (see the module docstring).

    ``memory_bytes=0`` turns the memory tier off; ``disk=False`` keeps records in memory only.
    """

    def __init__(self, root: str | os.PathLike[str], *, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 disk: bool = True) -> None:
        self.root = Path(root)
        self.memory_bytes = int(memory_bytes)
        self.disk = disk
        self._memory: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def bind(self, context: str) -> BoundModelStore:
        """A :class:`~pytest_saeval.engine.records.ModelStore` for one context key (model, token rows, settings)."""
        return BoundModelStore(self, context)

    def clear_memory(self) -> None:
        """Drop the memory tier (as a new process would start)."""
        with self._lock:
            self._memory.clear()
            self._used = 0

    # memory tier
    def _remember(self, key: str, value: Any, size: int) -> None:
        if size > self.memory_bytes:
            return
        with self._lock:
            old = self._memory.pop(key, None)
            if old is not None:
                self._used -= old[0]
            self._memory[key] = (size, value)
            self._used += size
            while self._used > self.memory_bytes and self._memory:
                _, (dropped, _) = self._memory.popitem(last=False)
                self._used -= dropped

    def _recall(self, key: str) -> Any:
        with self._lock:
            hit = self._memory.get(key)
            if hit is None:
                return None
            self._memory.move_to_end(key)
            return hit[1]

    def _dir(self, context: str) -> Path:
        return self.root / "model" / context

    def _load_part(self, context: str, name: str, key: str) -> dict[str, torch.Tensor] | None:
        cached = self._recall(key)
        if cached is not None:
            return dict(cached)
        if not self.disk:
            return None
        path = self._dir(context) / f"{name}.safetensors"
        try:
            found = read_entry(path, key)
        except Unusable as e:
            warn_unusable(path, str(e))
            return None
        if found is None:
            return None
        tensors = found[1]
        self._remember(key, tensors, sum(t.numel() * t.element_size() for t in tensors.values()))
        return dict(tensors)

    def _save_part(self, context: str, name: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        own = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}
        self._remember(key, own, sum(t.numel() * t.element_size() for t in own.values()))
        if self.disk:
            write_entry(self._dir(context) / f"{name}.safetensors", key, {"part": name}, own)


class BoundModelStore:
    """:class:`ModelCache` seen through one context key: the engine's ``ModelStore``."""

    def __init__(self, cache: ModelCache, context: str) -> None:
        self.cache = cache
        self.context = context

    def load(self, hooks: Sequence[tuple[str, int | None]]) -> ModelRecords | None:
        clean = self.cache._load_part(self.context, "clean", digest({"context": self.context, "part": "clean"}))
        if clean is None or "final_resid" not in clean:
            return None
        records: dict[tuple[str, int | None], HookRecord] = {}
        for hook in hooks:
            key = _hook_file_key(self.context, hook)
            part = self.cache._load_part(self.context, f"hook-{key[:24]}", key)
            if part is None or not {"acts", "ablation_kl", "ablation_ce"} <= set(part):
                return None
            records[hook] = HookRecord(acts=part["acts"], block_resid=part.get("block_resid"),
                                       ablation_kl=part["ablation_kl"], ablation_ce=part["ablation_ce"])
        summary = None
        if all(f"clean_{name}" in clean for name in CLEAN_FIELDS):
            summary = CleanSummary(**{name: clean[f"clean_{name}"] for name in CLEAN_FIELDS})
        return ModelRecords(final_resid=clean["final_resid"], hooks=records, clean=summary)

    def save(self, records: ModelRecords) -> None:
        tensors = {"final_resid": records.final_resid}
        if records.clean is not None:
            tensors.update({f"clean_{name}": getattr(records.clean, name) for name in CLEAN_FIELDS})
        self.cache._save_part(self.context, "clean", digest({"context": self.context, "part": "clean"}), tensors)
        for hook, rec in records.hooks.items():
            key = _hook_file_key(self.context, hook)
            tensors = {"acts": rec.acts, "ablation_kl": rec.ablation_kl, "ablation_ce": rec.ablation_ce}
            if rec.block_resid is not None:
                tensors["block_resid"] = rec.block_resid
            self.cache._save_part(self.context, f"hook-{key[:24]}", key, tensors)
