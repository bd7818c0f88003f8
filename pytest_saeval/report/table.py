"""The terminal renderings of a run: the per-suite gate table, the ``saeval`` command's lines and the
pytest summary section (pure Python)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pytest_saeval.report.rows import format_interval
from pytest_saeval.run.checks import no_baseline_reason
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.spec.numbers import format_number

__all__ = ["command_lines", "format_table", "summary_lines"]

_HEADER = ("sae", "metric", "value", "95% interval", "bound", "result")


def _rows(run: SuiteRun) -> list[tuple[str, ...]]:
    """One row per checked or unchecked gate, in suite-file order."""
    ranked: list[tuple[tuple[int, str, int], tuple[str, ...]]] = [
        (run.gate_rank(c.sae_id, c.gate.metric),
         (c.sae_id, c.gate.metric, format_number(c.result.value),
          format_interval(run.intervals_of(c.sae_id).get(c.gate.metric)),
          c.gate.describe(c.result.baseline_value), "PASS" if c.passed else "FAIL"))
        for c in run.checks
    ]
    for uid, gate in run.unchecked:
        result = run.results.get(uid)
        value = result.metrics.get(gate.metric, math.nan) if result is not None else math.nan
        ranked.append((run.gate_rank(uid, gate.metric),
                       (uid, gate.metric, format_number(value), format_interval(run.intervals_of(uid).get(gate.metric)),
                        gate.describe(), "UNCHECKED")))
    return [row for _, row in sorted(ranked, key=lambda item: item[0])]


def format_table(run: SuiteRun) -> str:
    """A plain-text table: SAE x gated metric with value, interval, bound and PASS/FAIL."""
    rows = _rows(run)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(_HEADER)]
    lines = [f"{run.suite.path}"]
    lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(_HEADER, widths)))
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


def command_lines(runs: Sequence[SuiteRun]) -> list[str]:
    """What ``saeval run`` prints: per suite the table, failed and unchecked gates and notes; then totals."""
    lines: list[str] = []
    for run in runs:
        lines.extend(format_table(run).splitlines())
        lines.extend(f"FAILED {check.message}" for check in run.checks if not check.passed)
        for uid, gate in run.unchecked:
            where = f"{run.suite.path}:{gate.line}" if gate.line else str(run.suite.path)
            lines.append(f"UNCHECKED {where}: [{uid}] {gate.metric} {gate.text}: the baseline has no value yet; "
                         "this run records it")
        lines.extend(f"NOTE {note}" for note in run.notes)
    n_pass = sum(c.passed for r in runs for c in r.checks)
    n_fail = sum(not c.passed for r in runs for c in r.checks)
    n_unchecked = sum(len(r.unchecked) for r in runs)
    n_saes = sum(len(r.results) for r in runs)
    suites = "suite" if len(runs) == 1 else "suites"
    unchecked = f", {n_unchecked} unchecked" if n_unchecked else ""
    lines.append(f"saeval: {n_pass} passed, {n_fail} failed{unchecked} ({n_saes} SAEs in {len(runs)} {suites})")
    return lines


def summary_lines(runs: Sequence[SuiteRun], evaluations: Mapping[str, int], errors: Sequence[str]) -> list[str]:
    """The pytest summary section: one table per suite with its unchecked gates and notes, how many SAEs
    were evaluated (per xdist worker), and the evaluation errors."""
    lines: list[str] = []
    for run in runs:
        lines.extend(format_table(run).splitlines())
        for uid, gate in run.unchecked:
            lines.append(f"  not checked: {no_baseline_reason(run.suite, uid, gate)}")
        lines.extend(f"  note: {n}" for n in run.notes)
    total = sum(evaluations.values())
    if total:
        who = ", ".join(f"{k}: {v}" for k, v in sorted(evaluations.items()) if k != "main")
        lines.append(f"{total} SAE evaluation{'s' if total != 1 else ''}" + (f" ({who})" if who else ""))
    lines.extend(f"ERROR {text}" for text in errors)
    return lines
