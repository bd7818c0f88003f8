"""The fast path's head: ``ln_final`` + unembedding (+ soft cap) gives the model's own logits, and the stacked
scoring gives the clean CE and each variant's KL / CE per position as computed directly, in any chunking."""

from __future__ import annotations

import pytest
import torch

from pytest_saeval.engine import head as head_module
from pytest_saeval.engine.head import Head

N_LAYERS, D, V, T = 2, 16, 40, 6


def _model(**extra):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=N_LAYERS, d_model=D, d_head=4, n_heads=4, d_mlp=32, d_vocab=V, n_ctx=8,
                                  act_fn="gelu", **extra)
    return HookedTransformer(cfg).eval()


@pytest.fixture(scope="module")
def model():
    return _model()


def _final_resid(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens, stop_at_layer=N_LAYERS).reshape(-1, D)


def test_the_head_gives_the_models_logits(model) -> None:
    tokens = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(tokens).reshape(-1, V)
        got = Head(model).logits(_final_resid(model, tokens))
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_soft_capped_model_is_capped_like_its_forward() -> None:
    capped = _model(output_logits_soft_cap=2.0)
    tokens = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(1))
    head = Head(capped)
    assert head.soft_cap == 2.0 and Head(_model()).soft_cap is None
    with torch.no_grad():
        got = head.logits(_final_resid(capped, tokens))
        expected = capped(tokens).reshape(-1, V)
    assert torch.allclose(got, expected, atol=1e-5) and got.abs().max() <= 2.0


def test_chunk_rows_keeps_the_stacked_logits_under_the_limit(model) -> None:
    head = Head(model)
    assert head.vocab == V
    for n in (1, 3, 10):
        assert head.chunk_rows(n) * V * n <= head_module.STACK_ELEMENTS < (head.chunk_rows(n) + 1) * V * n
    assert head.chunk_rows(10**9) == 1


def _direct(model, clean: torch.Tensor, variant: torch.Tensor, targets: torch.Tensor):
    p_log = torch.log_softmax(Head(model).logits(clean).double(), dim=-1)
    q_log = torch.log_softmax(Head(model).logits(variant).double(), dim=-1)
    kl = (p_log.exp() * (p_log - q_log)).sum(-1)
    return -p_log.gather(-1, targets[:, None])[:, 0], kl, -q_log.gather(-1, targets[:, None])[:, 0]


def test_stacked_losses_are_the_direct_kl_and_ce_in_any_chunking(model, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(2)
    n = 2 * T
    clean = torch.randn(n, D, generator=gen)
    full = clean + 0.3 * torch.randn(n, D, generator=gen)
    single = torch.randn(1, D, generator=gen)  # one position standing for all (a zeroed residual stream)
    targets = torch.randint(0, V, (n,), generator=gen)
    with torch.no_grad():
        cce, kl, ce, summary = Head(model).stacked_losses(clean, [full, single], targets, summarize=True)
        monkeypatch.setattr(head_module, "STACK_ELEMENTS", 3 * V * 3)  # 3 positions per chunk
        again = Head(model).stacked_losses(clean, [full, single], targets)
    c0, kl0, ce0 = _direct(model, clean, full, targets)
    _, kl1, ce1 = _direct(model, clean, single.expand(n, D), targets)
    assert torch.allclose(cce.double(), c0, atol=1e-5)
    assert torch.allclose(kl[0].double(), kl0, atol=1e-5) and torch.allclose(ce[0].double(), ce0, atol=1e-5)
    assert torch.allclose(kl[1].double(), kl1, atol=1e-5) and torch.allclose(ce[1].double(), ce1, atol=1e-5)
    assert summary is not None and summary.lse.shape == (n,)
    assert again[3] is None
    for a, b in zip(again[:3], (cce, kl, ce)):
        assert torch.allclose(a, b, atol=1e-6)


def test_summary_losses_agree_with_stacked_losses(model) -> None:
    gen = torch.Generator().manual_seed(3)
    n = T
    clean = torch.randn(n, D, generator=gen)
    variants = [clean + 0.2 * torch.randn(n, D, generator=gen), torch.randn(n, D, generator=gen)]
    targets = torch.randint(0, V, (n,), generator=gen)
    with torch.no_grad():
        _, kl, ce, summary = Head(model).stacked_losses(clean, variants, targets, summarize=True)
        assert summary is not None
        kl2, ce2 = Head(model).summary_losses(clean, summary, variants, targets)
    assert torch.allclose(kl2, kl, atol=1e-5) and torch.allclose(ce2, ce, atol=1e-5)
