"""The model-side cache: a new SAE on a known model and token set gets the numbers of a cold pass."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import pytest
import torch

from pytest_saeval import EvalSettings, evaluate
from pytest_saeval.engine.evaluate import EngineOptions, Scoring, run_pass
from pytest_saeval.engine.inputs import as_token_tensor
from pytest_saeval.engine.records import ModelRecords
from pytest_saeval.store.cached import EvalCache
from pytest_saeval.store.entries import CacheWarning
from pytest_saeval.store.model import ModelCache
from tests.helpers import results_equal


def _pass(model, saes, tokens, settings, store=None, *, by_summary=False, **options):
    """One engine pass with a model-side store (and its scoring through the clean summary)."""
    return run_pass(model, saes, as_token_tensor(tokens), settings, EngineOptions(**options),
                    Scoring(store=store, by_summary=by_summary))


def _cached(model, saes, tokens, settings, folder, model_cache):
    """``evaluate`` through the caches of ``folder``."""
    return EvalCache(folder, model_cache=model_cache).evaluate(model, saes, tokens, settings)

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread avoids thread hand-offs that dominate on a busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


N_LAYERS = 3
VOCAB = 50


@pytest.fixture(scope="module")
def model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=N_LAYERS, d_model=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=VOCAB,
                                  n_ctx=8, act_fn="gelu_new", normalization_type="LN")
    return HookedTransformer(cfg)


def _sae(hook: str, seed: int, d_in: int = 16, head: int | None = None, arch: str = "standard"):
    from sae_lens import SAE

    cfg = {"architecture": arch, "d_in": d_in, "d_sae": 24, "metadata": {"hook_name": hook}}
    if head is not None:
        cfg["metadata"]["hook_head_index"] = head
    if arch == "topk":
        cfg["k"] = 5
    sae = SAE.from_dict(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return sae


HOOKS = {
    "resid_pre": ("blocks.1.hook_resid_pre", None, 16),
    "resid_post": ("blocks.0.hook_resid_post", None, 16),
    "mlp_out": ("blocks.2.hook_mlp_out", None, 16),
    "z": ("blocks.1.attn.hook_z", None, 16),
    "z_head": ("blocks.1.attn.hook_z", 2, 4),
}


def _saes(seed: int, kinds=tuple(HOOKS)) -> dict[str, object]:
    out = {}
    for j, kind in enumerate(kinds):
        hook, head, d_in = HOOKS[kind]
        out[f"{kind}-{seed}"] = _sae(hook, seed * 100 + j, d_in=d_in, head=head)
    return out


def _tokens(n_rows: int = 12) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    t = torch.randint(2, VOCAB, (n_rows, 8), generator=gen)
    t[:, 0] = 0
    return t


def _assert_same(warm: dict, cold: dict) -> None:
    for sae_id, expected in cold.items():
        assert results_equal(warm[sae_id], expected), sae_id


def _is_loss_metric(name: str) -> bool:
    return name.startswith(("kl_div", "ce_loss"))


def _assert_close(warm: dict, cold: dict) -> None:
    """A pass on stored records with the clean summary: the SAE's KL/CE come from the summary
    (within the parity tolerance of a cold pass: float rounding), every other number is identical."""
    for sae_id, expected in cold.items():
        got = warm[sae_id]
        assert list(got.metrics) == list(expected.metrics)
        for name, value in expected.metrics.items():
            if _is_loss_metric(name):
                assert got.metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-6, nan_ok=True), (sae_id, name)
            else:
                assert got.metrics[name] == value or (math.isnan(value) and math.isnan(got.metrics[name])), name
        assert list(got.feature_metrics) == list(expected.feature_metrics)
        for name, values in expected.feature_metrics.items():
            assert torch.equal(torch.tensor(got.feature_metrics[name]).nan_to_num(-7.0),
                               torch.tensor(values).nan_to_num(-7.0)), name
        ss, se = got.sequence_stats, expected.sequence_stats
        assert list(ss.sparsity) == list(se.sparsity) and list(ss.reconstruction) == list(se.reconstruction)
        for name in se.sparsity:
            assert torch.equal(ss.sparsity[name].sums, se.sparsity[name].sums), name
        for name in se.reconstruction:
            assert torch.equal(ss.reconstruction[name].counts, se.reconstruction[name].counts), name
            assert torch.allclose(ss.reconstruction[name].sums, se.reconstruction[name].sums, rtol=1e-5, atol=1e-5)


def _blocks_called(model, fn) -> Counter:
    counts: Counter = Counter()
    handles = [b.register_forward_pre_hook(lambda mod, args, i=i: counts.update([i]))
               for i, b in enumerate(model.blocks)]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return counts


class _SpyStore:
    """A ModelStore that keeps records in a dict and counts loads and saves."""

    def __init__(self) -> None:
        self.records: ModelRecords | None = None
        self.loads = 0
        self.saves = 0

    def load(self, hooks):
        self.loads += 1
        if self.records is None or not all(h in self.records.hooks for h in hooks):
            return None
        return ModelRecords(final_resid=self.records.final_resid, hooks={h: self.records.hooks[h] for h in hooks},
                            clean=self.records.clean)

    def save(self, records):
        self.saves += 1
        self.records = records


@pytest.mark.parametrize(
    "settings",
    [
        EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=2, exclude_special_tokens=(0,)),
        EvalSettings(batch_size_prompts=3, n_reconstruction_batches=1, n_sparsity_batches=4, exclude_special_tokens=False),
        EvalSettings(batch_size_prompts=4, n_reconstruction_batches=3, n_sparsity_batches=1, exclude_special_tokens=(0, 7)),
    ],
    ids=["equal", "more-sparsity", "more-reconstruction"],
)
def test_new_saes_on_warm_records_equal_a_cold_pass(model, settings):
    """Warm records give the bits of a cold pass with a store (both score SAEs through the clean
    summary), and a plain pass (direct KL / CE) to float rounding."""
    tokens = _tokens()
    store = _SpyStore()
    _pass(model, _saes(1), tokens, settings, store)
    assert store.saves == 1 and store.records is not None and store.records.clean is not None
    new = _saes(2)
    cold = _pass(model, new, tokens, settings, _SpyStore())
    warm = _pass(model, new, tokens, settings, store)
    assert store.saves == 1, "a hit writes nothing"
    _assert_same(warm, cold)
    _assert_close(warm, evaluate(model, new, tokens, settings))


def test_an_sae_scores_the_same_alone_or_with_others(model):
    """Through a store, an SAE's numbers do not depend on which SAEs share its pass."""
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=2,
                            exclude_special_tokens=(0,))
    tokens = _tokens()
    many = _saes(4)
    together = _pass(model, many, tokens, settings, _SpyStore())
    for sae_id, sae in many.items():
        alone = _pass(model, {sae_id: sae}, tokens, settings, _SpyStore())
        _assert_same(alone, {sae_id: together[sae_id]})


