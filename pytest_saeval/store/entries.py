"""One cache entry: a safetensors file that carries its key and a digest of its contents.

Files are written with :func:`~pytest_saeval.fileio.atomic_write_bytes` (temporary file +
``os.replace``): readers never see a partial file and concurrent writers of one key both succeed
(the last rename wins; the contents are the same). A file that cannot be read, or whose key or
digest does not match, is :class:`Unusable`: the caller recomputes it with a :class:`CacheWarning`; so
is a FIFO or a device in its place (refused unread: reading it could block or never end).
A file that cannot even be opened for a reason other than its absence (a folder in its place, a file
where its folder should be, no permission) is :class:`Unavailable`: the cache folder itself is broken.
Never pickle.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.bounded import NotRegularFile, parse_json, read_regular
from pytest_saeval.fileio import atomic_write_bytes, os_reason
from pytest_saeval.store.hashing import Hasher

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["CacheWarning", "Unavailable", "Unusable", "digest", "read_bytes", "read_entry", "warn_unusable", "write_entry"]


class CacheWarning(UserWarning):
    """A cache entry could not be used (unreadable, wrong key or digest) and is being recomputed."""


class Unusable(Exception):
    """An entry that exists but cannot be used; the message says why."""


class Unavailable(Exception):
    """The cache folder cannot be read where an entry should be (not a missing entry: a broken folder)."""


def digest(parts: Mapping[str, Any]) -> str:
    """A key made of plain-data parts."""
    h = Hasher()
    h.data(parts)
    return h.hexdigest()


def _tensors_digest(tensors: Mapping[str, torch.Tensor], header: str) -> str:
    h = Hasher()
    h.text(header)
    for name in sorted(tensors):
        h.text(name)
        h.tensor(tensors[name])
    return h.hexdigest()


def write_entry(path: Path, key: str, header: dict[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    """Write ``tensors`` with ``header`` (plain data) under ``key``, atomically."""
    from safetensors.torch import save

    own = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    header_text = json.dumps(header, sort_keys=True)
    metadata = {"key": key, "header": header_text, "digest": _tensors_digest(own, header_text)}
    atomic_write_bytes(path, save(own, metadata=metadata), store=True)


def read_bytes(path: Path) -> bytes | None:
    """The whole file of a cache entry in one read, or None when there is none. Raises :class:`Unusable`
    for a FIFO or device in its place (never read: it could block or never end; the recomputed entry
    replaces it) and :class:`Unavailable` when the folder cannot be read there."""
    try:
        return read_regular(path, limit=None)
    except FileNotFoundError:
        return None
    except NotRegularFile as e:
        raise Unusable(f"is {e.strerror}") from None
    except OSError as e:
        raise Unavailable(f"cannot read {path}: {os_reason(e)}") from e


def read_entry(path: Path, key: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(header, tensors)``, or None when there is no file. Raises :class:`Unusable` for a bad file."""
    data = read_bytes(path)
    if data is None:
        return None
    from safetensors.torch import load

    # one read of the whole file: the header and the tensors come from the same version of it even
    # while another process replaces the file
    try:
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
        tensors = load(data)
    except Exception as e:  # any failure to parse means the file is unusable
        raise Unusable(f"cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(metadata, dict):
        raise Unusable("has a bad header")
    if metadata.get("key") != key:
        raise Unusable("holds another key")
    header_text = metadata.get("header", "")
    if metadata.get("digest") != _tensors_digest(tensors, header_text):
        raise Unusable("does not match its digest")
    try:
        header = parse_json(header_text)
    except ValueError as e:
        raise Unusable(f"has a bad header ({e})") from e
    if not isinstance(header, dict):
        raise Unusable("has a bad header")
    return header, tensors


def warn_unusable(path: Path, why: str) -> None:
    """Say that an entry is being recomputed, and why."""
    warnings.warn(
        f"saeval cache: the entry {path} {why}; recomputing it and overwriting the file",
        CacheWarning,
        stacklevel=3,
    )
