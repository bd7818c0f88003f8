"""The results cache: hits, every kind of change misses, corrupt entries, atomic writes, exact round trips."""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import warnings
from pathlib import Path

import pytest
import torch

import pytest_saeval.store.cached as cached
import pytest_saeval.versions
from pytest_saeval import EvalSettings
from pytest_saeval.engine.evaluate import EngineOptions, Scoring, evaluate, run_pass
from pytest_saeval.engine.inputs import as_token_tensor
from pytest_saeval.engine.results import SAEResult, SequenceStats, SequenceSums
from pytest_saeval.errors import InputError
from pytest_saeval.run.evaluation import fused_pass
from pytest_saeval.store.cached import EvalCache
from pytest_saeval.store.entries import CacheWarning
from pytest_saeval.store.folder import default_cache_dir
from pytest_saeval.store.hashing import module_hash
from pytest_saeval.store.results import ResultsCache
from tests.helpers import results_equal


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread avoids thread hand-offs that dominate on a busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


SETTINGS = EvalSettings(batch_size_prompts=2, n_reconstruction_batches=2, n_sparsity_batches=2,
                        exclude_special_tokens=(0,))


def _model(seed: int = 0, act_fn: str = "gelu"):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=40, n_ctx=8,
                                  act_fn=act_fn)
    return HookedTransformer(cfg)


