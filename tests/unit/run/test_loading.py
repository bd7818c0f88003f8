"""Loading what suites name, once each: a model per distinct model spec (across suites), token rows per data
spec, an SAE per entry; every source error located at the suite key it came from, with its subject."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from pytest_saeval.errors import InputError, SaevalError, SourceError, Subject
from pytest_saeval.run.loading import Loader
from pytest_saeval.run.plan import Overrides, entries_of
from pytest_saeval.spec.loader import load_suite
from tests.helpers import save_tiny_gpt2, save_tiny_sae


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("loading-assets")
    good = np.full((4, 8), 5, dtype=np.int64)
    np.save(root / "tokens.npy", good)
    np.save(root / "too-big.npy", good + 1000)  # ids beyond the tiny vocabulary
    return SimpleNamespace(model=save_tiny_gpt2(root / "model"), sae=save_tiny_sae(root / "sae", seed=1),
                           tokens=root / "tokens.npy", too_big=root / "too-big.npy", root=root)


def _suite(folder: Path, name: str, assets: SimpleNamespace, *, model: Any = None, tokens: Any = None,
           sae: Any = None, device: str = "cpu", dtype: str = "float32") -> Any:
    text = (f"model:\n  path: {model or assets.model}\n  device: {device}\n  dtype: {dtype}\n"
            f"data:\n  tokens: {tokens or assets.tokens}\n  context_size: 8\n  batch_size_prompts: 2\n"
            "  n_reconstruction_batches: 1\n  n_sparsity_batches: 2\n"
            f"saes:\n  - id: first\n    path: {assets.sae}\n  - id: second\n    path: {sae or assets.sae}\n")
    path = folder / name
    path.write_text(text)
    return load_suite(path)


def test_auto_and_forced_devices(tmp_path: Path, assets: SimpleNamespace) -> None:
    suites = {d: _suite(tmp_path, f"{d.replace(':', '_')}.yaml", assets, device=d) for d in ("auto", "cuda", "cpu", "cuda:0")}
    assert [Loader().device_for(s) for s in suites.values()] == ["auto", "cuda", "cpu", "cuda:0"]
    assert [Loader(auto_device="cpu").device_for(s) for s in suites.values()] == ["cpu", "cuda", "cpu", "cuda:0"]
    assert [Loader(device="cpu", auto_device="cuda:1").device_for(s) for s in suites.values()] == ["cpu"] * 4


def test_a_model_is_loaded_once_per_distinct_spec(tmp_path: Path, assets: SimpleNamespace) -> None:
    loader = Loader()
    one = _suite(tmp_path, "one.yaml", assets)
    two = _suite(tmp_path, "two.yaml", assets)
    wide = _suite(tmp_path, "wide.yaml", assets, dtype="float64")
    model = loader.model(one, Overrides())
    assert loader.model(two, Overrides()) is model
    other = loader.model(wide, Overrides())
    assert other is not model and other.W_E.dtype == torch.float64
    given = object()
    assert loader.model(one, Overrides(model=given)) is given


def test_tokens_and_saes_are_loaded_once_and_checked(tmp_path: Path, assets: SimpleNamespace) -> None:
    loader = Loader()
    suite = _suite(tmp_path, "s.yaml", assets)
    model = loader.model(suite, Overrides())
    tokens = loader.tokens(suite, model, Overrides())
    assert tuple(tokens.shape) == (4, 8) and loader.tokens(suite, model, Overrides()) is tokens
    saes = loader.saes(suite, entries_of(suite), "cpu", Overrides())
    assert sorted(saes) == ["first", "second"] and saes["first"] is not saes["second"]  # one object per entry
    assert loader.saes(suite, entries_of(suite), "cpu", Overrides())["first"] is saes["first"]
    assert saes["first"].cfg.metadata.hook_name == "blocks.0.hook_resid_pre"


def test_overriding_tokens(tmp_path: Path, assets: SimpleNamespace) -> None:
    loader = Loader()
    suite = _suite(tmp_path, "s.yaml", assets)
    array = np.load(assets.tokens)
    tensor = loader.tokens(suite, None, Overrides(tokens=array))
    assert isinstance(tensor, torch.Tensor) and torch.equal(tensor, torch.from_numpy(array))
    assert loader.tokens(suite, None, Overrides(tokens=array)) is tensor  # converted once per object
    assert loader.tokens(suite, None, Overrides(tokens=tensor)) is tensor  # already one of ours


def _error(call: Any) -> SaevalError:
    with pytest.raises(SaevalError) as info:
        call()
    return info.value


def test_source_errors_are_located_at_their_suite_key(tmp_path: Path, assets: SimpleNamespace) -> None:
    missing_model = _suite(tmp_path, "m.yaml", assets, model=tmp_path / "no-model")
    e = _error(lambda: Loader().model(missing_model, Overrides()))
    assert isinstance(e, SourceError)
    assert (e.location.file, e.location.line, e.location.key) == (str(missing_model.path), 2, "model.path")
    assert e.subject == Subject(suite=str(missing_model.path))

    missing_tokens = _suite(tmp_path, "t.yaml", assets, tokens=tmp_path / "no-tokens.npy")
    loader = Loader()
    model = loader.model(missing_tokens, Overrides())
    e = _error(lambda: loader.tokens(missing_tokens, model, Overrides()))
    assert (e.location.file, e.location.line, e.location.key) == (str(missing_tokens.path), 6, "data.tokens")

    too_big = _suite(tmp_path, "v.yaml", assets, tokens=assets.too_big)
    e = _error(lambda: loader.tokens(too_big, model, Overrides()))
    assert isinstance(e, InputError) and e.location.key == "data.tokens" and "id 1005" in str(e)

    missing_sae = _suite(tmp_path, "s.yaml", assets, sae=tmp_path / "no-sae")
    e = _error(lambda: loader.saes(missing_sae, entries_of(missing_sae), "cpu", Overrides()))
    # at the entry's path: line (the key that names the missing folder)
    assert (e.location.file, e.location.line, e.location.key) == (str(missing_sae.path), 15, "saes[1].path")
    assert e.subject == Subject(suite=str(missing_sae.path), entry=1)


def test_a_device_problem_is_located_at_the_device_that_asked_for_it(
    tmp_path: Path, assets: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    suite = _suite(tmp_path, "c.yaml", assets, device="cuda")
    e = _error(lambda: Loader().model(suite, Overrides()))
    assert (e.location.line, e.location.key) == (3, "model.device") and "CUDA is not available" in str(e)
    forced = _suite(tmp_path, "f.yaml", assets)
    e = _error(lambda: Loader(device="cuda", device_option="--saeval-device").model(forced, Overrides()))
    assert (e.location.file, e.location.line, e.location.key) == (None, None, "--saeval-device")  # the run's option
    assert "use --saeval-device auto or --saeval-device cpu" in (e.fix or "")


def _hooked(*, post_norm: bool) -> Any:
    """A tiny HookedTransformer built in code: with post_norm, TransformerLens normalizes each attention and
    MLP output (ln1_post / ln2_post) before hook_attn_out / hook_mlp_out, as on Gemma 2."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_ctx=16, d_head=16, n_heads=2, d_mlp=64, d_vocab=50,
                                  act_fn="gelu", normalization_type="RMS", use_normalization_before_and_after=post_norm,
                                  seed=0, device="cpu")
    return HookedTransformer(cfg)


