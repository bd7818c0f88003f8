"""A :class:`~pytest_saeval.session.SuiteRun` as plain data and back, for pytest-xdist.

Workers send their runs to the controller in ``workeroutput``, which carries only plain values
(dicts, lists, strings, numbers). The suite itself is not sent: the controller loads the same file
(pure Python) and checks the gates again from the sent values, against the same baseline file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pytest_saeval.session import GateCheck, SAEEntry, SuiteRun, check_one
from pytest_saeval.spec.suite import Suite

__all__ = ["plain", "run_from_wire", "run_to_wire"]


def plain(obj: Any) -> Any:
    """``obj`` with every value turned into a builtin type that execnet can send (str subclasses such
    as ``torch.__version__`` included); tuples become lists and keys strings."""
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return str(obj)


def run_to_wire(run: SuiteRun) -> dict[str, Any]:
    """Plain data for ``run`` (results without their per-sequence statistics)."""
    return plain({
        "suite": str(run.suite.path),
        "entries": [[e.unique_id, e.spec.id, e.release_sae_id] for e in run.entries],
        "results": {
            uid: {
                "hook_name": r.hook_name,
                "hook_head_index": r.hook_head_index,
                "d_in": r.d_in,
                "d_sae": r.d_sae,
                "metrics": {k: float(v) for k, v in r.metrics.items()},
                "feature_metrics": {k: [float(x) for x in v] for k, v in r.feature_metrics.items()},
            }
            for uid, r in run.results.items()
        },
        "checks": [[c.sae_id, c.gate.metric] for c in run.checks],
        "unchecked": [[uid, g.metric] for uid, g in run.unchecked],
        "eval_cfg": dict(run.eval_cfg),
        "provenance": {k: dict(v) for k, v in run.provenance.items()},
        "sae_cfgs": {k: dict(v) for k, v in run.sae_cfgs.items()},
        "notes": list(run.notes),
        "intervals": {uid: {m: [float(lo), float(hi)] for m, (lo, hi) in iv.items()}
                      for uid, iv in run.intervals.items()},
    })


def run_from_wire(data: Mapping[str, Any], load: Callable[[Path], Suite]) -> SuiteRun:
    """Rebuild a run sent by :func:`run_to_wire`; ``load`` loads the suite file."""
    from pytest_saeval.spec.baseline import load_baseline
    from pytest_saeval.engine import SAEResult

    suite = load(Path(data["suite"]))
    entries = [SAEEntry(suite.path, suite.sae(spec_id), uid, rid) for uid, spec_id, rid in data["entries"]]
    by_uid = {e.unique_id: e for e in entries}
    results = {
        uid: SAEResult(sae_id=uid, hook_name=r["hook_name"], hook_head_index=r["hook_head_index"],
                       d_in=int(r["d_in"]), d_sae=int(r["d_sae"]), metrics=dict(r["metrics"]),
                       feature_metrics={k: list(v) for k, v in r["feature_metrics"].items()})
        for uid, r in data["results"].items()
    }
    uses_baseline = suite.baseline is not None and any(
        (g := by_uid[uid].spec.gate(metric)) is not None and g.uses_baseline for uid, metric in data["checks"]
    )
    baseline = load_baseline(suite.baseline, missing_ok=True) if uses_baseline and suite.baseline else None
    intervals = {uid: {m: (float(lo), float(hi)) for m, (lo, hi) in iv.items()}
                 for uid, iv in data.get("intervals", {}).items()}
    checks: list[GateCheck] = []
    for uid, metric in data["checks"]:
        gate = by_uid[uid].spec.gate(metric)
        assert gate is not None
        checks.append(check_one(suite, uid, gate, results[uid].metrics, baseline, intervals=intervals.get(uid)))
    unchecked = []
    for uid, metric in data["unchecked"]:
        gate = by_uid[uid].spec.gate(metric)
        assert gate is not None
        unchecked.append((uid, gate))
    return SuiteRun(suite=suite, entries=entries, results=results, checks=checks, eval_cfg=dict(data["eval_cfg"]),
                    provenance={k: dict(v) for k, v in data["provenance"].items()},
                    sae_cfgs={k: dict(v) for k, v in data["sae_cfgs"].items()}, notes=list(data["notes"]),
                    unchecked=unchecked, intervals=intervals)
