"""EleutherAI sparsify checkpoints, written by the real ``sparsify`` package, load as SAE Lens SAEs whose
encode/decode equal sparsify's own forward on random inputs; what SAE Lens cannot hold is refused."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.saes import load_sae_folder, load_saes
from pytest_saeval.sources.sparsify import outside_files, sparsify_folder_hook
from tests.checkpoints import sparse_coder, sparse_coder_codes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

D_IN = 24


def _inputs(sc, n: int = 64, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (sc.b_dec.detach().float() + 1.5 * torch.randn(n, D_IN, generator=gen)).to(sc.dtype)


def _save(sc, folder: Path) -> Path:
    sc.save_to_disk(folder)
    return folder


def _edit_cfg(folder: Path, **changes) -> Path:
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg.update(changes)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("settings", [
    {"num_latents": 96, "k": 8},
    {"num_latents": 0, "expansion_factor": 3, "k": 5},  # sparsify's default num_latents = 0: d_in * expansion
    {"num_latents": 64, "k": 16, "multi_topk": True},   # multi-TopK changes the training loss only
], ids=["num_latents", "expansion_factor", "multi_topk"])
def test_encode_and_decode_equal_sparsify_forward(tmp_path, settings):
    import sae_lens

    sc = sparse_coder(D_IN, seed=3, **settings)
    folder = _save(sc, tmp_path / "run" / "layers.1")
    sae = load_sae_folder(folder)
    d_sae = settings["num_latents"] or D_IN * settings.get("expansion_factor", 4)
    assert isinstance(sae, sae_lens.TopKSAE)
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k) == (D_IN, d_sae, settings["k"])
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    assert sae.cfg.apply_b_dec_to_input and sae.W_enc.dtype == torch.float32

    x = _inputs(sc)
    codes, recon = sparse_coder_codes(sc, x)
    with torch.no_grad():
        feats = sae.encode(x)
        torch.testing.assert_close(feats, codes, rtol=0, atol=0)
        torch.testing.assert_close(sae.decode(feats), recon)
        if not settings.get("multi_topk"):  # with multi_topk, forward's sae_out is the 4k training reconstruction
            torch.testing.assert_close(sae(x), sc(x).sae_out.detach())
        # the engine feeds [batch, pos, d_in]: the same numbers
        torch.testing.assert_close(sae.encode(x.reshape(4, 16, D_IN)), codes.reshape(4, 16, d_sae), rtol=0, atol=0)
    assert (feats != 0).sum(-1).le(settings["k"]).all()


def test_the_stored_dtype_is_kept_unless_overridden(tmp_path):
    sc = sparse_coder(D_IN, num_latents=48, k=4, seed=5, dtype=torch.bfloat16)
    folder = _save(sc, tmp_path / "layers.0")
    sae = load_sae_folder(folder)
    assert sae.W_enc.dtype == torch.bfloat16 and sae.cfg.dtype == "bfloat16"
    x = _inputs(sc)
    codes, _ = sparse_coder_codes(sc, x)
    with torch.no_grad():
        feats = sae.encode(x)
    # sparsify's fused linear and SAE Lens's matmul + bias round differently in bfloat16, so a near-tie
    # can pick another latent; where the same latents are chosen the values agree to bfloat16 precision
    same = ((feats != 0) == (codes != 0)).all(-1)
    assert same.float().mean() >= 0.9
    torch.testing.assert_close(feats[same].float(), codes[same].float(), rtol=0.02, atol=0.02)
    as_float = load_sae_folder(folder, dtype="float32")
    assert as_float.W_enc.dtype == torch.float32
    torch.testing.assert_close(as_float.W_dec, sc.W_dec.detach().float())


def test_seed_folders_and_run_metadata(tmp_path):
    run = tmp_path / "run"
    sc = sparse_coder(D_IN, num_latents=32, k=4, seed=1)
    folder = _save(sc, run / "layers.0.mlp" / "seed1")
    (run / "config.json").write_text(json.dumps({"model": "EleutherAI/pythia-70m", "dataset": "tiny/corpus",
                                                 "ctx_len": 256, "sae": {"k": 4}}))
    sae = load_sae_folder(folder)
    meta = sae.cfg.metadata
    assert meta.hook_name == "blocks.0.hook_mlp_out"
    assert (meta.model_name, meta.dataset_path, meta.context_size) == ("EleutherAI/pythia-70m", "tiny/corpus", 256)


def test_signed_topk_of_older_sparsify_is_abstopk(tmp_path):
    """Older sparsify (``signed: true``): ``pre = (x - b_dec) @ encoder.weight.T + encoder.bias`` without a
    ReLU, the top k by magnitude keep their sign, ``decode = f @ W_dec + b_dec``."""
    import sae_lens

    sc = sparse_coder(D_IN, num_latents=40, k=6, seed=9)
    folder = _edit_cfg(_save(sc, tmp_path / "layers.3"), signed=True)
    sae = load_sae_folder(folder)
    assert isinstance(sae, sae_lens.AbsTopKSAE) and sae.cfg.k == 6

    x = _inputs(sc)
    w, b, w_dec, b_dec = (t.detach() for t in (sc.encoder.weight, sc.encoder.bias, sc.W_dec, sc.b_dec))
    pre = (x - b_dec) @ w.T + b
    idx = pre.abs().topk(6, dim=-1).indices
    expected = torch.zeros_like(pre).scatter(-1, idx, pre.gather(-1, idx))
    with torch.no_grad():
        feats = sae.encode(x)
        torch.testing.assert_close(feats, expected)
        torch.testing.assert_close(sae.decode(feats), expected @ w_dec + b_dec)
    assert bool((feats < 0).any()), "a signed SAE keeps negative activations"


def test_a_hookpoint_without_a_hook_needs_hook_name(tmp_path):
    folder = _save(sparse_coder(D_IN, num_latents=32, k=4), tmp_path / "layers.2.mlp.act_fn")
    with pytest.raises(SourceError) as excinfo:
        load_sae_folder(folder)
    msg = str(excinfo.value)
    assert "hookpoint 'layers.2.mlp.act_fn'" in msg and "add hook_name:" in msg
    sae = load_sae_folder(folder, hook_name="blocks.2.mlp.hook_post")
    assert sae.cfg.metadata.hook_name == "blocks.2.mlp.hook_post"


def test_hook_name_replaces_the_mapped_hook(tmp_path):
    folder = _save(sparse_coder(D_IN, num_latents=32, k=4), tmp_path / "h.1")
    assert load_sae_folder(folder).cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    assert load_sae_folder(folder, hook_name="blocks.1.hook_resid_mid").cfg.metadata.hook_name == "blocks.1.hook_resid_mid"


@pytest.mark.parametrize(("change", "expected"), [
    ({"activation": "groupmax"}, "activation 'groupmax'"),
    ({"transcode": True}, "a transcoder"),
    ({"batch_topk": True}, "turns on batch_topk, which this loader does not know"),
    ({"signed": "yes"}, "signed must be true or false"),
    ({"k": 0}, "k must be a whole number >= 1"),
    ({"k": 33}, "k = 33 exceeds the 32 latents"),
    ({"d_in": 25}, "encoder.weight has shape [32, 24], but cfg.json (d_in 25, 32 latents) needs [32, 25]"),
    ({"num_latents": 16}, "needs [16, 24]"),
])
def test_configs_sae_lens_cannot_hold_or_that_disagree(tmp_path, change, expected):
    folder = _edit_cfg(_save(sparse_coder(D_IN, num_latents=32, k=4), tmp_path / "layers.0"), **change)
    with pytest.raises(SourceError) as excinfo:
        load_sae_folder(folder)
    assert expected in str(excinfo.value) and "Fix:" in str(excinfo.value)


def test_skip_connection_is_refused(tmp_path):
    from sparsify import SparseCoder, SparseCoderConfig

    sc = SparseCoder(D_IN, SparseCoderConfig(num_latents=32, k=4, skip_connection=True))
    with pytest.raises(SourceError, match="a skip connection"):
        load_sae_folder(_save(sc, tmp_path / "layers.0"))


def test_a_checkpoint_without_decoder(tmp_path):
    from sparsify import SparseCoder, SparseCoderConfig

    sc = SparseCoder(D_IN, SparseCoderConfig(num_latents=32, k=4), decoder=False)
    with pytest.raises(SourceError) as excinfo:
        load_sae_folder(_save(sc, tmp_path / "layers.0"))
    assert "has no W_dec" in str(excinfo.value) and "saved without its decoder" in str(excinfo.value)


def test_broken_files(tmp_path):
    folder = _save(sparse_coder(D_IN, num_latents=32, k=4), tmp_path / "layers.0")
    weights = folder / "sae.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(SourceError, match="corrupt or truncated"):
        load_sae_folder(folder)
    (folder / "cfg.json").write_text("{nope")
    with pytest.raises(SourceError, match="is not valid JSON"):
        load_sae_folder(folder)


def test_a_sparse_coder_from_a_factory_points_at_path(tmp_path):
    (tmp_path / "make.py").write_text(textwrap.dedent("""
        from sparsify import SparseCoder, SparseCoderConfig

        def coder():
            return SparseCoder(8, SparseCoderConfig(num_latents=16, k=2))
    """))
    with pytest.raises(SourceError) as excinfo:
        load_saes(factory="make.py:coder", base_dir=tmp_path)
    msg = str(excinfo.value)
    assert "sparsify.sparse_coder.SparseCoder) is not a usable SAE" in msg
    assert "save_to_disk(folder)" in msg and "path:" in msg and "dense [..., d_sae]" in msg


def test_a_symlinked_checkpoint_folder_keeps_its_hook(tmp_path):
    """A link whose own name maps to no hook (``link_sp -> sp_run/layers.1``) is named by the folder it
    leads to: its hook and its run's config.json; a link whose name maps keeps its own name."""
    run = tmp_path / "sp_run"
    _save(sparse_coder(D_IN, num_latents=32, k=4), run / "layers.1")
    _save(sparse_coder(D_IN, num_latents=32, k=4), run / "layers.2.mlp" / "seed0")
    (run / "config.json").write_text(json.dumps({"model": "EleutherAI/pythia-70m", "ctx_len": 64}))
    (tmp_path / "link_sp").symlink_to(run / "layers.1")
    (tmp_path / "link_seed").symlink_to(run / "layers.2.mlp" / "seed0")
    (tmp_path / "layers.0").symlink_to(run / "layers.1")  # its own name maps: it decides
    sae = load_sae_folder(tmp_path / "link_sp")
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post"
    assert (sae.cfg.metadata.model_name, sae.cfg.metadata.context_size) == ("EleutherAI/pythia-70m", 64)
    assert load_sae_folder(tmp_path / "link_seed").cfg.metadata.hook_name == "blocks.2.hook_mlp_out"
    assert load_sae_folder(tmp_path / "layers.0").cfg.metadata.hook_name == "blocks.0.hook_resid_post"
    mapped = sparsify_folder_hook(tmp_path / "link_sp")
    assert mapped is not None and mapped.hook == "blocks.1.hook_resid_post"
    assert mapped.source == f"the folder name 'layers.1' of '{run / 'layers.1'}', where its path leads"
    assert outside_files(tmp_path / "link_sp") == (run / "config.json",)
    assert outside_files(tmp_path / "layers.0") == (tmp_path / "config.json",)