@pytest.fixture(scope="module")
def other_trainers(assets: SimpleNamespace) -> SimpleNamespace:
    """sparsify checkpoints of an MLP output, an attention output, a residual stream and a layer the tiny
    models lack, and a dictionary_learning trainer of an MLP output (d_in 32)."""
    from tests.checkpoints import dl_state, save_dl_trainer, sparse_coder

    run = assets.root / "sp_run"
    for i, name in enumerate(("layers.0.mlp", "layers.1.self_attn", "layers.1", "layers.5")):
        sparse_coder(32, num_latents=64, k=4, seed=i).save_to_disk(run / name)
    dl = save_dl_trainer(assets.root / "dl" / "mlp_out_layer_0" / "trainer_0", "AutoEncoder",
                         dl_state("AutoEncoder", 32, 64), layer=0, submodule_name="mlp_out_layer_0")
    return SimpleNamespace(run=run, dl=dl)


def _one_sae(folder: Path, assets: SimpleNamespace, path: Path, hook_name: str | None = None) -> Any:
    path.write_text(f"model:\n  path: {assets.model}\n  device: cpu\ndata:\n  tokens: {assets.tokens}\n"
                    "  context_size: 8\n  batch_size_prompts: 2\n  n_reconstruction_batches: 1\n  n_sparsity_batches: 2\n"
                    f"saes:\n  - id: one\n    path: {folder}\n" + (f"    hook_name: {hook_name}\n" if hook_name else ""))
    return load_suite(path)


