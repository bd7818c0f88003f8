"""The heavy half of a run: an SAE's config as plain data, and what a result was measured on."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

from pytest_saeval.run.evaluation import device_of, provenance_of, sae_config
from pytest_saeval.settings import EvalSettings
from pytest_saeval.store.hashing import Fingerprints
from tests.helpers import ProtocolSAE, build_tiny_sae, tiny_hooked_transformer


def test_the_config_of_an_sae_lens_sae_is_its_own_to_dict() -> None:
    sae = build_tiny_sae(architecture="topk", hook_name="blocks.1.hook_resid_pre", d_sae=48)
    cfg = sae_config(sae)
    assert cfg["architecture"] == "topk" and cfg["d_in"] == 32 and cfg["d_sae"] == 48 and cfg["k"] == 4
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_pre"  # type: ignore[index]


def test_other_saes_are_described_by_their_sizes_and_hook() -> None:
    cfg = sae_config(ProtocolSAE(d_in=8, d_sae=12, hook_name="blocks.0.attn.hook_z", hook_head_index=3))
    assert cfg == {"d_in": 8, "d_sae": 12, "architecture": None, "dtype": None, "device": None,
                   "hook_name": "blocks.0.attn.hook_z", "hook_head_index": 3}

    class BrokenCfg:
        d_in, d_sae = 4, 6
        metadata = SimpleNamespace(hook_name="h", hook_head_index=None)

        def to_dict(self) -> dict[str, object]:
            raise RuntimeError("cannot")

        def dtype(self) -> str:
            return "float32"

    assert sae_config(SimpleNamespace(cfg=BrokenCfg())) == {
        "d_in": 4, "d_sae": 6, "architecture": None, "dtype": "float32", "device": None, "hook_name": "h",
        "hook_head_index": None}
    nan_cfg = SimpleNamespace(cfg=SimpleNamespace(to_dict=lambda: {"scale": math.nan}))
    assert sae_config(nan_cfg) == {"scale": None}  # written to JSON outputs: non-finite as null
    assert sae_config(object())["hook_name"] is None


def test_provenance_of_a_result() -> None:
    model = tiny_hooked_transformer()
    sae = build_tiny_sae(seed=1)
    tokens = torch.randint(3, 100, (8, 16), generator=torch.Generator().manual_seed(0))
    settings = EvalSettings(batch_size_prompts=2, n_reconstruction_batches=1, n_sparsity_batches=2)
    prints = Fingerprints()
    prov = provenance_of(model, sae, tokens, settings, prints)
    assert device_of(model) == "cpu" and prov.device == "cpu"
    assert prov.torch_version == str(torch.__version__)
    assert all(len(h) == 32 for h in (prov.sae_xxh3, prov.model_xxh3, prov.tokens_xxh3))
    assert provenance_of(model, sae, tokens, settings, Fingerprints()) == prov  # content, not identity
    other = provenance_of(model, build_tiny_sae(seed=2), tokens, settings, prints)
    assert other.sae_xxh3 != prov.sae_xxh3 and other.model_xxh3 == prov.model_xxh3
    changed = tokens.clone()
    changed[7, 0] += 1  # a row the pass does not read (it reads 2 * 2 rows)
    assert provenance_of(model, sae, changed, settings, Fingerprints()).tokens_xxh3 == prov.tokens_xxh3
    changed[0, 0] += 1
    assert provenance_of(model, sae, changed, settings, Fingerprints()).tokens_xxh3 != prov.tokens_xxh3
