"""dictionary_learning trainer folders (``config.json`` + ``ae.pt``), written in its format from known
weights, load as SAE Lens SAEs whose encode/decode equal dictionary_learning's documented forward, with
SAE Lens's own mapping for its hub releases; ``ae.pt`` is read with ``weights_only=True``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.dictionary_learning import dictionary_learning_folder_hook
from pytest_saeval.sources.saes import load_sae_folder
from tests.checkpoints import DL_CLASSES, DL_TOPK, dl_forward, dl_state, save_dl_trainer

D_IN, D_SAE, K = 24, 40, 5

SAE_LENS_CLASS = {"AutoEncoder": "StandardSAE", "AutoEncoderNew": "StandardSAE", "AutoEncoderTopK": "TopKSAE",
                  "BatchTopKSAE": "JumpReLUSAE", "MatryoshkaBatchTopKSAE": "JumpReLUSAE",
                  "JumpReluAutoEncoder": "JumpReLUSAE", "GatedAutoEncoder": "GatedSAE"}


def _trainer(tmp_path: Path, dict_class: str, *, seed: int = 0, submodule: str | None = "resid_post_layer_1",
             layer: int | None = 1, state: dict | None = None) -> tuple[Path, dict]:
    state = state if state is not None else dl_state(dict_class, D_IN, D_SAE, k=K, seed=seed)
    folder = save_dl_trainer(tmp_path / "sweep" / (submodule or "run") / "trainer_0", dict_class, state, layer=layer,
                             submodule_name=submodule, k=K if dict_class in DL_TOPK else None)
    return folder, state


def _x(state: dict, seed: int = 11) -> torch.Tensor:
    b = state.get("b_dec", state.get("bias", state.get("decoder_bias", state.get("decoder.bias"))))
    return b + torch.randn(6, 8, D_IN, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dict_class", DL_CLASSES)
def test_encode_and_decode_follow_the_documented_forward(tmp_path, dict_class):
    folder, state = _trainer(tmp_path, dict_class, seed=DL_CLASSES.index(dict_class))
    sae = load_sae_folder(folder)
    assert type(sae).__name__ == SAE_LENS_CLASS[dict_class]
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (D_IN, D_SAE)
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    assert sae.cfg.metadata.context_size == 128 and sae.cfg.metadata.model_name == "tiny"
    x = _x(state)
    feats, recon = dl_forward(dict_class, state, x)
    assert 0 < int((feats != 0).sum()) < feats.numel() // 2, "the known weights make some features fire"
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), feats)
        torch.testing.assert_close(sae.decode(sae.encode(x)), recon)
    if dict_class == "AutoEncoderTopK":
        assert (feats != 0).sum(-1).le(K).all() and sae.cfg.k == K


@pytest.mark.parametrize("dict_class", [c for c in DL_CLASSES if c != "AutoEncoderNew"])
def test_the_mapping_is_sae_lens_own_for_hub_releases(tmp_path, monkeypatch, dict_class):
    """SAE Lens's hub loader for dictionary_learning, pointed at the same files, gives the same config and
    weights (its download replaced by the local file; SAE Lens always assumes hook_resid_post)."""
    import sae_lens.loading.pretrained_sae_loaders as loaders

    folder, _ = _trainer(tmp_path, dict_class)
    monkeypatch.setattr(loaders, "hf_hub_download", lambda repo_id, filename, force_download=False:
                        str(folder / Path(filename).name))
    theirs_cfg, theirs_state, _ = loaders.dictionary_learning_sae_huggingface_loader_1("local", "trainer_0")
    from pytest_saeval.sources.dictionary_learning import dictionary_learning_converter

    ours_cfg, ours_state = dictionary_learning_converter(folder)
    for key in ("architecture", "d_in", "d_sae", "dtype", "activation_fn", "activation_fn_kwargs",
                "apply_b_dec_to_input", "model_name", "hook_name", "context_size", "normalize_activations"):
        assert ours_cfg[key] == theirs_cfg[key], key
    assert sorted(ours_state) == sorted(k for k, v in theirs_state.items() if v is not None)
    for key, value in ours_state.items():
        torch.testing.assert_close(value, theirs_state[key].float(), msg=key)


@pytest.mark.parametrize(("submodule", "hook"), [("mlp_out_layer_0", "blocks.0.hook_mlp_out"),
                                                  ("attn_out_layer_0", "blocks.0.hook_attn_out")])
def test_submodule_name_decides_the_hook(tmp_path, submodule, hook):
    folder, _ = _trainer(tmp_path, "AutoEncoder", submodule=submodule, layer=0)
    assert load_sae_folder(folder).cfg.metadata.hook_name == hook


def test_an_unnamed_submodule_needs_hook_name(tmp_path):
    folder, _ = _trainer(tmp_path, "JumpReluAutoEncoder", submodule=None, layer=2)
    with pytest.raises(SourceError) as excinfo:
        load_sae_folder(folder)
    msg = str(excinfo.value)
    assert "no unambiguous hook: trainer.layer is 2" in msg and "add hook_name:" in msg
    assert "blocks.2.hook_resid_post" in msg
    assert load_sae_folder(folder, hook_name="blocks.2.hook_mlp_out").cfg.metadata.hook_name == "blocks.2.hook_mlp_out"


def test_weights_stored_in_bfloat16_load_as_float32(tmp_path):
    state = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v)
             for k, v in dl_state("AutoEncoderTopK", D_IN, D_SAE, k=K).items()}
    folder, _ = _trainer(tmp_path, "AutoEncoderTopK", state=state)
    sae = load_sae_folder(folder)
    assert sae.W_enc.dtype == torch.float32
    torch.testing.assert_close(sae.W_dec, state["decoder.weight"].T.float())


def touch_marker(path: str) -> None:
    Path(path).touch()


class _Payload:
    """Unpickling this would call :func:`touch_marker`: weights_only=True must refuse it first."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (touch_marker, (str(self.marker),))


