"""The results cache: one :class:`~pytest_saeval.engine.results.SAEResult` per key, as safetensors
files under ``<root>/results/<k[:2]>/<k>.safetensors`` (see :mod:`.entries`)."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from pytest_saeval.engine.results import SAEResult, SequenceStats, SequenceSums
from pytest_saeval.store.entries import Unusable, read_entry, warn_unusable, write_entry

__all__ = ["ResultsCache"]


def _result_tensors(result: SAEResult) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    f64 = torch.float64
    st = result.sequence_stats
    header: dict[str, Any] = {
        "sae_id": result.sae_id,
        "hook_name": result.hook_name,
        "hook_head_index": result.hook_head_index,
        "d_in": result.d_in,
        "d_sae": result.d_sae,
        "metrics": list(result.metrics),
        "feature_metrics": list(result.feature_metrics),
        "reconstruction": list(st.reconstruction),
        "sparsity": list(st.sparsity),
        "sum_x": st.sum_x is not None,
        "sum_sq_norm": st.sum_sq_norm is not None,
    }
    tensors: dict[str, torch.Tensor] = {"metrics": torch.tensor(list(result.metrics.values()), dtype=f64)}
    for name, values in result.feature_metrics.items():
        tensors[f"feature/{name}"] = torch.tensor(values, dtype=f64)
    for family, stats in (("reconstruction", st.reconstruction), ("sparsity", st.sparsity)):
        for name, sums in stats.items():
            tensors[f"{family}/{name}/sums"] = sums.sums
            tensors[f"{family}/{name}/counts"] = sums.counts
    if st.sum_x is not None:
        tensors["sum_x"] = st.sum_x
    if st.sum_sq_norm is not None:
        tensors["sum_sq_norm"] = st.sum_sq_norm
    return header, tensors


def _result_from(header: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], sae_id: str) -> SAEResult:
    try:
        values = tensors["metrics"].tolist()
        names = list(header["metrics"])
        if len(values) != len(names):
            raise Unusable("has metric names and values of different lengths")
        stats = {
            family: {name: SequenceSums(tensors[f"{family}/{name}/sums"], tensors[f"{family}/{name}/counts"])
                     for name in header[family]}
            for family in ("reconstruction", "sparsity")
        }
        return SAEResult(
            sae_id=sae_id,
            hook_name=str(header["hook_name"]),
            hook_head_index=None if header["hook_head_index"] is None else int(header["hook_head_index"]),
            d_in=int(header["d_in"]),
            d_sae=int(header["d_sae"]),
            metrics={name: float(v) for name, v in zip(names, values)},
            feature_metrics={name: tensors[f"feature/{name}"].tolist() for name in header["feature_metrics"]},
            sequence_stats=SequenceStats(
                reconstruction=stats["reconstruction"],
                sparsity=stats["sparsity"],
                sum_x=tensors["sum_x"] if header["sum_x"] else None,
                sum_sq_norm=tensors["sum_sq_norm"] if header["sum_sq_norm"] else None,
            ),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise Unusable(f"is incomplete ({type(e).__name__}: {e})") from e


class ResultsCache:
    """One :class:`~pytest_saeval.engine.results.SAEResult` per key, as safetensors files under ``<root>/results``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.root / "results" / key[:2] / f"{key}.safetensors"

    def get(self, key: str, sae_id: str, needed: Collection[str] = ()) -> SAEResult | None:
        """The stored result under ``sae_id``; None when missing, unusable (with a :class:`CacheWarning`)
        or lacking one of the ``needed`` metric names."""
        path = self.path(key)
        try:
            found = read_entry(path, key)
            if found is None:
                return None
            result = _result_from(*found, sae_id=sae_id)
        except Unusable as e:
            warn_unusable(path, str(e))
            return None
        have = set(result.metrics) | set(result.feature_metrics)
        return result if set(needed) <= have else None

    def put(self, key: str, result: SAEResult) -> None:
        """Store ``result`` under ``key`` (atomically)."""
        header, tensors = _result_tensors(result)
        write_entry(self.path(key), key, header, tensors)