def test_warm_pass_runs_only_the_sae_tails(model):
    """With records, no clean forward and no ablation forward run: only the probe and the SAE tails."""
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=2,
                            exclude_special_tokens=False)
    tokens = _tokens()
    store = _SpyStore()
    _pass(model, {"old": _sae("blocks.1.hook_resid_pre", 1)}, tokens, settings, store)
    new = {"new": _sae("blocks.1.hook_resid_pre", 2)}
    counts = _blocks_called(model, lambda: _pass(model, new, tokens, settings, store))
    # probe (shape check, blocks 0..1) + one tail from block 1 per reconstruction batch (blocks 1, 2)
    assert counts == Counter({0: 1, 1: 1 + 2, 2: 2})


def test_records_hold_no_logits(model):
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=3,
                            exclude_special_tokens=False)
    store = _SpyStore()
    _pass(model, _saes(1, ("resid_pre", "mlp_out")), _tokens(), settings, store)
    rec = store.records
    assert rec is not None
    assert tuple(rec.final_resid.shape) == (8, 8, 16)
    resid = rec.hooks[("blocks.1.hook_resid_pre", None)]
    assert resid.block_resid is None, "for hook_resid_pre the activation is the block entry"
    mlp = rec.hooks[("blocks.2.hook_mlp_out", None)]
    assert tuple(mlp.acts.shape) == (12, 8, 16) and tuple(mlp.block_resid.shape) == (8, 8, 16)
    assert tuple(mlp.ablation_kl.shape) == (8, 8) and tuple(mlp.ablation_ce.shape) == (8, 7)
    assert all(t.device.type == "cpu" for t in (rec.final_resid, mlp.acts, mlp.ablation_kl))


