"""Writers for run outputs: per-SAE JSON, ``all_eval_results.json`` / ``.csv``, the gate table.

The per-SAE JSON has SAE Lens's eval-output keys (``unique_id sae_set sae_id eval_cfg metrics
feature_metrics sae_cfg``) with ``metrics`` flat, plus ``gates`` and ``provenance``. Non-finite
numbers are written as ``null`` (never as a number such as SAE Lens's ``-1``, which a later gate
could read as a value). Every file is written atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import numbers
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_saeval.errors import InputError
from pytest_saeval.fileio import atomic_write_text
from pytest_saeval.spec.numbers import format_number
from pytest_saeval.session import SuiteRun

__all__ = ["format_table", "per_sae_file_names", "result_records", "write_baselines", "write_outputs"]


def _finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN / infinity replaced by ``None`` (JSON ``null``) and numpy scalars made plain."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, dict):
        return {str(k): _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def _sae_set(run: SuiteRun, unique_id: str) -> str:
    for entry in run.entries:
        if entry.unique_id == unique_id and entry.spec.release:
            return entry.spec.release
    return run.suite.path.stem


def result_records(runs: Iterable[SuiteRun]) -> list[dict[str, Any]]:
    """One JSON-ready record per evaluated SAE, in run order."""
    records: list[dict[str, Any]] = []
    for run in runs:
        for entry in run.entries:
            uid = entry.unique_id
            result = run.results.get(uid)
            if result is None:
                continue
            gates = [
                {
                    "metric": c.gate.metric,
                    "bound": c.gate.text,
                    "value": c.result.value,
                    "passed": c.passed,
                    "message": c.result.message,
                    "line": c.gate.line,
                }
                for c in run.checks
                if c.sae_id == uid
            ]
            gates += [
                {
                    "metric": gate.metric,
                    "bound": gate.text,
                    "value": result.metrics.get(gate.metric, math.nan),
                    "passed": None,
                    "message": "not checked: the baseline has no value yet",
                    "line": gate.line,
                }
                for sae_id, gate in run.unchecked
                if sae_id == uid
            ]
            records.append(
                _finite_or_none(
                    {
                        "unique_id": uid,
                        "sae_set": _sae_set(run, uid),
                        "sae_id": entry.release_sae_id or uid,
                        "eval_cfg": dict(run.eval_cfg),
                        "metrics": dict(result.metrics),
                        "feature_metrics": dict(result.feature_metrics),
                        "sae_cfg": run.sae_cfgs.get(uid, {}),
                        "hook_name": result.hook_name,
                        "hook_head_index": result.hook_head_index,
                        "gates": gates,
                        "provenance": run.provenance.get(uid, {}),
                        "intervals": {m: [lo, hi] for m, (lo, hi) in run.intervals.get(uid, {}).items()},
                        "notes": [n for n in run.notes if f"[{uid}]" in n],
                    }
                )
            )
    return records


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "sae"


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, (list, tuple)):
        out[prefix] = json.dumps(obj)
    else:
        out[prefix] = obj


def _csv_text(records: Sequence[dict[str, Any]]) -> str:
    rows = []
    for rec in records:
        flat: dict[str, Any] = {}
        for key in ("unique_id", "sae_set", "sae_id", "hook_name", "hook_head_index"):
            flat[key] = rec.get(key)
        for key in ("eval_cfg", "metrics", "provenance", "sae_cfg"):
            _flatten(key, rec.get(key, {}), flat)
        flat["gates_passed"] = all(g["passed"] is not False for g in rec.get("gates", []))
        rows.append(flat)
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def per_sae_file_names(records: Sequence[dict[str, Any]]) -> list[str]:
    """File names of the per-SAE JSON files: ``<suite stem>__<sae id>.json``.

    Two suites with the same file name in different folders get a short hash of the suite path
    appended, so no file overwrites another.
    """
    names: list[str] = []
    used: set[str] = set()
    for rec in records:
        suite = str(rec["eval_cfg"]["suite"])
        name = f"{_safe_name(Path(suite).stem)}__{_safe_name(rec['unique_id'])}"
        if name in used:
            name = f"{name}__{hashlib.sha256(suite.encode()).hexdigest()[:8]}"
        used.add(name)
        names.append(name + ".json")
    return names


def _write(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise InputError(
            f"cannot write the output file: {e.strerror or e}",
            fix="give --output-dir (or --saeval-output-dir) a folder you can write to",
            file=str(path),
            key="output_dir",
        ) from e


def write_outputs(runs: Sequence[SuiteRun], output_dir: str | Path) -> list[Path]:
    """Write one JSON per SAE plus ``all_eval_results.json`` and ``all_eval_results.csv``.

    Every file is written atomically (a reader sees the old or the new file, never a part).
    Non-finite numbers are written as ``null``. Returns the written paths. An unwritable folder
    raises :class:`~pytest_saeval.errors.InputError`.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise InputError("the output folder is a file", fix="give a folder (it is created when missing)",
                         file=str(out), key="output_dir")
    records = result_records(runs)
    written: list[Path] = []
    for rec, name in zip(records, per_sae_file_names(records)):
        path = out / name
        _write(path, _json(rec))
        written.append(path)
    combined = out / "all_eval_results.json"
    _write(combined, _json(records))
    table = out / "all_eval_results.csv"
    _write(table, _csv_text(records))
    return [*written, combined, table]


