"""The fused schedule, proven by counting block calls (a count, not a timing)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from pytest_saeval import EngineOptions, EvalSettings, evaluate

N_LAYERS = 3


@pytest.fixture(scope="module")
def model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=N_LAYERS, d_model=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=50,
                                  n_ctx=8, act_fn="gelu")
    return HookedTransformer(cfg)


def _sae(hook: str, d_in: int = 16, d_sae: int = 24):
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae)
    cfg.metadata.hook_name = hook
    sae = StandardSAE(cfg)
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_(0, 0.2)
    return sae


def _count_block_calls(model, fn) -> Counter:
    counts: Counter = Counter()
    handles = [
        block.register_forward_pre_hook(lambda mod, args, i=i: counts.update([i]))
        for i, block in enumerate(model.blocks)
    ]
    unembed = model.unembed.register_forward_pre_hook(lambda mod, args: counts.update(["unembed"]))
    ln_final = model.ln_final.register_forward_pre_hook(lambda mod, args: counts.update(["head"]))
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
        unembed.remove()
        ln_final.remove()
    return counts


def test_two_saes_on_each_of_two_hooks(model):
    """2 SAEs on blocks.1 and 2 on blocks.2, 2 reconstruction + 3 sparsity batches.

    Per reconstruction batch: 1 clean forward (blocks 0,1,2); 1 ablation per hook (from block 1:
    blocks 1,2; from block 2: block 2); the spliced tails of the 2 SAEs on a hook run as ONE forward
    over their rows stacked along the batch (from block 1: blocks 1,2; from block 2: block 2) — the
    same per-row arithmetic as one tail per SAE, in fewer, larger operations (DESIGN §4 allows it).
    Per sparsity-only batch: blocks 0..2 (deepest needed block is 2).

    The forwards stop after the last block: the engine unembeds the clean run and all 6 variants of
    a batch together, stacked along the rows (one ``ln_final`` + unembedding step per chunk of
    positions; one chunk at this size), instead of one unembedding inside each of the 7 forwards.
    So ``model.unembed`` is never called and the head runs once per reconstruction batch.
    """
    saes = {
        "a1": _sae("blocks.1.hook_resid_pre"),
        "a2": _sae("blocks.1.hook_resid_pre"),
        "b1": _sae("blocks.2.hook_mlp_out"),
        "b2": _sae("blocks.2.hook_mlp_out"),
    }
    tokens = torch.randint(0, 50, (12, 8))
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=3,
                            exclude_special_tokens=False)
    counts = _count_block_calls(model, lambda: evaluate(model, saes, tokens, settings))
    per_recon_batch = Counter({0: 1, 1: 1 + 1 + 1, 2: 1 + 1 + 1 + 1 + 1, "head": 1})
    per_sparse_batch = Counter({0: 1, 1: 1, 2: 1})
    probe = Counter({0: 1, 1: 1, 2: 1})  # the 1x2-token shape check
    expected = Counter()
    for _ in range(2):
        expected.update(per_recon_batch)
    expected.update(per_sparse_batch)
    expected.update(probe)
    assert counts == expected


def test_sparsity_only_batches_stop_at_deepest_block(model):
    saes = {"a": _sae("blocks.0.hook_resid_post")}
    tokens = torch.randint(0, 50, (8, 8))
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=1, n_sparsity_batches=2,
                            exclude_special_tokens=False)
    counts = _count_block_calls(model, lambda: evaluate(model, saes, tokens, settings))
    # recon batch: clean (0,1,2) + ablation from 0 + splice from 0, then one stacked head step;
    # sparse-only batch and probe: block 0
    assert counts == Counter({0: 3 + 1 + 1, 1: 3, 2: 3, "head": 1})


def test_full_forward_path_gives_same_numbers(model):
    """The bridge-style path (no start_at_layer) and the fast path agree exactly in schedule results."""
    saes = {"a": _sae("blocks.1.hook_resid_pre"), "b": _sae("blocks.2.attn.hook_z", d_in=16)}
    tokens = torch.randint(0, 50, (8, 8))
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=2,
                            exclude_special_tokens=(0, 1))
    fast = evaluate(model, saes, tokens, settings, EngineOptions(use_start_at_layer=True))
    slow_counts = Counter()
    slow = {}

    def run():
        slow.update(evaluate(model, saes, tokens, settings, EngineOptions(use_start_at_layer=False)))

    slow_counts = _count_block_calls(model, run)
    # every variant forward is a full forward when start_at_layer is not used
    assert slow_counts[0] == 2 * (1 + 2 + 2) + 1
    for sae_id in saes:
        for name, value in fast[sae_id].metrics.items():
            assert slow[sae_id].metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name


def test_stacked_tails_match_one_sae_at_a_time(model):
    """Several SAEs on one hook share one stacked tail forward; each SAE's numbers are those it gets alone."""
    saes = {f"s{j}": _sae("blocks.1.hook_resid_pre") for j in range(3)}
    saes["z"] = _sae("blocks.1.attn.hook_z", d_in=16)
    tokens = torch.randint(0, 50, (8, 8))
    settings = EvalSettings(batch_size_prompts=4, n_reconstruction_batches=2, n_sparsity_batches=1,
                            exclude_special_tokens=(3,))
    together = evaluate(model, saes, tokens, settings)
    for sae_id, sae in saes.items():
        alone = evaluate(model, {sae_id: sae}, tokens, settings)[sae_id]
        for name, value in alone.metrics.items():
            assert together[sae_id].metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-7), (sae_id, name)
