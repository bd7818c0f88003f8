"""``saeval merge``: the output folders of the N shards of one partition made into one run (pure Python).

Checks, in order, each a :class:`~pytest_saeval.errors.ShardError` naming the folders and shards at fault:

1. every folder holds a finished shard's record (:mod:`.shardfile`);
2. the shards belong to one partition: the same N and the same selection of work; every K from 1 to N is
   given exactly once; every group was evaluated by exactly one shard;
3. every selected suite file is the one every shard read, and the one here (the gates are checked again
   from it);
4. every selected SAE has a record in the folder of the shard that owns it (and in no other), with a check
   of each selected gate; a result is identified by its suite, SAE and inputs, so an evaluation on a
   conftest's inputs is another result than the one on the suite's own; results outside the partition
   (the saeval marker, the fixtures) may come from several shards only when they are equal;
5. a model or token source that several shards read had the same content in each (the records' content
   hashes agree), so the shards measured one checkpoint, not one before and one after it was replaced.

The records are then read back into runs (:mod:`.readback`), gates checked again from the recorded values
and baseline values, and merged as the workers of one pytest-xdist run are: one run per suite and inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_saeval.errors import ShardError
from pytest_saeval.report.readback import (
    RESULTS_FILE,
    read_records,
    record_inputs,
    record_key,
    runs_from_records,
)
from pytest_saeval.report.shardfile import SHARD_FILE, ShardRecord, read_shard_record, suite_digest
from pytest_saeval.report.table import plural
from pytest_saeval.run.outcome import SuiteRun, merge_runs
from pytest_saeval.run.shards import suite_name
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.suite import Suite

__all__ = ["MergedShards", "merge_shards"]

_FIX = ("run the missing or failed shards again with the same command, suite files and options, then give "
        "saeval merge the N output folders, each once")

_SPLIT = ("the shards split the work differently, balanced by different timings: run every shard with the same "
          "timings in its cache folder, or with --no-cache (--saeval-no-cache) to split by the estimate alone")

Problem = tuple[Path | None, str | None, str]
"""The file a problem is about (if one), the key at fault and what is wrong."""


@dataclass(frozen=True)
class MergedShards:
    """The shards of one partition, checked and merged."""

    runs: list[SuiteRun]
    """One run per suite and inputs, gates checked again from the recorded values."""
    shards: tuple[ShardRecord, ...]
    """The shard records, by K."""
    notes: tuple[str, ...] = ()
    """Things worth a line that do not change the verdict."""

    @property
    def passed(self) -> bool:
        """Whether every gate of every shard passed."""
        return all(r.passed for r in self.runs)


def _raise(problems: Sequence[Problem]) -> None:
    """One error for every problem found, located at the first one's file and key."""
    if problems:
        file, key, _ = problems[0]
        raise ShardError("; ".join(text for _, _, text in problems), fix=_FIX,
                         file=str(file) if file is not None else None, key=key)


def _record_file(s: ShardRecord) -> Path | None:
    return s.folder / SHARD_FILE if s.folder is not None else None


def _names(shards: Sequence[ShardRecord]) -> str:
    return " and ".join(s.where for s in shards)


def _partition_problems(shards: Sequence[ShardRecord]) -> list[Problem]:
    first = shards[0]
    n = first.plan.shard.count
    other = [s for s in shards if s.plan.shard.count != n or s.plan.selection != first.plan.selection]
    if other:
        key = "shard.count" if other[0].plan.shard.count != n else "shard.selection"
        return [(_record_file(other[0]), key, f"{other[0].where} belongs to another partition than {first.where} (N "
                 f"{other[0].plan.shard.count} vs {n}, selection {other[0].plan.selection[:8]} vs "
                 f"{first.plan.selection[:8]}): shards of one partition run the same command with the same "
                 "suite files and selection")]
    problems: list[Problem] = []
    by_k: dict[int, list[ShardRecord]] = {}
    for s in shards:
        by_k.setdefault(s.plan.shard.index, []).append(s)
    for k, found in sorted(by_k.items()):
        if len(found) > 1:
            problems.append((_record_file(found[1]), "shard.index",
                             f"shard {k}/{n} is given twice: {_names(found)}"))
    for k in range(1, n + 1):
        if k not in by_k:
            owned = first.plan.groups_of(k)
            what = "; ".join(g.id for g in owned) if owned else "no group: an empty shard, still needed"
            problems.append((None, "shard.index", f"shard {k}/{n} is missing (it evaluates {what})"))
    if len({s.plan.partition for s in shards}) > 1:  # planned from different timings: check group by group
        for group in first.plan.groups:
            claims = [s for s in shards if any(g.id == group.id for g in s.plan.owned)]
            if len(claims) > 1:
                problems.append((_record_file(claims[1]), "shard.groups", f"{group.id} was evaluated by "
                                 f"{_names(claims)} ({_SPLIT})"))
            elif not claims and all(k in by_k for k in range(1, n + 1)):
                problems.append((None, "shard.groups", f"{group.id} was evaluated by no shard ({_SPLIT})"))
    return problems


