"""dictionary_learning checkpoints (a ``trainer_N`` folder: ``config.json`` + ``ae.pt``) as SAE Lens SAEs.

``config.json`` holds ``{"trainer": {"dict_class", "activation_dim", "dict_size", "layer", "lm_name",
"submodule_name", "k", ...}, "buffer": {"ctx_len", ...}}``; ``ae.pt`` is the dictionary's state dict,
read with ``torch.load(weights_only=True)`` (a file that needs more than tensors is refused, never
unpickled). The mapping is SAE Lens's own for dictionary_learning releases on the hub
(``get_dictionary_learning_config_1_from_hf`` and ``dictionary_learning_sae_huggingface_loader_1``),
done here for a local folder:

=========================  ==========  =======================================================  ===============
``dict_class``             SAE Lens    dictionary_learning's inference forward                  b_dec from input
=========================  ==========  =======================================================  ===============
``AutoEncoder``            standard    ``relu(encoder(x - bias))``, ``decoder(f) + bias``       subtracted
``AutoEncoderNew``         standard    ``relu(encoder(x))``, ``decoder(f)`` (both with biases)  not subtracted
``AutoEncoderTopK``        topk        per-token top ``k`` of ``relu(encoder(x - b_dec))``      subtracted
``BatchTopKSAE``           jumprelu    ``relu(encoder(x - b_dec))`` kept where ``> threshold``   subtracted
``MatryoshkaBatchTopKSAE`` jumprelu    as BatchTopK, with ``W_enc``/``W_dec`` parameters         subtracted
``JumpReluAutoEncoder``    jumprelu    ``relu(pre * (pre > threshold))``, ``pre = x W_enc + b``  not subtracted
``GatedAutoEncoder``       gated       gate ``x_enc + gate_bias > 0``, ``relu(e^r_mag x_enc +    subtracted
                                       mag_bias)``, ``x_enc = encoder(x - decoder_bias)``
=========================  ==========  =======================================================  ===============

(``AutoEncoderNew`` is not in SAE Lens's mapping; its forward is plain enough to map.) Weights load as
float32: dictionary_learning builds float32 modules and copies the state dict into them. Weights are
taken as stored: ``AutoEncoder.from_pretrained`` rescales a decoder whose columns are not unit norm
(the reconstruction stays the same, feature magnitudes change); SAE Lens's loader does not, nor does this.

``config.json`` is read and checked on its own (no torch) by :func:`dictionary_learning_folder_hook`, which
the run calls before any model loads: the sizes, the ``dict_class``, ``k`` (1 to ``dict_size``) of the
top-k classes, and the hook (from ``submodule_name``, else the run folder names, then those of the folder a
symbolic link leads to).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.common import short
from pytest_saeval.sources.formats import (
    FORMAT_FILES,
    config_sizes,
    load_with_converter,
    read_json_object,
    whole_number,
)
from pytest_saeval.sources.hookpoints import MappedHook, dictionary_learning_hook

__all__ = ["DICT_CLASSES", "dictionary_learning_converter", "dictionary_learning_folder_hook", "load_dictionary_learning"]

CONFIG_FILE, WEIGHTS_FILE = FORMAT_FILES["dictionary_learning"]
_FIX = "point path at a trainer_N folder written by dictionary_learning's trainSAE (config.json + ae.pt)"


@dataclass(frozen=True)
class _Layout:
    """How one ``dict_class`` maps onto an SAE Lens architecture."""

    architecture: str
    """SAE Lens architecture."""
    apply_b_dec_to_input: bool
    """Whether the class subtracts its decoder bias from the input before encoding."""
    params: tuple[tuple[str, str, bool], ...]
    """``(SAE Lens name, ae.pt key, transpose)`` for every weight."""
    buffers: tuple[str, ...] = ()
    """Other ae.pt keys the class keeps (``k``, ``threshold``, ``group_sizes``)."""


_LINEAR = (("W_enc", "encoder.weight", True), ("b_enc", "encoder.bias", False), ("W_dec", "decoder.weight", True))
_PARAMS = (("W_enc", "W_enc", False), ("b_enc", "b_enc", False), ("W_dec", "W_dec", False), ("b_dec", "b_dec", False))

DICT_CLASSES: dict[str, _Layout] = {
    "AutoEncoder": _Layout("standard", True, (*_LINEAR, ("b_dec", "bias", False))),
    "AutoEncoderNew": _Layout("standard", False, (*_LINEAR, ("b_dec", "decoder.bias", False))),
    "AutoEncoderTopK": _Layout("topk", True, (*_LINEAR, ("b_dec", "b_dec", False)), ("k", "threshold")),
    "BatchTopKSAE": _Layout("jumprelu", True, (*_LINEAR, ("b_dec", "b_dec", False)), ("k", "threshold")),
    "MatryoshkaBatchTopKSAE": _Layout("jumprelu", True, _PARAMS, ("k", "threshold", "group_sizes")),
    "JumpReluAutoEncoder": _Layout("jumprelu", False, (*_PARAMS, ("threshold", "threshold", False))),
    "GatedAutoEncoder": _Layout("gated", True, (("W_enc", "encoder.weight", True), ("b_gate", "gate_bias", False),
                                                ("b_mag", "mag_bias", False), ("r_mag", "r_mag", False),
                                                ("W_dec", "decoder.weight", True), ("b_dec", "decoder_bias", False))),
}
"""The dictionary classes this reader maps, by ``trainer.dict_class``."""


@dataclass(frozen=True)
class _Trainer:
    """The checked ``trainer`` block of ``config.json``."""

    dict_class: str
    """The dictionary class (a key of :data:`DICT_CLASSES`)."""
    d_in: int
    """``activation_dim``."""
    d_sae: int
    """``dict_size``."""
    k: int | None
    """``k`` for the top-k classes (None for the others)."""
    layer: int | None
    """``layer``, when recorded."""
    submodule_name: str | None
    """``submodule_name``, when recorded."""
    lm_name: str
    """``lm_name`` (metadata)."""
    ctx_len: int | None
    """``buffer.ctx_len`` (metadata)."""


def _read_trainer(folder: Path) -> _Trainer:
    file = folder / CONFIG_FILE
    raw = read_json_object(file, _FIX)
    d_in, d_sae = config_sizes("dictionary_learning", raw, file)  # first: it checks that the trainer block is there
    block = raw["trainer"]
    dict_class = block.get("dict_class")
    if dict_class not in DICT_CLASSES:
        raise SourceError(f"'{file}': trainer.dict_class {dict_class!r} is not a dictionary class this loader maps "
                          f"(it maps {', '.join(DICT_CLASSES)})",
                          fix="load other dictionaries through a factory that returns an SAE "
                          "(docs/sae-sources.md shows an adapter)")
    buffer = raw.get("buffer")
    ctx_len = buffer.get("ctx_len") if isinstance(buffer, dict) else None
    lm_name, submodule = block.get("lm_name"), block.get("submodule_name")
    topk = DICT_CLASSES[dict_class].architecture == "topk"
    layer = block.get("layer")
    k = whole_number(block, "k", file, minimum=1, fix=_FIX, path="trainer.") if topk else None
    if k is not None and k > d_sae:  # SAE Lens would build it and fail in encode
        raise SourceError(f"'{file}': trainer.k = {k} exceeds trainer.dict_size = {d_sae} (a top-k dictionary "
                          "keeps at most dict_size latents per token)",
                          fix=f"set trainer.k (1 to {d_sae}) and trainer.dict_size in {CONFIG_FILE} to the values "
                          "the dictionary was trained with")
    return _Trainer(
        dict_class=dict_class, d_in=d_in, d_sae=d_sae, k=k,
        layer=None if layer is None else whole_number(block, "layer", file, minimum=0, fix=_FIX, path="trainer."),
        submodule_name=submodule if isinstance(submodule, str) and submodule else None,
        lm_name=lm_name.split("/")[-1] if isinstance(lm_name, str) else "",
        ctx_len=ctx_len if isinstance(ctx_len, int) and not isinstance(ctx_len, bool) else None)


def dictionary_learning_folder_hook(folder: Path, hook_name: str | None = None,
                                    trainer: _Trainer | None = None) -> MappedHook | None:
    """The hook the dictionary_learning trainer in ``folder`` reads, mapped from ``trainer.submodule_name``
    (else the run folder names, then those of the folder a symbolic link leads to), after its config is
    read and checked (or ``trainer`` when already read); None when ``hook_name`` (the suite entry's)
    replaces it. No unambiguous hook is a :class:`SourceError` asking for ``hook_name:``. Reads
    ``config.json`` only (no torch)."""
    trainer = trainer or _read_trainer(folder)
    if hook_name is not None:
        return None
    names = [folder.name, folder.parent.name]
    real = Path(os.path.realpath(folder))
    if real != folder:
        names += [real.name, real.parent.name]
    hook, why = dictionary_learning_hook(trainer.submodule_name, trainer.layer, names)
    if hook is None:
        raise SourceError(f"the dictionary_learning SAE in '{folder}' has no unambiguous hook: {why}",
                          fix="add hook_name: to the SAE entry with the TransformerLens hook it reads, e.g. "
                          f"hook_name: blocks.{trainer.layer or 0}.hook_resid_post")
    return MappedHook(hook=hook, checkpoint=f"the dictionary_learning SAE in '{folder}'", source=why)


def _read_state_dict(file: Path) -> dict[str, Any]:
    """``ae.pt`` through ``torch.load(weights_only=True)``: a mapping of names to tensors."""
    import pickle

    import torch

    if file.stat().st_size == 0:
        raise SourceError(f"SAE weights file '{file}' is empty", fix="copy the trainer folder again completely")
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))  # routed by type; the text only names it
        what = f" (it names {found.group(1)})" if found else ""
        raise SourceError(f"'{file}' holds more than tensors{what}, so torch.load(weights_only=True) refused it",
                          fix="save the state dict alone, as dictionary_learning does: "
                          "torch.save({k: v.cpu() for k, v in ae.state_dict().items()}, 'ae.pt')") from e
    except Exception as e:
        raise SourceError(f"SAE weights file '{file}' is corrupt or truncated ({short(e, 160)})",
                          fix="copy the trainer folder again completely") from e
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise SourceError(f"'{file}' does not hold a state dict (names -> tensors)",
                          fix="save the dictionary's state_dict() as ae.pt")
    return state


def _state_for(trainer: _Trainer, state: dict[str, Any], file: Path) -> dict[str, Any]:
    """SAE Lens's state dict from a dictionary_learning one, every key and shape checked."""
    import torch

    layout = DICT_CLASSES[trainer.dict_class]
    keys = [key for _, key, _ in layout.params] + list(layout.buffers)
    missing, extra = [k for k in keys if k not in state], sorted(set(state) - set(keys))
    if missing or extra:
        parts = ([f"no {', '.join(missing)}"] if missing else []) + ([f"unexpected {', '.join(extra)}"] if extra else [])
        raise SourceError(f"'{file}' has {' and '.join(parts)}: a dictionary of class {trainer.dict_class} holds "
                          f"{', '.join(keys)}",
                          fix=f"check trainer.dict_class in {CONFIG_FILE} against the weights")
    d_in, d_sae = trainer.d_in, trainer.d_sae
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    out: dict[str, Any] = {}
    for name, key, transpose in layout.params:
        tensor = state[key].T if transpose else state[key]
        if tuple(tensor.shape) != shapes.get(name, (d_sae,)):
            want = list(shapes.get(name, (d_sae,)))
            raise SourceError(f"'{file}': {key} has shape {list(state[key].shape)}, but activation_dim {d_in} and "
                              f"dict_size {d_sae} need {want[::-1] if transpose else want}",
                              fix=f"use the {CONFIG_FILE} saved with these weights")
        out[name] = tensor.to(torch.float32).contiguous()
    if trainer.k is not None and int(state["k"]) != trainer.k:
        raise SourceError(f"'{file}' keeps k = {int(state['k'])}, but {CONFIG_FILE} says trainer.k = {trainer.k}",
                          fix="use the config.json saved with these weights")
    if layout.architecture == "jumprelu" and "threshold" not in out:  # one global threshold for every feature
        out["threshold"] = torch.full((d_sae,), float(state["threshold"]), dtype=torch.float32)
    return out


def dictionary_learning_converter(path: str | Path, device: str = "cpu", cfg_overrides: dict[str, Any] | None = None,
                                  *, hook_name: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """SAE Lens's converter signature: the SAE Lens config and state dict of a dictionary_learning trainer folder.

    ``hook_name`` replaces the hook mapped from ``trainer.layer`` / ``submodule_name`` (required when
    those give none)."""
    folder = Path(path)
    trainer = _read_trainer(folder)
    mapped = dictionary_learning_folder_hook(folder, hook_name, trainer)
    hook = mapped.hook if mapped is not None else hook_name
    state = _state_for(trainer, _read_state_dict(folder / WEIGHTS_FILE), folder / WEIGHTS_FILE)
    layout = DICT_CLASSES[trainer.dict_class]
    topk = layout.architecture == "topk"
    cfg_dict: dict[str, Any] = {
        "architecture": "standard" if topk else layout.architecture,  # SAE Lens's mapping; k turns it into topk
        "d_in": trainer.d_in, "d_sae": trainer.d_sae, "dtype": "float32", "device": device,
        "model_name": trainer.lm_name, "hook_name": hook, "hook_head_index": None,
        "activation_fn": "topk" if topk else "relu",
        "activation_fn_kwargs": {"k": trainer.k} if topk else {},
        "apply_b_dec_to_input": layout.apply_b_dec_to_input,
        "finetuning_scaling_factor": False, "sae_lens_training_version": None, "prepend_bos": True,
        "normalize_activations": "none", "neuronpedia_id": None,
        **({"context_size": trainer.ctx_len} if trainer.ctx_len is not None else {}),
        **(cfg_overrides or {}),
    }
    return cfg_dict, {k: v.to(device) for k, v in state.items()}


def load_dictionary_learning(folder: Path, *, device: str, dtype: str | None, hook_name: str | None) -> Any:
    """The dictionary_learning SAE in ``folder`` as an SAE Lens SAE (see the table above)."""
    converter = functools.partial(dictionary_learning_converter, hook_name=hook_name)
    return load_with_converter(folder, converter, device=device, dtype=dtype,
                               fix=f"check that {CONFIG_FILE} and {WEIGHTS_FILE} belong together; " + _FIX)
