"""The results cache: one :class:`~pytest_saeval.engine.results.SAEResult` per key, as safetensors
files under ``<root>/results/<k[:2]>/<k>.safetensors`` (see :mod:`.entries`)."""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from pytest_saeval.engine.results import SAEResult, SequenceStats, SequenceSums
from pytest_saeval.store.entries import Unusable, read_entry, warn_unusable, write_entry

__all__ = ["ResultsCache", "results_equal"]


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


def results_equal(a: SAEResult, b: SAEResult) -> bool:
    """True when two results hold the same numbers (NaN equals NaN), ids and per-sequence sums."""

    def same(x: float, y: float) -> bool:
        return x == y or (math.isnan(x) and math.isnan(y))

    def tensors_same(x: Any, y: Any) -> bool:
        if x is None or y is None:
            return x is None and y is None
        return bool(x.dtype == y.dtype and x.shape == y.shape and torch.equal(torch.nan_to_num(x), torch.nan_to_num(y))
                    and torch.equal(x.isnan(), y.isnan()))

    if (a.sae_id, a.hook_name, a.hook_head_index, a.d_in, a.d_sae) != (b.sae_id, b.hook_name, b.hook_head_index,
                                                                       b.d_in, b.d_sae):
        return False
    if list(a.metrics) != list(b.metrics) or not all(same(a.metrics[k], b.metrics[k]) for k in a.metrics):
        return False
    if list(a.feature_metrics) != list(b.feature_metrics):
        return False
    for k, values in a.feature_metrics.items():
        other = b.feature_metrics[k]
        if len(values) != len(other) or not all(same(x, y) for x, y in zip(values, other)):
            return False
    sa, sb = a.sequence_stats, b.sequence_stats
    for fam_a, fam_b in ((sa.reconstruction, sb.reconstruction), (sa.sparsity, sb.sparsity)):
        if list(fam_a) != list(fam_b):
            return False
        for k in fam_a:
            if not (tensors_same(fam_a[k].sums, fam_b[k].sums) and tensors_same(fam_a[k].counts, fam_b[k].counts)):
                return False
    return tensors_same(sa.sum_x, sb.sum_x) and tensors_same(sa.sum_sq_norm, sb.sum_sq_norm)
