"""EleutherAI sparsify checkpoints (``SparseCoder.save_to_disk``) as SAE Lens SAEs.

A sparsify run folder holds one checkpoint folder per hookpoint (``layers.6``, ``layers.6.mlp``; with
several seeds ``layers.6/seed0``), each with ``cfg.json`` (the ``SparseCoderConfig`` plus ``d_in``) and
``sae.safetensors`` (``encoder.weight [num_latents, d_in]``, ``encoder.bias``, ``W_dec [num_latents,
d_in]``, ``b_dec``), and a ``config.json`` for the run (model, dataset, ``ctx_len``).

``SparseCoder.encode`` is ``topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias), k)`` and
``decode`` adds the chosen rows of ``W_dec`` to ``b_dec``: SAE Lens's ``TopKSAE`` with
``W_enc = encoder.weight.T``, ``W_dec`` as stored and ``b_dec`` subtracted from the input (ReLU then
top-k equals top-k then ReLU). Older sparsify configs with ``signed: true`` rank by magnitude and
keep signs: SAE Lens's ``AbsTopKSAE``. ``multi_topk`` changes only the training loss. The weights keep
their stored dtype (sparsify does the same).

SAE Lens 6.54 ships ``sparsify_disk_loader``, but it does not load these folders: it transposes
``W_dec`` again (a size mismatch), skips the ``b_dec`` subtraction when ``normalize_decoder`` is set,
says bfloat16 whatever was stored, takes ``d_sae`` from ``num_latents`` even when that is 0, and maps
only ``layers.N`` names. This reader produces the SAE Lens config and state dict itself and hands them
to ``SAE.load_from_disk(folder, converter=...)``.

The hook comes from the checkpoint folder's name (:func:`~.hookpoints.sparsify_hook`); a folder reached
through a symbolic link whose own name maps to no hook is named by the folder the link leads to. Loading
reads one file outside the checkpoint folder, the run's ``config.json`` (:func:`outside_files`), for the
metadata it gives the SAE's config.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.formats import (
    FORMAT_FILES,
    check_safetensors,
    config_sizes,
    load_with_converter,
    read_json_object,
    whole_number,
)
from pytest_saeval.sources.hookpoints import MappedHook, sparsify_hook

__all__ = ["SparsifyConfig", "load_sparsify", "outside_files", "read_sparsify_config", "sparsify_converter",
           "sparsify_folder_hook"]

CFG_FILE, WEIGHTS_FILE = FORMAT_FILES["sparsify"]
_FIX = "re-save the checkpoint with sparsify's SparseCoder.save_to_disk(folder), or copy the folder again"
_KNOWN_KEYS = frozenset({"d_in", "activation", "expansion_factor", "normalize_decoder", "num_latents", "k",
                         "multi_topk", "skip_connection", "transcode", "signed"})
_SEED_FOLDER = re.compile(r"^seed\d+$")
_RUN_CONFIG = "config.json"


@dataclass(frozen=True)
class SparsifyConfig:
    """What a sparsify ``cfg.json`` says about the SAE, checked."""

    d_in: int
    """Input width."""
    d_sae: int
    """Number of latents: ``num_latents``, or ``d_in * expansion_factor`` when that is 0 (sparsify's rule)."""
    k: int
    """Latents kept per token."""
    signed: bool
    """True: the top ``k`` by magnitude keep their sign (AbsTopK); False: top ``k`` of the ReLU'd values."""
    hookpoint: str
    """The Hugging Face module the SAE was trained on: the checkpoint folder's name (its parent's for ``seedN``)."""
    named_by: str
    """Where :attr:`hookpoint` was read, for messages: ``the folder name 'layers.6'``."""
    run_dir: Path
    """The run folder above the checkpoint, whose ``config.json`` gives metadata when there is one."""


def _names(folder: Path) -> tuple[str, Path, str]:
    """The hookpoint a checkpoint folder's path records, its run folder and where the name was read."""
    if _SEED_FOLDER.match(folder.name):
        return folder.parent.name, folder.parent.parent, f"the name {folder.parent.name!r} of the folder above {folder.name}"
    return folder.name, folder.parent, f"the folder name {folder.name!r}"


def _located(folder: Path) -> tuple[str, Path, str]:
    """:func:`_names` of ``folder``, or of the folder it leads to (symbolic links resolved) when its own
    name maps to no hook and that one's does."""
    given = _names(folder)
    if sparsify_hook(given[0]) is None:
        real = Path(os.path.realpath(folder))
        hookpoint, run_dir, named_by = _names(real)
        if real != folder and sparsify_hook(hookpoint) is not None:
            return hookpoint, run_dir, f"{named_by} of '{real}', where its path leads"
    return given


def _refuse(file: Path, what: str, fix: str) -> SourceError:
    return SourceError(f"'{file}' describes {what}, which has no SAE Lens equivalent", fix=fix)


def read_sparsify_config(folder: Path) -> SparsifyConfig:
    """The checked config of the sparsify checkpoint in ``folder`` (architectures SAE Lens cannot hold
    are refused with the reason)."""
    file = folder / CFG_FILE
    raw = read_json_object(file, _FIX)
    adapter = "write a factory that wraps the SparseCoder (docs/sae-sources.md shows one)"
    if raw.get("transcode"):
        raise _refuse(file, "a transcoder (transcode: true: it reads one hook and writes another)",
                      "gate transcoders elsewhere: a transcoder's output replaces a different hook than it reads")
    if raw.get("skip_connection"):
        raise _refuse(file, "a skip connection (skip_connection: true, W_skip)", adapter)
    activation = raw.get("activation", "topk")
    if activation != "topk":
        raise _refuse(file, f"activation {activation!r} (only 'topk' maps onto an SAE Lens architecture)", adapter)
    unknown = sorted(k for k, v in raw.items() if k not in _KNOWN_KEYS and v is True)
    if unknown:
        raise SourceError(f"'{file}' turns on {', '.join(unknown)}, which this loader does not know "
                          "(it reads sparsify up to 1.3.3 and the older signed variant)", fix=adapter)
    if not isinstance(raw.get("signed", False), bool):
        raise SourceError(f"'{file}': signed must be true or false, got {raw['signed']!r}", fix=_FIX)
    d_in, d_sae = config_sizes("sparsify", raw, file)
    k = whole_number(raw, "k", file, minimum=1, fix=_FIX)
    if k > d_sae:
        raise SourceError(f"'{file}': k = {k} exceeds the {d_sae} latents", fix=_FIX)
    hookpoint, run_dir, named_by = _located(folder)
    return SparsifyConfig(d_in=d_in, d_sae=d_sae, k=k, signed=bool(raw.get("signed", False)), hookpoint=hookpoint,
                          named_by=named_by, run_dir=run_dir)


def sparsify_folder_hook(folder: Path, hook_name: str | None = None,
                         cfg: SparsifyConfig | None = None) -> MappedHook | None:
    """The hook the sparsify checkpoint in ``folder`` reads, mapped from its folder name, after its config
    is read and checked (:func:`read_sparsify_config`, or ``cfg`` when already read); None when
    ``hook_name`` (the suite entry's) replaces it. A name that maps to no hook is a :class:`SourceError`
    asking for ``hook_name:``. Reads ``cfg.json`` only (no torch)."""
    cfg = cfg or read_sparsify_config(folder)
    if hook_name is not None:
        return None
    hook = sparsify_hook(cfg.hookpoint)
    if hook is None:
        raise SourceError(
            f"the sparsify checkpoint '{folder}' was trained on hookpoint {cfg.hookpoint!r}, which maps to no "
            "TransformerLens hook unambiguously (known: layers.N / h.N, layers.N.mlp, layers.N.self_attn, "
            "embed_tokens)",
            fix="add hook_name: to the SAE entry with the TransformerLens hook it reads, e.g. "
            "hook_name: blocks.6.hook_resid_post")
    return MappedHook(hook=hook, checkpoint=f"the sparsify checkpoint '{folder}'", source=cfg.named_by)


def outside_files(folder: Path) -> tuple[Path, ...]:
    """The files outside the checkpoint folder that loading it reads (whether there or not): the run's
    ``config.json`` (the SAE's model, dataset and context size; a cache key must cover it)."""
    return (_located(folder)[1] / _RUN_CONFIG,)


def _read_weights(folder: Path, cfg: SparsifyConfig) -> tuple[dict[str, Any], str]:
    """SAE Lens's state dict from ``sae.safetensors`` and the dtype sparsify would use (its first tensor's)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    file = folder / WEIGHTS_FILE
    check_safetensors(file, _FIX)
    with safe_open(str(file), framework="pt", device="cpu") as f:
        first = next(iter(f.keys()), None)
    tensors = load_file(str(file), device="cpu")
    expected = {"encoder.weight": (cfg.d_sae, cfg.d_in), "encoder.bias": (cfg.d_sae,),
                "W_dec": (cfg.d_sae, cfg.d_in), "b_dec": (cfg.d_in,)}
    missing = [k for k in expected if k not in tensors]
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = ([f"no {', '.join(missing)}"] if missing else []) + ([f"unexpected {', '.join(extra)}"] if extra else [])
        raise SourceError(f"'{file}' has {' and '.join(parts)} (a sparsify SAE holds {', '.join(expected)})",
                          fix=_FIX + (" (a checkpoint saved without its decoder cannot be evaluated)"
                                      if "W_dec" in missing else ""))
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise SourceError(f"'{file}': {key} has shape {list(tensors[key].shape)}, but {CFG_FILE} "
                              f"(d_in {cfg.d_in}, {cfg.d_sae} latents) needs {list(shape)}",
                              fix=f"use the {CFG_FILE} saved with these weights; " + _FIX)
    dtype = str(tensors[first].dtype).removeprefix("torch.") if first is not None else "float32"
    state = {"W_enc": tensors["encoder.weight"].T.contiguous(), "b_enc": tensors["encoder.bias"],
             "W_dec": tensors["W_dec"], "b_dec": tensors["b_dec"]}
    return state, dtype


def _run_metadata(run_dir: Path) -> dict[str, Any]:
    """Model, dataset and context size from the run's ``config.json`` above the checkpoint, when there is
    one (metadata only: an unreadable run config leaves them out)."""
    try:
        run = read_json_object(run_dir / _RUN_CONFIG, _FIX)
    except SourceError:
        return {}
    out: dict[str, Any] = {}
    for ours, theirs, kind in (("model_name", "model", str), ("dataset_path", "dataset", str),
                               ("context_size", "ctx_len", int)):
        value = run.get(theirs)
        if isinstance(value, kind) and not isinstance(value, bool):
            out[ours] = value
    return out


def sparsify_converter(path: str | Path, device: str = "cpu", cfg_overrides: dict[str, Any] | None = None, *,
                       hook_name: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """SAE Lens's converter signature: the SAE Lens config and state dict of a sparsify checkpoint.

    ``hook_name`` replaces the hook mapped from the folder name (required when that maps to none)."""
    folder = Path(path)
    cfg = read_sparsify_config(folder)
    mapped = sparsify_folder_hook(folder, hook_name, cfg)
    hook = mapped.hook if mapped is not None else hook_name
    state, dtype = _read_weights(folder, cfg)
    cfg_dict: dict[str, Any] = {
        "architecture": "abstopk" if cfg.signed else "topk",
        "d_in": cfg.d_in, "d_sae": cfg.d_sae, "k": cfg.k,
        "dtype": dtype, "device": device,
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "hook_name": hook, "hook_head_index": None,
        "model_name": "", "prepend_bos": True,
        **_run_metadata(cfg.run_dir),
        **(cfg_overrides or {}),
    }
    return cfg_dict, {k: v.to(device) for k, v in state.items()}


def load_sparsify(folder: Path, *, device: str, dtype: str | None, hook_name: str | None) -> Any:
    """The sparsify checkpoint in ``folder`` as an SAE Lens ``TopKSAE`` (``AbsTopKSAE`` when signed)."""
    converter = functools.partial(sparsify_converter, hook_name=hook_name)
    return load_with_converter(folder, converter, device=device, dtype=dtype,
                               fix=f"check that {CFG_FILE} and {WEIGHTS_FILE} belong together; " + _FIX)
