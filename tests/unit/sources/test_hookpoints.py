"""Hooks of other trainers' checkpoints as TransformerLens hook names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_saeval.sources.hookpoints import dictionary_learning_hook, post_norm_before, sparsify_hook


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


GEMMA2 = SimpleNamespace(use_normalization_before_and_after=True, normalization_type="RMS",
                         original_architecture="Gemma2ForCausalLM")
OLMO2 = SimpleNamespace(use_normalization_before_and_after=False, normalization_type="RMS",
                        original_architecture="Olmo2ForCausalLM")
GPT2 = SimpleNamespace(use_normalization_before_and_after=False, normalization_type="LN",
                       original_architecture="GPT2LMHeadModel")


@pytest.mark.parametrize(("hook", "cfg", "norm"), [
    ("blocks.3.hook_mlp_out", GEMMA2, "blocks.3.ln2_post"),   # TransformerLens: hook_mlp_out(ln2_post(mlp(...)))
    ("blocks.0.hook_attn_out", GEMMA2, "blocks.0.ln1_post"),
    ("blocks.1.hook_mlp_out", OLMO2, "blocks.1.ln2"),          # POST_NORM_ARCHITECTURES: ln2 before hook_mlp_out
    ("blocks.1.hook_attn_out", OLMO2, "blocks.1.ln1"),
    ("blocks.1.hook_resid_post", GEMMA2, None),               # the decoder layer's output is the residual stream
    ("hook_embed", GEMMA2, None),
    ("blocks.1.hook_mlp_out", GPT2, None),
    ("blocks.1.hook_mlp_out", SimpleNamespace(use_normalization_before_and_after=True, normalization_type=None), None),
    ("blocks.1.hook_mlp_out", None, None),                    # a model without a TransformerLens config
])
def test_hooks_that_post_norm_models_normalize(hook, cfg, norm):
    assert post_norm_before(hook, cfg) == norm


def test_a_post_norm_shown_among_the_hooks_counts():
    """A TransformerBridge of Gemma 2 names the norm's hooks (its hook_mlp_out is ln2_post.hook_out)."""
    hooks = ["blocks.2.ln2_post.hook_in", "blocks.2.ln2_post.hook_out", "blocks.2.hook_mlp_out"]
    assert post_norm_before("blocks.2.hook_mlp_out", SimpleNamespace(), hooks) == "blocks.2.ln2_post"
    assert post_norm_before("blocks.2.hook_attn_out", SimpleNamespace(), hooks) is None
    assert post_norm_before("blocks.1.hook_mlp_out", SimpleNamespace(), hooks) is None


def test_the_post_norm_conditions_are_transformer_lens_own():
    """The rules follow TransformerLens's TransformerBlock: its hook_attn_out / hook_mlp_out sit after
    ln1_post / ln2_post when use_normalization_before_and_after is set, and after ln1 / ln2 on its
    POST_NORM_ARCHITECTURES."""
    import inspect

    from transformer_lens.components import transformer_block
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    assert all(post_norm_before("blocks.0.hook_mlp_out", SimpleNamespace(original_architecture=a)) == "blocks.0.ln2"
               for a in POST_NORM_ARCHITECTURES)
    source = inspect.getsource(transformer_block.TransformerBlock)
    assert "attn_out = self.ln1_post(attn_out)" in source and "mlp_out = self.ln2_post(mlp_out)" in source