def _suite_problems(shards: Sequence[ShardRecord]) -> list[Problem]:
    problems: list[Problem] = []
    names = sorted({name for s in shards for name in s.suites})
    for name in names:
        seen = {s.suites[name] for s in shards if name in s.suites}
        if len(seen) > 1:
            problems.append((_record_file(shards[0]), f"suites.{name}",
                             f"{name} differs between the shards: they ran different versions of it"))
        elif suite_digest(name) != next(iter(seen)):
            problems.append((Path(name), None, f"{name} here is not the file the shards ran (changed or missing): "
                             "merge in the checkout the shards ran in, from the same folder"))
    return problems


_Key = tuple[str, str, str]
"""A result's identity: ``(suite name, SAE unique id, inputs)`` (see :meth:`~pytest_saeval.run.outcome.Inputs.key`)."""


def _gather(shards: Sequence[ShardRecord]) -> tuple[list[tuple[ShardRecord, dict[str, Any]]], list[Problem], list[str]]:
    """The records to merge (each with the shard that recorded it), the problems found and notes."""
    kept: dict[_Key, tuple[ShardRecord, dict[str, Any]]] = {}
    problems: list[Problem] = []
    notes: list[str] = []
    for s in shards:
        assert s.folder is not None
        results = s.folder / RESULTS_FILE
        mine: dict[tuple[str, str], set[str]] = {}
        for rec in read_records(s.folder):
            suite, uid = record_key(rec)
            inputs = record_inputs(rec)
            key = (suite_name(suite), uid, inputs.key())
            what = f"{key[0]}::{uid}{inputs.describe()}"
            mine.setdefault(key[:2], set()).update(str(g.get("metric")) for g in rec["gates"] if isinstance(g, dict))
            selected = s.plan.selects(key[0], uid)
            if selected and s.plan.owner(key[0]) != s.plan.shard.index:
                problems.append((results, f"{key[0]}::{uid}", f"{s.where} recorded {what}, which shard "
                                 f"{s.plan.owner(key[0])} evaluates"))
            elif key in kept:
                first, before = kept[key]
                if selected:
                    problems.append((results, f"{key[0]}::{uid}", f"{what} is recorded twice: {_names([first, s])}"))
                elif _plain(before) != _plain(rec):
                    problems.append((results, f"{key[0]}::{uid}", f"{what} differs between {_names([first, s])}"))
                else:
                    notes.append(f"{what} (outside the partition) was recorded by {_names([first, s])}; kept once")
            else:
                kept[key] = (s, rec)
        problems.extend(_coverage(s, mine))
    return list(kept.values()), problems, notes


def _content_problems(kept: Sequence[tuple[ShardRecord, dict[str, Any]]], load: Callable[[Path], Suite]) -> list[Problem]:
    """One source, one content: a model (``model.path``, ``name`` or ``factory`` with its dtype and device) or token
    rows (``data:`` with the rows read) that the suites share must have been the same in every shard. Shards
    started hours apart while a checkpoint was overwritten, or on different LFS or hub revisions, are
    not one run. Results on a conftest's inputs are left out (a fixture's objects have no source)."""
    seen: dict[tuple[str, str], dict[str, list[ShardRecord]]] = {}
    for s, rec in kept:
        inputs = record_inputs(rec)
        if not inputs.own:
            continue
        suite = load(Path(record_key(rec)[0]))
        m, d = suite.model, suite.data
        device = (rec.get("provenance") or {}).get("device")  # weights processed on another device may round apart
        model = f"{m.path.resolve() if m.path else m.name or m.factory} ({m.dtype}, on {device})"
        tokens = f"{d.tokens.resolve() if d.tokens else d.dataset} (first {d.rows_needed} rows of {d.context_size})"
        for where, digest in ((("model", model), inputs.model_xxh3), (("tokens", tokens), inputs.tokens_xxh3)):
            if digest:
                found = seen.setdefault(where, {}).setdefault(digest, [])
                if all(f is not s for f in found):
                    found.append(s)
    problems: list[Problem] = []
    for (kind, source), digests in seen.items():
        if len(digests) > 1:
            which = "; ".join(f"{digest[:8]} in {_names(shards)}" for digest, shards in digests.items())
            first = next(iter(digests.values()))[0]
            problems.append((_record_file(first), f"inputs.{kind}_xxh3",
                             f"the {kind} {source} had different contents in different shards ({which})"))
    return problems


