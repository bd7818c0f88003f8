"""The output files read back into runs (pure Python, no torch): ``all_eval_results.json`` to
:class:`~pytest_saeval.run.outcome.SuiteRun` s whose gates are checked again from the recorded values.

Each record (see :mod:`.files`) carries its SAE's metrics, intervals, provenance, config, notes (and
whether each is loud), the inputs it was evaluated on and, per gate, the baseline value it was checked
against; the suite file itself is loaded again (pure Python) for its gates and its order. Records of one
suite on different inputs (a conftest's override) become different runs, as they were. A gate recorded as
unchecked (no baseline value yet) stays unchecked; one whose fixed bounds failed while its baseline value
was being recorded is checked again on those bounds. Writing the rebuilt runs again gives the same records.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_saeval.bounded import read_json
from pytest_saeval.engine.results import SAEResult
from pytest_saeval.errors import SaevalError, ShardError
from pytest_saeval.fileio import os_reason
from pytest_saeval.run.checks import GateCheck, check_fixed, check_with
from pytest_saeval.run.outcome import EvalConfig, Inputs, SuiteRun
from pytest_saeval.run.plan import SAEEntry
from pytest_saeval.run.provenance import Note, Provenance
from pytest_saeval.spec.gates import Gate
from pytest_saeval.spec.suite import SAESpec, Suite

__all__ = ["RESULTS_FILE", "read_records", "record_inputs", "record_key", "runs_from_records"]

RESULTS_FILE = "all_eval_results.json"
"""The combined records file of an output folder."""

_FIX = "run that shard again (its output folder is incomplete or was edited)"


def read_records(folder: str | Path) -> list[dict[str, Any]]:
    """The records of ``folder``'s ``all_eval_results.json``; a :class:`ShardError` naming the file when
    it is missing or is not a list of records."""
    path = Path(folder) / RESULTS_FILE
    try:
        data = read_json(path, limit=None)  # no limit: a regular file, and per-feature values make it large
    except FileNotFoundError:
        raise ShardError(f"{RESULTS_FILE} is missing", fix=_FIX, file=str(path)) from None
    except (OSError, ValueError) as e:  # not a regular file, not UTF-8 or JSON, nested too deeply, ...
        reason = os_reason(e) if isinstance(e, OSError) else str(e)
        raise ShardError(f"cannot read the results: {reason}", fix=_FIX, file=str(path)) from None
    if not isinstance(data, list):
        raise ShardError("the results are not a JSON list of records", fix=_FIX, file=str(path))
    for i, rec in enumerate(data):
        problem = _shape_problem(rec)
        if problem is not None:
            raise ShardError(f"record {i} {problem}", fix=_FIX, file=str(path), key=f"[{i}]")
    return data


def _shape_problem(rec: object) -> str | None:
    if not isinstance(rec, dict):
        return "is not a JSON object"
    kinds: dict[str, type | tuple[type, ...]] = {
        "unique_id": str, "sae_id": str, "eval_cfg": dict, "metrics": dict, "feature_metrics": dict,
        "sae_cfg": dict, "hook_name": str, "d_in": int, "d_sae": int, "gates": list, "provenance": dict,
        "intervals": dict, "notes": list, "notes_loud": list, "inputs": dict,
    }
    for key, kind in kinds.items():
        if not isinstance(rec.get(key), kind):
            return f"has no {key} of the right kind (written by another version?)"
    if not isinstance(rec["eval_cfg"].get("suite"), str):
        return "has no eval_cfg.suite"
    if len(rec["notes_loud"]) != len(rec["notes"]):
        return "has notes_loud of another length than notes"
    if not isinstance(rec["inputs"].get("overridden", []), list):
        return "has no inputs.overridden list"
    return None


def record_key(rec: Mapping[str, Any]) -> tuple[str, str]:
    """``(suite, SAE unique id)`` of a record."""
    return str(rec["eval_cfg"]["suite"]), str(rec["unique_id"])


def record_inputs(rec: Mapping[str, Any]) -> Inputs:
    """What a record's evaluation ran on (the suite's own inputs, or what a conftest replaced)."""
    return Inputs.from_dict(rec.get("inputs"))


def _num(value: object) -> float:
    """A recorded number (``null`` is a non-finite value)."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def _spec_of(suite: Suite, uid: str) -> SAESpec:
    """The ``saes:`` entry of a unique id: the entry itself, or the release regex entry it matched."""
    for spec in suite.saes:
        if spec.id == uid:
            return spec
    matches = [s for s in suite.saes if s.release is not None and uid.startswith(s.id + "/")]
    if not matches:
        raise ShardError(f"the suite has no SAE {uid!r} any more", fix="merge with the suite files the shards ran",
                         file=str(suite.path), key="saes")
    return max(matches, key=lambda s: len(s.id))


def _gate(suite: Suite, spec: SAESpec, recorded: Mapping[str, Any]) -> Gate:
    gate = spec.gate(str(recorded.get("metric")))
    if gate is None or gate.text != recorded.get("bound"):
        raise ShardError(f"[{spec.id}] the gate {recorded.get('metric')} {recorded.get('bound')} recorded by the "
                         "shard is not in the suite file any more", fix="merge with the suite files the shards ran",
                         file=str(suite.path), line=spec.line, key=f"saes[{suite.saes.index(spec)}].gates")
    return gate


