"""Weight metrics on hand-set encoder and decoder weights with closed-form answers."""

from __future__ import annotations

import math

import pytest
import torch

from pytest_saeval.engine.weights import max_other_cosine_sim, weight_metrics


class _HandSAE:
    """W_enc columns / W_dec rows chosen so every cosine is known."""

    def __init__(self) -> None:
        # features: e0, e1, (e0+e1)/sqrt2 (encoder); decoder: e0, -e1, e1
        self.W_enc = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]])  # [d_in=2, d_sae=3]
        self.W_dec = torch.tensor([[3.0, 0.0], [0.0, -1.0], [0.0, 1.0]])  # [d_sae=3, d_in=2]
        self.b_enc = torch.tensor([0.5, -0.5, 0.0])


def test_weight_metrics_closed_form():
    scalars, lists = weight_metrics(_HandSAE())
    r = 1 / math.sqrt(2)
    assert lists["encoder_norm"] == pytest.approx([1.0, 2.0, math.sqrt(2)])
    assert lists["decoder_norm"] == pytest.approx([3.0, 1.0, 1.0])
    assert lists["encoder_decoder_cosine_sim"] == pytest.approx([1.0, -1.0, r])
    assert lists["encoder_bias"] == pytest.approx([0.5, -0.5, 0.0])
    # encoder: cos(e0,e1)=0, cos(e0,d)=r, cos(e1,d)=r -> max per feature: r, r, r
    assert lists["max_encoder_cosine_sim"] == pytest.approx([r, r, r])
    # decoder: e0 vs -e1: 0; e0 vs e1: 0; -e1 vs e1: -1 -> maxima 0, 0, 0
    assert lists["max_decoder_cosine_sim"] == pytest.approx([0.0, 0.0, 0.0])
    assert scalars["average_max_encoder_cosine_sim"] == pytest.approx(r)
    assert scalars["average_max_decoder_cosine_sim"] == pytest.approx(0.0)


def test_max_other_cosine_chunks_agree():
    torch.manual_seed(0)
    v = torch.randn(37, 5)
    full = max_other_cosine_sim(v, chunk_size=1000)
    chunked = max_other_cosine_sim(v, chunk_size=4)
    assert torch.allclose(full, chunked)
    unit = v / v.norm(dim=1, keepdim=True)
    sims = unit @ unit.T
    sims.fill_diagonal_(-2)
    assert torch.allclose(full, sims.max(dim=1).values, atol=1e-6)
