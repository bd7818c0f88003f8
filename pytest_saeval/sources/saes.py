"""Load SAEs: a checkpoint folder (SAE Lens, EleutherAI sparsify or dictionary_learning, each through
its reader in :mod:`.sparsify` / :mod:`.dictionary_learning`), an SAE Lens pretrained release (exact
id or regex), or a factory. Every source but a factory gives an SAE Lens SAE.

Weights are read with safetensors, or ``torch.load(weights_only=True)`` for dictionary_learning's
``ae.pt``; nothing is unpickled. An SAE Lens folder's weights must be floating point (float32, float16,
bfloat16 or float64) and of the dtype its ``cfg.json`` names: SAE Lens would silently cast integer
(quantized) weights or weights of another dtype to the config's, and the evaluation would measure
something other than what was stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_saeval.errors import SourceError, did_you_mean
from pytest_saeval.sources.common import is_hub_unreachable, resolve_path, short
from pytest_saeval.sources.devices import parse_dtype, resolve_device
from pytest_saeval.sources.factory import call_factory
from pytest_saeval.sources.formats import (
    FORMAT_FILES,
    check_safetensors,
    check_weight_dtypes,
    config_sizes,
    detect_format,
    read_json_object,
)
from pytest_saeval.sources.sae_lens_config import check_sae_lens_config

SAE_CFG_FILE, SAE_WEIGHTS_FILE = FORMAT_FILES["sae_lens"]


def load_saes(
    *,
    path: str | os.PathLike[str] | None = None,
    release: str | None = None,
    sae_id: str | None = None,
    factory: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> list[tuple[str | None, Any]]:
    """Load one or more SAEs; each comes back as ``(sae_id, sae)``.

    Exactly one source:

    - ``path``: an SAE Lens, EleutherAI sparsify or dictionary_learning checkpoint folder, relative to
      ``base_dir`` (:func:`load_sae_folder`, format detected). Returns ``[(None, sae)]``.
    - ``release`` + ``sae_id``: an SAE Lens pretrained release. ``sae_id`` is an exact id of that
      release or, when it is not one, a regular expression matched in full against the release's
      ids: one entry per match, ids in natural order (``blocks.2`` before ``blocks.10``), each as
      ``(sae_id, sae)``. A Hugging Face repo id (``user/repo``) not in the directory is loaded as
      SAE Lens does, with ``sae_id`` the exact folder in that repo.
    - ``factory``: ``"module:function"`` returning an SAE Lens SAE, or any object with ``encode``,
      ``decode``, ``W_enc``, ``W_dec``, ``cfg.d_in``, ``cfg.d_sae`` and ``cfg.metadata.hook_name``.
      Returns ``[(None, sae)]``.

    ``device`` accepts what :func:`~pytest_saeval.sources.models.resolve_device` accepts;
    ``dtype`` (e.g. ``"float32"``) overrides the SAE's own when given.
    """
    given = [k for k, v in (("path", path), ("release", release), ("factory", factory)) if v is not None]
    if len(given) != 1:
        raise SourceError(
            "an SAE needs exactly one of path, release (with sae_id), factory"
            + (f" (got {', '.join(given)})" if given else ""),
            fix="keep one of path, release + sae_id, factory",
        )
    if release is None and sae_id is not None:
        raise SourceError("sae_id is given without release", fix="add the SAE Lens release the id belongs to, or use path")
    if release is not None and (sae_id is None or not str(sae_id).strip()):
        raise SourceError(
            f"release {release!r} needs an sae_id (an exact id or a regular expression over the release's ids)",
            fix="add sae_id, e.g. sae_id: \"blocks\\\\.[0-9]+\\\\.hook_resid_pre\"",
        )
    if path is not None:
        return [(None, load_sae_folder(path, device=device, dtype=dtype, base_dir=base_dir))]
    device_str = resolve_device(device)
    dtype_name = _dtype_name(dtype)
    if factory is not None:
        sae = _from_factory(factory, device_str, dtype_name, base_dir)
        return [(None, sae)]
    assert release is not None and sae_id is not None
    ids = expand_sae_ids(release, sae_id)
    return [(i, _checked(_load_pretrained(release, i, device_str, dtype_name), f"SAE {i!r} of release {release!r}")) for i in ids]


def _dtype_name(dtype: str | None) -> str | None:
    return None if dtype is None else str(parse_dtype(dtype)).removeprefix("torch.")


# ---------------------------------------------------------------------------------------------
# folders: SAE Lens, sparsify, dictionary_learning


def load_sae_folder(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    hook_name: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """The SAE in a checkpoint folder (relative to ``base_dir``), as an SAE Lens SAE.

    The folder is an SAE Lens folder (``cfg.json`` + ``sae_weights.safetensors``), an EleutherAI sparsify
    checkpoint (``cfg.json`` + ``sae.safetensors``) or a dictionary_learning trainer folder
    (``config.json`` + ``ae.pt``), told apart by the files present or named by ``format``
    (``sae_lens``, ``sparsify``, ``dictionary_learning``). ``hook_name`` sets the TransformerLens hook
    the SAE reads, replacing the one the checkpoint names (needed when that maps to none). ``device``
    as :func:`~pytest_saeval.sources.devices.resolve_device` takes it; ``dtype`` overrides the stored one.
    """
    folder = resolve_path(path, base_dir)
    sae = _load_folder(folder, resolve_device(device), _dtype_name(dtype), format, hook_name)
    return _checked(sae, f"SAE folder '{folder}'", folder=True)


def _load_folder(folder: Path, device: str, dtype: str | None, sae_format: str | None, hook_name: str | None) -> Any:
    """The SAE in ``folder``, read by its format's loader; ``hook_name`` replaces the hook it names."""
    found = detect_format(folder, sae_format)
    if found == "sparsify":
        from pytest_saeval.sources.sparsify import load_sparsify

        return load_sparsify(folder, device=device, dtype=dtype, hook_name=hook_name)
    if found == "dictionary_learning":
        from pytest_saeval.sources.dictionary_learning import load_dictionary_learning

        return load_dictionary_learning(folder, device=device, dtype=dtype, hook_name=hook_name)
    sae = _load_sae_lens_folder(folder, device, dtype, hook_given=hook_name is not None)
    if hook_name is not None:
        sae.cfg.metadata.hook_name = hook_name
    return sae


