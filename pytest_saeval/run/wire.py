"""A :class:`~pytest_saeval.run.outcome.SuiteRun` as plain data and back, for pytest-xdist.

Workers send their runs to the controller in ``workeroutput``, which carries only plain values
(dicts, lists, strings, numbers). The suite itself is not sent: the controller loads the same file
(pure Python) and checks the gates again from the sent values, against the same baseline file.
Per-sequence statistics are not sent (the intervals computed from them are).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pytest_saeval.engine.results import SAEResult
from pytest_saeval.plain import JSON, to_plain
from pytest_saeval.run.checks import check_one
from pytest_saeval.run.outcome import EvalConfig, Inputs, SuiteRun
from pytest_saeval.run.plan import SAEEntry
from pytest_saeval.run.provenance import Note, Provenance
from pytest_saeval.spec.baseline import load_baseline
from pytest_saeval.spec.gates import Gate
from pytest_saeval.spec.suite import Suite

__all__ = ["run_from_wire", "run_to_wire"]


def run_to_wire(run: SuiteRun) -> JSON:
    """Plain data for ``run`` (results without their per-sequence statistics)."""
    data: dict[str, Any] = {
        "suite": str(run.suite.path),
        "entries": [[e.unique_id, e.spec.id, e.release_sae_id] for e in run.entries],
        "results": {uid: r.to_plain() for uid, r in run.results.items()},
        "checks": [[c.sae_id, c.gate.metric] for c in run.checks],
        "unchecked": [[uid, g.metric] for uid, g in run.unchecked],
        "eval_cfg": run.eval_cfg.to_dict(),
        "provenance": {k: v.to_dict() for k, v in run.provenance.items()},
        "sae_cfgs": run.sae_cfgs,
        "notes": [[n.sae_id, n.text, n.loud] for n in run.notes],
        "intervals": run.intervals,
        "inputs": run.inputs,
        "seconds": run.seconds,
    }
    return to_plain(data)


def run_from_wire(data: Mapping[str, Any], load: Callable[[Path], Suite]) -> SuiteRun:
    """Rebuild a run sent by :func:`run_to_wire`; ``load`` loads the suite file."""
    suite = load(Path(data["suite"]))
    entries = [SAEEntry(suite.path, spec, uid, rid, index=suite.saes.index(spec))
               for uid, spec_id, rid in data["entries"] for spec in (suite.sae(spec_id),)]
    by_uid = {e.unique_id: e for e in entries}
    results = {uid: SAEResult.from_plain(uid, r) for uid, r in data["results"].items()}

    def gate(uid: str, metric: str) -> Gate:
        found = by_uid[uid].spec.gate(metric)
        assert found is not None
        return found

    uses_baseline = suite.baseline is not None and any(gate(u, m).uses_baseline for u, m in data["checks"])
    baseline = load_baseline(suite.baseline, missing_ok=True) if uses_baseline and suite.baseline else None
    intervals = {uid: {m: (float(lo), float(hi)) for m, (lo, hi) in iv.items()}
                 for uid, iv in data.get("intervals", {}).items()}
    checks = [check_one(suite, uid, gate(uid, metric), results[uid].metrics, baseline, intervals.get(uid))
              for uid, metric in data["checks"]]
    return SuiteRun(suite=suite, entries=entries, results=results, checks=checks,
                    eval_cfg=EvalConfig.from_dict(data["eval_cfg"]),
                    provenance={k: Provenance.from_dict(v) for k, v in data["provenance"].items()},
                    sae_cfgs={k: dict(v) for k, v in data["sae_cfgs"].items()}, notes=[Note(sae, text, bool(loud)) for sae, text, loud in data["notes"]],
                    unchecked=[(uid, gate(uid, metric)) for uid, metric in data["unchecked"]], intervals=intervals,
                    inputs=Inputs.from_dict(data["inputs"]),
                    seconds=data.get("seconds"))
