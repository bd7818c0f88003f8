"""An SAE with tied weights and no ``W_enc`` of its own (SAE Lens's ``TemporalSAE`` with
``tied_weights=True``, which encodes with ``W_dec.T``).

SAE Lens's weight-based feature metrics read ``sae.W_enc`` and fail on it, so the parity check covers
every other metric (``run_evals`` with the weight-based flag off); the weight metrics use ``W_dec.T``
as the encoder and are checked against that definition.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from pytest_saeval.catalogue import SAE_LENS_SCALAR_METRICS

from .conftest import BATCH_SIZE, CTX, D_SAE, DEFAULT, HOOKS, MODELS, K, _metadata, hook_activations, isclose_nan
from .reference import sae_lens_reference

pytestmark = [
    pytest.mark.parity,
    pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning"),
]


def _tied_temporal(model: Any) -> Any:
    import sae_lens
    import torch

    hook_name, head = HOOKS["resid"]
    d_in = int(model.cfg.d_model)
    gen = torch.Generator().manual_seed(77)
    cfg = sae_lens.TemporalSAEConfig(d_in=d_in, d_sae=D_SAE, n_heads=2, n_attn_layers=1, bottleneck_factor=16,
                                     sae_diff_type="topk", kval_topk=K, tied_weights=True,
                                     metadata=_metadata(hook_name, head))
    with torch.random.fork_rng():
        torch.manual_seed(77)
        sae = sae_lens.TemporalSAE(cfg)
    assert not isinstance(getattr(sae, "W_enc", None), torch.Tensor), "a tied TemporalSAE has no W_enc"
    # rows of norm ~sqrt(4 d_in / K): encode scales its input by 1 / (4 d_in), so codes and
    # reconstructions come out at the activations' scale
    w_dec = torch.randn(D_SAE, d_in, generator=gen)
    w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True) * math.sqrt(4 * d_in / K)
    with torch.no_grad():
        sae.W_dec.copy_(w_dec)
        sae.b_dec.copy_(hook_activations(model, hook_name, head, torch.zeros(1, CTX, dtype=torch.long)).mean(0))
    return sae.eval()


@pytest.mark.parametrize("model_name", MODELS)
def test_tied_temporal_sae_matches_run_evals(model_name: str, get_model: Any, get_tokens: Any) -> None:
    from pytest_saeval import evaluate

    model = get_model(model_name)
    tokens = get_tokens(model_name, "eval")
    sae = _tied_temporal(model)
    ours = evaluate(model, {"tied": sae}, tokens, DEFAULT.settings())["tied"]
    ref_metrics, ref_features = sae_lens_reference(
        model, sae, tokens, batch_size=BATCH_SIZE, n_recon=DEFAULT.n_recon, n_sparse=DEFAULT.n_sparse,
        exclude_special_tokens=DEFAULT.exclude, weight_metrics=False)
    compared = [m for m in SAE_LENS_SCALAR_METRICS if m in ref_metrics]
    assert compared == list(SAE_LENS_SCALAR_METRICS), "every SAE Lens scalar is reported without weight metrics"
    bad = [f"{m}: {ours.metrics[m]!r} vs {ref_metrics[m]!r}" for m in compared
           if not isclose_nan(float(ours.metrics[m]), float(ref_metrics[m]))]
    assert not bad, bad
    for name in ("feature_density", "consistent_activation_heuristic"):
        pairs = zip(ours.feature_metrics[name], ref_features[name])
        assert all(isclose_nan(a, b) for a, b in pairs), name
    assert 0.0 < ours.metrics["l0"] <= K, "topk codes"
    # the encoder is W_dec.T: its norms and the encoder-decoder cosines follow
    assert ours.feature_metrics["encoder_norm"] == pytest.approx(ours.feature_metrics["decoder_norm"], rel=1e-6)
    assert ours.feature_metrics["encoder_decoder_cosine_sim"] == pytest.approx([1.0] * D_SAE, abs=1e-6)
    assert ours.metrics["average_max_encoder_cosine_sim"] == pytest.approx(
        ours.metrics["average_max_decoder_cosine_sim"], rel=1e-6)
