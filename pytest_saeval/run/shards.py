"""Shards: the selected work split over N machines (CI matrix jobs, job arrays), the same on every machine
(pure Python).

The unit of the partition is the fused-pass group (:func:`~pytest_saeval.run.plan.group_key`: suites that
share a model, token set and settings), so a group is never split and every group lands in exactly one
shard. Groups go, largest cost first (ties by name), to the shard with the least work so far (ties: the
lowest K); costs come from :mod:`.costs`. Everything the partition depends on -- suite names, selected SAEs
and gates, file sizes, the timings file -- is the same on every machine that runs the same command in the
same checkout, so every shard computes the same partition on its own.

Shards are numbered from 1: ``K/N`` with ``1 <= K <= N`` (as GitHub matrices, GitLab's
``CI_NODE_INDEX`` and ``--array=1-N`` count). A shard is given as ``--shard K/N`` / ``--saeval-shard
K/N``, else by ``SAEVAL_SHARD=K/N``; ``auto`` reads the index and count a CI system sets
(:data:`CI_VARIABLES`, and Slurm's array variables).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_saeval.errors import InputError, brief
from pytest_saeval.run.costs import group_costs
from pytest_saeval.run.plan import GroupKey, group_key
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.hashing import name_digest
from pytest_saeval.store.timings import SuiteTiming

__all__ = ["CI_VARIABLES", "SHARD_ENV", "Selection", "Shard", "ShardPlan", "WorkGroup", "balance", "plan_shards",
           "shard_from", "suite_name"]

SHARD_ENV = "SAEVAL_SHARD"
"""The environment variable that gives the shard (``K/N`` or ``auto``) when no option does."""

CI_VARIABLES: tuple[tuple[str, str, str, int], ...] = (
    ("GitLab CI (parallel:)", "CI_NODE_INDEX", "CI_NODE_TOTAL", 1),
    ("CircleCI (parallelism:)", "CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", 0),
    ("Buildkite (parallelism:)", "BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", 0),
)
"""``(system, index variable, count variable, first index)`` read by ``auto`` (Slurm arrays are read too)."""

Selection = Sequence[tuple[Suite, Mapping[str, Collection[str]]]]
"""The selected work: per suite, its selected SAE ids (unique ids) and their selected gated metrics."""

_SHARD_RE = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$", re.ASCII)  # ASCII: no full-width digits


MAX_SHARDS = 10_000
"""The most shards a partition may have (far more than CI matrices or job arrays hold; the plan keeps one
entry per shard)."""


@dataclass(frozen=True)
class Shard:
    """One shard of a partition: ``K/N``, numbered from 1."""

    index: int
    """K, from 1 to ``count``."""
    count: int
    """N, how many shards the work is split into."""

    def __post_init__(self) -> None:
        if self.count < 1:
            raise InputError(f"a partition needs at least 1 shard, got {self}", fix="give K/N with N >= 1, e.g. 1/3",
                             key="shard")
        if self.count > MAX_SHARDS:
            raise InputError(f"a partition of {self.count:,} shards is more than the {MAX_SHARDS:,} allowed",
                             fix=f"give K/N with N at most {MAX_SHARDS:,} (one shard per CI job or array task)",
                             key="shard")
        if not 1 <= self.index <= self.count:
            hint = f"; a 0-based index i is shard i+1 (1/{self.count})" if self.index == 0 else ""
            raise InputError(f"shard {self} does not exist: shards are numbered from 1 to {self.count}{hint}",
                             fix=f"give K/N with 1 <= K <= N, e.g. 1/{self.count}", key="shard")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str, *, key: str = "shard") -> Shard:
        """``"K/N"`` as a shard; an :class:`InputError` at ``key`` when it is not one."""
        m = _SHARD_RE.match(text)
        if m is None:
            raise InputError(f"{text!r} is not a shard", fix="write K/N with shards numbered from 1, e.g. 2/3, "
                             "or auto (the index a CI system sets)", key=key)
        k, n = (g.lstrip("-").lstrip("0") for g in m.groups())  # sized before int(): no 5,000-digit numbers
        if len(n) > len(str(MAX_SHARDS)):
            raise InputError(f"shard {text.strip()[:40]!r} has more than {MAX_SHARDS:,} shards", key=key,
                             fix=f"give K/N with N at most {MAX_SHARDS:,} (one shard per CI job or array task)")
        if len(k) > len(str(MAX_SHARDS)):
            count = int(m.group(2))
            raise InputError(f"shard {text.strip()[:40]!r} does not exist: shards are numbered from 1 to {count}",
                             fix=f"give K/N with 1 <= K <= N, e.g. 1/{count}", key=key)
        try:
            return cls(int(m.group(1)), int(m.group(2)))
        except InputError as e:
            raise InputError(e.message, fix=e.fix, key=key) from None


def shard_from(value: str | None, environ: Mapping[str, str] | None = None, *, key: str = "--shard") -> Shard | None:
    """The shard asked for: ``value`` (an option), else ``$SAEVAL_SHARD``; ``None`` when neither is set.

    ``auto`` reads the index and count a CI system sets (:data:`CI_VARIABLES`, Slurm's
    ``SLURM_ARRAY_TASK_*``); none set is an error, never an unsharded run. So is an option given with an
    empty value (``--shard "$UNSET"``): every job of a matrix would run everything. An empty
    ``$SAEVAL_SHARD`` counts as unset.
    """
    env = os.environ if environ is None else environ
    if value is not None and not value.strip():
        raise InputError("the shard is empty (an unset variable in the command?): every job would run everything",
                         fix="give the shard as K/N (e.g. 2/3) or auto, or leave the option out", key=key)
    if value is None:
        value, key = env.get(SHARD_ENV, ""), SHARD_ENV
        if not value.strip():
            return None
    if value.strip().lower() != "auto":
        return Shard.parse(value, key=key)
    example = f"{key} 2/3" if key.startswith("-") else f"{key}=2/3"
    found = _slurm(env, example) or next(((system, index, count, first) for system, index, count, first in CI_VARIABLES
                                          if env.get(index, "").strip() and env.get(count, "").strip()), None)
    if found is None:
        names = ", ".join(f"{i} + {c}" for _, i, c, _ in CI_VARIABLES)
        raise InputError(f"auto: no CI index variables are set (looked for {names} and SLURM_ARRAY_TASK_ID)",
                         fix=f"give the shard as K/N, e.g. {example}", key=key)
    system, index, count, first = found
    k, n = _whole(env, index, example), _whole(env, count, example)
    try:
        if n >= 1 and not first <= k < first + n:  # e.g. CIRCLE_NODE_INDEX=-1: no job of the partition
            raise InputError(f"{index}={k} is out of range: jobs are numbered from {first} to {first + n - 1} "
                             f"({count}={n})", fix=f"check the job's index variables, or give the shard as K/N, "
                             f"e.g. {example}", key=key)
        return Shard(k - first + 1, n)
    except InputError as e:
        raise InputError(f"{system}: {e.message}", fix=e.fix, key=f"{index}/{count}") from None


_WHOLE_RE = re.compile(r"^[+-]?[0-9]{1,18}$", re.ASCII)  # ASCII: int() would read '２' and other scripts' digits


def _whole(env: Mapping[str, str], name: str, example: str) -> int:
    """Variable ``name`` as a whole number; an :class:`InputError` at ``name`` when it is none."""
    value = env.get(name, "")
    if _WHOLE_RE.match(value.strip()) is None:
        raise InputError(f"auto: {name}={brief(value, 40)} is not a whole number", key=name,
                         fix=f"give the shard as K/N, e.g. {example}")
    return int(value)


def _slurm(env: Mapping[str, str], example: str) -> tuple[str, str, str, int] | None:
    """Slurm job arrays: shard ``ID - MIN + 1`` of ``COUNT``, for a contiguous array (``--array=A-B``)."""
    if not env.get("SLURM_ARRAY_TASK_ID", "").strip():
        return None
    missing = [v for v in (f"SLURM_ARRAY_TASK_{k}" for k in ("MIN", "MAX", "COUNT")) if not env.get(v, "").strip()]
    if missing:
        raise InputError(f"SLURM_ARRAY_TASK_ID is set, but not {', '.join(missing)}: this is no Slurm job array",
                         key="SLURM_ARRAY_TASK_ID",
                         fix=f"submit the job as an array (--array=1-N) or give the shard as K/N, e.g. {example}")
    lo, hi, n = (_whole(env, f"SLURM_ARRAY_TASK_{k}", example) for k in ("MIN", "MAX", "COUNT"))
    if hi - lo + 1 != n or env.get("SLURM_ARRAY_TASK_STEP", "1").strip() != "1":
        raise InputError("a Slurm array with gaps or steps is not one partition", key="SLURM_ARRAY_TASK_ID",
                         fix="submit a contiguous array (--array=1-N, optionally with %limit) or give --shard K/N")
    return ("Slurm", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", lo)


def suite_name(path: str | os.PathLike[str]) -> str:
    """A suite file's name in a partition: its path as the run names it, normalised (``./a/../b.yaml`` -> ``b.yaml``)."""
    return Path(os.path.normpath(os.fspath(path))).as_posix()


