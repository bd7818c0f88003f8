"""Writers for run outputs: per-SAE JSON, ``all_eval_results.json`` / ``.csv``.

The per-SAE JSON has SAE Lens's eval-output keys (``unique_id sae_set sae_id eval_cfg metrics
feature_metrics sae_cfg``) with ``metrics`` flat, plus ``hook_name``, ``hook_head_index``, ``d_in``,
``d_sae``, ``gates`` (each with the baseline value it was checked against), ``provenance``,
``intervals``, ``notes`` (with ``notes_loud``: whether each is about other inputs than the baseline's) and
``inputs`` (what replaced the suite's own sources, see :class:`~pytest_saeval.run.outcome.Inputs`) --
everything :mod:`.readback` needs to rebuild the run. Non-finite
numbers are written as ``null`` (never as a number such as SAE Lens's ``-1``, which a later gate
could read as a value). The files of one run are written all or none (:func:`~pytest_saeval.fileio.atomic_write_many`):
a full disk leaves the previous outputs as they were.

Per-SAE file names are ``<suite>__<sae id>.json`` with an injective encoding (:func:`per_sae_file_names`):
two SAEs never share a file, whatever their ids.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_saeval.errors import OutputError
from pytest_saeval.fileio import atomic_write_many, os_reason
from pytest_saeval.plain import to_plain
from pytest_saeval.run.outcome import Inputs, SuiteRun
from pytest_saeval.store.hashing import name_digest

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
                "notes": [n.text for n in run.notes if n.sae_id == uid],
                "notes_loud": [n.loud for n in run.notes if n.sae_id == uid],
                "inputs": run.inputs,
            }, nonfinite="null")
            assert isinstance(record, dict)
            records.append(record)
    return records


_PLAIN = frozenset(string.ascii_letters + string.digits + ".-_")
_NAME_MAX = 255


def _encode(text: str, *, label: bool) -> str:
    """``text`` with every character outside letters, digits, ``.``, ``-`` and ``_`` written as ``%XX`` (its UTF-8
    bytes), so different texts give different names. In a suite ``label`` an ``_`` that another ``_`` follows, or
    that ends it, is encoded too (a label never holds ``__`` nor ends with ``_``), and so is a leading ``.``."""
    out: list[str] = []
    for i, ch in enumerate(text):
        plain = ch in _PLAIN
        if label and ch == "_" and (i + 1 == len(text) or text[i + 1] == "_"):
            plain = False
        if label and ch == "." and i == 0:
            plain = False
        out.append(ch if plain else "".join(f"%{b:02X}" for b in ch.encode()))
    return "".join(out)


def _suite_labels(suites: Sequence[str]) -> dict[str, str]:
    """Each suite's label: its file name's stem, or, when several suites share that stem, the stem then ``~``
    and the suite's path from the folder they share (``~`` is never part of an encoded stem)."""
    by_stem: dict[str, list[str]] = {}
    for suite in dict.fromkeys(suites):
        by_stem.setdefault(Path(suite).stem, []).append(suite)
    labels: dict[str, str] = {}
    for stem, same in by_stem.items():
        if len(same) == 1:
            labels[same[0]] = _encode(stem, label=True)
            continue
        full = [os.path.abspath(s) for s in same]
        common = os.path.commonpath([os.path.dirname(f) for f in full])
        for suite, path in zip(same, full):
            labels[suite] = f"{_encode(stem, label=True)}~{_encode(os.path.relpath(path, common), label=True)}"
    return labels


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
        overridden = (rec.get("inputs") or {}).get("overridden")
        if overridden:  # a column only where a run has a conftest's evaluation (tells its rows apart)
            flat["inputs.overridden"] = "; ".join(map(str, overridden))
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


def _inputs_suffix(inputs: object) -> str:
    """``""`` for the suite's own inputs, else ``~with-<digest of what replaced them>``."""
    if not isinstance(inputs, dict) or not inputs.get("overridden"):
        return ""
    return "~with-" + name_digest(Inputs.from_dict(inputs).key(), 12)