def test_a_link_to_a_folder_without_a_hook_still_needs_hook_name(tmp_path):
    _save(sparse_coder(D_IN, num_latents=32, k=4), tmp_path / "run" / "layers.1.ln_2")
    (tmp_path / "link").symlink_to(tmp_path / "run" / "layers.1.ln_2")
    with pytest.raises(SourceError, match="hookpoint 'link', which maps to no TransformerLens hook"):
        load_sae_folder(tmp_path / "link")


def test_the_folder_hook_names_where_it_came_from(tmp_path):
    folder = _save(sparse_coder(D_IN, num_latents=32, k=4), tmp_path / "run" / "layers.5")
    seed = _save(sparse_coder(D_IN, num_latents=32, k=4), tmp_path / "run" / "layers.3.mlp" / "seed2")
    mapped = sparsify_folder_hook(folder)
    assert mapped is not None
    assert (mapped.hook, mapped.checkpoint, mapped.source) == (
        "blocks.5.hook_resid_post", f"the sparsify checkpoint '{folder}'", "the folder name 'layers.5'")
    seeded = sparsify_folder_hook(seed)
    assert seeded is not None and seeded.source == "the name 'layers.3.mlp' of the folder above seed2"
    assert outside_files(seed) == (tmp_path / "run" / "config.json",)
    assert sparsify_folder_hook(folder, "blocks.0.hook_resid_pre") is None  # the entry's hook_name replaces it
    _edit_cfg(folder, k=33)
    with pytest.raises(SourceError, match="k = 33 exceeds the 32 latents"):  # the config is read either way
        sparsify_folder_hook(folder, "blocks.0.hook_resid_pre")
