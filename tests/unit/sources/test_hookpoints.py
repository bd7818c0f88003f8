"""Hooks of other trainers' checkpoints as TransformerLens hook names."""

from __future__ import annotations

import pytest

from pytest_saeval.sources.hookpoints import dictionary_learning_hook, sparsify_hook


@pytest.mark.parametrize(("hookpoint", "hook"), [
    ("layers.6", "blocks.6.hook_resid_post"),          # Llama / Pythia decoder block
    ("h.0", "blocks.0.hook_resid_post"),               # GPT-2
    ("layers.12.mlp", "blocks.12.hook_mlp_out"),
    ("h.3.mlp", "blocks.3.hook_mlp_out"),
    ("layers.2.self_attn", "blocks.2.hook_attn_out"),  # Llama
    ("layers.2.attention", "blocks.2.hook_attn_out"),  # Pythia
    ("h.1.attn", "blocks.1.hook_attn_out"),            # GPT-2
    ("language_model.layers.4", "blocks.4.hook_resid_post"),
    ("embed_tokens", "hook_embed"),
    ("wte", "hook_embed"),
    ("embed_in", "hook_embed"),
])
def test_sparsify_hookpoints(hookpoint, hook):
    assert sparsify_hook(hookpoint) == hook


@pytest.mark.parametrize("hookpoint", ["layers.6.mlp.act_fn", "layers.6.post_attention_layernorm", "norm",
                                       "layers.x", "layers.6.mlp.down_proj", "blocks.6"])
def test_sparsify_hookpoints_without_one_hook(hookpoint):
    assert sparsify_hook(hookpoint) is None


@pytest.mark.parametrize(("submodule", "layer", "hook"), [
    ("resid_post_layer_3", 3, "blocks.3.hook_resid_post"),
    ("resid_out_layer3", 3, "blocks.3.hook_resid_post"),
    ("mlp_out_layer_0", 0, "blocks.0.hook_mlp_out"),
    ("attn_out_layer_1", None, "blocks.1.hook_attn_out"),
    ("resid_pre_layer_2", 2, "blocks.2.hook_resid_pre"),
])
def test_dictionary_learning_submodule_names(submodule, layer, hook):
    found, how = dictionary_learning_hook(submodule, layer, ("trainer_0", "anything"))
    assert found == hook and submodule in how


def test_dictionary_learning_run_folder_name_when_no_submodule_name():
    assert dictionary_learning_hook(None, 5, ("trainer_2", "mlp_out_layer_5"))[0] == "blocks.5.hook_mlp_out"


@pytest.mark.parametrize(("submodule", "layer", "folders", "why"), [
    (None, 3, ("trainer_0", "run"), "trainer.layer is 3, but neither trainer.submodule_name nor a run folder"),
    ("model.layers.3", 3, (), "does not name a hook this loader knows"),
    ("resid_post_layer_4", 3, (), "says layer 4 but trainer.layer is 3"),
    (None, 3, ("resid_post_layer_2",), "says layer 2 but trainer.layer is 3"),
])
def test_dictionary_learning_ambiguous_hooks(submodule, layer, folders, why):
    found, how = dictionary_learning_hook(submodule, layer, folders)
    assert found is None and why in how
