"""Next-token losses: KL and CE from the clean distribution's summary against the exact computation."""

from __future__ import annotations

import pytest
import torch

from pytest_saeval.engine.losses import distribution_summary, next_token_losses, summary_losses


@pytest.mark.parametrize(
    ("scale", "offset", "vocab"),
    [(0.05, 0.0, 300), (1.0, 0.0, 300), (6.0, 0.0, 300), (0.3, -100.0, 5000), (3.0, -100.0, 5000)],
    ids=["near-uniform", "typical", "peaked", "spread-gpt2-offset", "peaked-gpt2-offset"],
)
def test_summary_losses_as_accurate_as_the_direct_computation(scale, offset, vocab):
    """KL from the clean summary (top tokens exact, tail through its moment) against the exact float64
    KL: per position no worse than the direct float32 computation (``next_token_losses``), for variants
    near the clean run (tiny KL, where rounding would show) and far from it."""
    gen = torch.Generator().manual_seed(3)
    n, d = 37, 16
    w = torch.randn(d, vocab, generator=gen) * scale
    b = torch.randn(vocab, generator=gen) + offset
    x_p = torch.randn(n, d, generator=gen)
    targets = torch.randint(0, vocab, (n,), generator=gen)
    summary = distribution_summary(x_p @ w + b, w, step_rows=5)
    exact_z = x_p.double() @ w.double() + b.double()
    assert summary.lse.dtype == torch.float64 and summary.tail_moment.shape == (n, d)
    # lse of the float32 logits, carried in float64 (no rounding of a log V sized number to float32)
    assert torch.allclose(summary.lse, torch.logsumexp((x_p @ w + b).double(), dim=-1), rtol=0, atol=1e-6)
    p = torch.softmax(exact_z, dim=-1)
    assert torch.allclose(summary.top_prob.double(), p.topk(32).values, rtol=1e-4, atol=1e-7)
    tail = p.scatter(-1, summary.top_index, 0.0)
    assert torch.allclose(summary.tail_moment.double(), tail @ w.double().T, rtol=1e-4, atol=1e-6)
    for eps in (1e-3, 0.1, 2.0):
        x_q = x_p + eps * torch.randn(n, d, generator=gen)
        kl, ce = summary_losses(x_p, summary, x_q, x_q @ w + b, targets, step_rows=7)
        _, kl32, ce32 = next_token_losses(x_p @ w + b, [x_q @ w + b], targets, clean_ce=False)
        _, kl_exact, ce_exact = next_token_losses(exact_z, [x_q.double() @ w.double() + b.double()], targets,
                                                  clean_ce=False)
        direct_err = (kl32[0].double() - kl_exact[0]).abs().max().item()
        err = (kl.double() - kl_exact[0]).abs().max().item()
        assert err <= 2 * direct_err + 1e-7, (eps, err, direct_err)
        assert torch.allclose(ce.double(), ce_exact[0], rtol=1e-6, atol=(ce32[0].double() - ce_exact[0]).abs().max() * 2)


def test_summary_losses_zero_kl_for_the_clean_run():
    gen = torch.Generator().manual_seed(4)
    w, b, x = torch.randn(8, 50, generator=gen), torch.randn(50, generator=gen), torch.randn(6, 8, generator=gen)
    z = x @ w + b
    kl, ce = summary_losses(x, distribution_summary(z, w, top=5), x, z, torch.arange(6))
    assert torch.equal(kl, torch.zeros(6)), "identical logits: every term cancels exactly"
    assert torch.allclose(ce, -torch.log_softmax(z, -1)[torch.arange(6), torch.arange(6)])