@dataclass(frozen=True)
class WorkGroup:
    """One fused-pass group of the selected work; a partition never splits one."""

    id: str
    """Its suites' names joined by `` + `` (unique within a selection)."""
    suites: tuple[str, ...]
    """The suite names, sorted."""
    saes: tuple[tuple[str, str, tuple[str, ...]], ...]
    """``(suite name, SAE unique id, selected gated metrics)``, sorted."""
    cost: float
    """What evaluating it costs (see :mod:`.costs`; seconds when timings were known)."""

    def to_dict(self) -> dict[str, object]:
        """Plain data (the shard record holds it)."""
        return {"id": self.id, "suites": list(self.suites), "saes": [[s, u, list(m)] for s, u, m in self.saes],
                "cost": self.cost}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> WorkGroup:
        """Rebuild from :meth:`to_dict`'s output (``KeyError``/``TypeError``/``ValueError`` when it is not one)."""
        saes = tuple((str(s), str(u), tuple(str(x) for x in m)) for s, u, m in data["saes"])  # type: ignore[attr-defined]
        return cls(str(data["id"]), tuple(str(s) for s in data["suites"]), saes,  # type: ignore[attr-defined]
                   float(data["cost"]))  # type: ignore[arg-type]


def _digest(value: object) -> str:
    return name_digest(json.dumps(value, sort_keys=True))


