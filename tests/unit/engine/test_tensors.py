"""Row sums in float64 over kept positions, and a float64 log-sum-exp from float32 logits."""

from __future__ import annotations

import math

import torch

from pytest_saeval.engine.tensors import F64, lse64, row_sum


def test_row_sum_adds_kept_positions_per_row_in_float64() -> None:
    values = torch.tensor([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]], dtype=torch.float32)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = row_sum(values, mask)
    assert out.dtype == F64 and out.tolist() == [5.0, 0.0]


def test_masked_nan_and_inf_never_leak() -> None:
    values = torch.tensor([[math.nan, 1.0], [math.inf, -math.inf]])
    mask = torch.tensor([[False, True], [False, False]])
    assert row_sum(values, mask).tolist() == [1.0, 0.0]


def test_row_sum_adds_in_float64_not_in_the_values_dtype() -> None:
    values = torch.tensor([[1e8, 1.0, -1e8]], dtype=torch.float32)  # float32 loses the 1 next to 1e8
    assert values.sum().item() == 0.0
    assert row_sum(values, torch.ones(1, 3, dtype=torch.bool)).item() == 1.0


def test_lse64_matches_a_float64_logsumexp() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(7, 300, generator=gen) * 5 - 100  # large offset: a float32 logsumexp would round it
    exact = torch.logsumexp(z.double(), dim=-1)
    out = lse64(z)
    assert out.dtype == F64 and out.shape == (7,)
    assert torch.allclose(out, exact, rtol=0, atol=1e-6)
    assert (out - exact).abs().max() < (torch.logsumexp(z, dim=-1).double() - exact).abs().max() + 1e-6


def test_lse64_with_a_given_softmax_is_the_same() -> None:
    z = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(lse64(z, torch.softmax(z, dim=-1)), lse64(z))
