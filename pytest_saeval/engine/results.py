"""What the engine returns: :class:`SAEResult` and the per-sequence sums behind its token means.

Importing this module imports no torch (tensors appear only in annotations), so results can be
typed, stored and rebuilt by layers that do not evaluate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["SAEResult", "SequenceStats", "SequenceSums"]


@dataclass(frozen=True)
class SequenceSums:
    """Per-sequence float64 sums of one per-token quantity and the matching token counts (CPU)."""

    sums: torch.Tensor
    """``[n_rows]``: Σ over kept tokens of the row."""
    counts: torch.Tensor
    """``[n_rows]``: number of kept tokens of the row."""

    def mean(self) -> float:
        """``Σ sums / Σ counts`` over all rows (NaN when no token was kept)."""
        n = float(self.counts.sum())
        return float(self.sums.sum()) / n if n > 0 else math.nan


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

    def to_plain(self) -> dict[str, Any]:
        """What was measured, as plain data: ``hook_name``, ``hook_head_index``, ``d_in``, ``d_sae``,
        ``metrics`` and ``feature_metrics`` (numbers as they are, NaN included). Not the id (its holder keys
        it) and not the per-sequence sums, which stay in the evaluating process."""
        return {"hook_name": self.hook_name, "hook_head_index": self.hook_head_index, "d_in": self.d_in,
                "d_sae": self.d_sae, "metrics": dict(self.metrics),
                "feature_metrics": {name: list(values) for name, values in self.feature_metrics.items()}}

    @classmethod
    def from_plain(cls, sae_id: str, data: Mapping[str, Any],
                   features: Callable[[Any], list[float]] | None = None) -> SAEResult:
        """The result :meth:`to_plain` (or a JSON record with those keys) describes, as ``sae_id``.

        A ``null`` number is a non-finite value (JSON outputs write NaN so), and only numbers are numbers (a
        string or a boolean is refused, not converted); ``features`` decodes one stored
        per-feature list (default: a list of numbers). Data of another shape raises ``KeyError``,
        ``TypeError`` or ``ValueError`` for the caller to name.
        """
        def number(value: Any) -> float:
            if value is None:
                return math.nan
            if isinstance(value, bool) or not isinstance(value, (int, float)):  # "0.99" or true is no measurement
                raise TypeError(f"a measured value must be a number, got {value!r}"[:120])
            return float(value)

        def numbers(values: Any) -> list[float]:
            if not isinstance(values, list):
                raise TypeError(f"per-feature values must be a list, got {type(values).__name__}")
            return [number(v) for v in values]

        def mapping(key: str) -> Mapping[Any, Any]:
            value = data[key]
            if not isinstance(value, Mapping):
                raise TypeError(f"{key} must be an object, got {type(value).__name__}")
            return value

        head = data["hook_head_index"]
        return cls(sae_id=sae_id, hook_name=str(data["hook_name"]), hook_head_index=None if head is None else int(head),
                   d_in=int(data["d_in"]), d_sae=int(data["d_sae"]),
                   metrics={str(k): number(v) for k, v in mapping("metrics").items()},
                   feature_metrics={str(k): (features or numbers)(v) for k, v in mapping("feature_metrics").items()})
