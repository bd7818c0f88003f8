"""The timings file of the cache folder: how long each suite's evaluation took in the last run that
recorded it (pure Python).

A sharded run balances its partition by these seconds when the cache folder has them (see
:mod:`pytest_saeval.run.shards`). Unsharded runs and ``saeval merge`` record them; the shards of a
partition do not (they only read), so every job of one array or matrix sees the same table while the
others are still running. The file is ``timings.json``::

    {"format": 1, "suites": {"thresholds/demo.yaml": {"seconds": 12.5, "saes": 3}}}

A missing or unreadable file reads as empty (costs are then estimated); writes merge with what the
file holds, under a lock on the folder, atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_saeval.bounded import is_finite, read_json
from pytest_saeval.fileio import atomic_write_text, folder_lock

__all__ = ["TIMINGS_FILE", "SuiteTiming", "load_timings", "save_timings"]

TIMINGS_FILE = "timings.json"
"""Name of the timings file inside the cache folder."""

_FORMAT = 1
_MAX_BYTES = 16 * 1024 * 1024
"""Largest timings file read (16 MiB: a suite takes about 80 bytes)."""


@dataclass(frozen=True)
class SuiteTiming:
    """How long one suite's evaluation took."""

    seconds: float
    """Wall-clock seconds: the suite's share (by SAE count) of its fused-pass group's loading and pass."""
    saes: int
    """How many of its SAEs were evaluated then."""

    def __post_init__(self) -> None:
        if not (isinstance(self.seconds, (int, float)) and is_finite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {self.seconds!r}")
        if isinstance(self.saes, bool) or not isinstance(self.saes, int) or self.saes < 0:
            raise ValueError(f"saes must be a whole number >= 0, got {self.saes!r}")
        object.__setattr__(self, "seconds", float(self.seconds))

    def to_dict(self) -> dict[str, float | int]:
        """Plain data, as the file holds it."""
        return {"seconds": self.seconds, "saes": self.saes}

    @classmethod
    def from_dict(cls, data: object) -> SuiteTiming:
        """Rebuild from :meth:`to_dict`'s output; ``ValueError`` when it is not one."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a timing must be a mapping, got {type(data).__name__}")
        return cls(seconds=data.get("seconds"), saes=data.get("saes"))  # type: ignore[arg-type]


def _parse(data: object) -> dict[str, SuiteTiming]:
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("suites"), dict):
        raise ValueError("not a timings file of this format")
    return {str(name): SuiteTiming.from_dict(value) for name, value in data["suites"].items()}


def load_timings(folder: str | os.PathLike[str] | None) -> dict[str, SuiteTiming]:
    """The timings in ``folder``'s timings file by suite name; ``{}`` when there is none or it cannot be read."""
    if folder is None:
        return {}
    try:
        return _parse(read_json(Path(folder) / TIMINGS_FILE, limit=_MAX_BYTES))
    except (OSError, ValueError):  # not a regular file, too large, not UTF-8 or JSON, nested too deeply, ...
        return {}


def save_timings(folder: str | os.PathLike[str], timings: Mapping[str, SuiteTiming]) -> Path:
    """Record ``timings`` in ``folder``'s timings file (other suites keep theirs); returns the file.

    Raises ``OSError`` when the folder cannot be written.
    """
    target = Path(folder) / TIMINGS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(target.parent):
        merged = load_timings(folder) | dict(timings)
        payload = {"format": _FORMAT, "suites": {k: merged[k].to_dict() for k in sorted(merged)}}
        atomic_write_text(target, json.dumps(payload, indent=2, sort_keys=True) + "\n", store=True)
    return target
