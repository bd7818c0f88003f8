"""The keys a suite file may hold, what each value must be, and the checks of those values (pure Python).

One table (:data:`SECTIONS`: per section, its :class:`Field` s) is the definition of the format: the
YAML loader (:mod:`.loader`) refuses keys that are not in it, the spec dataclasses (:mod:`.suite`)
run each field's check (:func:`check_field`, chosen by the field's ``kind``) in ``__post_init__``,
and the JSON Schema (:mod:`.schema`) is built from the same table, kinds and limits. A check raises
:class:`Invalid` (a message and a fix, no location); the dataclass that ran it adds the line and key path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pytest_saeval.errors import brief, did_you_mean
from pytest_saeval.settings import DEVICE_CHOICES, DTYPES, is_device

__all__ = [
    "COUNT_KEYS",
    "DATASET_KEYS",
    "DATA_KEYS",
    "DATA_SOURCES",
    "DEFAULTS_KEYS",
    "FACTORY_PATTERN",
    "MAX_COUNT",
    "MAX_EXPRESSION_LENGTH",
    "MAX_GATE_EXPRESSIONS",
    "MAX_ID_LENGTH",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "MAX_TOKEN_ID",
    "MODEL_KEYS",
    "HOOK_PATTERN",
    "MODEL_SOURCES",
    "SAE_FORMATS",
    "SAE_ID_PATTERN",
    "SAE_KEYS",
    "SAE_SOURCES",
    "SECTIONS",
    "TOP_KEYS",
    "Field",
    "Invalid",
    "Kind",
    "check_bool",
    "check_count",
    "check_device",
    "check_dtype",
    "check_exclude",
    "check_factory",
    "check_field",
    "check_hook_name",
    "check_path",
    "check_sae_format",
    "check_sae_id",
    "check_text",
    "kind",
]

Kind = Literal["text", "path", "count", "bool", "device", "dtype", "exclude", "factory", "sae_id", "sae_format",
               "hook_name", "gates", "gate_mode", "model", "data", "dataset", "data_files", "saes", "defaults"]
"""What a key's value is; each kind has one check here and one JSON Schema fragment in :mod:`.schema`."""


@dataclass(frozen=True)
class Field:
    """One key of a section of a suite file."""

    name: str
    """The key as written in the file."""
    kind: Kind
    """What its value must be (selects the check and the schema fragment)."""
    description: str
    """One sentence for editors (the schema's description) and the README."""


MAX_COUNT = 2**31 - 1
"""Largest batch count, batch size or context size."""
MAX_TOKEN_ID = 2**63 - 1
"""Largest token id (torch's int64)."""
MAX_ID_LENGTH = 100
"""Longest SAE id (ids become test ids and parts of output file names)."""
MAX_NAME_BYTES = 255
"""Longest file or folder name, in UTF-8 bytes (the limit of common file systems)."""
MAX_PATH_BYTES = 4095
"""Longest path, in UTF-8 bytes."""
MAX_GATE_EXPRESSIONS = 8
"""Most expressions in one gate's list (a range is two; a baseline-relative bound or two more is plenty)."""
MAX_EXPRESSION_LENGTH = 100
"""Longest gate expression, in characters (a number of up to 17 significant digits needs far fewer)."""

SAE_ID_PATTERN = r"^(?!/)(?!.*//)(?!.*/$)(?!(?:.*/)?\.\.?(?:/|$))[A-Za-z0-9_.\-/]+$"
"""SAE ids: letters, digits, ``-``, ``_``, ``.`` and ``/``, without empty, ``.`` or ``..`` parts between slashes
(ECMAScript-compatible, so the schema uses it as is)."""
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
FACTORY_PATTERN = rf"^{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*$"
"""``module:function`` with Python identifiers on both sides."""
_SAE_ID_RE = re.compile(SAE_ID_PATTERN)
_FACTORY_RE = re.compile(FACTORY_PATTERN)
HOOK_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*$"
"""A TransformerLens hook name: dotted names such as ``blocks.6.hook_resid_post``."""
_HOOK_RE = re.compile(HOOK_PATTERN)
SAE_FORMATS = ("sae_lens", "sparsify", "dictionary_learning")
"""What ``format:`` of a ``path:`` entry may say: an SAE Lens folder, an EleutherAI sparsify
checkpoint folder, a dictionary_learning trainer folder."""

