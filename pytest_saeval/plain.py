"""The one "to plain data" walker: any config, dataclass or result part as JSON-able builtins.

Used to hash configs (the caches' keys), to write JSON outputs (non-finite numbers as ``null``) and to
send runs between pytest-xdist processes (floats kept as they are, NaN included). Pure Python.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Literal, TypeAlias

__all__ = ["JSON", "to_plain"]

JSON: TypeAlias = "None | bool | int | float | str | list[JSON] | dict[str, JSON]"
"""A JSON value."""

MAX_DEPTH = 32
"""Nesting below this depth is written as the value's type name (configs are shallow; this only
stops a self-referencing object)."""


def to_plain(obj: object, *, nonfinite: Literal["keep", "null"] = "keep", _depth: int = 0) -> JSON:
    """``obj`` as builtins: ``None``, ``bool``, ``int``, ``float``, ``str``, lists and string-keyed dicts.

    Integers (numpy's too) become ``int``, numpy's ``bool_`` and other zero-dimensional arrays or tensors
    their ``item()``, reals ``float`` (``nonfinite="null"``: NaN and infinities
    become ``None``, as JSON outputs need), ``str`` subclasses (``torch.__version__``) ``str``;
    mappings become dicts with string keys, lists, tuples and sets become lists, objects with
    ``to_dict()`` that dict, other dataclasses the dict of their fields. Anything else is ``str(obj)``,
    or its type's name when that string holds a memory address (so a rendering never depends on where
    an object happens to live).
    """
    if obj is None or isinstance(obj, (bool, str, numbers.Real)):
        return _scalar(obj, nonfinite)
    if _depth >= MAX_DEPTH:
        return type(obj).__qualname__

    def walk(value: object) -> JSON:
        return to_plain(value, nonfinite=nonfinite, _depth=_depth + 1)

    if isinstance(obj, Mapping):
        return {str(k): walk(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [walk(v) for v in items]
    item = getattr(obj, "item", None)
    if getattr(obj, "shape", None) == () and callable(item):
        return walk(item())  # numpy's bool_ and other zero-dimensional scalars (a 0-d tensor too)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict) and not isinstance(obj, type):
        try:
            return walk(to_dict())
        except Exception:  # noqa: BLE001 - an object whose to_dict fails is described otherwise
            pass
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: walk(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    text = str(obj)
    return text if " at 0x" not in text else type(obj).__qualname__


def _scalar(obj: None | bool | str | numbers.Real, nonfinite: Literal["keep", "null"]) -> JSON:
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    value = float(obj)
    return None if nonfinite == "null" and not math.isfinite(value) else value
