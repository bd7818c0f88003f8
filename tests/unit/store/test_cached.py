"""A cache folder that cannot be used: one CacheWarning, and the evaluation goes on with the same numbers."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import pytest
import torch

from pytest_saeval import EvalSettings
from pytest_saeval.engine.evaluate import EngineOptions, Scoring, run_pass
from pytest_saeval.engine.inputs import as_token_tensor
from pytest_saeval.store.cached import EvalCache
from pytest_saeval.store.entries import CacheWarning
from tests.helpers import results_equal

SETTINGS = EvalSettings(batch_size_prompts=2, n_reconstruction_batches=1, n_sparsity_batches=1,
                        exclude_special_tokens=False)


@pytest.fixture(scope="module")
def model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    return HookedTransformer(HookedTransformerConfig(n_layers=2, d_model=16, d_head=4, n_heads=4, d_mlp=32,
                                                     d_vocab=40, n_ctx=8, act_fn="gelu"))


@pytest.fixture(scope="module")
def sae():
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=16, d_sae=24)
    cfg.metadata.hook_name = "blocks.1.hook_resid_pre"
    out = StandardSAE(cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in out.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return out


@pytest.fixture(scope="module")
def tokens():
    t = torch.randint(1, 40, (2, 8), generator=torch.Generator().manual_seed(3))
    t[:, 0] = 0
    return t


def _evaluate(cache: EvalCache, model, sae, tokens) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = cache.evaluate(model, {"a": sae, "b": sae}, tokens, SETTINGS)["a"]
    return out, [str(w.message) for w in seen if issubclass(w.category, CacheWarning)]


def _break(kind: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "file-in-place":
        folder.write_text("not a folder")
    elif kind == "name-too-long":
        pass  # the folder name itself is the problem
    else:
        code = {"full": errno.ENOSPC, "read-only": errno.EROFS}[kind]
        real_open = os.open

        def refusing(path, flags, *args, **kwargs):
            if str(path).startswith(str(folder)) and flags & os.O_CREAT:
                raise OSError(code, os.strerror(code), str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing)


@pytest.mark.parametrize("kind", ["file-in-place", "name-too-long", "full", "read-only"])
def test_an_unusable_cache_warns_once_and_the_numbers_are_the_same(kind: str, model, sae, tokens, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / ("x" * 300 if kind == "name-too-long" else "cache")
    _break(kind, folder, monkeypatch)
    cache = EvalCache(folder)
    got, seen = _evaluate(cache, model, sae, tokens)
    assert len(seen) == 1, seen
    assert seen[0].startswith("saeval cache: ") and "the run goes on without the cache" in seen[0]
    direct = run_pass(model, {"a": sae}, as_token_tensor(tokens), SETTINGS, EngineOptions(), Scoring(by_summary=True))
    assert results_equal(got, direct["a"])
    _, again = _evaluate(cache, model, sae, tokens)  # the same cache object stays quiet and off
    assert again == []
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_a_folder_where_an_entry_should_be_turns_the_cache_off(model, sae, tokens, tmp_path: Path) -> None:
    first, seen = _evaluate(EvalCache(tmp_path), model, sae, tokens)
    assert seen == []
    entry = next((tmp_path / "results").rglob("*.safetensors"))
    entry.unlink()
    entry.mkdir()
    got, seen = _evaluate(EvalCache(tmp_path), model, sae, tokens)
    assert len(seen) == 1 and "a folder is in the way" in seen[0]
    assert results_equal(got, first)
    assert entry.is_dir()  # left as it was