MODEL_SOURCES = ("name", "path", "factory")
"""Keys under ``model:`` of which exactly one is set."""
DATA_SOURCES = ("tokens", "dataset")
"""Keys under ``data:`` of which exactly one is set."""
SAE_SOURCES = ("path", "release", "factory")
"""Keys of an SAE entry of which exactly one is set (``release`` with ``sae_id``)."""

_F = Field
SECTIONS: dict[str, tuple[Field, ...]] = {
    "suite": (
        _F("model", "model", "The language model (exactly one of name, path, factory)."),
        _F("data", "data", "The evaluation tokens (exactly one of tokens, dataset) and batch counts."),
        _F("baseline", "path", "The baseline file that `baseline` in gates refers to (relative to the suite file)."),
        _F("saes", "saes", "The SAEs and their gates."),
        _F("defaults", "defaults", "Gates merged into every SAE's gates (an SAE's own entry wins per metric)."),
        _F("gate_mode", "gate_mode", "point: the value decides; interval: a gate fails only when the whole 95% "
                                     "interval is on the wrong side."),
    ),
    "model": (
        _F("name", "text", "A TransformerLens pretrained name (needs the hub or its cache)."),
        _F("path", "path", "A local Hugging Face model folder, loaded offline (relative to the suite file)."),
        _F("factory", "factory", "module:function returning a model; called with no arguments (runs that code)."),
        _F("device", "device", f"{DEVICE_CHOICES} (auto: cuda when available, else cpu)."),
        _F("dtype", "dtype", "The model's dtype: " + ", ".join(DTYPES) + "."),
        _F("trust_remote_code", "bool", "Run the Python code a model folder (or hub model) ships for its "
                                        "architecture (config.json auto_map); false by default: such a folder is refused."),
    ),
    "data": (
        _F("tokens", "path", "An int array [n_sequences, context_size] in a .npy, .pt or .safetensors file."),
        _F("dataset", "dataset", "A Hugging Face dataset (hub id, local folder or file) tokenized as SAE Lens does."),
        _F("context_size", "count", "Tokens per sequence."),
        _F("batch_size_prompts", "count", "Sequences per batch."),
        _F("n_reconstruction_batches", "count", "Batches for the CE / KL metrics."),
        _F("n_sparsity_batches", "count", "Batches for the sparsity / variance / feature metrics."),
        _F("exclude_special_tokens", "exclude", "true (the tokenizer's special tokens), false, or a list of token ids."),
    ),
    "dataset": (
        _F("path", "text", "Hub name, builder (json) or local folder / file."),
        _F("split", "text", "The split to read."),
        _F("column", "text", "The column to read (default: the first of tokens, input_ids, text, problem)."),
        _F("streaming", "bool", "Stream rows instead of downloading the whole dataset first."),
        _F("name", "text", "The dataset configuration name, if it has several."),
        _F("data_files", "data_files", "A file, a list of files, or a mapping split -> files."),
    ),
    "sae": (
        _F("id", "sae_id", "Unique in the suite; used in test ids and output file names."),
        _F("path", "path", "A local checkpoint folder, relative to the suite file: SAE Lens (cfg.json + "
                           "sae_weights.safetensors), EleutherAI sparsify (cfg.json + sae.safetensors) or "
                           "dictionary_learning (config.json + ae.pt)."),
        _F("format", "sae_format", "With path: sae_lens, sparsify or dictionary_learning, when the files alone "
                                   "do not tell (detected otherwise)."),
        _F("hook_name", "hook_name", "With path: the TransformerLens hook the SAE reads, replacing the one its "
                                     "checkpoint names (e.g. blocks.6.hook_resid_post)."),
        _F("release", "text", "An SAE Lens pretrained release (with sae_id)."),
        _F("sae_id", "text", "The id inside the release: an exact id or a regex (one SAE entry per match)."),
        _F("factory", "factory", "module:function returning an SAE (runs that code)."),
        _F("gates", "gates", f"metric: \">= value\" (or a list of up to {MAX_GATE_EXPRESSIONS} such expressions, all "
                             "of which must hold)."),
    ),
    "defaults": (
        _F("gates", "gates", "Gates merged into every SAE's gates."),
    ),
}
"""Every section of a suite file and its keys, in the order the README shows them."""
del _F


