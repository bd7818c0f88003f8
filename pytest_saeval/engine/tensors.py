"""Small tensor helpers shared by the accumulators: float64 row sums and a float64 log-sum-exp."""

from __future__ import annotations

import torch

__all__ = ["F64", "lse64", "row_sum"]

F64 = torch.float64
"""Every accumulator sums in float64."""


def row_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t values[r, t] over kept positions, per row, in float64 (masked values never leak NaN)."""
    return torch.where(mask, values.to(F64), torch.zeros((), dtype=F64, device=values.device)).sum(dim=1)



def lse64(z: torch.Tensor, p: torch.Tensor | None = None) -> torch.Tensor:
    """``log Σ_v exp z_v`` per row in float64, as ``z_j − log p_j`` with ``p = softmax(z)`` (given or
    computed) and ``j = argmax p`` (``p_j ≥ 1/V`` never underflows): float32 ``p`` has a relative
    error of ~1e-7, so the result carries no rounding of a ~log V sized number to float32."""
    if p is None:
        p = torch.softmax(z, dim=-1)
    top, j = p.max(dim=-1, keepdim=True)
    return z.gather(-1, j)[:, 0].to(F64) - torch.log(top[:, 0].to(F64))