def _load_sae_lens_folder(folder: Path, device: str, dtype: str | None, *, hook_given: bool) -> Any:
    cfg_file = folder / SAE_CFG_FILE
    weights = folder / SAE_WEIGHTS_FILE
    cfg = read_json_object(cfg_file, fix="re-save the SAE with sae.save_model(folder)")
    _, d_sae = config_sizes("sae_lens", cfg, cfg_file)  # SAE Lens would build tensors of d_sae 0 or "64" and fail obscurely
    check_sae_lens_config(cfg, cfg_file, d_sae=d_sae, hook_given=hook_given)  # and take "false" as true
    dtypes = check_safetensors(weights, fix="re-save the SAE with sae.save_model(folder) or copy the file again completely")
    check_weight_dtypes(weights, cfg, dtypes)

    from sae_lens import SAE

    try:
        return SAE.load_from_disk(str(folder), device=device, dtype=dtype)
    except Exception as e:
        raise SourceError(
            f"SAE Lens could not load the SAE in '{folder}': {short(e)}",
            fix=f"check that {SAE_CFG_FILE} matches the weights (architecture, d_in, d_sae) and was written by SAE Lens",
        ) from e


# ---------------------------------------------------------------------------------------------
# pretrained releases


def _natural_key(text: str) -> tuple[Any, ...]:
    return tuple((0, int(p), "") if p.isdecimal() else (1, 0, p) for p in re.split(r"(\d+)", text))


def _preview(ids: Iterable[str], n: int = 8) -> str:
    ids = list(ids)
    head = ", ".join(repr(i) for i in ids[:n])
    return head + (f", ... ({len(ids)} in all)" if len(ids) > n else "")


def expand_sae_ids(release: str, sae_id: str) -> list[str]:
    """The ids of ``release`` that ``sae_id`` names: itself when exact, else every full regex match.

    Matches come in natural order. A release that is not in SAE Lens's directory but looks like a
    Hugging Face repo id (``user/repo``) gives ``[sae_id]`` unchanged.
    """
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        if "/" in release:
            return [sae_id]
        raise SourceError(
            f"SAE Lens has no pretrained release {release!r}{did_you_mean(release, directory)}",
            fix="use a release name from SAE Lens's pretrained SAE table, or path: for a local SAE folder",
        )
    ids = list(directory[release].saes_map)
    if sae_id in ids:
        return [sae_id]
    try:
        pattern = re.compile(sae_id)
    except re.error as e:
        raise SourceError(
            f"sae_id {sae_id!r} is not an id of release {release!r} nor a valid regular expression ({e})"
            f"{did_you_mean(sae_id, ids)}",
            fix=f"use an exact id (e.g. {_preview(ids, 3)}) or a valid regular expression",
        ) from e
    matches = sorted((i for i in ids if pattern.fullmatch(i)), key=_natural_key)
    if not matches:
        close = did_you_mean(sae_id, ids)
        raise SourceError(
            f"sae_id {sae_id!r} matches no id of release {release!r} (as an exact id or a full regex match){close}",
            fix=f"the release's ids are {_preview(ids)}",
        )
    return matches