def _names(section: str) -> tuple[str, ...]:
    return tuple(f.name for f in SECTIONS[section])


TOP_KEYS = _names("suite")
"""Top-level keys of a suite file."""
MODEL_KEYS = _names("model")
"""Keys under ``model:``."""
DATA_KEYS = _names("data")
"""Keys under ``data:``."""
COUNT_KEYS = tuple(f.name for f in SECTIONS["data"] if f.kind == "count")
"""Keys under ``data:`` that hold a whole number >= 1."""
DATASET_KEYS = _names("dataset")
"""Keys under ``data.dataset:``."""
SAE_KEYS = _names("sae")
"""Keys of one ``saes:`` entry."""
DEFAULTS_KEYS = _names("defaults")
"""Keys under ``defaults:``."""


class Invalid(Exception):
    """A value problem without a location; the caller turns it into a located SuiteError."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def kind(value: object) -> str:
    """The YAML-ish name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def check_text(name: str, value: object, example: str) -> str:
    """A non-empty string, stripped."""
    if not isinstance(value, str) or not value.strip():
        got = "an empty string" if isinstance(value, str) else f"{kind(value)} ({brief(value)})"
        raise Invalid(f"{name} must be a non-empty string, got {got}", f"write {name}: {example}")
    return value.strip()


def check_path(name: str, value: object, example: str) -> str:
    """A non-empty string that a file system can hold as a path: no NUL, names of at most
    :data:`MAX_NAME_BYTES` bytes, at most :data:`MAX_PATH_BYTES` bytes in all."""
    text = check_text(name, value, example)
    if "\0" in text:
        raise Invalid(f"{name} holds a NUL character, which no path can hold", f"write {name}: {example}")
    longest = max(text.replace("\\", "/").split("/"), key=lambda part: len(part.encode()))
    if len(longest.encode()) > MAX_NAME_BYTES:
        raise Invalid(f"{name} holds a name of {len(longest.encode())} bytes ({brief(longest, 40)}); file and folder "
                      f"names hold at most {MAX_NAME_BYTES}", f"shorten that name (e.g. {example})")
    if len(text.encode()) > MAX_PATH_BYTES:
        raise Invalid(f"{name} is {len(text.encode())} bytes long; paths hold at most {MAX_PATH_BYTES}",
                      "use a shorter path (relative paths start at the suite file's folder)")
    return text


def check_device(value: object) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not isinstance(value, str) or not is_device(value):
        raise Invalid(f"device must be {DEVICE_CHOICES}, got {brief(value)}", f"use {DEVICE_CHOICES} (e.g. cuda:0)")
    return value.strip()


def check_dtype(value: object) -> str:
    """One of :data:`~pytest_saeval.settings.DTYPES`."""
    if not isinstance(value, str) or value.strip() not in DTYPES:
        hint = did_you_mean(value, DTYPES) if isinstance(value, str) else ""
        raise Invalid(f"unknown dtype {brief(value)}{hint}", "use one of " + ", ".join(DTYPES))
    return value.strip()


def check_factory(value: object) -> str:
    """``module:function`` with Python identifiers on both sides."""
    text = check_text("factory", value, "mypkg.module:function")
    if not _FACTORY_RE.match(text):
        raise Invalid(
            f"factory must be 'module:function', got {brief(text)}",
            "write the importable module, a colon and the function name, e.g. mypkg.models:load",
        )
    return text