def _agrees(suite: Suite, uid: str, gate: Gate, recorded: Mapping[str, Any], result: SAEResult) -> None:
    """A gate's recorded value is its record's metric (a record edited or damaged by hand contradicts
    itself: which value the shard judged cannot be known, so nothing is checked again from it)."""
    if gate.metric not in result.metrics:
        raise ShardError(f"[{uid}] the record has a gate on {gate.metric} but no {gate.metric} among its metrics",
                         fix=_FIX, file=str(suite.path), line=gate.line, key=gate.key)
    value, kept = recorded.get("value"), result.metrics[gate.metric]
    same = value is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and (
        float(value) == kept or (math.isnan(float(value)) and math.isnan(kept)))
    if not same and not (value is None and math.isnan(kept)):
        raise ShardError(f"[{uid}] the record's gate on {gate.metric} holds {value!r}, its metrics {kept!r}: the "
                         "record contradicts itself", fix=_FIX, file=str(suite.path), line=gate.line, key=gate.key)


class _SuiteRecords:
    """The records of one suite, gathered into the parts of one run."""

    def __init__(self, suite: Suite, eval_cfg: EvalConfig, inputs: Inputs) -> None:
        self.suite = suite
        self.eval_cfg = eval_cfg
        self.inputs = inputs
        self.entries: list[SAEEntry] = []
        self.results: dict[str, SAEResult] = {}
        self.checks: list[GateCheck] = []
        self.unchecked: list[tuple[str, Gate]] = []
        self.intervals: dict[str, dict[str, tuple[float, float]]] = {}
        self.provenance: dict[str, Provenance] = {}
        self.sae_cfgs: dict[str, dict[str, Any]] = {}
        self.notes: list[Note] = []

    def add(self, rec: Mapping[str, Any]) -> None:
        uid = str(rec["unique_id"])
        spec = _spec_of(self.suite, uid)
        self.entries.append(SAEEntry(self.suite.path, spec, uid, str(rec["sae_id"]) if spec.release else None,
                                     index=self.suite.saes.index(spec)))
        self.results[uid] = result = SAEResult.from_plain(uid, rec)
        self.intervals[uid] = {str(m): (_num(lo), _num(hi)) for m, (lo, hi) in rec["intervals"].items()}
        if rec["provenance"]:
            self.provenance[uid] = Provenance.from_dict(rec["provenance"])
        self.sae_cfgs[uid] = dict(rec["sae_cfg"])
        self.notes.extend(Note(uid, str(text), bool(loud)) for text, loud in zip(rec["notes"], rec["notes_loud"]))
        for recorded in rec["gates"]:
            gate = _gate(self.suite, spec, recorded)
            _agrees(self.suite, uid, gate, recorded, result)
            if recorded.get("passed") is None:
                self.unchecked.append((uid, gate))
            else:
                self.checks.append(self._check(uid, gate, result, recorded))

    def _check(self, uid: str, gate: Gate, result: SAEResult, recorded: Mapping[str, Any]) -> GateCheck:
        base = recorded.get("baseline")
        try:
            if base is None and gate.uses_baseline:  # its fixed bounds failed while its baseline was recorded
                partial = check_fixed(self.suite, uid, gate, result.metrics, self.intervals.get(uid))
                if partial is not None:
                    return partial
            return check_with(self.suite, uid, gate, result.metrics, None if base is None else float(base),
                              self.intervals.get(uid))
        except SaevalError as e:
            raise ShardError(f"[{uid}] {gate.metric} cannot be checked again: {e.message}", fix=_FIX,
                             file=str(self.suite.path), line=gate.line, key=gate.key) from None

    def run(self) -> SuiteRun:
        """The rebuilt run (notes by SAE id, as a run orders them)."""
        return SuiteRun(suite=self.suite, entries=self.entries, results=self.results, checks=self.checks,
                        eval_cfg=self.eval_cfg, provenance=self.provenance, sae_cfgs=self.sae_cfgs,
                        notes=sorted(self.notes, key=lambda n: n.sae_id), unchecked=self.unchecked,
                        intervals=self.intervals, inputs=self.inputs)


def runs_from_records(records: Sequence[Mapping[str, Any]], load: Callable[[Path], Suite]) -> list[SuiteRun]:
    """Runs rebuilt from records (one per suite and inputs, in first-seen order), gates checked again.

    ``load`` loads a suite file by the name its records give (``eval_cfg.suite``). A record that does not
    fit its suite file (an SAE or gate it no longer has), or holds a value of the wrong kind (a string
    for a number, a number beyond a float), is a :class:`ShardError`.
    """
    by_run: dict[tuple[str, str], _SuiteRecords] = {}
    suites: dict[str, Suite] = {}
    for rec in records:
        name, uid = record_key(rec)
        inputs = record_inputs(rec)
        key = (name, inputs.key())
        if key not in by_run:
            try:
                cfg = EvalConfig.from_dict(rec["eval_cfg"])
            except (KeyError, TypeError) as e:
                raise ShardError(f"the record of {uid!r} has an incomplete eval_cfg ({e})", fix=_FIX,
                                 file=name) from None
            if name not in suites:
                suites[name] = load(Path(name))
            by_run[key] = _SuiteRecords(suites[name], cfg, inputs)
        try:
            by_run[key].add(rec)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:  # an edited record
            raise ShardError(f"the record of {uid!r} in {RESULTS_FILE} cannot be read back ({type(e).__name__}: {e})",
                             fix=_FIX, file=name) from None
    return [part.run() for part in by_run.values()]