def _json(obj: Any) -> str:
    """Indented JSON; ``allow_nan=False`` makes a stray NaN an error instead of an invalid number."""
    return json.dumps(_finite_or_none(obj), indent=2, allow_nan=False) + "\n"


def _rank(run: SuiteRun, sae_id: str, metric: str) -> tuple[int, int]:
    """(SAE position, gate position) in the suite, for rows in file order."""
    for i, entry in enumerate(run.entries):
        if entry.unique_id == sae_id:
            metrics = [g.metric for g in entry.gates]
            return i, metrics.index(metric) if metric in metrics else len(metrics)
    return len(run.entries), 0


def format_table(run: SuiteRun) -> str:
    """A plain-text table: SAE x gated metric with value, bound and PASS/FAIL."""
    header = ("sae", "metric", "value", "95% interval", "bound", "result")

    def interval(uid: str, metric: str) -> str:
        iv = run.intervals.get(uid, {}).get(metric)
        if iv is None or not all(math.isfinite(v) for v in iv):
            return ""
        return f"[{format_number(iv[0])}, {format_number(iv[1])}]"

    ranked: list[tuple[tuple[int, int], tuple[str, ...]]] = [
        (_rank(run, c.sae_id, c.gate.metric),
         (c.sae_id, c.gate.metric, format_number(c.result.value), interval(c.sae_id, c.gate.metric),
          c.gate.describe(c.result.baseline_value), "PASS" if c.passed else "FAIL"))
        for c in run.checks
    ]
    for uid, gate in run.unchecked:
        result = run.results.get(uid)
        value = result.metrics.get(gate.metric, math.nan) if result is not None else math.nan
        ranked.append((_rank(run, uid, gate.metric),
                       (uid, gate.metric, format_number(value), interval(uid, gate.metric), gate.describe(),
                        "UNCHECKED")))
    rows = [row for _, row in sorted(ranked, key=lambda item: item[0])]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = [f"{run.suite.path}"]
    lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)))
    n_fail = sum(not c.passed for c in run.checks)
    n_unchecked = len(rows) - len(run.checks)
    summary = f"  {len(run.checks) - n_fail} passed, {n_fail} failed"
    if n_unchecked:
        summary += f", {n_unchecked} unchecked (no baseline value yet)"
    lines.append(summary if rows else "  no gates")
    return "\n".join(lines)


def write_baselines(runs: Sequence[SuiteRun]) -> list[Path]:
    """Rewrite each suite's baseline file from this run (finite scalar metrics and provenance).

    SAEs not evaluated in this run keep their old values. The file is written atomically, keys
    sorted and values rounded (see :func:`~pytest_saeval.baseline.write_baseline`); reading the old
    file, merging and writing happen under a lock on its folder, so two runs updating one file at
    the same time keep both updates. A suite without a ``baseline:`` key is an error: there is no
    file to write.
    """
    from pytest_saeval.spec.baseline import load_baseline, write_baseline
    from pytest_saeval.errors import SuiteError
    from pytest_saeval.fileio import folder_lock

    written: list[Path] = []
    by_path: dict[Path, tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]] = {}
    for run in runs:
        path = run.suite.baseline
        if path is None:
            raise SuiteError(
                "updating the baseline needs a baseline file",
                fix="add `baseline: baselines/<name>.json` to the suite (the file is created on update)",
                file=str(run.suite.path), key="baseline",
            )
        values, provenance = by_path.setdefault(path, ({}, {}))
        for uid, result in run.results.items():
            values[uid] = {k: v for k, v in result.metrics.items() if math.isfinite(v)}
            provenance[uid] = dict(run.provenance.get(uid, {}))
    for path, (values, provenance) in by_path.items():
        with folder_lock(Path(path).parent):
            old = load_baseline(path, missing_ok=True)
            merged = {k: dict(v) for k, v in old.values.items()} | values
            merged_provenance = {k: old.provenance(k) or {} for k in old.sae_ids} | provenance
            write_baseline(path, merged, {k: v for k, v in merged_provenance.items() if v} or None)
        written.append(path)
    return written
