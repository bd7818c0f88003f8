"""A local Hugging Face folder as a model: HookedTransformer with the same logits, the bridge backend and
its fallback, and every folder error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.models import load_model

transformers = pytest.importorskip("transformers")


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


# ------------------------------------------------------------------------------------------
# local folder -> HookedTransformer


def test_folder_loads_as_hooked_transformer_with_same_logits(hooked, hf_gpt2, sample_tokens):
    from transformer_lens import HookedTransformer

    assert isinstance(hooked, HookedTransformer)
    with torch.no_grad():
        ours = hooked(sample_tokens)
        theirs = hf_gpt2(sample_tokens).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_folder_model_is_not_weight_processed(hooked, hf_gpt2):
    # No LayerNorm folding, no centering: TransformerLens weights equal the Hugging Face ones.
    assert hooked.cfg.normalization_type == "LN"
    torch.testing.assert_close(hooked.blocks[0].ln1.w, hf_gpt2.transformer.h[0].ln_1.weight)
    torch.testing.assert_close(hooked.ln_final.b, hf_gpt2.transformer.ln_f.bias)
    torch.testing.assert_close(hooked.unembed.W_U, hf_gpt2.lm_head.weight.T)
    assert hooked.W_U.mean(-1).abs().max() > 1e-3  # an uncentred unembedding


def test_folder_model_has_tokenizer_and_hook_names(hooked):
    assert hooked.tokenizer is not None
    assert hooked.tokenizer.bos_token_id == 0
    assert hooked.to_tokens("the cat sat", prepend_bos=True)[0, 0].item() == 0
    for name in ("blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out", "blocks.0.attn.hook_z", "blocks.1.hook_resid_post"):
        assert name in hooked.hook_dict


def test_hooked_model_from_a_folder(hooked):
    from transformer_lens import HookedTransformer

    assert isinstance(hooked, HookedTransformer)
    assert (hooked.cfg.n_layers, hooked.cfg.d_model, hooked.cfg.d_vocab, hooked.cfg.n_ctx) == (2, 32, 160, 64)
    assert hooked.tokenizer is not None
    assert "blocks.1.attn.hook_z" in hooked.hook_dict


def test_start_at_layer_reproduces_logits(hooked, sample_tokens):
    with torch.no_grad():
        full = hooked(sample_tokens)
        resid = hooked(sample_tokens, stop_at_layer=1)
        tail = hooked(resid, start_at_layer=1)
    torch.testing.assert_close(tail, full, atol=0, rtol=0)


def test_folder_name_with_llama_in_it_still_reads_its_config(gpt2_folder, tmp_path, hf_gpt2, sample_tokens):
    # TransformerLens guesses the architecture from a folder name containing "llama"; the loader avoids that.
    copy = shutil.copytree(gpt2_folder, tmp_path / "my-llama-experiment")
    model = load_model(path=copy, device="cpu")
    assert model.cfg.original_architecture == "GPT2LMHeadModel"
    with torch.no_grad():
        torch.testing.assert_close(model(sample_tokens), hf_gpt2(sample_tokens).logits, atol=1e-4, rtol=0)


def test_relative_path_resolves_against_base_dir(gpt2_folder):
    model = load_model(path=gpt2_folder.name, base_dir=gpt2_folder.parent, device="cpu")
    assert model.cfg.n_layers == 2


def test_folder_without_tokenizer_loads_without_one(gpt2_folder, tmp_path):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(gpt2_folder / name, folder / name)
    model = load_model(path=folder, device="cpu")
    assert model.tokenizer is None


def test_bridge_without_tokenizer_files_has_no_tokenizer(gpt2_folder, tmp_path, sample_tokens):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(gpt2_folder / name, folder / name)
    bridge = load_model(path=folder, device="cpu", backend="bridge")
    assert bridge.tokenizer is None
    with torch.no_grad():
        assert bridge(sample_tokens).shape == (2, 24, 160)


def test_float64_dtype(gpt2_folder):
    model = load_model(path=gpt2_folder, device="cpu", dtype="float64")
    assert model.W_E.dtype == torch.float64


# ------------------------------------------------------------------------------------------
# bridge


def test_bridge_backend_loads_with_compatible_hook_names(gpt2_folder, hf_gpt2, sample_tokens):
    from transformer_lens.model_bridge import TransformerBridge

    bridge = load_model(path=gpt2_folder, device="cpu", backend="bridge")
    assert isinstance(bridge, TransformerBridge)
    with torch.no_grad():
        torch.testing.assert_close(bridge(sample_tokens), hf_gpt2(sample_tokens).logits, atol=1e-4, rtol=0)
    for name in ("blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out", "blocks.0.attn.hook_z"):
        assert name in bridge.hook_dict
    assert bridge.tokenizer is not None


def test_bridge_hook_activations_equal_hooked(gpt2_folder, hooked, sample_tokens):
    bridge = load_model(path=gpt2_folder, device="cpu", backend="bridge")
    names = ["blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out", "blocks.0.attn.hook_z"]
    with torch.no_grad():
        _, cache_h = hooked.run_with_cache(sample_tokens, names_filter=names)
        _, cache_b = bridge.run_with_cache(sample_tokens, names_filter=names)
    for name in names:
        torch.testing.assert_close(cache_b[name], cache_h[name], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def bigcode_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GPTBigCode: the bridge supports it, TransformerLens's HookedTransformer conversion does not."""
    from tests.helpers import build_tiny_tokenizer

    folder = tmp_path_factory.mktemp("models") / "tiny-bigcode"
    tokenizer = build_tiny_tokenizer()
    config = transformers.GPTBigCodeConfig(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    transformers.GPTBigCodeForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_auto_falls_back_to_bridge_for_unconvertible_architecture(bigcode_folder):
    model = load_model(path=bigcode_folder, device="cpu")
    from transformer_lens.model_bridge import TransformerBridge

    assert isinstance(model, TransformerBridge)
    assert "blocks.1.hook_resid_pre" in model.hook_dict


def test_forcing_hooked_on_unconvertible_architecture_is_an_error(bigcode_folder):
    with pytest.raises(SourceError) as excinfo:
        load_model(path=bigcode_folder, device="cpu", backend="hooked")
    assert "cannot convert" in _message(excinfo)
    assert "backend: bridge" in _message(excinfo)
    assert str(bigcode_folder) in _message(excinfo)


def test_conversion_that_would_change_the_model_falls_back(tmp_path, sample_tokens):
    # TransformerLens's GPT-2 conversion assumes d_mlp = 4 * d_model and ignores n_inner.
    from tests.helpers import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2, n_inner=48)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    with pytest.raises(SourceError, match="cannot convert"):
        load_model(path=tmp_path / "m", device="cpu", backend="hooked")
    model = load_model(path=tmp_path / "m", device="cpu")
    assert type(model).__name__ == "TransformerBridge"
    with torch.no_grad():
        torch.testing.assert_close(model(sample_tokens), hf(sample_tokens).logits, atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------
# folder errors


def test_missing_folder(tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(path=tmp_path / "nope", device="cpu")
    msg = _message(excinfo)
    assert "does not exist" in msg and str(tmp_path / "nope") in msg and "Fix:" in msg


def test_path_is_a_file(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(SourceError, match="is not a folder"):
        load_model(path=tmp_path / "model.bin", device="cpu")


def test_folder_without_config(tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(path=tmp_path, device="cpu")
    assert "has no config.json" in _message(excinfo)
    assert "save_pretrained" in _message(excinfo)


def test_folder_with_invalid_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SourceError, match="is not valid JSON"):
        load_model(path=tmp_path, device="cpu")


def test_folder_without_weights(gpt2_folder, tmp_path):
    shutil.copy(gpt2_folder / "config.json", tmp_path / "config.json")
    with pytest.raises(SourceError) as excinfo:
        load_model(path=tmp_path, device="cpu")
    assert "has no weights file" in _message(excinfo)
    assert "model.safetensors" in _message(excinfo)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_folder_with_corrupt_weights(gpt2_folder, tmp_path, damage):
    folder = shutil.copytree(gpt2_folder, tmp_path / "broken")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x10\x00" + b"z" * 100)
    with pytest.raises(SourceError) as excinfo:
        load_model(path=folder, device="cpu")
    msg = _message(excinfo)
    assert "could not be loaded" in msg and str(folder) in msg and "save_pretrained" in msg
    assert excinfo.value.__cause__ is not None


def test_folder_with_corrupt_tokenizer(gpt2_folder, tmp_path):
    folder = shutil.copytree(gpt2_folder, tmp_path / "badtok")
    (folder / "tokenizer.json").write_text("{broken")
    with pytest.raises(SourceError, match="tokenizer files .* could not be loaded"):
        load_model(path=folder, device="cpu")


# ------------------------------------------------------------------------------------------
# weights that do not match the architecture of config.json (transformers would fill the gaps randomly)


def _edit_weights(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_weights_missing_from_the_file_are_refused_not_made_random(gpt2_folder, tmp_path):
    folder = shutil.copytree(gpt2_folder, tmp_path / "missing")
    _edit_weights(folder, lambda t: (t.pop("transformer.h.0.mlp.c_fc.weight"), t.pop("transformer.h.0.mlp.c_proj.weight")))
    with pytest.raises(SourceError) as excinfo:
        load_model(path=folder, device="cpu")
    msg = _message(excinfo)
    assert f"the weights in '{folder}' do not match the architecture its config.json describes (GPT2LMHeadModel)" in msg
    assert ("2 tensors the architecture needs are missing from the weights (transformer.h.0.mlp.c_fc.weight, "
            "transformer.h.0.mlp.c_proj.weight): they would be random") in msg
    assert "save_pretrained" in msg


def test_a_stray_tensor_and_a_tensor_of_another_shape_are_named(gpt2_folder, tmp_path):
    folder = shutil.copytree(gpt2_folder, tmp_path / "stray")

    def change(t: dict[str, torch.Tensor]) -> None:
        t["transformer.h.5.mlp.c_fc.weight"] = torch.zeros(3)
        t["transformer.h.1.ln_1.weight"] = torch.ones(5)

    _edit_weights(folder, change)
    with pytest.raises(SourceError) as excinfo:
        load_model(path=folder, device="cpu")
    msg = _message(excinfo)
    assert "1 tensor in the weights has no place in it (transformer.h.5.mlp.c_fc.weight)" in msg
    assert "1 tensor has another shape (transformer.h.1.ln_1.weight is [5] in the file, [32] in the model)" in msg


def test_a_config_with_more_layers_than_the_weights_is_refused(gpt2_folder, tmp_path):
    import json

    folder = shutil.copytree(gpt2_folder, tmp_path / "deeper")
    config = json.loads((folder / "config.json").read_text())
    config["n_layer"] += 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SourceError, match=r"12 tensors the architecture needs are missing from the weights "
                                          r"\(transformer\.h\.2\.attn\.c_attn\.bias, .*, and 8 more\)"):
        load_model(path=folder, device="cpu")


def test_what_the_architecture_declares_ignorable_loads(gpt2_folder, tmp_path, hooked, sample_tokens):
    """A tied lm_head written out, and GPT-2's old attention-mask buffers, are no problem."""
    folder = shutil.copytree(gpt2_folder, tmp_path / "declared")

    def change(t: dict[str, torch.Tensor]) -> None:
        t["lm_head.weight"] = t["transformer.wte.weight"].clone()
        t["transformer.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8))

    _edit_weights(folder, change)
    model = load_model(path=folder, device="cpu")
    with torch.no_grad():
        assert torch.allclose(model(sample_tokens), hooked(sample_tokens), atol=1e-5)


def test_buffers_older_transformers_saved_load(gpt2_folder, tmp_path, hooked, sample_tokens):
    """GPT-2 checkpoints of transformers 4.x keep ``attn.masked_bias`` (and GPT-Neo's ``attn.attention.bias`` /
    ``masked_bias``): buffers the model computes itself, which transformers only warns about."""
    folder = shutil.copytree(gpt2_folder, tmp_path / "old-gpt2")

    def change(t: dict[str, torch.Tensor]) -> None:
        for i in range(2):
            t[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8))
            t[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)

    _edit_weights(folder, change)
    model = load_model(path=folder, device="cpu")
    with torch.no_grad():
        assert torch.allclose(model(sample_tokens), hooked(sample_tokens), atol=1e-5)


def test_gpt_neo_with_its_old_mask_buffers_loads(tmp_path):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    folder = tmp_path / "neo"
    GPTNeoForCausalLM(GPTNeoConfig(num_layers=2, hidden_size=32, num_heads=2, vocab_size=100, max_position_embeddings=64,
                                   attention_types=[[["global", "local"], 1]])).save_pretrained(folder)

    def change(t: dict[str, torch.Tensor]) -> None:
        for i in range(2):
            t[f"transformer.h.{i}.attn.attention.bias"] = torch.tril(torch.ones(1, 1, 64, 64)).bool()
            t[f"transformer.h.{i}.attn.attention.masked_bias"] = torch.tensor(-1e9)

    _edit_weights(folder, change)
    assert load_model(path=folder, device="cpu") is not None
    _edit_weights(folder, lambda t: t.update({"transformer.h.0.attn.attention.k_proj.extra": torch.zeros(2)}))
    with pytest.raises(SourceError, match=r"1 tensor in the weights has no place in it "
                                          r"\(transformer\.h\.0\.attn\.attention\.k_proj\.extra\)"):
        load_model(path=folder, device="cpu")  # a weight of no place is still refused


def test_what_the_model_class_declares_is_left_out_of_the_loading_info(gpt2_folder, monkeypatch):
    """Older transformers reported a tied lm_head or an ignorable buffer as missing / unexpected: the class's
    own ``_tied_weights_keys`` and ``_keys_to_ignore_on_load_*`` patterns are left out here again."""
    auto = transformers.AutoModelForCausalLM
    real = auto.from_pretrained
    reported = {"missing_keys": ["lm_head.weight", "transformer.h.1.attn.masked_bias"],
                "unexpected_keys": ["transformer.h.0.attn.bias"], "mismatched_keys": []}

    def from_pretrained(*args, **kwargs):
        model, _ = real(*args, **kwargs)
        monkeypatch.setattr(type(model), "_keys_to_ignore_on_load_missing", [r"h\.\d+\.attn\.masked_bias"])
        return model, dict(reported)

    monkeypatch.setattr(auto, "from_pretrained", from_pretrained)
    assert load_model(path=gpt2_folder, device="cpu") is not None
    reported["missing_keys"] = ["transformer.h.0.mlp.c_fc.weight"]
    with pytest.raises(SourceError, match=r"1 tensor the architecture needs is missing from the weights "
                                          r"\(transformer\.h\.0\.mlp\.c_fc\.weight\): it would be random"):
        load_model(path=gpt2_folder, device="cpu")
