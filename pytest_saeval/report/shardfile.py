"""``saeval-shard.json``: which shard of which partition an output folder holds (pure Python).

A sharded run writes it next to its results, last, after every other output file (and removes an old
one first, when the run starts and again before writing), so a folder whose run did not finish never
looks like a finished shard. ``saeval merge`` reads it back (:func:`read_shard_record`), every key checked
here for its type, shape and range (a string of digits is no shard index, ``extra`` holds pairs), a wrong
one a :class:`~pytest_saeval.errors.ShardError` naming the file and the key (``shard.groups[0].cost``)::

    {"format": 1, "surface": "saeval run", "saeval_version": "...",
     "shard": {"index": 2, "count": 3, "selection": "...", "partition": "...", "cost_basis": "estimate",
               "groups": [{"id": "...", "suites": [...], "saes": [[suite, sae, [metrics]]], "cost": ..., "shard": 1}]},
     "suites": {"thresholds/a.yaml": "<xxh3-128 of the file>"},
     "extra": [[suite, sae]], "errors": ["..."], "timings": {"thresholds/a.yaml": {"seconds": 1.5, "saes": 2}}}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pytest_saeval.bounded import is_finite, parse_json, read_regular
from pytest_saeval.errors import ShardError, brief
from pytest_saeval.fileio import atomic_write_text, os_reason
from pytest_saeval.run.shards import MAX_SHARDS, Shard, ShardPlan, WorkGroup
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


class _Damaged(ValueError):
    """A value of the record that is not what :func:`write_shard_record` writes; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _wrong(key: str, what: str, value: object) -> _Damaged:
    return _Damaged(key, f"{key} must be {what}, got {brief(value)}")


def _text(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise _wrong(key, "a string", value)
    return value


def _whole(value: object, key: str, low: int, high: int | None = None) -> int:
    """An integer (not a boolean, a float or a string of digits) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise _wrong(key, f"a whole number from {low} to {high}" if high is not None else f"a whole number >= {low}",
                     value)
    return value


def _amount(value: object, key: str) -> float:
    """A finite number >= 0 (an integer or a float, not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_finite(value) or value < 0:
        raise _wrong(key, "a finite number >= 0", value)
    return float(value)


def _items(value: object, key: str) -> list[object]:
    if not isinstance(value, list):
        raise _wrong(key, "a JSON list", value)
    return value


def _texts(value: object, key: str, what: str = "a list of strings") -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _wrong(key, what, value)
    return tuple(value)


def _pair(value: object, key: str, what: str) -> tuple[str, str]:
    """Two strings, such as ``[suite, SAE id]``."""
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise _wrong(key, what, value)
    return value[0], value[1]


class _Object:
    """One JSON object of the record: each key read once, checked for its type and range, or a :class:`_Damaged`
    naming it (``shard.groups[0].cost``)."""

    def __init__(self, value: object, key: str) -> None:
        if not isinstance(value, dict):
            raise _wrong(key, "a JSON object", value)
        self.data: dict[str, object] = value
        self.key = key

    def at(self, name: str) -> str:
        """The key path of ``name`` in this object."""
        return f"{self.key}.{name}" if self.key else name

    def get(self, name: str) -> object:
        """The value of ``name``; missing is damaged (every writer writes every key)."""
        if name not in self.data:
            raise _Damaged(self.at(name), f"{self.at(name)} is missing")
        return self.data[name]

    def text(self, name: str) -> str:
        return _text(self.get(name), self.at(name))

    def whole(self, name: str, low: int, high: int | None = None) -> int:
        return _whole(self.get(name), self.at(name), low, high)

    def items(self, name: str) -> list[tuple[str, object]]:
        """``(key path, value)`` of each item of the list ``name``."""
        key = self.at(name)
        return [(f"{key}[{i}]", v) for i, v in enumerate(_items(self.get(name), key))]

    def members(self, name: str) -> list[tuple[str, str, object]]:
        """``(member name, key path, value)`` of each member of the object ``name``."""
        inner = _Object(self.get(name), self.at(name))
        return [(k, inner.at(k), v) for k, v in inner.data.items()]


def _group(value: object, key: str, count: int) -> tuple[WorkGroup, int]:
    """One group of the partition and the shard that owns it."""
    g = _Object(value, key)
    saes = []
    for at, item in g.items("saes"):
        if not isinstance(item, list) or len(item) != 3:
            raise _wrong(at, "a [suite, SAE id, [metrics]] triple", item)
        suite, uid = _pair(item[:2], at, "a [suite, SAE id, [metrics]] triple")
        saes.append((suite, uid, _texts(item[2], f"{at}[2]", what="a list of metric names")))
    group = WorkGroup(g.text("id"), _texts(g.get("suites"), g.at("suites")), tuple(saes),
                      _amount(g.get("cost"), g.at("cost")))
    return group, g.whole("shard", 1, count)


def _plan(value: object) -> ShardPlan:
    """The partition: K and N in range, every group well formed, the hashes those of the groups listed."""
    shard = _Object(value, "shard")
    count = shard.whole("count", 1, MAX_SHARDS)
    index = shard.whole("index", 1, count)
    owned = [_group(item, at, count) for at, item in shard.items("groups")]
    plan = ShardPlan(Shard(index, count), tuple(g for g, _ in owned), tuple(k for _, k in owned),
                     shard.text("cost_basis"))
    for name, expected in (("selection", plan.selection), ("partition", plan.partition)):
        if shard.text(name) != expected:
            raise _Damaged(shard.at(name), f"{shard.at(name)} {brief(shard.data[name], 40)} is not the hash of the "
                           "groups the record lists (it was edited)")
    return plan


def _from_dict(data: object, folder: Path) -> ShardRecord:
    """The record in ``data``, every key checked here, once; a :class:`_Damaged` naming the first wrong one."""
    if not isinstance(data, dict):
        raise _Damaged("shard", "it is not a JSON object")
    top = _Object(data, "")
    fmt = top.data.get("format")
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt != _FORMAT:
        version = top.data.get("saeval_version", "unknown")
        raise _Damaged("format", f"format {brief(fmt)} is not {_FORMAT} (written by pytest-saeval "
                       f"{version if isinstance(version, str) else brief(version)})")
    return ShardRecord(
        plan=_plan(top.get("shard")),
        suites={name: _text(v, at) for name, at, v in top.members("suites")},
        extra=tuple(_pair(v, at, "a [suite, SAE id] pair of strings") for at, v in top.items("extra")),
        errors=tuple(_text(v, at) for at, v in top.items("errors")),
        timings={name: _timing(v, at) for name, at, v in top.members("timings")},
        surface=top.text("surface"), saeval_version=top.text("saeval_version"), folder=folder,
    )


def _timing(value: object, key: str) -> SuiteTiming:
    t = _Object(value, key)
    return SuiteTiming(_amount(t.get("seconds"), t.at("seconds")), t.whole("saes", 0))


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
        return _from_dict(parse_json(text), Path(folder))
    except _Damaged as e:
        raise ShardError(f"the shard record is damaged: {e}", fix="run that shard again", file=str(path),
                         key=e.key) from None
    except ValueError as e:  # not JSON, nested too deeply, an integer too long
        raise ShardError(f"the shard record is damaged: {e}", fix="run that shard again", file=str(path),
                         key="shard") from None