@dataclass(frozen=True)
class ShardPlan:
    """The partition of a selection into N shards, seen from shard K."""

    shard: Shard
    """Which shard this plan is for."""
    groups: tuple[WorkGroup, ...]
    """Every group of the selection, sorted by id."""
    owners: tuple[int, ...]
    """The shard (1-based) of each group."""
    cost_basis: str = "estimate"
    """What the costs rest on (see :class:`~.costs.GroupCosts`)."""

    def __post_init__(self) -> None:
        if len(self.owners) != len(self.groups) or any(not 1 <= k <= self.shard.count for k in self.owners):
            raise ValueError("every group needs an owner between 1 and N")

    @property
    def selection(self) -> str:
        """A hash of the selected work (groups, their SAEs and gated metrics); equal for every shard of a partition."""
        return _digest([[g.id, [list(s[:2]) + [list(s[2])] for s in g.saes]] for g in self.groups])

    @property
    def partition(self) -> str:
        """A hash of the selection, N and which shard owns which group."""
        return _digest([self.selection, self.shard.count, list(self.owners)])

    def owner(self, suite: str) -> int | None:
        """The shard that evaluates ``suite`` (a suite name), or ``None`` when it is not selected."""
        for group, k in zip(self.groups, self.owners):
            if suite in group.suites:
                return k
        return None

    def groups_of(self, k: int) -> tuple[WorkGroup, ...]:
        """The groups shard ``k`` evaluates."""
        return tuple(g for g, owner in zip(self.groups, self.owners) if owner == k)

    @property
    def owned(self) -> tuple[WorkGroup, ...]:
        """The groups this shard evaluates."""
        return self.groups_of(self.shard.index)

    def owns_suite(self, suite: str) -> bool:
        """Whether this shard evaluates ``suite`` (a suite name)."""
        return self.owner(suite) == self.shard.index

    def selects(self, suite: str, uid: str) -> bool:
        """Whether SAE ``uid`` of ``suite`` is part of the selected work (of any shard)."""
        return any(s == suite and u == uid for g in self.groups for s, u, _ in g.saes)

    def describe(self) -> str:
        """One line for the terminal: which shard, what it owns, or that it has none."""
        mine = self.owned
        head = f"shard {self.shard} (selection {self.selection[:8]})"
        if not mine:
            n = len(self.groups)
            return (f"{head} has no work: the selection has {n} evaluation group{'s' if n != 1 else ''} "
                    f"for {self.shard.count} shards")
        return f"{head}: {len(mine)} of {len(self.groups)} evaluation groups ({'; '.join(g.id for g in mine)})"

    def to_dict(self) -> dict[str, object]:
        """Plain data (the shard record holds it)."""
        return {"index": self.shard.index, "count": self.shard.count, "selection": self.selection,
                "partition": self.partition, "cost_basis": self.cost_basis,
                "groups": [dict(g.to_dict(), shard=k) for g, k in zip(self.groups, self.owners)]}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ShardPlan:
        """Rebuild from :meth:`to_dict`'s output; ``ValueError`` when its hashes do not match its content."""
        groups = [WorkGroup.from_dict(g) for g in data["groups"]]  # type: ignore[attr-defined]
        owners = [int(g["shard"]) for g in data["groups"]]  # type: ignore[attr-defined]
        plan = cls(Shard(int(data["index"]), int(data["count"])),  # type: ignore[call-overload]
                   tuple(groups), tuple(owners), str(data.get("cost_basis", "estimate")))
        if plan.selection != data.get("selection") or plan.partition != data.get("partition"):
            raise ValueError("its selection or partition hash does not match the groups it lists")
        return plan


