"""Bounded reads of the files users or a disk hand back: baselines, cache files, shard outputs (pure Python).

:func:`read_regular` / :func:`read_json` refuse a FIFO, a device or a socket before a byte is read (a FIFO
would block, ``/dev/zero`` would never end), a size limit bounds what is read, and JSON nested too deeply
or holding an integer too long to convert is a :class:`ValueError`, never a :class:`RecursionError`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from typing import Any

from pytest_saeval.errors import NotRegularFile, special_kind

__all__ = ["MAX_JSON_DEPTH", "DuplicateKey", "NotRegularFile", "is_finite", "parse_json", "read_json", "read_regular",
           "size_text", "unique_keys"]


MAX_JSON_DEPTH = 100
"""Deepest nesting of objects and lists :func:`parse_json` accepts (the files read here need fewer than 10;
much deeper data would overflow Python's recursion limit in whatever walks it next)."""


def _check_regular(path: str | os.PathLike[str], mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "it is a folder", os.fspath(path))
    kind = special_kind(mode)
    if kind is not None:
        raise NotRegularFile(path, kind)


def size_text(size: int) -> str:
    """A byte count for a message: ``16 MiB``, ``256 KiB`` or ``100 bytes`` (whole units only)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def read_regular(path: str | os.PathLike[str], *, limit: int | None) -> bytes:
    """The bytes of the regular file ``path`` (symbolic links followed), at most ``limit`` of them.

    Raises :class:`FileNotFoundError` when it is missing, :class:`IsADirectoryError` for a folder,
    :class:`NotRegularFile` for a FIFO, device or socket (found before anything is read, so a FIFO never
    blocks and ``/dev/zero`` never fills memory), another :class:`OSError` when it cannot be read, and
    :class:`ValueError` (``it is larger than 16 MiB``) when it holds more than ``limit`` bytes; ``None``:
    no limit (a regular file ends).
    """
    _check_regular(path, os.stat(path).st_mode)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)  # non-blocking: a FIFO put in its place since the stat does not block the open
    with os.fdopen(fd, "rb") as fh:
        _check_regular(path, os.fstat(fh.fileno()).st_mode)
        data = fh.read() if limit is None else fh.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ValueError(f"it is larger than {size_text(limit)}")
    return data


def _deeper_than(data: object, depth: int) -> bool:
    """Whether ``data`` nests objects and lists more than ``depth`` levels deep (walked without recursion)."""
    level: list[dict[Any, Any] | list[Any]] = [data] if isinstance(data, (dict, list)) else []
    for _ in range(depth):
        inner: list[dict[Any, Any] | list[Any]] = []
        for node in level:
            children = node.values() if isinstance(node, dict) else node
            inner.extend(c for c in children if isinstance(c, (dict, list)))
        if not inner:
            return False
        level = inner
    return bool(level)


class DuplicateKey(ValueError):
    """A JSON object that holds one key twice (``json`` would keep the last one without a word)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key
        """The key written twice."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An ``object_pairs_hook`` for :func:`parse_json` that raises :class:`DuplicateKey` for a key given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def parse_json(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, **options: Any) -> Any:
    """``json.loads(text, **options)``, bounded: objects and lists nested more than ``max_depth`` levels
    deep, or an integer longer than Python converts (``sys.get_int_max_str_digits``), raise a plain
    :class:`ValueError` that says so, instead of :class:`RecursionError` or a message about
    ``sys.set_int_max_str_digits``. Invalid JSON raises :class:`json.JSONDecodeError` (a ValueError) as
    ever; whatever a hook in ``options`` raises passes through."""
    deep = f"the JSON is nested more than {max_depth} levels deep"
    try:
        data = json.loads(text, **options)
    except RecursionError:
        raise ValueError(deep) from None
    except ValueError as e:
        if "integer string conversion" not in str(e):  # CPython's limit on the digits of an int; JSONDecodeError
            raise
        raise ValueError("the JSON holds an integer with too many digits") from None
    if _deeper_than(data, max_depth):
        raise ValueError(deep)
    return data


def read_json(path: str | os.PathLike[str], *, limit: int | None, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of the UTF-8 file ``path``: :func:`read_regular` then :func:`parse_json`.

    Raises :class:`OSError` as :func:`read_regular` (:class:`FileNotFoundError`, :class:`IsADirectoryError`,
    :class:`NotRegularFile`, ...) and :class:`ValueError` for a file over ``limit`` bytes, one that is not
    UTF-8 (:class:`UnicodeDecodeError`), invalid JSON or JSON beyond the bounds of :func:`parse_json`.
    """
    return parse_json(read_regular(path, limit=limit).decode("utf-8"), max_depth=max_depth)


def is_finite(value: float) -> bool:
    """Whether a number read from JSON is finite as a float (an integer too large for a float is not:
    ``math.isfinite`` would raise :class:`OverflowError` on it)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
