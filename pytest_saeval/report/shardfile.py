"""``saeval-shard.json``: which shard of which partition an output folder holds (pure Python).

A sharded run writes it next to its results, last, after every other output file (and removes an old
one first, when the run starts and again before writing), so a folder whose run did not finish never
looks like a finished shard. ``saeval merge`` reads it back (:func:`read_shard_record`)::

    {"format": 1, "surface": "saeval run", "saeval_version": "...",
     "shard": {"index": 2, "count": 3, "selection": "...", "partition": "...", "cost_basis": "estimate",
               "groups": [{"id": "...", "suites": [...], "saes": [[suite, sae, [metrics]]], "cost": ..., "shard": 1}]},
     "suites": {"thresholds/a.yaml": "<xxh3-128 of the file>"},
     "extra": [[suite, sae]], "errors": ["..."], "timings": {"thresholds/a.yaml": {"seconds": 1.5, "saes": 2}}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_saeval.bounded import parse_json, read_regular
from pytest_saeval.errors import ShardError
from pytest_saeval.fileio import atomic_write_text, os_reason
from pytest_saeval.run.shards import ShardPlan
from pytest_saeval.store.hashing import file_hash
from pytest_saeval.store.timings import SuiteTiming
from pytest_saeval.versions import __version__

__all__ = ["MAX_RECORD_BYTES", "SHARD_FILE", "ShardRecord", "clear_shard_record", "read_shard_record", "suite_digest",
           "write_shard_record"]

SHARD_FILE = "saeval-shard.json"
"""Name of the shard record inside a shard's output folder."""

MAX_RECORD_BYTES = 64 * 1024 * 1024
"""Largest shard record read (64 MiB: it lists the partition's groups and SAEs, about 100 bytes an SAE)."""

_FORMAT = 1
_MERGE_FIX = "give saeval merge the --output-dir folders of `saeval run --shard K/N` or `pytest --saeval-shard K/N`"


def suite_digest(path: str | os.PathLike[str]) -> str:
    """The content hash (xxh3-128, the one hasher of :mod:`~pytest_saeval.store.hashing`) of a suite file's
    bytes, or ``"missing"`` when it cannot be read."""
    try:
        return file_hash(path)
    except OSError:
        return "missing"


@dataclass(frozen=True)
class ShardRecord:
    """What a shard's output folder says about the run that wrote it."""

    plan: ShardPlan
    """The partition, seen from this shard (K, N, the selection and which shard owns which group)."""
    suites: dict[str, str] = field(default_factory=dict)
    """Content hash (xxh3-128) of each selected suite file as the shard read it, by suite name."""
    extra: tuple[tuple[str, str], ...] = ()
    """``(suite, SAE id)`` of results recorded outside the partition (the saeval marker, the fixtures)."""
    errors: tuple[str, ...] = ()
    """The shard's evaluation errors (its SAEs that have no result)."""
    timings: dict[str, SuiteTiming] = field(default_factory=dict)
    """Seconds of this shard's evaluations by suite name (``saeval merge`` keeps them in its cache folder)."""
    surface: str = "saeval run"
    """``saeval run`` or ``pytest``."""
    saeval_version: str = __version__
    """The package version that wrote it."""
    folder: Path | None = field(default=None, compare=False)
    """Where it was read from (set by :func:`read_shard_record`)."""

    def to_dict(self) -> dict[str, object]:
        """Plain data, as the file holds it."""
        return {"format": _FORMAT, "surface": self.surface, "saeval_version": self.saeval_version,
                "shard": self.plan.to_dict(), "suites": dict(sorted(self.suites.items())),
                "extra": [list(x) for x in self.extra], "errors": list(self.errors),
                "timings": {k: v.to_dict() for k, v in sorted(self.timings.items())}}

    @property
    def where(self) -> str:
        """The folder, as messages name the shard."""
        return f"{self.folder} (shard {self.plan.shard})" if self.folder is not None else f"shard {self.plan.shard}"


def write_shard_record(folder: str | os.PathLike[str], record: ShardRecord) -> Path:
    """Write ``record`` into ``folder`` atomically; returns the file."""
    target = Path(folder) / SHARD_FILE
    atomic_write_text(target, json.dumps(record.to_dict(), indent=2) + "\n")
    return target


def clear_shard_record(folder: str | os.PathLike[str]) -> None:
    """Remove an old shard record from ``folder`` (so an unfinished run never looks finished)."""
    try:
        (Path(folder) / SHARD_FILE).unlink()
    except FileNotFoundError:
        pass


def _from_dict(data: Mapping[str, object], folder: Path) -> ShardRecord:
    if data.get("format") != _FORMAT:
        raise ValueError(f"format {data.get('format')!r} is not {_FORMAT} (written by pytest-saeval "
                         f"{data.get('saeval_version', 'unknown')})")
    plan = ShardPlan.from_dict(data["shard"])  # type: ignore[arg-type]
    suites, extra, errors, timings = (data.get(k, d) for k, d in
                                      (("suites", {}), ("extra", []), ("errors", []), ("timings", {})))
    return ShardRecord(
        plan=plan,
        suites={str(k): str(v) for k, v in suites.items()},  # type: ignore[attr-defined]
        extra=tuple((str(s), str(u)) for s, u in extra),  # type: ignore[attr-defined]
        errors=tuple(str(e) for e in errors),  # type: ignore[attr-defined]
        timings={str(k): SuiteTiming.from_dict(v) for k, v in timings.items()},  # type: ignore[attr-defined]
        surface=str(data.get("surface", "")), saeval_version=str(data.get("saeval_version", "")), folder=folder,
    )


def read_shard_record(folder: str | os.PathLike[str]) -> ShardRecord:
    """The shard record of an output folder; a :class:`ShardError` naming the folder when there is none or
    it cannot be read."""
    path = Path(folder) / SHARD_FILE
    if not Path(folder).is_dir():
        what = ("is a file, not a shard's output folder" if Path(folder).exists()
                else "is a symbolic link that leads nowhere" if os.path.lexists(folder) else "no such folder")
        raise ShardError(what, fix=_MERGE_FIX, file=str(folder))
    try:
        text = read_regular(path, limit=MAX_RECORD_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise ShardError(f"{folder} holds no {SHARD_FILE}: it is not the output of a finished shard",
                         fix=_MERGE_FIX + " (a shard that stopped early has none: run it again)",
                         file=str(path)) from None
    except OSError as e:
        raise ShardError(f"cannot read the shard record: {os_reason(e)}", fix=_MERGE_FIX, file=str(path)) from None
    except ValueError as e:  # larger than the limit, or not UTF-8
        raise ShardError(f"cannot read the shard record: {e}", fix=_MERGE_FIX, file=str(path)) from None
    try:
        data = parse_json(text)
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
        return _from_dict(data, Path(folder))
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
        raise ShardError(f"the shard record is damaged: {e}", fix="run that shard again", file=str(path),
                         key="shard") from None