def test_missing_hook_runs_cold_and_saves_all(model):
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=1, n_sparsity_batches=1,
                            exclude_special_tokens=False)
    tokens = _tokens()
    store = _SpyStore()
    _pass(model, _saes(1, ("resid_pre",)), tokens, settings, store)
    both = _saes(2, ("resid_pre", "mlp_out"))
    cold = _pass(model, both, tokens, settings, _SpyStore())
    out = _pass(model, both, tokens, settings, store)
    assert store.saves == 2
    assert set(store.records.hooks) == {("blocks.1.hook_resid_pre", None), ("blocks.2.hook_mlp_out", None)}
    _assert_same(out, cold)


def test_records_of_other_rows_are_not_used(model):
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=1, n_sparsity_batches=1,
                            exclude_special_tokens=False)
    store = _SpyStore()
    _pass(model, _saes(1, ("resid_pre",)), _tokens(), settings, store)
    bigger = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=2,
                          exclude_special_tokens=False)
    new = _saes(2, ("resid_pre",))
    out = _pass(model, new, _tokens(), bigger, store)  # shapes do not fit: recomputed
    _assert_same(out, _pass(model, new, _tokens(), bigger, _SpyStore()))


def test_full_forward_path_ignores_the_store(model):
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=1, n_sparsity_batches=1,
                            exclude_special_tokens=False)
    store = _SpyStore()
    _pass(model, _saes(1, ("resid_pre",)), _tokens(), settings, store, use_start_at_layer=False)
    assert store.loads == 0 and store.saves == 0


@pytest.mark.parametrize("tier", ["memory", "disk"])
def test_cached_new_sae_memory_and_disk(model, tmp_path, tier):
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=3,
                            exclude_special_tokens=(0,))
    tokens = _tokens()
    cache = ModelCache(tmp_path)
    _cached(model, _saes(1), tokens, settings, tmp_path, cache)
    files = sorted(p.name for p in (tmp_path / "model").rglob("*.safetensors"))
    assert files[0] == "clean.safetensors" and len(files) == 1 + len(HOOKS)
    if tier == "disk":
        cache.clear_memory()
    new = _saes(3)
    cold = _pass(model, new, tokens, settings, _SpyStore())
    warm: dict = {}
    calls = _blocks_called(model, lambda: warm.update(
        _cached(model, new, tokens, settings, tmp_path, cache)))
    # block 0 runs for the shape probe and for the resid_post SAE's tail (its hook is in block 0), once
    # per reconstruction batch; a cold pass would add the clean forward and the ablation of that hook
    assert calls[0] == 1 + settings.n_reconstruction_batches
    _assert_same(warm, cold)
    _assert_close(warm, evaluate(model, new, tokens, settings))


def test_corrupt_model_side_file_is_recomputed_with_a_warning(model, tmp_path):
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=1, n_sparsity_batches=1,
                            exclude_special_tokens=False)
    tokens = _tokens()
    cache = ModelCache(tmp_path, memory_bytes=0)
    _cached(model, _saes(1, ("mlp_out",)), tokens, settings, tmp_path, cache)
    (hook_file,) = (tmp_path / "model").rglob("hook-*.safetensors")
    data = hook_file.read_bytes()
    hook_file.write_bytes(data[: len(data) - 20])
    new = _saes(2, ("mlp_out",))
    with pytest.warns(CacheWarning, match="recomputing"):
        out = _cached(model, new, tokens, settings, tmp_path, cache)
    _assert_same(out, _pass(model, new, tokens, settings, _SpyStore()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        _cached(model, _saes(3, ("mlp_out",)), tokens, settings, tmp_path, cache)


def test_memory_tier_budget(tmp_path, model):
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=1, n_sparsity_batches=1,
                            exclude_special_tokens=False)
    tokens = _tokens()
    off = ModelCache(tmp_path / "off", memory_bytes=0)
    _cached(model, _saes(1, ("mlp_out",)), tokens, settings, tmp_path / "off", off)
    assert off._used == 0 and not off._memory
    small = ModelCache(tmp_path / "small", memory_bytes=3000, disk=False)
    _cached(model, _saes(1, ("resid_pre", "mlp_out")), tokens, settings, tmp_path / "small", small)
    assert 0 < small._used <= 3000, "least recently used parts are dropped to stay within the budget"


def test_model_change_misses_the_model_side(tmp_path, model):
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=1, n_sparsity_batches=1,
                            exclude_special_tokens=False)
    tokens = _tokens()
    cache = ModelCache(tmp_path)
    _cached(model, _saes(1, ("resid_pre",)), tokens, settings, tmp_path, cache)
    from transformer_lens import HookedTransformer

    other = HookedTransformer(model.cfg)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.blocks[2].mlp.W_in[0, 0] += 0.5
    new = _saes(2, ("resid_pre",))
    warm: dict = {}
    counts = _blocks_called(other, lambda: warm.update(
        _cached(other, new, tokens, settings, tmp_path, cache)))
    assert counts[0] == 2, "probe + a clean forward: the changed model's records are computed afresh"
    _assert_same(warm, _pass(other, new, tokens, settings, _SpyStore()))


