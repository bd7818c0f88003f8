"""Stored answers: what one SAE's evaluation gave, as plain JSON under a key computed from files
(pure Python, so that a run answered from here imports no torch).

One file per key, ``<root>/answers/<k[:2]>/<k>.json``: a first line ``{"key", "format", "digest",
"length"}`` and then the body, JSON text whose xxh3-128 is ``digest``. Written atomically
(:func:`~pytest_saeval.fileio.atomic_write_bytes`). A file that cannot be parsed, holds another key, is
cut short, does not match its digest or is not a regular file (a FIFO, a device) is
:class:`~.entries.Unusable` (the caller recomputes it with a :class:`~.entries.CacheWarning` and
overwrites it); one that cannot even be opened for another reason than its absence is
:class:`~.entries.Unavailable` (the cache folder is broken). Never pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_saeval.bounded import parse_json
from pytest_saeval.fileio import atomic_write_bytes
from pytest_saeval.store.entries import Unusable, read_bytes
from pytest_saeval.store.hashing import Hasher

__all__ = ["ANSWER_FORMAT", "AnswerStore"]

ANSWER_FORMAT = 1
"""Bumped whenever the body's layout changes (old files then miss)."""


def _digest(body: bytes) -> str:
    h = Hasher()
    h.raw(body)
    return h.hexdigest()


class AnswerStore:
    """One plain-JSON body per key, under ``<root>/answers``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.root / "answers" / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The body stored under ``key``, or None when there is none. Raises :class:`Unusable` for a bad
        file and :class:`~.entries.Unavailable` when the folder cannot be read there."""
        data = read_bytes(self.path(key))
        if data is None:
            return None
        head, sep, body = data.partition(b"\n")
        try:
            header = parse_json(head)
            if not sep or not isinstance(header, dict):
                raise ValueError("no header line")
            if header.get("key") != key:
                raise Unusable("holds another key")
            if header.get("format") != ANSWER_FORMAT:
                raise Unusable(f"has format {header.get('format')!r}, not {ANSWER_FORMAT}")
            if header.get("length") != len(body) or header.get("digest") != _digest(body):
                raise Unusable("does not match its digest (cut short or changed)")
            found = parse_json(body)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, JSON nested too deeply: all ValueErrors
            raise Unusable(f"cannot be read ({type(e).__name__}: {e})") from e
        if not isinstance(found, dict):
            raise Unusable("does not hold an answer")
        return found

    def put(self, key: str, body: Mapping[str, Any]) -> None:
        """Store ``body`` (plain data; NaN and infinities allowed) under ``key``, atomically. Raises
        :class:`OSError` when it cannot be written."""
        text = json.dumps(body, separators=(",", ":")).encode()
        header = json.dumps({"key": key, "format": ANSWER_FORMAT, "digest": _digest(text), "length": len(text)})
        atomic_write_bytes(self.path(key), header.encode() + b"\n" + text, store=True)
