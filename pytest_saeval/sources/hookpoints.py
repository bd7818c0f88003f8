"""The TransformerLens hook a checkpoint of another trainer reads, from the names that trainer records.

- EleutherAI sparsify names the Hugging Face module it hooked (the module's output) in the checkpoint
  folder's name: ``layers.6`` / ``h.6`` (a decoder block: the residual stream after it),
  ``layers.6.mlp`` (the MLP's output), ``layers.6.self_attn`` / ``.attention`` / ``h.6.attn`` (the
  attention output), ``embed_tokens`` / ``wte`` / ``embed_in`` (the token embedding).
- dictionary_learning records ``trainer.layer`` and ``trainer.submodule_name``, by convention
  ``resid_post_layer_6``, ``mlp_out_layer_6``, ``attn_out_layer_6`` (its run folders use the same names).

Anything else (a module inside the MLP, a layer norm, a name that disagrees with ``layer``) has no
unambiguous hook: the caller then asks for ``hook_name:`` in the suite entry.

The attention and MLP outputs map onto ``hook_attn_out`` / ``hook_mlp_out``, which hold the module's output
on most models. Where TransformerLens normalizes that output before the hook (:func:`post_norm_before`:
Gemma 2 and 3's ``ln1_post`` / ``ln2_post``, the post-norm OLMo 2 and 3), the Hugging Face module's output
has no TransformerLens hook, and a mapped hook is refused once the model is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["MappedHook", "dictionary_learning_hook", "post_norm_before", "sparsify_hook"]


@dataclass(frozen=True)
class MappedHook:
    """The TransformerLens hook a checkpoint of another trainer reads, mapped from the names it records."""

    hook: str
    """The TransformerLens hook, e.g. ``blocks.6.hook_mlp_out``."""
    checkpoint: str
    """The checkpoint, for messages: ``the sparsify checkpoint '/runs/r/layers.6.mlp'``."""
    source: str
    """The name it was mapped from, for messages: ``its folder name 'layers.6.mlp'``,
    ``trainer.submodule_name 'mlp_out_layer_6'``."""

_HOOK_OF_KIND = {
    "resid_pre": "hook_resid_pre",
    "resid_post": "hook_resid_post",
    "resid_out": "hook_resid_post",
    "mlp_out": "hook_mlp_out",
    "attn_out": "hook_attn_out",
}

_SPARSIFY_BLOCK = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?:layers|h)\.(\d+)(?:\.(mlp|attn|self_attn|attention))?$")
_SPARSIFY_EMBED = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?:embed_tokens|wte|embed_in)$")
_SPARSIFY_KIND = {None: "resid_post", "mlp": "mlp_out", "attn": "attn_out", "self_attn": "attn_out",
                  "attention": "attn_out"}

_DL_NAME = re.compile(r"^(resid_pre|resid_post|resid_out|mlp_out|attn_out)_layer_?(\d+)$")


def sparsify_hook(hookpoint: str) -> str | None:
    """The TransformerLens hook of a sparsify hookpoint (``layers.6`` -> ``blocks.6.hook_resid_post``),
    or None when the name maps to no hook unambiguously."""
    if _SPARSIFY_EMBED.match(hookpoint):
        return "hook_embed"
    m = _SPARSIFY_BLOCK.match(hookpoint)
    if m is None:
        return None
    return f"blocks.{int(m.group(1))}.{_HOOK_OF_KIND[_SPARSIFY_KIND[m.group(2)]]}"


def dictionary_learning_hook(submodule_name: str | None, layer: int | None,
                             folder_names: Iterable[str]) -> tuple[str | None, str]:
    """The TransformerLens hook of a dictionary_learning trainer and how it was found, or ``(None, why not)``.

    ``submodule_name`` decides when it follows the ``<kind>_layer_<N>`` convention; without one, the
    first run-folder name that does (``folder_names``, innermost first). Its layer must agree with
    ``layer`` when both are known.
    """
    source, m = None, None
    if submodule_name:
        m, source = _DL_NAME.match(submodule_name), f"trainer.submodule_name {submodule_name!r}"
        if m is None:
            return None, f"{source} does not name a hook this loader knows (resid_post_layer_N, mlp_out_layer_N, ...)"
    else:
        for name in folder_names:
            m = _DL_NAME.match(name)
            if m is not None:
                source = f"the run folder name {name!r}"
                break
    if m is None:
        where = f"trainer.layer is {layer}" if layer is not None else "the config names no layer"
        return None, (f"{where}, but neither trainer.submodule_name nor a run folder name says which hook of the "
                      "block it read (residual stream, MLP output or attention output)")
    kind, n = m.group(1), int(m.group(2))
    if layer is not None and n != layer:
        return None, f"{source} says layer {n} but trainer.layer is {layer}"
    return f"blocks.{n}.{_HOOK_OF_KIND[kind]}", str(source)


_POST_NORM_ARCHITECTURES = frozenset({"Olmo2ForCausalLM", "Olmo3ForCausalLM"})
"""TransformerLens 3.9's ``POST_NORM_ARCHITECTURES``: ``ln1`` / ``ln2`` normalize the attention / MLP output."""


def _post_norm_architectures() -> frozenset[str]:
    try:
        from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES
    except ImportError:  # a TransformerLens without the list: the architectures it had in 3.9
        return _POST_NORM_ARCHITECTURES
    return _POST_NORM_ARCHITECTURES | frozenset(POST_NORM_ARCHITECTURES)


def post_norm_before(hook: str, model_cfg: Any, hooks: Iterable[str] = ()) -> str | None:
    """The norm TransformerLens applies to a block's attention or MLP output before ``hook`` (a
    ``blocks.N.hook_attn_out`` / ``hook_mlp_out``) on a model of config ``model_cfg`` and hook names
    ``hooks``, as ``blocks.N.<norm>``; None when the hook holds the module's output as is.

    With ``use_normalization_before_and_after`` (Gemma 2 and 3) ``ln1_post`` / ``ln2_post`` come before the
    hook (a ``TransformerBridge`` shows them among its hooks, ``blocks.N.ln2_post.hook_out``); on the
    post-norm architectures (OLMo 2 and 3) ``ln1`` / ``ln2`` do."""
    m = re.fullmatch(r"blocks\.(\d+)\.hook_(attn|mlp)_out", hook)
    if m is None:
        return None
    after = f"blocks.{m.group(1)}.{'ln1' if m.group(2) == 'attn' else 'ln2'}"
    if getattr(model_cfg, "use_normalization_before_and_after", False) is True \
            and getattr(model_cfg, "normalization_type", None) is not None:  # None: the norm after is the identity
        return f"{after}_post"
    if any(name.startswith(f"{after}_post.") for name in hooks):
        return f"{after}_post"
    architecture = getattr(model_cfg, "original_architecture", None)
    if isinstance(architecture, str) and architecture in _post_norm_architectures():
        return after
    return None
