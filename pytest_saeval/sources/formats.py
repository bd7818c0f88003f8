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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_saeval.errors import SaevalError, SourceError
from pytest_saeval.sources.common import exists, short

__all__ = ["FOLDER_FIX", "FORMAT_FILES", "check_safetensors", "detect_format", "load_with_converter",
           "read_json_object"]

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
    level down), a half checkpoint or the files of two formats at once is a :class:`SourceError`."""
    if not exists(folder, "SAE folder"):
        raise SourceError(f"SAE folder '{folder}' does not exist",
                          fix="check the SAE path (relative paths are relative to the suite file); " + FOLDER_FIX)
    if not folder.is_dir():
        raise SourceError(f"SAE path '{folder}' is not a folder", fix=FOLDER_FIX)
    if wanted is not None:
        missing = [name for name in FORMAT_FILES[wanted] if not (folder / name).is_file()]
        if missing:
            raise SourceError(
                f"SAE folder '{folder}' has no {' and no '.join(missing)}, which {_WHAT[wanted]} "
                f"(format: {wanted}) holds",
                fix=f"point path at {_WHAT[wanted]} ({' + '.join(FORMAT_FILES[wanted])}), or remove format: "
                "to have the format detected from the files")
        return wanted
    complete = [f for f, names in FORMAT_FILES.items() if all((folder / n).is_file() for n in names)]
    if len(complete) == 1:
        return complete[0]
    if complete:
        raise SourceError(
            f"SAE folder '{folder}' holds the files of " + " and of ".join(_WHAT[f] for f in complete)
            + ", so its format is ambiguous",
            fix="add format: " + " or format: ".join(complete) + " to the SAE entry")
    raise _not_a_checkpoint(folder)


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


def read_json_object(file: Path, fix: str) -> dict[str, Any]:
    """The JSON object in ``file``; unreadable text or another JSON value is a :class:`SourceError`."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SourceError(f"'{file}' is not valid JSON: {short(e)}", fix=fix) from e
    if not isinstance(data, dict):
        raise SourceError(f"'{file}' does not hold a JSON object", fix=fix)
    return data


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
