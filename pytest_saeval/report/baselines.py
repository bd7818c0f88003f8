"""Baseline updates: each suite's ``baseline:`` file rewritten from a run, merged with what it held."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pytest_saeval.errors import SuiteError
from pytest_saeval.fileio import folder_lock
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.spec.baseline import load_baseline, write_baseline

__all__ = ["write_baselines"]


def write_baselines(runs: Sequence[SuiteRun]) -> list[Path]:
    """Rewrite each suite's baseline file from this run (finite scalar metrics and provenance).

    SAEs not evaluated in this run keep their old values. The file is written atomically, keys
    sorted and values rounded (see :func:`~pytest_saeval.spec.baseline.write_baseline`); reading the old
    file, merging and writing happen under a lock on its folder, so two runs updating one file at
    the same time keep both updates. A suite without a ``baseline:`` key is an error: there is no
    file to write.
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
    for path, (values, provenance) in by_path.items():
        with folder_lock(Path(path).parent):
            old = load_baseline(path, missing_ok=True)
            merged = {k: dict(v) for k, v in old.values.items()} | values
            merged_provenance = {k: old.provenance(k) or {} for k in old.sae_ids} | provenance
            write_baseline(path, merged, {k: v for k, v in merged_provenance.items() if v} or None)
        written.append(path)
    return written
