"""What an SAE Lens folder's ``cfg.json`` must hold besides its sizes, checked as JSON (no torch) before SAE
Lens reads it.

SAE Lens builds its config dataclasses from the file's values as they are: ``"apply_b_dec_to_input": "false"``
is a non-empty string, so true where it is tested and a ``TypeError`` where it is used as a number; a ``k`` of
0 makes a top-k SAE that never fires (every sparsity gate of the form ``<=`` passes); a ``hook_name`` of 5 or a
``hook_head_index`` of ``"0"`` reach the evaluation as an SAE that names no usable hook. Each is one error
naming the file and the key, whose fix is to edit ``cfg.json`` (not the factory protocol's advice).

Where the hook keys sit follows SAE Lens (``handle_config_defaulting``): in ``metadata`` for a config written by
SAE Lens 6 or later, at the top (``hook_name`` or ``hook_point``, ``hook_head_index`` or
``hook_point_head_index``) for an older one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.common import json_text

__all__ = ["BOOL_KEYS", "check_sae_lens_config"]

BOOL_KEYS = ("apply_b_dec_to_input", "rescale_acts_by_decoder_norm", "tied_weights", "stop_on_duplicate_support")
"""The ``bool`` fields of SAE Lens's SAE configs (every architecture of its registry)."""

_EDIT = "edit cfg.json (written by sae.save_model(folder)): "


def check_sae_lens_config(cfg: dict[str, Any], file: Path, *, d_sae: int, hook_given: bool | None) -> None:
    """Refuse values of ``cfg`` (the JSON object of ``file``) that SAE Lens would take without a word and
    fail on, or evaluate wrongly, later: a :data:`BOOL_KEYS` value that is not ``true``/``false``, a ``k``
    that is not a whole number from 1 to ``d_sae``, a hook name that is not a non-empty string, a head index
    that is not ``null`` or a whole number >= 0. ``hook_given``: the suite entry names ``hook_name:`` (then
    the file's may be missing); ``None`` when that is not known here (a missing hook name is then left to
    the load, which knows)."""
    for key in BOOL_KEYS:
        if key in cfg and not isinstance(cfg[key], bool):
            raise SourceError(f"'{file}': {key} must be true or false, got {_shown(cfg[key])}",
                              fix=_EDIT + f'write "{key}": true or false, without quotes')
    k = cfg.get("k")
    if "k" in cfg and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_sae):
        raise SourceError(f"'{file}': k (the latents a top-k SAE keeps per token) must be a whole number from 1 to "
                          f"d_sae {d_sae}, got {_shown(k)}",
                          fix=_EDIT + "set k to the number of latents the SAE was trained to keep, without quotes")
    block, where = _hook_block(cfg, file)
    name_key = next((key for key in ("hook_name", "hook_point") if block.get(key) is not None), "hook_name")
    name = block.get(name_key)
    place = 'in its "metadata"' if where else "at its top level"
    fix = (_EDIT + f'set "{name_key}" {place} to the TransformerLens hook the SAE was trained on, e.g. '
           '"blocks.0.hook_resid_pre"' + ("" if hook_given else ", or name it with hook_name: in the suite's SAE entry"))
    if name is not None and not (isinstance(name, str) and name.strip()):
        raise SourceError(f"'{file}': {where}{name_key} must name the hook the SAE reads, got {_shown(name)}", fix=fix)
    if name is None and hook_given is False:
        raise SourceError(f"'{file}' names no hook ({where}{name_key} is {'null' if name_key in block else 'missing'})",
                          fix=fix)
    head_key = next((key for key in ("hook_head_index", "hook_point_head_index") if key in block), "hook_head_index")
    head = block.get(head_key)
    if head is not None and (isinstance(head, bool) or not isinstance(head, int) or head < 0):
        raise SourceError(f"'{file}': {where}{head_key} must be null (all heads) or the index of one attention head, "
                          f"a whole number >= 0, got {_shown(head)}",
                          fix=_EDIT + f'set "{head_key}" to null, or to the head the SAE was trained on (0, 1, ...) '
                          "without quotes")


def _hook_block(cfg: dict[str, Any], file: Path) -> tuple[dict[str, Any], str]:
    """The object holding the hook keys, and its path in the file (``"metadata."`` or ``""``)."""
    metadata = cfg.get("metadata")
    if "metadata" in cfg and not isinstance(metadata, dict):
        raise SourceError(f"'{file}': metadata must be an object, got {_shown(metadata)}",
                          fix=_EDIT + 'write "metadata": {"hook_name": ..., ...} as SAE Lens writes it')
    version = cfg.get("sae_lens_version") or (metadata or {}).get("sae_lens_version")
    return (metadata or {}, "metadata.") if _from_sae_lens_6(version) else (cfg, "")


def _from_sae_lens_6(version: Any) -> bool:
    """Whether SAE Lens reads the config as one of version 6 or later (``handle_config_defaulting``)."""
    if not version:
        return False
    from packaging.version import InvalidVersion, Version

    try:
        return Version(str(version)) >= Version("6.0.0-rc.0")
    except InvalidVersion:  # SAE Lens cannot read it either, and says so
        return True


def _shown(value: Any) -> str:
    """A value as JSON text, with its kind when it is a string (``"false" (a string)``)."""
    text = json_text(value)
    return f"{text} (a string)" if isinstance(value, str) else text
