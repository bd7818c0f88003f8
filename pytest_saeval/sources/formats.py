"""Which kind of SAE checkpoint a ``path:`` folder holds, told from the files present, and what the
folder readers share: JSON objects, safetensors checks, and building an SAE Lens SAE through
``SAE.load_from_disk(folder, converter=...)``.

Formats (``format:`` in a suite entry names one when the files alone are ambiguous):

- ``sae_lens``: ``cfg.json`` + ``sae_weights.safetensors`` (``sae.save_model(folder)``);
- ``sparsify``: ``cfg.json`` + ``sae.safetensors`` (EleutherAI sparsify's ``SparseCoder.save_to_disk``;
  one such folder per hook inside a run folder);
- ``dictionary_learning``: ``config.json`` + ``ae.pt`` (a ``trainer_N`` folder of dictionary_learning).
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_saeval.bounded import DuplicateKey, NotRegularFile, parse_json, read_regular, unique_keys
from pytest_saeval.errors import SaevalError, SourceError, special_kind
from pytest_saeval.fileio import os_reason
from pytest_saeval.sources.common import exists, json_text, missing_hint, safetensors_header, short
from pytest_saeval.sources.sae_lens_config import check_sae_lens_config

__all__ = ["FOLDER_FIX", "FORMAT_FILES", "check_safetensors", "check_weight_dtypes", "checkpoints_in", "config_sizes",
           "detect_format", "inspect_sae_folder", "load_with_converter", "read_json_object", "whole_number"]

FORMAT_FILES: dict[str, tuple[str, str]] = {
    "sae_lens": ("cfg.json", "sae_weights.safetensors"),
    "sparsify": ("cfg.json", "sae.safetensors"),
    "dictionary_learning": ("config.json", "ae.pt"),
}
"""The two files that make a folder a checkpoint of each format (config first, then weights)."""

_WHAT = {
    "sae_lens": "an SAE Lens folder",
    "sparsify": "a sparsify checkpoint",
    "dictionary_learning": "a dictionary_learning trainer folder",
}

FOLDER_FIX = (
    "point path at an SAE Lens folder (written by sae.save_model(folder): cfg.json + sae_weights.safetensors), "
    "a sparsify checkpoint folder (one per hook in a run folder: cfg.json + sae.safetensors) or a "
    "dictionary_learning trainer folder (trainer_N: config.json + ae.pt)"
)
"""What a ``path:`` entry must point at."""

def detect_format(folder: Path, wanted: str | None = None) -> str:
    """The format of the checkpoint in ``folder``: ``wanted`` when given (its files must be there),
    else the one format whose files are all present. A missing folder, a run folder (checkpoints one
    level down), a half checkpoint, the files of two formats at once, or a folder, FIFO or device where
    a checkpoint file belongs (:func:`_is_file`) is a :class:`SourceError`."""
    if not exists(folder, "SAE folder"):
        hint, fix = missing_hint(folder)
        raise SourceError(f"SAE folder '{folder}' does not exist{hint}",
                          fix=fix or "check the SAE path (relative paths are relative to the suite file); " + FOLDER_FIX)
    if not folder.is_dir():
        raise SourceError(f"SAE path '{folder}' is not a folder", fix=FOLDER_FIX)
    if wanted is not None:
        missing = [name for name in FORMAT_FILES[wanted] if not _is_file(folder / name)]
        if missing:
            raise SourceError(
                f"SAE folder '{folder}' has no {' and no '.join(missing)}, which {_WHAT[wanted]} "
                f"(format: {wanted}) holds",
                fix=f"point path at {_WHAT[wanted]} ({' + '.join(FORMAT_FILES[wanted])}), or remove format: "
                "to have the format detected from the files")
        return wanted
    present = {n for names in FORMAT_FILES.values() for n in names if _is_file(folder / n)}
    complete = [f for f, names in FORMAT_FILES.items() if present.issuperset(names)]
    if len(complete) == 1:
        return complete[0]
    if complete:
        raise SourceError(
            f"SAE folder '{folder}' holds the files of " + " and of ".join(_WHAT[f] for f in complete)
            + ", so its format is ambiguous",
            fix="add format: " + " or format: ".join(complete) + " to the SAE entry")
    raise _not_a_checkpoint(folder)


def _is_file(file: Path) -> bool:
    """Whether the checkpoint file ``file`` is there as a regular file (links followed). A folder, FIFO,
    device or socket in its place is a :class:`SourceError` saying which, and is never opened (a FIFO
    would block, ``/dev/zero`` never ends); so is a link that leads nowhere (:func:`exists`)."""
    if not exists(file, "checkpoint file"):
        return False
    try:
        mode = file.stat().st_mode
    except OSError:  # gone since, or not looked up: what is missing is named by the caller
        return False
    if stat.S_ISREG(mode):
        return True
    kind = "a folder" if stat.S_ISDIR(mode) else special_kind(mode)
    link = f"; it is a symbolic link to '{os.readlink(file)}'" if file.is_symlink() else ""
    raise SourceError(f"'{file}' is not a regular file ({kind}{link})",
                      fix=f"put the checkpoint's {file.name} file itself there: copy the checkpoint folder again "
                      "completely")


def _not_a_checkpoint(folder: Path) -> SourceError:
    """Why ``folder`` is no checkpoint: a run folder (say which ones it holds), half a checkpoint, or nothing."""
    inner = _checkpoints_below(folder)
    if inner:
        names = ", ".join(str(p.relative_to(folder)) for p in inner[:6]) + (f", ... ({len(inner)} in all)"
                                                                             if len(inner) > 6 else "")
        return SourceError(f"'{folder}' is a run folder holding {len(inner)} checkpoint folder(s) ({names}), "
                           "not one checkpoint",
                           fix=f"point path at one checkpoint folder, e.g. path: {inner[0]} (one SAE entry each)")
    present = {n for names in FORMAT_FILES.values() for n in names if (folder / n).is_file()}
    partial = [f for f, names in FORMAT_FILES.items() if present & set(names)]
    if partial:
        lacks = " or ".join(
            f"{' and no '.join(n for n in FORMAT_FILES[f] if n not in present)} (for {_WHAT[f]})" for f in partial)
        return SourceError(f"SAE folder '{folder}' has no {lacks}",
                           fix="copy the checkpoint folder again completely; " + FOLDER_FIX)
    found = sorted(p.name for p in folder.iterdir())[:8]
    return SourceError(f"SAE folder '{folder}' holds no SAE checkpoint (it has {', '.join(found) or 'no files'})",
                       fix=FOLDER_FIX)


def checkpoints_in(folder: Path) -> list[Path]:
    """The checkpoint folders of a run folder (one or two levels down, sorted); ``[]`` when ``folder`` is a
    checkpoint itself or holds none (then :func:`detect_format` says what it is)."""
    if not folder.is_dir() or any(all((folder / n).is_file() for n in names) for names in FORMAT_FILES.values()):
        return []
    return _checkpoints_below(folder)


def _checkpoints_below(folder: Path) -> list[Path]:
    """Checkpoint folders one or two levels below ``folder`` (``layers.6``, ``layers.6/seed0``, ``trainer_0``)."""
    def is_checkpoint(p: Path) -> bool:
        return any(all((p / n).is_file() for n in names) for names in FORMAT_FILES.values())

    found: list[Path] = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        if is_checkpoint(child):
            found.append(child)
        else:
            found.extend(g for g in sorted(child.iterdir()) if g.is_dir() and is_checkpoint(g))
    return found


_JSON_LIMIT = 16 << 20
"""The largest config file read (SAE configs are a few KiB)."""


def read_json_object(file: Path, fix: str) -> dict[str, Any]:
    """The JSON object in ``file``; a file that is not there or not regular (a FIFO or a device, refused
    unread), larger than 16 MiB, unreadable text or another JSON value is a :class:`SourceError`."""
    try:
        raw = read_regular(file, limit=_JSON_LIMIT)
    except NotRegularFile as e:
        raise SourceError(f"'{file}' is not a regular file ({e.kind})", fix=fix) from e
    except IsADirectoryError as e:
        raise SourceError(f"'{file}' is not a regular file (a folder)", fix=fix) from e
    except OSError as e:
        raise SourceError(f"'{file}' cannot be read: {os_reason(e)}", fix=fix) from e
    except ValueError as e:  # over the limit
        raise SourceError(f"'{file}' is no config file: {e}", fix=fix) from e
    try:
        data = parse_json(raw.decode("utf-8"), object_pairs_hook=unique_keys)
    except DuplicateKey as e:  # json keeps the last of two silently; YAML suites and baselines refuse them too
        raise SourceError(f"'{file}' holds the key {json.dumps(e.key)} twice in one object (a JSON reader would keep "
                          "the last one without a word)", fix=f"keep one \"{e.key}\" in {file.name}") from None
    except ValueError as e:
        raise SourceError(f"'{file}' is not valid JSON: {short(e)}", fix=fix) from e
    if not isinstance(data, dict):
        raise SourceError(f"'{file}' does not hold a JSON object", fix=fix)
    return data


def _shown(value: Any) -> str:
    """A config value as its JSON text, with its kind when that is the problem (``"64" (a string)``)."""
    text = json_text(value)
    kind = ("a boolean" if isinstance(value, bool) else "a string" if isinstance(value, str)
            else "a list" if isinstance(value, list) else "an object" if isinstance(value, dict)
            else "a decimal number" if isinstance(value, float) and math.isfinite(value) else None)
    return f"{text} ({kind})" if kind else text


def whole_number(block: dict[str, Any], key: str, file: Path, *, minimum: int, fix: str,
                 default: int | None = None, path: str = "") -> int:
    """``block[key]`` of the config file ``file``, checked: a whole number >= ``minimum`` (JSON ``true``,
    ``64.0``, ``"64"`` and ``NaN`` are not); ``default`` when the key is absent (None: required).
    ``path`` is where ``block`` sits in the file (``"trainer."``), for the message."""
    if key not in block and default is not None:
        return default
    if key not in block:
        raise SourceError(f"'{file}' has no {path}{key}", fix=fix)
    value = block[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SourceError(f"'{file}': {path}{key} must be a whole number >= {minimum}, got {_shown(value)}", fix=fix)
    return value


_SIZE_KEYS = {
    # format: (where the sizes sit in the config file, the key of d_in, the key of d_sae)
    "sae_lens": ("", "d_in", "d_sae"),
    "sparsify": ("", "d_in", "num_latents"),  # num_latents 0: d_in * expansion_factor (sparsify's rule)
    "dictionary_learning": ("trainer.", "activation_dim", "dict_size"),
}


def config_sizes(found: str, cfg: dict[str, Any], file: Path, stored: dict[str, int] | None = None,
                 seen: str = "") -> tuple[int, int]:
    """``(d_in, d_sae)`` as the config file ``file`` of a ``found`` checkpoint gives them, each checked by
    :func:`whole_number` (>= 1; sparsify's ``num_latents`` 0 means ``d_in * expansion_factor``), before
    anything is built of them. ``stored``: the sizes the weights have (``d_in``, ``d_sae``), when known,
    which the fix then suggests, saying where they were ``seen``."""
    path, in_key, sae_key = _SIZE_KEYS[found]
    block = cfg
    if path:
        inner = cfg.get(path.rstrip("."))
        if not isinstance(inner, dict):
            raise SourceError(f"'{file}' has no \"trainer\" block (dictionary_learning writes "
                              "{\"trainer\": {...}, \"buffer\": {...}})",
                              fix=f"point path at a trainer_N folder written by dictionary_learning's trainSAE "
                              f"({' + '.join(FORMAT_FILES[found])})")
        block = inner

    def size(key: str, dim: str, minimum: int = 1, default: int | None = None) -> int:
        known = (stored or {}).get(dim)
        fix = (f'set "{key}": {known} in {file.name}, the size its weights have ({seen})' if known else
               f"set {path}{key} in {file.name} to the checkpoint's size, a whole number >= {minimum} written "
               "without quotes or a decimal point")
        return whole_number(block, key, file, minimum=minimum, fix=fix, default=default, path=path)

    d_in = size(in_key, "d_in")
    if found != "sparsify":
        return d_in, size(sae_key, "d_sae")
    latents = size(sae_key, "d_sae", minimum=0, default=0)
    return d_in, latents or d_in * size("expansion_factor", "", default=32)


def check_safetensors(weights: Path, fix: str) -> dict[str, str]:
    """An empty, truncated or corrupt safetensors file is a :class:`SourceError` (the header and every
    tensor's shape are read; safetensors refuses a broken file here). Returns each tensor's safetensors
    dtype code (``F32``, ``BF16``, ``I8``...)."""
    from safetensors import safe_open

    if weights.stat().st_size == 0:
        raise SourceError(f"SAE weights file '{weights}' is empty", fix=fix)
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            dtypes = {}
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                tensor = f.get_slice(key)
                tensor.get_shape()
                dtypes[key] = str(tensor.get_dtype())
            return dtypes
    except Exception as e:
        raise SourceError(f"SAE weights file '{weights}' is corrupt or truncated ({short(e, 160)})", fix=fix) from e


_FLOAT_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
"""safetensors dtype codes of the weights an SAE may hold, and their torch names."""
_OTHER_DTYPES = {"I8": "int8", "U8": "uint8", "I16": "int16", "U16": "uint16", "I32": "int32", "U32": "uint32",
                 "I64": "int64", "U64": "uint64", "BOOL": "bool"}


def check_weight_dtypes(weights: Path, cfg: dict[str, Any], dtypes: dict[str, str]) -> None:
    """Refuse weights that are not floating point, and weights whose dtype is not the one cfg.json names
    (``dtypes``: each tensor's safetensors dtype code, from :func:`check_safetensors` or the header)."""
    other = {k: v for k, v in dtypes.items() if v not in _FLOAT_DTYPES}
    if other:
        shown = ", ".join(f"{k} is {_OTHER_DTYPES.get(v, v.lower())}" for k, v in sorted(other.items())[:4])
        raise SourceError(
            f"SAE weights file '{weights}' holds weights that are not floating point ({shown}); integer or "
            "quantized SAE weights cannot be evaluated as stored",
            fix="re-save the SAE with float32, float16 or bfloat16 weights (sae.save_model(folder) after sae.to(torch.float32))",
        )
    stated = str(cfg.get("dtype") or "").removeprefix("torch.")
    stored = sorted({_FLOAT_DTYPES[v] for v in dtypes.values()})
    if stated and stored and stored != [stated]:
        raise SourceError(
            f"the SAE's cfg.json says dtype {stated}, but its weights in '{weights.name}' are {' and '.join(stored)}",
            fix=f'set "dtype": "{stored[0]}" in cfg.json to evaluate the weights as stored, or re-save the SAE '
            "with sae.save_model(folder)" if len(stored) == 1 else "re-save the SAE with sae.save_model(folder)",
        )


_SHAPES = {
    # format: {tensor: (size per dimension)}; what the config file's sizes make each weight's shape
    "sae_lens": {"W_enc": ("d_in", "d_sae"), "W_dec": ("d_sae", "d_in")},
    "sparsify": {"encoder.weight": ("d_sae", "d_in"), "W_dec": ("d_sae", "d_in")},
}


def inspect_sae_folder(folder: Path, wanted: str | None = None) -> str:
    """Check what can be checked of a checkpoint folder without torch and return its format: the format
    (:func:`detect_format`), the config file is a JSON object whose sizes are whole numbers >= 1
    (:func:`config_sizes`), the weights file is not empty, and for safetensors weights the header reads,
    the weight shapes agree with the config's sizes and (SAE Lens) the weights are floating point of the
    config's dtype."""
    found = detect_format(folder, wanted)
    cfg_name, weights_name = FORMAT_FILES[found]
    fix = f"copy the checkpoint folder again completely, or write it again with its trainer ({_WHAT[found]})"
    cfg = read_json_object(folder / cfg_name, fix=fix)
    weights = folder / weights_name
    if weights.stat().st_size == 0:
        raise SourceError(f"SAE weights file '{weights}' is empty", fix=fix)
    if weights.suffix != ".safetensors":
        config_sizes(found, cfg, folder / cfg_name)
        return found  # ae.pt: a torch file, read when the SAE loads
    try:
        header = safetensors_header(weights)
    except (OSError, ValueError) as e:
        raise SourceError(f"SAE weights file '{weights}' is corrupt or truncated ({short(e, 160)})", fix=fix) from e
    shapes = {t: header[t]["shape"] for t in _SHAPES[found] if t in header}
    known = next(((t, shape) for t, shape in shapes.items() if len(shape) == 2), None)
    stored = dict(zip(_SHAPES[found][known[0]], known[1])) if known else None
    seen = f"{known[0]} in {weights_name} has shape {known[1]}" if known else ""
    d_in, d_sae = config_sizes(found, cfg, folder / cfg_name, stored, seen)
    if found == "sae_lens":
        check_sae_lens_config(cfg, folder / cfg_name, d_sae=d_sae, hook_given=None)
        check_weight_dtypes(weights, cfg, {k: str(v.get("dtype")) for k, v in header.items()
                                           if k != "__metadata__" and isinstance(v, dict)})
    sizes = {"d_in": d_in, "d_sae": d_sae}
    for tensor, shape in shapes.items():  # a missing tensor: the loader names it (with the architecture's own rules)
        wanted_shape = [sizes[d] for d in _SHAPES[found][tensor]]
        if list(shape) != wanted_shape:
            said = _sizes_said(found, cfg, d_in, d_sae)
            raise SourceError(f"'{weights}' holds {tensor} of shape {list(shape)}, but {folder / cfg_name} says "
                              f"{said}, so {tensor} should be {wanted_shape}",
                              fix=f"{cfg_name} and the weights come from different SAEs: " + fix)
    return found


def _sizes_said(found: str, cfg: dict[str, Any], d_in: int, d_sae: int) -> str:
    """What the config says of the sizes, in its own keys: ``d_in 16, d_sae 32``."""
    _, in_key, sae_key = _SIZE_KEYS[found]
    if found == "sparsify" and not cfg.get(sae_key):
        return f"{in_key} {d_in}, expansion_factor {d_sae // d_in} ({d_sae} latents)"
    return f"{in_key} {d_in}, {sae_key} {d_sae}"


Converter = Callable[..., tuple[dict[str, Any], dict[str, Any]]]
"""SAE Lens's disk-loader signature: ``(path, device, cfg_overrides=None) -> (cfg_dict, state_dict)``."""


def load_with_converter(folder: Path, converter: Converter, *, device: str, dtype: str | None, fix: str) -> Any:
    """An SAE Lens SAE from ``folder`` through ``SAE.load_from_disk(folder, converter=converter)``.

    The converter's own :class:`SaevalError` passes through; anything else SAE Lens raises is one
    :class:`SourceError` naming the folder."""
    from sae_lens import SAE

    try:
        return SAE.load_from_disk(str(folder), device=device, dtype=dtype, converter=converter)
    except SaevalError:
        raise
    except Exception as e:
        raise SourceError(f"SAE Lens could not build an SAE from '{folder}': {short(e)}", fix=fix) from e
