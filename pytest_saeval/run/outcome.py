"""What one suite produced in a run (:class:`SuiteRun`), and partial runs of a suite merged into one."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pytest_saeval.engine.results import SAEResult
from pytest_saeval.plain import JSON
from pytest_saeval.run.checks import GateCheck
from pytest_saeval.run.intervals import Interval
from pytest_saeval.run.plan import SAEEntry
from pytest_saeval.run.provenance import Note, Provenance
from pytest_saeval.spec.gates import Gate
from pytest_saeval.spec.suite import Suite

__all__ = ["EvalConfig", "Inputs", "SuiteRun", "merge_runs", "only"]

_V = TypeVar("_V")


@dataclass(frozen=True)
class Inputs:
    """What one evaluation of a suite ran on, beyond the suite file: results are identified by it
    (with the suite and SAE entry), never by SAE id alone."""

    overridden: tuple[str, ...] = ()
    """The suite's sources that something else replaced, e.g. ``saeval_tokens from tests/conftest.py``;
    empty: the suite's own model, SAEs and tokens."""
    model_xxh3: str = ""
    """Content hash of the model evaluated (see :class:`~pytest_saeval.run.provenance.Provenance`)."""
    tokens_xxh3: str = ""
    """Content hash of the token rows evaluated."""

    @property
    def own(self) -> bool:
        """Whether the suite's own sources were evaluated (only such results may become its baseline)."""
        return not self.overridden

    def describe(self) -> str:
        """``""`` for the suite's own inputs, else ``" (with saeval_tokens from tests/conftest.py)"``."""
        return "" if self.own else " (with " + ", ".join(self.overridden) + ")"

    def key(self) -> str:
        """These inputs as one comparable string (results of one SAE on different inputs are different results)."""
        return json.dumps([list(self.overridden), self.model_xxh3, self.tokens_xxh3])

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> Inputs:
        """Rebuild from its plain data (``{"overridden": [...], "model_xxh3": ..., "tokens_xxh3": ...}``);
        ``None`` or ``{}``: the suite's own inputs, hashes unknown."""
        data = data or {}
        overridden = data.get("overridden") or ()
        return cls(overridden=tuple(str(x) for x in overridden),  # type: ignore[attr-defined]
                   model_xxh3=str(data.get("model_xxh3") or ""), tokens_xxh3=str(data.get("tokens_xxh3") or ""))


@dataclass(frozen=True)
class EvalConfig:
    """The settings and data a suite was evaluated with, under SAE Lens's ``eval_cfg`` names."""

    suite: str
    """The suite file."""
    dataset: str | None
    """The token file, or the dataset's path."""
    context_size: int
    """Tokens per row."""
    batch_size_prompts: int
    """Rows per batch."""
    n_eval_reconstruction_batches: int
    """Batches for the CE / KL metrics."""
    n_eval_sparsity_variance_batches: int
    """Batches for the sparsity / variance metrics."""
    exclude_special_tokens: bool | list[int]
    """``true``, ``false`` or the excluded token ids."""
    library_version: str
    """SAE Lens's version (as its eval outputs record it)."""
    saeval_version: str
    """This package's version."""

    def to_dict(self) -> dict[str, JSON]:
        """The configuration as plain data, as the outputs hold it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> EvalConfig:
        """Rebuild from :meth:`to_dict`'s output."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class SuiteRun:
    """Everything one suite produced in a run."""

    suite: Suite
    """The suite as loaded."""
    entries: list[SAEEntry]
    """The SAEs that were evaluated (after selection and regex expansion)."""
    results: dict[str, SAEResult]
    """Engine results by unique SAE id."""
    checks: list[GateCheck]
    """Gate outcomes, in file order."""
    eval_cfg: EvalConfig
    """Settings and data description, as written to the outputs."""
    provenance: dict[str, Provenance] = field(default_factory=dict)
    """Per SAE id: versions, device, content hashes of SAE, tokens and model."""
    sae_cfgs: dict[str, dict[str, JSON]] = field(default_factory=dict)
    """Per SAE id: the SAE's config as plain data."""
    notes: list[Note] = field(default_factory=list)
    """What the baseline was recorded on, where that differs from this run, per SAE
    (see :func:`pytest_saeval.run.provenance.provenance_notes`)."""
    unchecked: list[tuple[str, Gate]] = field(default_factory=list)
    """``(sae id, gate)`` pairs left unchecked because the baseline has no value for them yet
    (only while a baseline is being recorded)."""
    intervals: dict[str, dict[str, Interval]] = field(default_factory=dict)
    """Per SAE id: 95% bootstrap intervals over sequences of the token-mean metrics and their ratios
    (see :mod:`pytest_saeval.run.intervals`); shown next to values in messages and reports."""
    inputs: Inputs = field(default_factory=Inputs)
    """What this evaluation ran on: runs of one suite on different inputs stay apart."""
    seconds: float | None = None
    """Wall-clock seconds of the suite's evaluation: its share (by SAE count) of its group's loading and
    pass; ``None`` when not measured. Kept for balancing later shards, never written to the outputs."""

    @property
    def title(self) -> str:
        """The suite file, and what replaced its sources when something did."""
        return f"{self.suite.path}{self.inputs.describe()}"

    @property
    def passed(self) -> bool:
        """Whether every checked gate passed."""
        return all(c.passed for c in self.checks)

    def intervals_of(self, sae_id: str) -> dict[str, Interval]:
        """The intervals of one SAE (``{}`` when it has none)."""
        return self.intervals.get(sae_id) or {}

    def gate_rank(self, sae_id: str, metric: str) -> tuple[int, str, int]:
        """(SAE entry position, SAE id, gate position): rows in suite-file order."""
        order = {spec.id: i for i, spec in enumerate(self.suite.saes)}
        for entry in self.entries:
            if entry.unique_id == sae_id:
                metrics = entry.spec.metrics
                pos = metrics.index(metric) if metric in metrics else len(metrics)
                return order.get(entry.spec.id, len(order)), sae_id, pos
        return len(order), sae_id, 0


