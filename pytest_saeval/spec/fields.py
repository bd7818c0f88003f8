"""The keys a suite file may hold and the checks of their values (pure Python).

The YAML loader (:mod:`.loader`) and the spec dataclasses (:mod:`.suite`) share these: the loader
uses the key lists to refuse unknown keys, the dataclasses run the value checks in ``__post_init__``.
A check raises :class:`Invalid` (a message and a fix, no location); the dataclass that ran it adds
the line and key path.
"""

from __future__ import annotations

import re

from pytest_saeval.errors import did_you_mean
from pytest_saeval.settings import DEVICE_CHOICES, DTYPES, is_device

__all__ = [
    "COUNT_KEYS",
    "DATASET_KEYS",
    "DATA_KEYS",
    "DEFAULTS_KEYS",
    "MODEL_KEYS",
    "SAE_FORMATS",
    "SAE_KEYS",
    "TOP_KEYS",
    "Invalid",
    "check_bool",
    "check_count",
    "check_device",
    "check_dtype",
    "check_exclude",
    "check_factory",
    "check_hook_name",
    "check_sae_format",
    "check_sae_id",
    "check_text",
    "kind",
]

TOP_KEYS = ("model", "data", "baseline", "saes", "defaults", "gate_mode")
"""Top-level keys of a suite file."""
MODEL_KEYS = ("name", "path", "factory", "device", "dtype")
"""Keys under ``model:``."""
COUNT_KEYS = ("context_size", "batch_size_prompts", "n_reconstruction_batches", "n_sparsity_batches")
"""Keys under ``data:`` that hold a whole number >= 1."""
DATA_KEYS = ("tokens", "dataset", *COUNT_KEYS, "exclude_special_tokens")
"""Keys under ``data:``."""
DATASET_KEYS = ("path", "split", "column", "streaming", "name", "data_files")
"""Keys under ``data.dataset:``."""
SAE_KEYS = ("id", "path", "format", "hook_name", "release", "sae_id", "factory", "gates")
"""Keys of one ``saes:`` entry."""
SAE_FORMATS = ("sae_lens", "sparsify", "dictionary_learning")
"""What ``format:`` of a ``path:`` entry may say: an SAE Lens folder, an EleutherAI sparsify
checkpoint folder, a dictionary_learning trainer folder."""
DEFAULTS_KEYS = ("gates",)
"""Keys under ``defaults:``."""

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_FACTORY_RE = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*$")
_SAE_ID_RE = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_HOOK_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*$")


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
        got = "an empty string" if isinstance(value, str) else f"{kind(value)} ({value!r})"
        raise Invalid(f"{name} must be a non-empty string, got {got}", f"write {name}: {example}")
    return value.strip()


def check_device(value: object) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not isinstance(value, str) or not is_device(value):
        raise Invalid(f"device must be {DEVICE_CHOICES}, got {value!r}", f"use {DEVICE_CHOICES} (e.g. cuda:0)")
    return value.strip()


def check_dtype(value: object) -> str:
    """One of :data:`~pytest_saeval.settings.DTYPES`."""
    if not isinstance(value, str) or value.strip() not in DTYPES:
        hint = did_you_mean(value, DTYPES) if isinstance(value, str) else ""
        raise Invalid(f"unknown dtype {value!r}{hint}", "use one of " + ", ".join(DTYPES))
    return value.strip()


def check_factory(value: object) -> str:
    """``module:function`` with Python identifiers on both sides."""
    text = check_text("factory", value, "mypkg.module:function")
    if not _FACTORY_RE.match(text):
        raise Invalid(
            f"factory must be 'module:function', got {text!r}",
            "write the importable module, a colon and the function name, e.g. mypkg.models:load",
        )
    return text


def check_sae_id(value: object) -> str:
    """Letters, digits, ``-``, ``_``, ``.`` and ``/`` (no empty, ``.`` or ``..`` parts between slashes)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise Invalid(f"SAE id must be a string, got {kind(value)} ({value!r})", f'quote it: id: "{value}"')
    text = check_text("id", value, "layer1-topk")
    parts = text.split("/")
    if not _SAE_ID_RE.match(text) or any(p in ("", ".", "..") for p in parts):
        raise Invalid(
            f"SAE id {text!r} may only contain letters, digits, '-', '_', '.' and '/' "
            "(no empty, '.' or '..' parts between slashes)",
            "rename it, e.g. layer1-topk (ids become test ids and file names)",
        )
    return text


def check_sae_format(value: object) -> str:
    """One of :data:`SAE_FORMATS`."""
    if not isinstance(value, str) or value.strip() not in SAE_FORMATS:
        hint = did_you_mean(value.strip(), SAE_FORMATS) if isinstance(value, str) else ""
        raise Invalid(f"unknown SAE folder format {value!r}{hint}",
                      "use one of " + ", ".join(SAE_FORMATS) + " (or leave format out: it is detected from the files)")
    return value.strip()


def check_hook_name(value: object) -> str:
    """A TransformerLens hook name: dotted names such as ``blocks.6.hook_resid_post``."""
    text = check_text("hook_name", value, "blocks.6.hook_resid_post")
    if not _HOOK_RE.match(text):
        raise Invalid(
            f"hook_name {text!r} is not a TransformerLens hook name",
            "write the hook's dotted name, e.g. blocks.6.hook_resid_post, blocks.6.hook_mlp_out or blocks.6.attn.hook_z",
        )
    return text


def check_count(name: str, value: object) -> int:
    """A whole number >= 1 (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{name} must be a whole number >= 1, got {kind(value)} ({value!r})",
                      f"set {name} to a whole number such as 10")
    if value < 1:
        raise Invalid(f"{name} must be >= 1, got {value}", f"set {name} to 1 or more")
    return value


def check_exclude(value: object) -> bool | tuple[int, ...]:
    """``true``, ``false`` or a list of non-negative token ids."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        return tuple(value)
    raise Invalid(
        f"exclude_special_tokens must be true, false or a list of token ids, got {value!r}",
        "use true (the tokenizer's special tokens), false, or a list of non-negative integers like [0, 50256]",
    )


def check_bool(name: str, value: object) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false, got {value!r}", f"write {name}: true or {name}: false")
    return value