def test_ae_pt_with_more_than_tensors_is_refused_unopened(tmp_path):
    folder, state = _trainer(tmp_path, "AutoEncoder")
    marker = tmp_path / "code-ran"
    torch.save({**state, "extra": _Payload(marker)}, folder / "ae.pt")
    with pytest.raises(SourceError) as excinfo:
        load_sae_folder(folder)
    msg = str(excinfo.value)
    assert "holds more than tensors (it names tests.unit.sources.test_dictionary_learning.touch_marker)" in msg and "torch.load(weights_only=True) refused it" in msg
    assert "state_dict()" in msg
    assert not marker.exists()


def _rewrite_config(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(("change", "expected"), [
    (lambda c: c.pop("trainer"), "has no \"trainer\" block"),
    (lambda c: c["trainer"].update(dict_class="IdentityDict"), "trainer.dict_class 'IdentityDict' is not a dictionary"),
    (lambda c: c["trainer"].update(dict_size="40"), 'trainer.dict_size must be a whole number >= 1, got "40" (a string)'),
    (lambda c: c["trainer"].update(activation_dim=25), "encoder.weight has shape [40, 24], but activation_dim 25"),
    (lambda c: c["trainer"].update(k=6), "keeps k = 5, but config.json says trainer.k = 6"),
    (lambda c: c["trainer"].update(dict_class="BatchTopKSAE"), None),  # same keys as AutoEncoderTopK: loads
    (lambda c: c["trainer"].update(dict_class="AutoEncoder"), "has no bias and unexpected b_dec, k, threshold"),
    (lambda c: c["trainer"].update(layer=3), "says layer 1 but trainer.layer is 3"),
    (lambda c: c["trainer"].update(k=41), "trainer.k = 41 exceeds trainer.dict_size = 40"),
])
def test_configs_that_do_not_fit(tmp_path, change, expected):
    folder, _ = _trainer(tmp_path, "AutoEncoderTopK")
    _rewrite_config(folder, change)
    if expected is None:
        assert type(load_sae_folder(folder)).__name__ == "JumpReLUSAE"
        return
    with pytest.raises(SourceError) as excinfo:
        load_sae_folder(folder)
    assert expected in str(excinfo.value) and "Fix:" in str(excinfo.value)


@pytest.mark.parametrize(("write", "expected"), [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "corrupt or truncated"),
    (lambda p: torch.save([torch.zeros(3)], p), "does not hold a state dict"),
])
def test_broken_ae_pt(tmp_path, write, expected):
    folder, _ = _trainer(tmp_path, "GatedAutoEncoder")
    write(folder / "ae.pt")
    with pytest.raises(SourceError, match=expected):
        load_sae_folder(folder)


def test_a_top_k_beyond_the_dictionary_is_refused_when_the_config_is_read(tmp_path):
    """k > dict_size in config.json and ae.pt alike: refused at the config (SAE Lens would build the SAE
    and fail in encode), with the config file, both values and the fix."""
    state = dl_state("AutoEncoderTopK", D_IN, D_SAE, k=K)
    state["k"] = torch.tensor(D_SAE + 1)
    folder = save_dl_trainer(tmp_path / "resid_post_layer_1" / "trainer_0", "AutoEncoderTopK", state, layer=1,
                             submodule_name="resid_post_layer_1", k=D_SAE + 1)
    for read in (lambda: load_sae_folder(folder), lambda: dictionary_learning_folder_hook(folder)):
        with pytest.raises(SourceError) as excinfo:
            read()
        e = excinfo.value
        assert e.message == (f"'{folder / 'config.json'}': trainer.k = 41 exceeds trainer.dict_size = 40 (a top-k "
                             "dictionary keeps at most dict_size latents per token)")
        assert "set trainer.k (1 to 40)" in (e.fix or "")


def test_a_symlinked_trainer_folder_keeps_the_hook_of_its_run_folder(tmp_path):
    """Without a submodule_name the hook comes from the run folder's name; a link elsewhere
    (``mine -> sweep/mlp_out_layer_2/trainer_0``) falls back to the names of the folder it leads to."""
    folder, _ = _trainer(tmp_path, "AutoEncoder", submodule=None, layer=2)
    real = folder.parent.with_name("mlp_out_layer_2") / "trainer_0"
    folder.parent.rename(real.parent)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "mine").symlink_to(real)
    assert load_sae_folder(tmp_path / "links" / "mine").cfg.metadata.hook_name == "blocks.2.hook_mlp_out"
    mapped = dictionary_learning_folder_hook(tmp_path / "links" / "mine")
    assert mapped is not None and mapped.source == "the run folder name 'mlp_out_layer_2'"
    assert dictionary_learning_folder_hook(real, "blocks.2.hook_resid_pre") is None
