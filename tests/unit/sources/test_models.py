"""Loading models: local Hugging Face folders (HookedTransformer and bridge), names, factories, devices."""

from __future__ import annotations

import json
import shutil
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from pytest_saeval.errors import InputError, SaevalError, SourceError
from pytest_saeval.sources.devices import parse_dtype, resolve_device
from pytest_saeval.sources.models import load_model, model_info
from pytest_saeval.store.hashing import module_hash, state_dict_hash
from tests.helpers import save_tiny_gpt2, tiny_hooked_transformer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_gpt2(tmp_path_factory.mktemp("models") / "tiny-gpt2")


@pytest.fixture(scope="module")
def hf_gpt2(gpt2_folder: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(gpt2_folder, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def hooked(gpt2_folder: Path):
    return load_model(path=gpt2_folder, device="cpu")


@pytest.fixture(scope="module")
def sample_tokens() -> torch.Tensor:
    return torch.randint(0, 160, (2, 24), generator=torch.Generator().manual_seed(1))


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


def test_model_info_of_hooked_model(hooked):
    info = model_info(hooked)
    assert info.backend == "hooked"
    assert (info.n_layers, info.d_model, info.d_vocab, info.n_ctx) == (2, 32, 160, 64)
    assert info.supports_start_at_layer is True
    assert info.has_tokenizer is True
    assert "blocks.1.attn.hook_z" in info.hook_names
    assert list(info.hook_names) == sorted(info.hook_names)


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
    assert model_info(model).has_tokenizer is False


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
    info = model_info(bridge)
    assert info.backend == "bridge"
    assert info.supports_start_at_layer is False
    for name in ("blocks.0.hook_resid_pre", "blocks.1.hook_mlp_out", "blocks.0.attn.hook_z"):
        assert name in info.hook_names
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
    assert model_info(model).backend == "bridge"
    assert "blocks.1.hook_resid_pre" in model_info(model).hook_names


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
    assert model_info(model).backend == "bridge"
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
# arguments


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"name": "gpt2", "path": "x"}, {"path": "x", "factory": "a:b"}],
)
def test_exactly_one_source(kwargs):
    with pytest.raises(SourceError, match="exactly one of name, path, factory"):
        load_model(device="cpu", **kwargs)


def test_unknown_backend(gpt2_folder):
    with pytest.raises(InputError, match="unknown model backend"):
        load_model(path=gpt2_folder, device="cpu", backend="tpu")  # type: ignore[arg-type]


def test_dtypes():
    assert parse_dtype("float32") is torch.float32
    assert parse_dtype("torch.bfloat16") is torch.bfloat16
    assert parse_dtype(torch.float16) is torch.float16
    with pytest.raises(InputError, match="did you mean 'float32'"):
        parse_dtype("float3")


# ------------------------------------------------------------------------------------------
# names


def test_unknown_name_suggests_close_names():
    with pytest.raises(SourceError) as excinfo:
        load_model(name="gpt2-smal", device="cpu")
    msg = _message(excinfo)
    assert "not a TransformerLens pretrained name" in msg
    assert "gpt2-small" in msg
    assert "backend: bridge" in msg


