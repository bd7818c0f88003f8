"""Writers for run outputs: per-SAE JSON, ``all_eval_results.json`` / ``.csv``.

The per-SAE JSON has SAE Lens's eval-output keys (``unique_id sae_set sae_id eval_cfg metrics
feature_metrics sae_cfg``) with ``metrics`` flat, plus ``hook_name``, ``hook_head_index``, ``d_in``,
``d_sae``, ``gates`` (each with the baseline value it was checked against), ``provenance``,
``intervals`` and ``notes`` -- everything :mod:`.readback` needs to rebuild the run. Non-finite
numbers are written as ``null`` (never as a number such as SAE Lens's ``-1``, which a later gate
could read as a value). Every file is written atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_saeval.errors import InputError
from pytest_saeval.fileio import atomic_write_text
from pytest_saeval.plain import to_plain
from pytest_saeval.run.outcome import SuiteRun

__all__ = ["per_sae_file_names", "result_records", "write_outputs"]


def _sae_set(run: SuiteRun, unique_id: str) -> str:
    for entry in run.entries:
        if entry.unique_id == unique_id and entry.spec.release:
            return entry.spec.release
    return run.suite.path.stem


def _gate_records(run: SuiteRun, uid: str, metrics: dict[str, float]) -> list[dict[str, object]]:
    """The record's ``gates``: every checked gate, then the ones left unchecked (no baseline value yet)."""
    checked: list[dict[str, object]] = [
        {"metric": c.gate.metric, "bound": c.gate.text, "value": c.result.value, "passed": c.passed,
         "message": c.result.message, "line": c.gate.line, "baseline": c.result.baseline_value}
        for c in run.checks if c.sae_id == uid
    ]
    return checked + [
        {"metric": gate.metric, "bound": gate.text, "value": metrics.get(gate.metric, math.nan), "passed": None,
         "message": "not checked: the baseline has no value yet", "line": gate.line, "baseline": None}
        for sae_id, gate in run.unchecked if sae_id == uid
    ]


def result_records(runs: Iterable[SuiteRun]) -> list[dict[str, Any]]:
    """One JSON-ready record per evaluated SAE, in run order (non-finite numbers as ``None``)."""
    records: list[dict[str, Any]] = []
    for run in runs:
        for entry in run.entries:
            uid = entry.unique_id
            result = run.results.get(uid)
            if result is None:
                continue
            record = to_plain({
                "unique_id": uid,
                "sae_set": _sae_set(run, uid),
                "sae_id": entry.release_sae_id or uid,
                "eval_cfg": run.eval_cfg.to_dict(),
                "metrics": result.metrics,
                "feature_metrics": result.feature_metrics,
                "sae_cfg": run.sae_cfgs.get(uid, {}),
                "hook_name": result.hook_name,
                "hook_head_index": result.hook_head_index,
                "d_in": result.d_in,
                "d_sae": result.d_sae,
                "gates": _gate_records(run, uid, result.metrics),
                "provenance": run.provenance[uid].to_dict() if uid in run.provenance else {},
                "intervals": run.intervals_of(uid),
                "notes": [n for n in run.notes if f"[{uid}]" in n],
            }, nonfinite="null")
            assert isinstance(record, dict)
            records.append(record)
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
        for key in ("unique_id", "sae_set", "sae_id", "hook_name", "hook_head_index", "d_in", "d_sae"):
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
    return json.dumps(to_plain(obj, nonfinite="null"), indent=2, allow_nan=False) + "\n"
