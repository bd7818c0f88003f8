"""``evaluate()``'s own logic: the engine options (metric names checked, a single name taken as one), which
cosine matrices the metrics need, the shape probe's located errors, and results in the order of ``saes``."""

from __future__ import annotations

import pytest
import torch

from pytest_saeval import EngineOptions, EvalSettings, evaluate
from pytest_saeval.engine.evaluate import cosine_matrices
from pytest_saeval.errors import InputError
from tests.helpers import ProtocolSAE

SETTINGS = EvalSettings(batch_size_prompts=2, n_reconstruction_batches=1, n_sparsity_batches=1,
                        exclude_special_tokens=False)
D = 16


@pytest.fixture(scope="module")
def model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=D, d_head=4, n_heads=4, d_mlp=32, d_vocab=40, n_ctx=8,
                                  act_fn="relu")
    return HookedTransformer(cfg)


TOKENS = torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(0))


def test_options_take_one_name_or_many_and_refuse_unknown_ones() -> None:
    assert EngineOptions(metrics="l0").metrics == frozenset({"l0"})
    assert EngineOptions(metrics=["l0", "mse"]).metrics == frozenset({"l0", "mse"})  # type: ignore[arg-type]
    assert EngineOptions().metrics is None
    with pytest.raises(InputError, match="unknown metric 'l00'.*did you mean 'l0'") as info:
        EngineOptions(metrics=frozenset({"l00"}))
    assert info.value.location.key == "metrics"


def test_cosine_matrices_are_needed_only_by_their_metrics() -> None:
    assert cosine_matrices(None) == {"encoder", "decoder"}
    assert cosine_matrices(["l0", "explained_variance"]) == frozenset()
    assert cosine_matrices(["average_max_decoder_cosine_sim"]) == {"decoder"}
    assert cosine_matrices(["max_encoder_cosine_sim", "max_decoder_cosine_sim"]) == {"encoder", "decoder"}


def test_results_come_in_the_order_of_saes(model) -> None:
    saes = {"z": ProtocolSAE(D, 8, hook_name="blocks.1.hook_resid_pre"),
            "a": ProtocolSAE(D, 8, hook_name="blocks.0.hook_resid_pre", seed=1),
            "m": ProtocolSAE(D, 8, hook_name="blocks.1.hook_resid_pre", seed=2)}
    results = evaluate(model, saes, TOKENS, SETTINGS)
    assert list(results) == ["z", "a", "m"] and all(results[k].sae_id == k for k in saes)


def test_fewer_metrics_skip_the_cosine_matrices(model) -> None:
    sae = {"a": ProtocolSAE(D, 8)}
    some = evaluate(model, sae, TOKENS, SETTINGS, EngineOptions(metrics=frozenset({"l0"})))["a"]
    every = evaluate(model, sae, TOKENS, SETTINGS)["a"]
    assert "max_decoder_cosine_sim" not in some.feature_metrics and "max_decoder_cosine_sim" in every.feature_metrics
    assert some.metrics["l0"] == every.metrics["l0"]


@pytest.mark.parametrize(("sae", "part", "words"), [
    # a hook the model has that does not fire (use_attn_result is off)
    (ProtocolSAE(D, 8, hook_name="blocks.0.attn.hook_result"), "hook_name", "did not fire in a forward pass"),
    (ProtocolSAE(4, 8, hook_name="blocks.0.attn.hook_z", hook_head_index=7), "hook_head_index",
     "hook_head_index 7 is invalid for 'blocks.0.attn.hook_z'"),
    (ProtocolSAE(8, 8, hook_name="blocks.0.hook_resid_pre"), "d_in",
     "SAE d_in is 8 but hook 'blocks.0.hook_resid_pre' gives activations of size 16"),
], ids=["hook", "head", "d_in"])
def test_the_shape_probe_names_the_sae_and_its_part(model, sae: ProtocolSAE, part: str, words: str) -> None:
    with pytest.raises(InputError, match=words) as info:
        evaluate(model, {"ok": ProtocolSAE(D, 8), "bad": sae}, TOKENS, SETTINGS)
    assert info.value.subject.sae == "bad" and info.value.subject.part == part