def test_records_keep_a_clean_summary_and_never_the_logits(model, tmp_path):
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=2,
                            exclude_special_tokens=False)
    tokens = _tokens()
    keys = [("blocks.1.hook_resid_pre", None)]
    cache = ModelCache(tmp_path)
    _cached(model, _saes(1, ("resid_pre",)), tokens, settings, tmp_path, cache)
    (context,) = [p.name for p in (tmp_path / "model").iterdir()]
    rec = cache.bind(context).load(keys)
    assert rec is not None and rec.clean is not None
    k = min(32, VOCAB)
    assert tuple(rec.clean.top_index.shape) == (8, 8, k) and rec.clean.top_index.dtype == torch.long
    assert tuple(rec.clean.tail_moment.shape) == (8, 8, 16) and rec.clean.lse.dtype == torch.float64
    # the summary describes the clean logits: top tokens and probabilities, lse, CE
    logits = model(tokens[:8]).double()
    probs = torch.softmax(logits, dim=-1)
    assert torch.allclose(rec.clean.lse, torch.logsumexp(logits, dim=-1), atol=1e-5)
    assert torch.allclose(rec.clean.top_prob.double(), probs.topk(k, dim=-1).values, atol=1e-6)
    ce = -torch.log_softmax(logits, -1)[:, :-1].gather(-1, tokens[:8, 1:, None])[..., 0]
    assert torch.allclose(rec.clean.ce[:, :-1].double(), ce, atol=1e-5)
    # from disk the same tensors come back; nothing of vocabulary size is stored
    cache.clear_memory()
    again = cache.bind(context).load(keys)
    assert again is not None and torch.equal(again.clean.tail_moment, rec.clean.tail_moment)
    assert torch.equal(again.clean.top_index, rec.clean.top_index)
    from safetensors.torch import load_file

    for path in (tmp_path / "model").rglob("*.safetensors"):
        assert all(VOCAB not in t.shape[2:] for t in load_file(path).values()), path


def test_soft_capped_model_records_no_summary_and_warm_equals_cold(tmp_path):
    """Logits ``cap·tanh(z/cap)`` are not linear in the residual: no summary; the warm pass unembeds
    the stored final residual again and matches a cold pass bit for bit."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(1)
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=VOCAB, n_ctx=8,
                                  act_fn="gelu_new", normalization_type="LN", output_logits_soft_cap=3.0)
    capped = HookedTransformer(cfg)
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=2,
                            exclude_special_tokens=False)
    tokens = _tokens()
    store = _SpyStore()
    _pass(capped, {"a": _sae("blocks.1.hook_resid_pre", 1)}, tokens, settings, store)
    assert store.records is not None and store.records.clean is None
    new = {"b": _sae("blocks.1.hook_resid_pre", 2)}
    _assert_same(_pass(capped, new, tokens, settings, store), evaluate(capped, new, tokens, settings))


def test_summary_scoring_does_not_depend_on_the_cache(model, tmp_path):
    """The caches score through the clean summary (with or without the model-side cache), so a stored
    result is the one a fresh pass with that scoring gives; direct scoring (``evaluate``, SAE Lens's
    arithmetic) agrees to float rounding."""
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=1, n_sparsity_batches=1,
                            exclude_special_tokens=False)
    tokens = _tokens()
    saes = _saes(1, ("resid_pre",))
    direct = evaluate(model, saes, tokens, settings)
    summary = _cached(model, saes, tokens, settings, tmp_path, False)
    assert len(list((tmp_path / "results").rglob("*.safetensors"))) == 1
    _assert_same(summary, _pass(model, saes, tokens, settings, by_summary=True))
    _assert_same(summary, _pass(model, saes, tokens, settings, _SpyStore()))
    _assert_close(summary, direct)
    again = _cached(model, saes, tokens, settings, tmp_path, ModelCache(tmp_path))
    assert len(list((tmp_path / "results").rglob("*.safetensors"))) == 1, "a hit: same scoring, same key"
    _assert_same(again, summary)