def _load_pretrained(release: str, sae_id: str, device: str, dtype: str | None) -> Any:
    from sae_lens import SAE

    try:
        return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype or "float32")
    except Exception as e:
        if is_hub_unreachable(e):
            raise SourceError(
                f"SAE {sae_id!r} of release {release!r} is not in the local Hugging Face cache and the hub cannot be reached",
                fix=f"download it once where the hub is reachable (SAE.from_pretrained({release!r}, {sae_id!r})) so it "
                "lands in the Hugging Face cache (HF_HOME), or save it with sae.save_model(folder) and use path:",
            ) from e
        raise SourceError(
            f"loading SAE {sae_id!r} of release {release!r} failed: {short(e)}",
            fix="check the release and sae_id against SAE Lens's pretrained SAE table",
        ) from e


# ---------------------------------------------------------------------------------------------
# factory and the SAE protocol


def _from_factory(spec: str, device: str, dtype: str | None, base_dir: Any) -> Any:
    sae = call_factory(spec, base_dir=base_dir, what="SAE")
    sae = _checked(sae, f"the object returned by factory {spec!r}")
    to = getattr(sae, "to", None)
    if callable(to):
        import torch

        try:
            moved = to(device=device, dtype=getattr(torch, dtype)) if dtype else to(device)
        except Exception as e:
            raise SourceError(f"the SAE from factory {spec!r} could not be moved to {device}: {short(e)}", fix="use device: cpu or auto") from e
        sae = sae if moved is None else moved
    eval_ = getattr(sae, "eval", None)
    if callable(eval_):
        eval_()
    return sae


def sae_protocol_problems(sae: Any) -> list[str]:
    """What ``sae`` lacks of the SAE protocol (empty when it is usable)."""
    import torch

    problems = []
    for name in ("encode", "decode"):
        if not callable(getattr(sae, name, None)):
            problems.append(f"method {name}()")
    for name in ("W_enc", "W_dec"):
        if not isinstance(getattr(sae, name, None), torch.Tensor):
            problems.append(f"tensor {name}")
    cfg = getattr(sae, "cfg", None)
    if cfg is None:
        problems.append("cfg")
        return problems
    for name in ("d_in", "d_sae"):
        value = getattr(cfg, name, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"cfg.{name} (a positive int)")
    metadata = getattr(cfg, "metadata", None)
    hook_name = getattr(metadata, "hook_name", None) if metadata is not None else None
    if not isinstance(hook_name, str) or not hook_name:
        problems.append("cfg.metadata.hook_name (the hook the SAE reads, e.g. 'blocks.0.hook_resid_pre')")
    head = getattr(metadata, "hook_head_index", None) if metadata is not None else None
    if head is not None and (isinstance(head, bool) or not isinstance(head, int) or head < 0):
        problems.append("cfg.metadata.hook_head_index (None or a head index >= 0)")
    if not problems:
        w_enc, w_dec = sae.W_enc, sae.W_dec
        if w_enc.ndim != 2 or w_enc.shape != (cfg.d_in, cfg.d_sae):
            problems.append(f"W_enc of shape [d_in, d_sae] = [{cfg.d_in}, {cfg.d_sae}] (got {list(w_enc.shape)})")
        if w_dec.ndim != 2 or w_dec.shape[0] != cfg.d_sae:
            problems.append(f"W_dec of shape [d_sae, d_out] with d_sae = {cfg.d_sae} (got {list(w_dec.shape)})")
    return problems


_SAVE_HINTS = {
    "sparsify": "save it with sae.save_to_disk(folder) and load the folder with path: (sparsify checkpoints load "
                "as SAE Lens SAEs)",
    "dictionary_learning": "load its trainer folder (config.json + ae.pt) with path: (dictionary_learning "
                           "checkpoints load as SAE Lens SAEs)",
}


def _checked(sae: Any, what: str, *, folder: bool = False) -> Any:
    """``sae``, unless it lacks some of the SAE protocol; ``folder``: it was read from a checkpoint folder, whose
    files (not a factory) are then what to correct."""
    problems = sae_protocol_problems(sae)
    if problems:
        library = type(sae).__module__.split(".")[0]
        protocol = (" with encode (dense [..., d_sae] output), decode, W_enc, W_dec, cfg.d_in, cfg.d_sae and "
                    "cfg.metadata.hook_name (see the README's factory protocol)")
        code = [p for p in problems if p.startswith(("method ", "tensor "))]  # the class's, not its config's
        if folder and code:
            fix = (f"{type(sae).__name__} has no {', '.join(code)}, which no config can give it: load it through a "
                   "factory (factory: module:function) that returns an object" + protocol)
        elif folder:
            fix = ("correct the checkpoint's config file (cfg.json: its metadata.hook_name, hook_head_index, d_in, "
                   "d_sae), or write the folder again with its trainer")
        else:
            fix = (_SAVE_HINTS[library] + ", or wrap it in an object" if library in _SAVE_HINTS
                   else "return an SAE Lens SAE, or an object") + protocol
        raise SourceError(
            f"{what} ({type(sae).__module__}.{type(sae).__name__}) is not a usable SAE: it lacks {'; '.join(problems)}",
            fix=fix,
        )
    return sae