def test_name_not_cached_with_hub_unreachable(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(SourceError) as excinfo:
        load_model(name="gpt2", device="cpu")
    msg = _message(excinfo)
    assert "not in the local Hugging Face cache" in msg and "hub cannot be reached" in msg
    assert "model.path" in msg


# ------------------------------------------------------------------------------------------
# factories


@pytest.fixture
def factory_module(tmp_path: Path) -> str:
    """A module file next to a pretend suite file; returns its (unique) module name."""
    name = f"saeval_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from tests.helpers import tiny_hooked_transformer

            NOT_CALLABLE = 3

            def good():
                return tiny_hooked_transformer()

            def wrong_type():
                return {"not": "a model"}

            def boom():
                raise RuntimeError("weights server said no")

            def needs_args(x):
                return x
            """
        )
    )
    return name


def test_factory_from_module_next_to_suite(factory_module, tmp_path):
    model = load_model(factory=f"{factory_module}:good", base_dir=tmp_path, device="cpu")
    assert model_info(model).backend == "hooked"
    assert model.tokenizer is not None
    assert str(tmp_path.resolve()) not in __import__("sys").path


def test_factory_from_py_file(factory_module, tmp_path):
    model = load_model(factory=f"{factory_module}.py:good", base_dir=tmp_path, device="cpu")
    assert model.cfg.n_layers == 2


def test_factory_from_importable_module():
    model = load_model(factory="tests.helpers:tiny_hooked_transformer", device="cpu")
    assert model.cfg.d_model == 32


@pytest.mark.parametrize("spec", ["no_colon", "a:b:c", ":f", "mod:", "mod:1bad", "bad-mod:f"])
def test_factory_bad_format(spec):
    with pytest.raises(SourceError, match="not of the form 'module:function'"):
        load_model(factory=spec, device="cpu")


def test_factory_module_not_found(tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(factory="no_such_module_xyz:load", base_dir=tmp_path, device="cpu")
    msg = _message(excinfo)
    assert "module 'no_such_module_xyz' not found" in msg and str(tmp_path) in msg


def test_factory_module_with_missing_dependency(tmp_path):
    name = f"saeval_dep_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import not_installed_dependency_xyz\n")
    with pytest.raises(SourceError) as excinfo:
        load_model(factory=f"{name}:f", base_dir=tmp_path, device="cpu")
    assert "module 'not_installed_dependency_xyz' is missing" in _message(excinfo)


def test_factory_module_raising_on_import(tmp_path):
    name = f"saeval_imp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("raise ValueError('bad module')\n")
    with pytest.raises(SourceError, match="raised ValueError: bad module"):
        load_model(factory=f"{name}:f", base_dir=tmp_path, device="cpu")


def test_factory_attribute_not_found(factory_module, tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(factory=f"{factory_module}:goood", base_dir=tmp_path, device="cpu")
    assert "has no attribute 'goood'" in _message(excinfo)
    assert "did you mean 'good'" in _message(excinfo)


def test_factory_not_callable(factory_module, tmp_path):
    with pytest.raises(SourceError, match="is a int, not a function"):
        load_model(factory=f"{factory_module}:NOT_CALLABLE", base_dir=tmp_path, device="cpu")


def test_factory_raising_is_chained(factory_module, tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(factory=f"{factory_module}:boom", base_dir=tmp_path, device="cpu")
    assert "raised RuntimeError: weights server said no" in _message(excinfo)
    assert isinstance(excinfo.value.__cause__, RuntimeError)


def test_factory_needing_arguments(factory_module, tmp_path):
    with pytest.raises(SourceError, match="raised TypeError"):
        load_model(factory=f"{factory_module}:needs_args", base_dir=tmp_path, device="cpu")


def test_factory_wrong_return_type(factory_module, tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(factory=f"{factory_module}:wrong_type", base_dir=tmp_path, device="cpu")
    msg = _message(excinfo)
    assert "builtins.dict" in msg and "run_with_hooks" in msg and "not a TransformerLens model" in msg


def test_errors_take_a_location_later(tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_model(path=tmp_path / "nope", device="cpu")
    located = excinfo.value.located(file="thresholds/demo.yaml", line=3, key="model.path")
    assert str(located).startswith("thresholds/demo.yaml:3: model.path: model folder")
    assert isinstance(located, SaevalError)


# ------------------------------------------------------------------------------------------
# devices


def test_resolve_device_auto_and_cpu():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resolve_device_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(InputError) as excinfo:
            resolve_device(spec)
        assert "CUDA is not available" in str(excinfo.value) and "auto or cpu" in str(excinfo.value)


def test_resolve_device_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("CUDA:1") == "cuda:1"
    with pytest.raises(InputError, match=r"has 2 CUDA device\(s\) \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "", "mps0"])
def test_resolve_device_unknown(spec):
    with pytest.raises(InputError, match="unknown device"):
        resolve_device(spec)


def test_load_model_checks_device_first(gpt2_folder, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        load_model(path=gpt2_folder, device="cuda")


# ------------------------------------------------------------------------------------------
# hashing of models


def test_model_hash_tracks_weights(gpt2_folder, hooked):
    again = load_model(path=gpt2_folder, device="cpu")
    assert module_hash("model", again) == module_hash("model", hooked)
    assert state_dict_hash(again) == state_dict_hash(again.state_dict())
    with torch.no_grad():
        again.blocks[1].mlp.b_out[0] += 1e-3
    assert module_hash("model", again) != module_hash("model", hooked)


def test_model_hash_differs_between_models():
    a = tiny_hooked_transformer(seed=0)
    b = tiny_hooked_transformer(seed=1)
    assert module_hash("model", a) != module_hash("model", b)
    assert len(module_hash("model", a)) == 32


def test_saved_config_has_no_n_ctx(gpt2_folder):
    # The GPT-2 branch of TransformerLens's config conversion reads n_ctx; transformers 5 does not write it.
    assert "n_ctx" not in json.loads((gpt2_folder / "config.json").read_text())