@pytest.mark.parametrize(("which", "hook", "norm"), [
    ("layers.0.mlp", "blocks.0.hook_mlp_out", "blocks.0.ln2_post"),
    ("layers.1.self_attn", "blocks.1.hook_attn_out", "blocks.1.ln1_post"),
    ("dl", "blocks.0.hook_mlp_out", "blocks.0.ln2_post"),
])
def test_a_mapped_output_hook_is_refused_on_a_post_norm_model(tmp_path: Path, assets: SimpleNamespace,
                                                              other_trainers: SimpleNamespace, which: str, hook: str,
                                                              norm: str) -> None:
    """The Hugging Face module's output (what sparsify and dictionary_learning hooked) is not what
    TransformerLens's hook holds after ln*_post: refused with one located error asking for hook_name:;
    the suite's own hook_name is taken as said, and a model without the norm takes the mapped hook."""
    folder = other_trainers.dl if which == "dl" else other_trainers.run / which
    suite = _one_sae(folder, assets, tmp_path / "s.yaml")
    post_norm = _hooked(post_norm=True)
    e = _error(lambda: Loader().saes(suite, entries_of(suite), "cpu", Overrides(model=post_norm)))
    assert isinstance(e, SourceError)
    assert (e.location.file, e.location.line, e.location.key) == (str(suite.path), 12, "saes[0].path")
    assert e.subject == Subject(suite=str(suite.path), entry=0, sae="one", part="hook_name")
    assert f"reads {hook}, mapped from" in e.message and f"TransformerLens applies {norm} to the output before {hook}" in e.message
    assert "add hook_name: to the SAE entry" in (e.fix or "") and f"hook_name: {hook} if it was trained on" in (e.fix or "")
    plain = Loader().saes(suite, entries_of(suite), "cpu", Overrides(model=_hooked(post_norm=False)))
    assert plain["one"].cfg.metadata.hook_name == hook
    named = _one_sae(folder, assets, tmp_path / "named.yaml", hook_name=hook)
    assert Loader().saes(named, entries_of(named), "cpu", Overrides(model=post_norm))["one"].cfg.metadata.hook_name == hook


def test_a_mapped_residual_hook_is_kept_on_a_post_norm_model(tmp_path: Path, assets: SimpleNamespace,
                                                             other_trainers: SimpleNamespace) -> None:
    suite = _one_sae(other_trainers.run / "layers.1", assets, tmp_path / "s.yaml")
    loaded = Loader().saes(suite, entries_of(suite), "cpu", Overrides(model=_hooked(post_norm=True)))
    assert loaded["one"].cfg.metadata.hook_name == "blocks.1.hook_resid_post"


def test_a_mapped_hook_the_model_lacks_names_the_folder_it_came_from(tmp_path: Path, assets: SimpleNamespace,
                                                                     other_trainers: SimpleNamespace) -> None:
    """``layers.5`` on a 2-layer model: the hook came from the folder name, not from a cfg.json or a hook_name
    the user wrote; the error says so and asks for hook_name: (once the model is loaded, before the pass)."""
    folder = other_trainers.run / "layers.5"
    suite = _one_sae(folder, assets, tmp_path / "s.yaml")
    loader = Loader()
    loader.model(suite, Overrides())
    e = _error(lambda: loader.saes(suite, entries_of(suite), "cpu", Overrides()))
    assert isinstance(e, SourceError) and e.location.key == "saes[0].path" and e.location.line == 12
    assert e.message == (f"the sparsify checkpoint '{folder}' reads blocks.5.hook_resid_post, mapped from the folder "
                         "name 'layers.5', but the model has no such hook (it has 2 layers, blocks.0 to blocks.1)")
    assert "cfg.json" not in str(e) and (e.fix or "").startswith("add hook_name: to the SAE entry")