def only(run: SuiteRun, keep: Callable[[str], bool]) -> SuiteRun:
    """``run`` with only the SAEs whose unique id ``keep`` accepts (their results, checks and notes)."""
    return dataclasses.replace(
        run,
        entries=[e for e in run.entries if keep(e.unique_id)],
        results={u: r for u, r in run.results.items() if keep(u)},
        checks=[c for c in run.checks if keep(c.sae_id)],
        provenance={u: p for u, p in run.provenance.items() if keep(u)},
        sae_cfgs={u: c for u, c in run.sae_cfgs.items() if keep(u)},
        notes=[n for n in run.notes if keep(n.sae_id)],
        unchecked=[(u, g) for u, g in run.unchecked if keep(u)],
        intervals={u: i for u, i in run.intervals.items() if keep(u)},
    )


def merge_runs(runs: Iterable[SuiteRun]) -> list[SuiteRun]:
    """Merge partial runs of one suite on the same inputs (e.g. from several workers) into one.

    Runs of one suite on different inputs (a conftest override, other content) stay apart. Suites
    are ordered by path, the suite's own inputs first; SAEs (their results too) and gates follow the
    suite file's order, notes their SAE ids' order, so the merged result does not depend on which
    process evaluated what.
    """
    by_key: dict[tuple[str, bool, Inputs], list[SuiteRun]] = {}
    for run in runs:
        by_key.setdefault((str(run.suite.path), not run.inputs.own, run.inputs), []).append(run)
    return [_merge(by_key[key]) for key in sorted(by_key, key=lambda k: (k[0], k[1], repr(k[2])))]


def _merge(parts: list[SuiteRun]) -> SuiteRun:
    entries: dict[str, SAEEntry] = {}
    checks: dict[tuple[str, str], GateCheck] = {}
    unchecked: dict[tuple[str, str], tuple[str, Gate]] = {}
    out = SuiteRun(suite=parts[0].suite, entries=[], results={}, checks=[], eval_cfg=parts[0].eval_cfg,
                   inputs=parts[0].inputs)
    for part in parts:
        for entry in part.entries:
            entries.setdefault(entry.unique_id, entry)
        out.results.update(part.results)
        out.provenance.update(part.provenance)
        out.sae_cfgs.update(part.sae_cfgs)
        out.intervals.update(part.intervals)
        for check in part.checks:
            checks.setdefault((check.sae_id, check.gate.metric), check)
        for uid, gate in part.unchecked:
            unchecked.setdefault((uid, gate.metric), (uid, gate))
        out.notes.extend(n for n in part.notes if n not in out.notes)
    timed = [p.seconds for p in parts if p.seconds is not None]
    ranked = dataclasses.replace(out, entries=list(entries.values()), seconds=sum(timed) if timed else None)

    def by_sae(found: dict[str, _V]) -> dict[str, _V]:
        return {uid: found[uid] for uid in sorted(found, key=lambda uid: ranked.gate_rank(uid, "")[:2])}

    return dataclasses.replace(
        ranked,
        entries=sorted(entries.values(), key=lambda e: ranked.gate_rank(e.unique_id, "")[:2]),
        results=by_sae(out.results), provenance=by_sae(out.provenance), sae_cfgs=by_sae(out.sae_cfgs),
        intervals=by_sae(out.intervals),
        checks=[checks[k] for k in sorted(checks, key=lambda k: ranked.gate_rank(*k))],
        unchecked=[unchecked[k] for k in sorted(unchecked, key=lambda k: ranked.gate_rank(*k))],
        notes=sorted(out.notes, key=lambda n: n.sae_id),  # as provenance_notes orders them, whoever evaluated
    )
