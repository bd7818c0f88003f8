"""Baseline updates: each suite's ``baseline:`` file rewritten from a run, merged with what it held."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path

from pytest_saeval.errors import BaselineError, SuiteError
from pytest_saeval.fileio import atomic_write_many, folder_lock, os_reason
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.spec.baseline import baseline_text, load_baseline

__all__ = ["write_baselines"]


def write_baselines(runs: Sequence[SuiteRun]) -> list[Path]:
    """Rewrite each suite's baseline file from this run (finite scalar metrics and provenance).

    SAEs not evaluated in this run keep their old values. Keys are sorted and values rounded (see
    :func:`~pytest_saeval.spec.baseline.baseline_text`); reading the old files, merging and writing
    happen under a lock on each file's folder (taken in sorted order, so two runs cannot wait on each
    other), so two runs updating one file at the same time keep both updates. The files are written
    all or none: a full disk or a folder in the way leaves every baseline file as it was. A suite
    without a ``baseline:`` key is an error: there is no file to write.
    """
    written: list[Path] = []
    by_path: dict[Path, tuple[dict[str, dict[str, float]], dict[str, dict[str, str]]]] = {}
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
            provenance[uid] = run.provenance[uid].to_dict() if uid in run.provenance else {}
    with contextlib.ExitStack() as locks:
        for folder in sorted({Path(p).resolve().parent for p in by_path}):
            locks.enter_context(folder_lock(folder))
        texts: list[tuple[Path, bytes]] = []
        for path, (values, provenance) in by_path.items():
            old = load_baseline(path, missing_ok=True)
            merged = {k: dict(v) for k, v in old.values.items()} | values
            merged_provenance = {k: old.provenance(k) or {} for k in old.sae_ids} | provenance
            text = baseline_text(path, merged, {k: v for k, v in merged_provenance.items() if v} or None)
            texts.append((Path(path), text.encode()))
            written.append(path)
        try:
            atomic_write_many(texts)
        except OSError as e:
            raise BaselineError(
                f"cannot write {e.filename or texts[0][0]}: {os_reason(e)}",
                fix="check that the folder is writable and has free space; no baseline file was changed",
            ) from e
    return written
