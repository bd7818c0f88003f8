"""The model's forwards in the fused pass: the clean capture, and variant forwards from the hook's block that
give what a full forward with the same hook gives; a zeroed residual stream on one position; stacked tails."""

from __future__ import annotations

import pytest
import torch

from pytest_saeval.engine import forwards as forwards_module
from pytest_saeval.engine.forwards import Forwards
from pytest_saeval.engine.hooks import Group, ablate
from pytest_saeval.engine.records import entry_name

N_LAYERS, D, V, T = 3, 16, 40, 6


@pytest.fixture(scope="module")
def model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=N_LAYERS, d_model=D, d_head=4, n_heads=4, d_mlp=32, d_vocab=V, n_ctx=8,
                                  act_fn="gelu")
    return HookedTransformer(cfg).eval()


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(0))


RESID = Group("blocks.1.hook_resid_pre", None, 1, ("a",))
MLP = Group("blocks.1.hook_mlp_out", None, 1, ("b",))


def _full(model, tokens, hook: str, fn) -> torch.Tensor:
    """The full forward with ``fn`` on ``hook``, stopped after the last block."""
    return model.run_with_hooks(tokens, fwd_hooks=[(hook, fn)], stop_at_layer=N_LAYERS).reshape(-1, D)


def test_the_deepest_needed_block_bounds_sparsity_batches(model) -> None:
    assert Forwards(model, [RESID, MLP], fast=True).stop_layer == 2
    assert Forwards(model, [RESID, Group("hook_embed", None, None, ("e",))], fast=True).stop_layer is None
    assert Forwards(model, [RESID], fast=False).resid_head is False


@torch.no_grad()
def test_the_clean_capture_gives_the_final_residual_and_each_hook_and_block_entry(model, tokens) -> None:
    fw = Forwards(model, [MLP], fast=True)
    final, captured = fw.capture(tokens, full=True)
    assert torch.allclose(final, model(tokens, stop_at_layer=N_LAYERS))
    _, cache = model.run_with_cache(tokens)
    assert set(captured) == {MLP.hook_name, entry_name(1)}
    assert torch.equal(captured[MLP.hook_name], cache[MLP.hook_name])
    none, partial = fw.capture(tokens, full=False)
    assert none is None and torch.equal(partial[MLP.hook_name], cache[MLP.hook_name])
    slow_final, slow = Forwards(model, [MLP], fast=False).capture(tokens, full=True)
    assert slow_final.shape == (2, T, V) and set(slow) == {MLP.hook_name}  # logits; no block entries needed


@torch.no_grad()
@pytest.mark.parametrize("group", [RESID, MLP], ids=["resid", "mlp"])
def test_a_variant_from_the_hooks_block_is_the_full_forward_with_that_hook(model, tokens, group: Group) -> None:
    fw = Forwards(model, [group], fast=True)
    _, captured = fw.capture(tokens, full=True)

    def halve(act, hook):
        return act * 0.5

    got = fw.variant(tokens, group, captured, halve, None)
    assert torch.allclose(got, _full(model, tokens, group.hook_name, halve), atol=1e-5)


@torch.no_grad()
def test_a_zeroed_residual_stream_runs_on_one_position(model, tokens) -> None:
    fw = Forwards(model, [RESID], fast=True)
    _, captured = fw.capture(tokens, full=True)
    one = fw.ablation(tokens, RESID, captured, None)
    assert one.shape == (1, D)
    every = _full(model, tokens, RESID.hook_name, lambda act, hook: ablate(act, None))
    assert torch.allclose(every, one.expand_as(every), atol=1e-5)  # every position ends equal
    mlp_fw = Forwards(model, [MLP], fast=True)
    _, cap = mlp_fw.capture(tokens, full=True)
    assert mlp_fw.ablation(tokens, MLP, cap, None).shape == (2 * T, D)  # not a residual hook: every position


@torch.no_grad()
def test_stacked_tails_give_each_replacement_its_own_forward(model, tokens, monkeypatch: pytest.MonkeyPatch) -> None:
    fw = Forwards(model, [MLP], fast=True)
    _, captured = fw.capture(tokens, full=True)
    gen = torch.Generator().manual_seed(1)
    replacements = [torch.randn(2, T, D, generator=gen) for _ in range(3)]
    monkeypatch.setattr(forwards_module, "TAIL_POSITIONS", 2 * 2 * T)  # two replacements per forward
    stacked = list(fw.spliced(tokens, MLP, captured, replacements, None))
    assert len(stacked) == 3
    for out, r in zip(stacked, replacements):
        assert torch.allclose(out, _full(model, tokens, MLP.hook_name, lambda act, hook, r=r: r), atol=1e-5)


def test_no_padding_mask_without_a_left_padding_tokenizer(model, tokens) -> None:
    assert Forwards(model, [RESID], fast=True).attention_mask(tokens) is None
