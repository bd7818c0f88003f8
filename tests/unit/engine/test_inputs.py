"""Bad input to evaluate(): one clear InputError naming the fix."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from pytest_saeval import EvalSettings, evaluate
from pytest_saeval.errors import InputError


@pytest.fixture(scope="module")
def model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=40, n_ctx=8,
                                  act_fn="relu")
    return HookedTransformer(cfg)


def _sae(hook: str, d_in: int = 16, head: int | None = None):
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=d_in, d_sae=8)
    cfg.metadata.hook_name = hook
    if head is not None:
        cfg.metadata.hook_head_index = head
    return StandardSAE(cfg)


SETTINGS = EvalSettings(batch_size_prompts=2, n_reconstruction_batches=1, n_sparsity_batches=2,
                        exclude_special_tokens=False)


def _tokens(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 40, (n, 8))


def test_numpy_tokens_accepted(model):
    out = evaluate(model, {"a": _sae("blocks.0.hook_resid_pre")}, _tokens().numpy().astype(np.int32), SETTINGS)
    assert set(out) == {"a"} and out["a"].metrics["l0"] >= 0


@pytest.mark.parametrize(
    ("saes", "tokens", "needle", "fix"),
    [
        ({}, None, "no SAEs", "at least one SAE"),
        ({"a": "mlp"}, None, "d_in", None),
        ({"a": "missing"}, None, "did you mean 'blocks.1.hook_resid_pre'", "hook this model has"),
        ({"a": "ok"}, torch.randint(0, 40, (4,)), "2-D", "reshape"),
        ({"a": "ok"}, torch.rand(4, 8), "integers", "integer array"),
        ({"a": "ok"}, torch.full((4, 8), 40), "[0, 40)", "model's own tokenizer"),
        ({"a": "ok"}, torch.full((4, 8), -1), "[0, 40)", "model's own tokenizer"),
        ({"a": "ok"}, torch.randint(0, 40, (3, 8)), "3 token rows, but 4 are needed", "provide more rows"),
        ({"a": "ok"}, torch.randint(0, 40, (4, 9)), "n_ctx 8", "context_size"),
        ({"a": "head9"}, None, "hook_head_index 9", "head index"),
    ],
)
def test_bad_inputs(model, saes, tokens, needle, fix):
    built = {
        k: {
            "mlp": lambda: _sae("blocks.0.hook_mlp_out", d_in=7),
            "missing": lambda: _sae("blocks.1.hook_resid_pr"),
            "ok": lambda: _sae("blocks.0.hook_resid_pre"),
            "head9": lambda: _sae("blocks.0.attn.hook_z", d_in=4, head=9),
        }[v]()
        for k, v in saes.items()
    }
    with pytest.raises(InputError) as info:
        evaluate(model, built, _tokens() if tokens is None else tokens, SETTINGS)
    message = str(info.value)
    assert needle in message
    assert "Fix:" in message
    if fix:
        assert fix in message


def test_d_in_mismatch_names_both_sizes(model):
    with pytest.raises(InputError, match=r"d_in is 7 but hook 'blocks.0.hook_mlp_out' gives activations of size 16"):
        evaluate(model, {"a": _sae("blocks.0.hook_mlp_out", d_in=7)}, _tokens(), SETTINGS)


def test_import_does_not_load_torch():
    code = (
        "import sys, pytest_saeval, pytest_saeval.plugin, pytest_saeval.errors, pytest_saeval.catalogue; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'sae_lens' not in sys.modules and 'transformer_lens' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sae_without_encoder_weight_is_an_input_error(model):
    """An SAE object with no W_enc (and untied weights) or no W_dec: one InputError naming the SAE."""
    from tests.helpers import ProtocolSAE

    no_enc = ProtocolSAE(d_in=16, hook_name="blocks.0.hook_resid_pre")
    del no_enc.W_enc
    with pytest.raises(InputError, match="no encoder weight W_enc") as info:
        evaluate(model, {"bad": no_enc}, _tokens(), SETTINGS)
    assert info.value.location.key == "saes.bad" and "tied_weights" in info.value.fix
    no_dec = ProtocolSAE(d_in=16, hook_name="blocks.0.hook_resid_pre")
    del no_dec.W_dec
    with pytest.raises(InputError, match="no decoder weight W_dec"):
        evaluate(model, {"bad": no_dec}, _tokens(), SETTINGS)


def test_tied_sae_without_w_enc_uses_w_dec_transposed(model):
    from tests.helpers import ProtocolSAE

    tied = ProtocolSAE(d_in=16, hook_name="blocks.0.hook_resid_pre")
    w_dec = tied.W_dec
    del tied.W_enc
    tied.cfg.tied_weights = True
    tied.encode = lambda x: torch.relu(x @ w_dec.T + tied.b_enc)
    out = evaluate(model, {"tied": tied}, _tokens(), SETTINGS)["tied"]
    assert out.feature_metrics["encoder_norm"] == pytest.approx(out.feature_metrics["decoder_norm"])
    assert out.feature_metrics["encoder_decoder_cosine_sim"] == pytest.approx([1.0] * 12, abs=1e-6)


@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_non_finite_weights_are_refused_naming_the_tensors(model, bad):
    sae = _sae("blocks.0.hook_resid_pre")
    with torch.no_grad():
        sae.W_dec.fill_(bad)  # a diverged run: NaN is not zero, so every feature would count as active
        sae.b_enc[:3] = bad
    with pytest.raises(InputError) as info:
        evaluate(model, {"diverged": sae}, _tokens(), SETTINGS)
    assert "weights hold NaN or infinite values (" in info.value.message
    assert "W_dec 128 of 128" in info.value.message and "b_enc 3 of 8" in info.value.message
    assert info.value.location.key == "saes.diverged" and "diverged" in (info.value.fix or "")


def test_special_token_ids_outside_the_vocabulary_are_refused(model):
    settings = EvalSettings(batch_size_prompts=2, n_reconstruction_batches=1, n_sparsity_batches=2,
                            exclude_special_tokens=(0, 5000))
    with pytest.raises(InputError, match=r"exclude_special_tokens lists 5000, outside the model's vocabulary "
                                         r"\(ids 0 to 39\): it would exclude nothing") as info:
        evaluate(model, {"a": _sae("blocks.0.hook_resid_pre")}, _tokens(), settings)
    assert info.value.location.key == "exclude_special_tokens"


def test_excluding_special_tokens_without_a_tokenizer_is_refused(model):
    """SAE Lens's get_special_token_ids(None) gives [] and excludes nothing without a word; here it is an error
    about exclude_special_tokens (the session locates it at data.exclude_special_tokens by its subject)."""
    from pytest_saeval.engine.inputs import special_token_ids

    assert model.tokenizer is None
    settings = EvalSettings(batch_size_prompts=2, n_reconstruction_batches=1, n_sparsity_batches=2,
                            exclude_special_tokens=True)
    with pytest.raises(InputError, match="the model has no tokenizer to name its special tokens") as info:
        evaluate(model, {"a": _sae("blocks.0.hook_resid_pre")}, _tokens(), settings)
    assert info.value.subject.part == "tokenizer"  # the model's: the session locates it (suite key or fixture)
    assert info.value.location.key == "exclude_special_tokens"
    assert "[0]" in (info.value.fix or "") and "false" in (info.value.fix or "")
    with pytest.raises(InputError):
        special_token_ids(model, True)
    assert special_token_ids(model, False) == [] and special_token_ids(model, (3, 1)) == [1, 3]


def test_an_adapter_whose_getattr_raises_anything_is_checked_by_its_weights():
    from pytest_saeval.engine.inputs import check_finite

    class Adapter:
        def __init__(self, parts: dict[str, object]) -> None:
            self.parts = parts

        def __getattr__(self, name: str) -> object:
            return self.parts[name]  # KeyError, not AttributeError, for state_dict and the rest

    check_finite("ok", Adapter({"W_enc": torch.ones(4, 8), "W_dec": torch.ones(8, 4)}))
    w_dec = torch.ones(8, 4)
    w_dec[0, 0] = math.nan
    with pytest.raises(InputError, match=r"W_dec 1 of 32"):
        check_finite("bad", Adapter({"W_enc": torch.ones(4, 8), "W_dec": w_dec}))


def test_a_sum_that_overflows_is_not_mistaken_for_a_non_finite_weight():
    from pytest_saeval.engine.inputs import check_finite
    from tests.helpers import ProtocolSAE

    sae = ProtocolSAE(d_in=16)
    sae.W_dec = torch.full((12, 16), 3e38)  # every value finite, their float32 sum is inf
    check_finite("large", sae)
