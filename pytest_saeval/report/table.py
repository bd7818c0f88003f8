"""The terminal renderings of a run: the per-suite gate table, the ``saeval`` command's lines and the
pytest summary section (pure Python)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pytest_saeval.report.rows import format_interval
from pytest_saeval.run.checks import no_baseline_reason
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.spec.numbers import format_number

__all__ = ["command_lines", "format_table", "plural", "sae_count", "summary_lines"]

_HEADER = ("sae", "metric", "value", "95% interval", "bound", "result")


def _rows(run: SuiteRun) -> list[tuple[str, ...]]:
    """One row per checked or unchecked gate, in suite-file order."""
    ranked: list[tuple[tuple[int, str, int], tuple[str, ...]]] = [
        (run.gate_rank(c.sae_id, c.gate.metric),
         (c.sae_id, c.gate.metric, format_number(c.result.value, c.result.digits),
          format_interval(run.intervals_of(c.sae_id).get(c.gate.metric), c.result.digits, value=c.result.value),
          c.gate.describe(c.result.baseline_value), "PASS" if c.passed else "FAIL"))
        for c in run.checks
    ]
    for uid, gate in run.unchecked:
        result = run.results.get(uid)
        value = result.metrics.get(gate.metric, math.nan) if result is not None else math.nan
        ranked.append((run.gate_rank(uid, gate.metric),
                       (uid, gate.metric, format_number(value),
                        format_interval(run.intervals_of(uid).get(gate.metric), value=value),
                        gate.describe(), "UNCHECKED")))
    return [row for _, row in sorted(ranked, key=lambda item: item[0])]


def format_table(run: SuiteRun) -> str:
    """A plain-text table: SAE x gated metric with value, interval, bound and PASS/FAIL."""
    rows = _rows(run)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(_HEADER)]
    lines = [run.title]
    if not rows:
        return "\n".join([*lines, *_measured(run)])
    lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(_HEADER, widths)))
    lines.append("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)))
    n_fail = sum(not c.passed for c in run.checks)
    n_unchecked = len(rows) - len(run.checks)
    summary = f"  {len(run.checks) - n_fail} passed, {n_fail} failed"
    if n_unchecked:
        summary += f", {n_unchecked} unchecked (no baseline value yet)"
    lines.append(summary)
    return "\n".join(lines)


_SHOWN_WITHOUT_GATES = ("explained_variance", "kl_div_score", "ce_loss_score", "l0", "frac_alive")
"""The metrics a suite without gates shows (all of them are in the outputs)."""


def _measured(run: SuiteRun) -> list[str]:
    """What a suite without gates says: each SAE's main metrics, and how to get gates."""
    lines = [f"  no gates; measured {plural(len(run.results), 'SAE')}:"]
    for uid, result in run.results.items():
        shown = ", ".join(f"{m} {format_number(result.metrics[m])}" for m in _SHOWN_WITHOUT_GATES if m in result.metrics)
        lines.append(f"    {uid}: {shown}")
    lines.append(f"  propose gates from these measurements with `saeval init {run.suite.path}`")
    return lines


def sae_count(runs: Sequence[SuiteRun]) -> str:
    """``2 SAEs``, or ``1 SAE, 2 evaluations`` when an SAE was also evaluated on a conftest's inputs."""
    evaluations = sum(len(r.results) for r in runs)
    saes = len({(str(r.suite.path), uid) for r in runs for uid in r.results})
    return plural(saes, "SAE") + (f", {evaluations} evaluations" if evaluations != saes else "")


def plural(n: int, word: str) -> str:
    """``1 SAE``, ``2 SAEs``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def command_lines(runs: Sequence[SuiteRun]) -> list[str]:
    """What ``saeval run`` prints: per suite the table, failed and unchecked gates and notes; then totals."""
    lines: list[str] = []
    for run in runs:
        lines.extend(format_table(run).splitlines())
        lines.extend(f"FAILED {check.message}" for check in run.checks if not check.passed)
        lines.extend(f"UNCHECKED {no_baseline_reason(run.suite, uid, gate, own=run.inputs.own)}"
                     for uid, gate in run.unchecked)
        lines.extend(f"NOTE {run.suite.path}: {note.text}" for note in run.notes)
    n_pass = sum(c.passed for r in runs for c in r.checks)
    n_fail = sum(not c.passed for r in runs for c in r.checks)
    n_unchecked = sum(len(r.unchecked) for r in runs)
    unchecked = f", {n_unchecked} unchecked" if n_unchecked else ""
    suites = len({str(r.suite.path) for r in runs})
    lines.append(f"saeval: {n_pass} passed, {n_fail} failed{unchecked} ({sae_count(runs)} in {plural(suites, 'suite')})")
    return lines


def summary_lines(runs: Sequence[SuiteRun], evaluations: Mapping[str, int], errors: Sequence[str]) -> list[str]:
    """The pytest summary section: one table per suite with its unchecked gates and notes, how many SAEs
    were evaluated (per xdist worker), and the evaluation errors."""
    lines: list[str] = []
    for run in runs:
        lines.extend(format_table(run).splitlines())
        for uid, gate in run.unchecked:
            lines.append(f"  not checked: {no_baseline_reason(run.suite, uid, gate, own=run.inputs.own)}")
        lines.extend(f"  note: {n.text}" for n in run.notes)
    total = sum(evaluations.values())
    if total:
        who = ", ".join(f"{k}: {v}" for k, v in sorted(evaluations.items()) if k != "main")
        lines.append(plural(total, "SAE evaluation") + (f" ({who})" if who else ""))
    lines.extend(f"ERROR {text}" for text in errors)
    return lines