def _sae(hook: str = "blocks.1.hook_resid_pre", seed: int = 1, d_sae: int = 24):
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=16, d_sae=d_sae)
    cfg.metadata.hook_name = hook
    sae = StandardSAE(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return sae


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture()
def tokens():
    gen = torch.Generator().manual_seed(3)
    t = torch.randint(1, 40, (4, 8), generator=gen)
    t[:, 0] = 0
    return t


@pytest.fixture()
def calls(monkeypatch):
    """Records the SAE ids of every engine pass made through the cache."""
    seen: list[list[str]] = []
    real = cached.run_pass

    def counting(model, saes, *args, **kwargs):
        seen.append(list(saes))
        return real(model, saes, *args, **kwargs)

    monkeypatch.setattr(cached, "run_pass", counting)
    return seen


def _run(model, saes, tokens, folder, settings=SETTINGS, *, metrics=None, model_key=None):
    options = EngineOptions(metrics=frozenset(metrics) if metrics is not None else None)
    return EvalCache(folder, model_cache=False).evaluate(model, saes, tokens, settings, options, model_key=model_key)


def _by_summary(model, saes, tokens, settings=SETTINGS):
    """The plugin's scoring (through the clean summary), without any cache."""
    return run_pass(model, saes, as_token_tensor(tokens), settings, EngineOptions(), Scoring(by_summary=True))


def test_hit_returns_the_same_result_without_evaluating(model, tokens, tmp_path, calls):
    saes = {"a": _sae()}
    first = _run(model, saes, tokens, tmp_path)
    assert calls == [["a"]]
    second = _run(model, saes, tokens, tmp_path)
    assert calls == [["a"]], "a hit must not evaluate"
    assert results_equal(first["a"], second["a"])
    plain = _by_summary(model, saes, tokens)  # the cache's scoring
    assert results_equal(plain["a"], second["a"])


def test_only_misses_are_evaluated_and_order_kept(model, tokens, tmp_path, calls):
    a, b = _sae(seed=1), _sae(seed=2)
    _run(model, {"a": a}, tokens, tmp_path)
    out = _run(model, {"b": b, "a": a}, tokens, tmp_path)
    assert calls == [["a"], ["b"]]
    assert list(out) == ["b", "a"]


def test_hit_carries_the_requested_id(model, tokens, tmp_path, calls):
    sae = _sae()
    _run(model, {"first": sae}, tokens, tmp_path)
    out = _run(model, {"renamed": sae}, tokens, tmp_path)
    assert len(calls) == 1
    assert out["renamed"].sae_id == "renamed"


def _changed_weights(m):
    m2 = _model()
    with torch.no_grad():
        m2.blocks[1].mlp.W_out[0, 0] += 1e-3
    return m2


@pytest.mark.parametrize(
    "change",
    [
        "model_weights",
        "model_config",
        "sae_weights",
        "sae_config",
        "one_token",
        "batch_size",
        "n_reconstruction_batches",
        "n_sparsity_batches",
        "excluded_tokens",
        "package_version",
        "torch_version",
    ],
)
def test_every_change_misses(change, model, tokens, tmp_path, calls, monkeypatch):
    sae = _sae()
    _run(model, {"a": sae}, tokens, tmp_path)
    m, s, t, settings = model, sae, tokens, SETTINGS
    if change == "model_weights":
        m = _changed_weights(model)
    elif change == "model_config":
        m = _model(act_fn="relu")  # same weights (same seed), other activation function
        assert all(torch.equal(p, q) for p, q in zip(m.parameters(), model.parameters()))
    elif change == "sae_weights":
        s = _sae()
        with torch.no_grad():
            s.b_dec[3] += 1e-4
    elif change == "sae_config":
        s = _sae()
        s.cfg.apply_b_dec_to_input = not s.cfg.apply_b_dec_to_input
    elif change == "one_token":
        t = tokens.clone()
        t[1, 5] = (t[1, 5] + 1) % 40
    elif change == "batch_size":
        settings = dataclasses.replace(SETTINGS, batch_size_prompts=1)
    elif change == "n_reconstruction_batches":
        settings = dataclasses.replace(SETTINGS, n_reconstruction_batches=1)
    elif change == "n_sparsity_batches":
        settings = dataclasses.replace(SETTINGS, n_sparsity_batches=1)
    elif change == "excluded_tokens":
        settings = dataclasses.replace(SETTINGS, exclude_special_tokens=(0, 5))
    elif change == "package_version":
        monkeypatch.setattr(pytest_saeval.versions, "__version__", "99.0.0")
    elif change == "torch_version":
        real = pytest_saeval.versions.dist_version
        monkeypatch.setattr(pytest_saeval.versions, "dist_version", lambda d: "0.0.1" if d == "torch" else real(d))
    _run(m, {"a": s}, t, tmp_path, settings=settings)
    assert len(calls) == 2, f"{change} must miss"


def test_rows_beyond_the_pass_do_not_matter(model, tokens, tmp_path, calls):
    sae = _sae()
    _run(model, {"a": sae}, tokens, tmp_path)
    longer = torch.cat([tokens, torch.randint(1, 40, (3, 8))])
    _run(model, {"a": sae}, longer, tmp_path)
    assert len(calls) == 1


def test_model_key_replaces_weight_hashing(model, tokens, tmp_path, calls, monkeypatch):
    sae = _sae()
    _run(model, {"a": sae}, tokens, tmp_path, model_key="model-v1")

    real = module_hash

    def boom(kind, obj):
        if kind == "model":
            raise AssertionError("weights hashed although a model_key was given")
        return real(kind, obj)

    monkeypatch.setattr("pytest_saeval.store.hashing.module_hash", boom)
    _run(model, {"a": sae}, tokens, tmp_path, model_key="model-v1")
    assert len(calls) == 1
    _run(model, {"a": sae}, tokens, tmp_path, model_key="model-v2")
    assert len(calls) == 2


def test_fingerprints_are_stable_and_sensitive(model):
    assert module_hash("model", model) == module_hash("model", model)
    assert module_hash("model", model) != module_hash("model", _changed_weights(model))
    a, b = _sae(seed=1), _sae(seed=1)
    assert module_hash("sae", a) == module_hash("sae", b)
    with torch.no_grad():
        b.W_enc[0, 0] = -b.W_enc[0, 0]
    assert module_hash("sae", a) != module_hash("sae", b)


def _entry_files(folder: Path) -> list[Path]:
    return sorted((folder / "results").rglob("*.safetensors"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped_byte", "empty"])
def test_corrupt_entry_is_recomputed_with_a_warning(damage, model, tokens, tmp_path, calls):
    saes = {"a": _sae()}
    good = _run(model, saes, tokens, tmp_path)["a"]
    (entry,) = _entry_files(tmp_path)
    data = entry.read_bytes()
    if damage == "garbage":
        entry.write_bytes(b"not a safetensors file")
    elif damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "flipped_byte":
        entry.write_bytes(data[:-9] + bytes([data[-9] ^ 0x40]) + data[-8:])
    else:
        entry.write_bytes(b"")
    with pytest.warns(CacheWarning, match="recomputing"):
        again = _run(model, saes, tokens, tmp_path)["a"]
    assert len(calls) == 2
    assert results_equal(good, again)
    # the entry was rewritten: the next call is a clean hit
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        _run(model, saes, tokens, tmp_path)
    assert len(calls) == 2


def test_entry_under_another_key_is_not_used(model, tokens, tmp_path, calls):
    a, b = _sae(seed=1), _sae(seed=2)
    _run(model, {"a": a}, tokens, tmp_path)
    _run(model, {"b": b}, tokens, tmp_path)
    first, second = _entry_files(tmp_path)
    second.write_bytes(first.read_bytes())  # a file copied under the wrong name
    with pytest.warns(CacheWarning, match="another key"):
        _run(model, {"a": a, "b": b}, tokens, tmp_path)


def _handmade_result(sae_id: str = "x") -> SAEResult:
    f64 = torch.float64
    count = torch.tensor([3.0, 0.0], dtype=f64)
    return SAEResult(
        sae_id=sae_id, hook_name="blocks.0.attn.hook_z", hook_head_index=2, d_in=4, d_sae=3,
        metrics={"l0": 1.25, "kl_div_score": math.nan, "mse": 1e-300, "ce_loss_score": -math.inf, "l1": 0.1 + 0.2},
        feature_metrics={"feature_density": [0.0, 0.5, 1 / 3], "consistent_activation_heuristic": [math.nan, 1.0, 2.0]},
        sequence_stats=SequenceStats(
            reconstruction={"kl_div_with_sae": SequenceSums(torch.tensor([0.1, 0.2], dtype=f64), count)},
            sparsity={"l0": SequenceSums(torch.tensor([math.nan, 7.0], dtype=f64), count),
                      "mse": SequenceSums(torch.tensor([1.5, -0.0], dtype=f64), count)},
            sum_x=torch.arange(8, dtype=f64).reshape(2, 4) / 7,
            sum_sq_norm=torch.tensor([2.0, 3.0], dtype=f64),
        ),
    )


def test_round_trip_is_exact(tmp_path):
    cache = ResultsCache(tmp_path)
    original = _handmade_result()
    cache.put("k" * 32, original)
    back = cache.get("k" * 32, "x")
    assert back is not None and results_equal(original, back)
    assert list(back.metrics) == list(original.metrics)
    assert back.metrics["l1"] == 0.1 + 0.2 and back.metrics["mse"] == 1e-300
    assert back.sequence_stats.sum_x.dtype == torch.float64
    assert torch.equal(back.sequence_stats.sum_x, original.sequence_stats.sum_x)
    renamed = cache.get("k" * 32, "y")
    assert renamed is not None and renamed.sae_id == "y"


def test_round_trip_of_an_engine_result(model, tokens, tmp_path):
    res = evaluate(model, {"a": _sae("blocks.0.hook_mlp_out")}, tokens, SETTINGS)["a"]
    cache = ResultsCache(tmp_path)
    cache.put("e" * 32, res)
    back = cache.get("e" * 32, "a")
    assert back is not None and results_equal(res, back)
    assert set(back.sequence_stats.reconstruction) == set(res.sequence_stats.reconstruction)


def test_entry_missing_a_requested_metric_misses(model, tokens, tmp_path, calls):
    saes = {"a": _sae()}
    out = _run(model, saes, tokens, tmp_path, metrics=["l0", "kl_div_score"])
    assert "average_max_encoder_cosine_sim" not in out["a"].metrics
    _run(model, saes, tokens, tmp_path, metrics=["l0"])
    assert len(calls) == 1
    full = _run(model, saes, tokens, tmp_path)  # all metrics: the stored entry lacks the cosines
    assert len(calls) == 2 and "average_max_encoder_cosine_sim" in full["a"].metrics


def test_failed_write_leaves_the_previous_entry(tmp_path, monkeypatch):
    cache = ResultsCache(tmp_path)
    cache.put("w" * 32, _handmade_result())
    path = cache.path("w" * 32)
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    changed = dataclasses.replace(_handmade_result(), metrics={"l0": 2.0})
    with pytest.raises(OSError, match="disk full"):
        cache.put("w" * 32, changed)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file may stay behind"


def test_concurrent_writers_and_readers_of_one_key(tmp_path):
    cache = ResultsCache(tmp_path)
    key = "c" * 32
    versions = [dataclasses.replace(_handmade_result(), metrics={"l0": float(i)}) for i in range(4)]
    errors: list[BaseException] = []
    seen: list[float] = []

    def writer(i: int) -> None:
        try:
            for _ in range(15):
                cache.put(key, versions[i])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(40):
                got = cache.get(key, "x")
                if got is not None:
                    seen.append(got.metrics["l0"])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # a reader must never see a partial file
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        threads += [threading.Thread(target=reader) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert not errors
    assert set(seen) <= {0.0, 1.0, 2.0, 3.0}
    final = cache.get(key, "x")
    assert final is not None and final.metrics["l0"] in {0.0, 1.0, 2.0, 3.0}
    assert [p.name for p in cache.path(key).parent.iterdir()] == [cache.path(key).name]


def test_a_run_without_the_cache_touches_nothing(model, tokens, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    first = fused_pass(model, {"a": _sae()}, tokens, SETTINGS, EngineOptions(), None)
    again = fused_pass(model, {"a": _sae()}, tokens, SETTINGS, EngineOptions(), None)
    assert results_equal(first["a"], again["a"])
    assert list(tmp_path.iterdir()) == []


def test_default_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_cache_dir() == tmp_path / ".saeval-cache"
    monkeypatch.setenv("SAEVAL_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"


def test_default_folder_is_used(model, tokens, tmp_path, monkeypatch):
    monkeypatch.delenv("SAEVAL_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    EvalCache(model_cache=False).evaluate(model, {"a": _sae()}, tokens, SETTINGS)
    assert len(_entry_files(tmp_path / ".saeval-cache")) == 1


def test_bad_input_is_reported_before_hashing(model, tmp_path):
    with pytest.raises(InputError, match="2-D"):
        _run(model, {"a": _sae()}, torch.zeros(8, dtype=torch.long), tmp_path)
    with pytest.raises(InputError, match="unknown metric 'l00'"):
        _run(model, {"a": _sae()}, torch.zeros(4, 8, dtype=torch.long), tmp_path, metrics=["l00"])
    with pytest.raises(InputError, match="unknown metric 'l00'"):
        EngineOptions(metrics=frozenset({"l00"}))
    assert not tmp_path.joinpath("results").exists()