def check_sae_id(value: object) -> str:
    """Letters, digits, ``-``, ``_``, ``.`` and ``/`` (no empty, ``.`` or ``..`` parts between slashes), at most
    :data:`MAX_ID_LENGTH` characters."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise Invalid(f"SAE id must be a string, got {kind(value)} ({brief(value)})", f'quote it: id: "{value}"')
    text = check_text("id", value, "layer1-topk")
    if not _SAE_ID_RE.match(text):
        raise Invalid(
            f"SAE id {brief(text)} may only contain letters, digits, '-', '_', '.' and '/' "
            "(no empty, '.' or '..' parts between slashes)",
            "rename it, e.g. layer1-topk (ids become test ids and file names)",
        )
    if len(text) > MAX_ID_LENGTH:
        raise Invalid(f"SAE id {brief(text, 40)} is {len(text)} characters long; ids hold at most {MAX_ID_LENGTH}",
                      "shorten it, e.g. layer1-topk (ids become test ids and output file names)")
    return text


def check_sae_format(value: object) -> str:
    """One of :data:`SAE_FORMATS`."""
    if not isinstance(value, str) or value.strip() not in SAE_FORMATS:
        hint = did_you_mean(value.strip(), SAE_FORMATS) if isinstance(value, str) else ""
        raise Invalid(f"unknown SAE folder format {brief(value)}{hint}",
                      "use one of " + ", ".join(SAE_FORMATS) + " (or leave format out: it is detected from the files)")
    return value.strip()


def check_hook_name(value: object) -> str:
    """A TransformerLens hook name: dotted names such as ``blocks.6.hook_resid_post``."""
    text = check_text("hook_name", value, "blocks.6.hook_resid_post")
    if not _HOOK_RE.match(text):
        raise Invalid(
            f"hook_name {brief(text)} is not a TransformerLens hook name",
            "write the hook's dotted name, e.g. blocks.6.hook_resid_post, blocks.6.hook_mlp_out or blocks.6.attn.hook_z",
        )
    return text


def _whole(value: object) -> int | None:
    """``value`` as an integer when it is one: an int, or a float with no fractional part (``8.0``), which
    JSON Schema's ``integer`` counts as one too (so the schema and the checks agree); ``None`` for anything
    else (booleans, ``8.5``, strings, infinities)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def check_count(name: str, value: object) -> int:
    """A whole number from 1 to :data:`MAX_COUNT` (booleans are not numbers here; ``8.0`` is 8)."""
    number = _whole(value)
    if number is None:
        raise Invalid(f"{name} must be a whole number >= 1, got {kind(value)} ({brief(value)})",
                      f"set {name} to a whole number such as 10")
    if number < 1:
        raise Invalid(f"{name} must be >= 1, got {brief(value)}", f"set {name} to 1 or more")
    if number > MAX_COUNT:
        raise Invalid(f"{name} must be at most {MAX_COUNT}, got {brief(value)}", f"set {name} to a whole number such as 10")
    return number


def check_exclude(value: object) -> bool | tuple[int, ...]:
    """``true``, ``false`` or a list of token ids from 0 to :data:`MAX_TOKEN_ID` (``50256.0`` is 50256)."""
    if isinstance(value, bool):
        return value
    ids = [_whole(v) for v in value] if isinstance(value, (list, tuple)) else None
    if ids is not None and all(i is not None and 0 <= i <= MAX_TOKEN_ID for i in ids):
        return tuple(i for i in ids if i is not None)
    too_big = ids is not None and any(i is not None and i > MAX_TOKEN_ID for i in ids)
    raise Invalid(
        f"exclude_special_tokens must be true, false or a list of token ids, got {brief(value)}"
        + (f" (token ids are at most {MAX_TOKEN_ID})" if too_big else ""),
        "use true (the tokenizer's special tokens), false, or a list of non-negative integers like [0, 50256]",
    )


def check_bool(name: str, value: object) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false, got {brief(value)}", f"write {name}: true or {name}: false")
    return value


_EXAMPLES = {"name": "gpt2", "release": "gpt2-small-res-jb", "sae_id": "blocks.8.hook_resid_pre",
             "split": "train", "column": "text", "tokens": "../data/eval_tokens.npy", "baseline": "../baselines/demo.json"}
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "text": lambda name, v: check_text(name, v, _EXAMPLES.get(name, "...")),
    "path": lambda name, v: check_path(name, v, _EXAMPLES.get(name, "../models/tiny")),
    "count": check_count,
    "bool": check_bool,
    "device": lambda name, v: check_device(v),
    "dtype": lambda name, v: check_dtype(v),
    "exclude": lambda name, v: check_exclude(v),
    "factory": lambda name, v: check_factory(v),
    "sae_id": lambda name, v: check_sae_id(v),
    "sae_format": lambda name, v: check_sae_format(v),
    "hook_name": lambda name, v: check_hook_name(v),
}


def check_field(section: str, name: str, value: object) -> Any:
    """Check ``value`` of key ``name`` in ``section`` by its field's kind; return the normalised value.

    Kinds that are structure (sections, gates) are the loader's; they come back unchanged.
    """
    field = next(f for f in SECTIONS[section] if f.name == name)
    check = _CHECKS.get(field.kind)
    return value if check is None else check(name, value)