def _coverage(s: ShardRecord, mine: Mapping[tuple[str, str], set[str]]) -> list[Problem]:
    """What the shard owns but did not record: an SAE without a result, or a selected gate without a check
    (``mine``: the gated metrics it recorded per ``(suite, SAE)``, on any inputs)."""
    problems: list[Problem] = []
    results = s.folder / RESULTS_FILE if s.folder is not None else None
    for group in s.plan.owned:
        for suite, uid, metrics in group.saes:
            if (suite, uid) not in mine:
                why = f" (its evaluation errors: {' | '.join(s.errors)})" if s.errors else ""
                problems.append((results, f"{suite}::{uid}", f"{s.where} has no result for {suite}::{uid}{why}"))
                continue
            missing = set(metrics) - mine[(suite, uid)]
            if missing:
                problems.append((results, f"{suite}::{uid}",
                                 f"{s.where} has no check of {', '.join(sorted(missing))} for {suite}::{uid}"))
    return problems


def _plain(rec: dict[str, Any]) -> str:
    return json.dumps(rec, sort_keys=True)


def _verdict_notes(runs: Sequence[SuiteRun], records: Sequence[dict[str, Any]]) -> list[str]:
    recorded = {(suite_name(record_key(r)[0]), record_inputs(r).key(), r["unique_id"], g.get("metric")):
                g.get("passed") for r in records for g in r["gates"] if isinstance(g, dict)}
    return [f"{c.message}: the shard judged it {'PASS' if not c.passed else 'FAIL'}, checked again it is "
            f"{'PASS' if c.passed else 'FAIL'} (another pytest-saeval version?)"
            for run in runs for c in run.checks
            if recorded.get((suite_name(run.suite.path), run.inputs.key(), c.sae_id, c.gate.metric),
                            c.passed) != c.passed]


def _timed(runs: Sequence[SuiteRun], shards: Sequence[ShardRecord]) -> list[SuiteRun]:
    """``runs`` with the shards' seconds of each suite on its first run (its own inputs come first)."""
    seconds: dict[str, float] = {}
    for s in shards:
        for name, timing in s.timings.items():
            seconds[name] = seconds.get(name, 0.0) + timing.seconds
    out: list[SuiteRun] = []
    for run in runs:
        name = suite_name(run.suite.path)
        out.append(dataclasses.replace(run, seconds=seconds.pop(name, None)))
    return out


def merge_shards(folders: Sequence[str | os.PathLike[str]],
                 load: Callable[[Path], Suite] = load_suite) -> MergedShards:
    """Check the shard output ``folders`` (all N of one partition) and merge them into one run.

    ``load`` loads a suite file by the name the shards recorded (relative to the current folder).
    Raises :class:`~pytest_saeval.errors.ShardError` naming what is missing, doubled or inconsistent.
    """
    if not folders:
        raise ShardError("no shard folders given", fix=_FIX, key="shards")
    shards = [read_shard_record(Path(f)) for f in folders]
    _raise(_partition_problems(shards))
    _raise(_suite_problems(shards))
    kept, problems, notes = _gather(shards)
    _raise(problems)
    load_once = functools.cache(load)  # the content check and the read-back both need each suite
    _raise(_content_problems(kept, load_once))
    records = [rec for _, rec in kept]
    runs = _timed(merge_runs(runs_from_records(records, load_once)), shards)
    versions = sorted({s.saeval_version for s in shards})
    if len(versions) > 1:
        notes.append(f"the shards ran different pytest-saeval versions ({', '.join(versions)})")
    first = shards[0].plan
    partitions = sorted({s.plan.partition[:8] for s in shards})
    if len(partitions) > 1:  # planned from different timings, yet every group evaluated once (checked above)
        notes.insert(0, f"merged {plural(first.shard.count, 'shard')} of {len(partitions)} partitions "
                        f"({', '.join(partitions)}: planned from different timings, every group still evaluated by "
                        f"exactly one shard; selection {first.selection[:8]})")
    else:
        notes.insert(0, f"merged {plural(first.shard.count, 'shard')} of partition "
                        f"{first.partition[:8]} (selection {first.selection[:8]}, costs from {first.cost_basis})")
    return MergedShards(runs, tuple(sorted(shards, key=lambda s: s.plan.shard.index)),
                        tuple(notes + _verdict_notes(runs, records)))