def balance(costs: Sequence[float], ids: Sequence[str], count: int) -> tuple[int, ...]:
    """The shard (1-based) of each group: largest cost first (ties by id) to the least-loaded shard (ties: lowest K)."""
    loads = [0.0] * count
    owners: dict[int, int] = {}
    for i in sorted(range(len(ids)), key=lambda i: (-costs[i], ids[i])):
        k = min(range(count), key=lambda j: (loads[j], j))
        loads[k] += costs[i]
        owners[i] = k + 1
    return tuple(owners[i] for i in range(len(ids)))


def plan_shards(shard: Shard, selection: Selection, *, device: str | None = None,
                timings: Mapping[str, SuiteTiming] | None = None) -> ShardPlan:
    """Partition ``selection`` into ``shard.count`` shards by fused-pass group, balanced by cost.

    ``device``: the run's device override (it joins or separates groups as it does in the run);
    ``timings``: seconds of earlier runs by suite name (see :mod:`.costs`). Suites with no selected SAE
    are not part of the work.
    """
    by_key: dict[GroupKey, dict[str, tuple[Suite, dict[str, set[str]]]]] = {}
    for suite, saes in selection:
        if not saes:
            continue
        members = by_key.setdefault(group_key(suite, device), {})
        _, chosen = members.setdefault(suite_name(suite.path), (suite, {}))
        for uid, metrics in saes.items():
            chosen.setdefault(uid, set()).update(metrics)
    parts = sorted((sorted(members.items()) for members in by_key.values()), key=lambda m: [name for name, _ in m])
    found = group_costs([[(name, suite, sorted(saes)) for name, (suite, saes) in members] for members in parts],
                        timings or {})
    groups = tuple(
        WorkGroup(id=" + ".join(name for name, _ in members), suites=tuple(name for name, _ in members),
                  saes=tuple((name, uid, tuple(sorted(m))) for name, (_, saes) in members for uid, m in sorted(saes.items())),
                  cost=cost)
        for members, cost in zip(parts, found.costs)
    )
    ordered = sorted(range(len(groups)), key=lambda i: groups[i].id)
    groups = tuple(groups[i] for i in ordered)
    owners = balance([g.cost for g in groups], [g.id for g in groups], shard.count)
    return ShardPlan(shard, groups, owners, found.basis)