def per_sae_file_names(records: Sequence[dict[str, Any]]) -> list[str]:
    """File names of the per-SAE JSON files: ``<suite label>__<encoded sae id>.json``.

    Injective by construction: ids are encoded so that different ids give different names (``x/y``,
    ``x_y`` and ``x_y_`` stay three files), and suites that share a file name in different folders get
    labels that differ (see :func:`_suite_labels`). An evaluation on other inputs than the suite's own
    (a conftest override) ends in ``~with-`` and a digest of those inputs, so it never takes the file of
    the suite's own evaluation of that SAE. Names that differ only in case are told apart also where case
    is ignored (see :func:`_case_safe`). A name longer than a file system allows (255 bytes) keeps its
    first 200 bytes and ends in a digest of the whole name.
    """
    labels = _suite_labels([str(rec["eval_cfg"]["suite"]) for rec in records])
    names = [f"{labels[str(rec['eval_cfg']['suite'])]}__{_encode(str(rec['unique_id']), label=False)}"
             + _inputs_suffix(rec.get("inputs")) + ".json" for rec in records]
    names = _case_safe(names)
    return [f"{name[:200]}~{name_digest(name, 32)}.json" if len(name.encode()) > _NAME_MAX else name for name in names]


def _case_safe(names: Sequence[str]) -> list[str]:
    """Names that differ only in case (ids ``SAE`` and ``sae``) would be one file on a case-insensitive file
    system (macOS, Windows): each of those has its capital letters written as ``%XX`` too. Still injective,
    and now also when case is ignored: a ``%`` never stands for itself in a name, so each one begins an
    escape, and plain names never escape a letter."""
    folded: dict[str, set[str]] = {}
    for name in names:
        folded.setdefault(name.casefold(), set()).add(name)
    return [_escape_capitals(name) if len(folded[name.casefold()]) > 1 else name for name in names]


def _escape_capitals(name: str) -> str:
    """``name`` with each capital ASCII letter written as ``%XX``; the escapes it has stay as they are."""
    out: list[str] = []
    i = 0
    while i < len(name):
        if name[i] == "%":
            out.append(name[i:i + 3])
            i += 3
            continue
        out.append(f"%{ord(name[i]):02X}" if "A" <= name[i] <= "Z" else name[i])
        i += 1
    return "".join(out)


def write_outputs(runs: Sequence[SuiteRun], output_dir: str | Path, extra: Sequence[tuple[str, str]] = ()) -> list[Path]:
    """Write one JSON per SAE, ``all_eval_results.json``, ``all_eval_results.csv`` and the ``extra``
    ``(file name, text)`` pairs, all or none.

    Non-finite numbers are written as ``null``. Returns the written paths. A folder that cannot be
    written (a full disk, a file or folder in the way, no permission) raises
    :class:`~pytest_saeval.errors.OutputError` naming the file, and every previous output stays.
    """
    out = Path(output_dir)
    records = result_records(runs)
    files = [(out / name, _json(rec)) for rec, name in zip(records, per_sae_file_names(records))]
    files += [(out / "all_eval_results.json", _json(records)), (out / "all_eval_results.csv", _csv_text(records))]
    files += [(out / name, text) for name, text in extra]
    try:
        atomic_write_many([(path, text.encode("utf-8")) for path, text in files])
    except OSError as e:
        where = e.filename or out
        raise OutputError(f"cannot write {where}: {os_reason(e)}",
                          fix="give --output-dir (or --saeval-output-dir) a folder you can write to, with free space; "
                          "the previous outputs were left as they were") from e
    return [path for path, _ in files]


def _json(obj: Any) -> str:
    """Indented JSON; ``allow_nan=False`` makes a stray NaN an error instead of an invalid number."""
    return json.dumps(to_plain(obj, nonfinite="null"), indent=2, allow_nan=False) + "\n"
