"""Markdown summary of a run: one table of SAE x gated metric, failures first (pure Python).

Written next to the other outputs and appended to ``$GITHUB_STEP_SUMMARY`` on GitHub Actions, so
the job page shows which SAE missed which bound, by how much, and whether the miss is within the
measurement's noise (the bootstrap interval).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_saeval.bootstrap import INTERVAL_METRICS, Interval, gate_interval, lookup
from pytest_saeval.catalogue import METRICS
from pytest_saeval.fileio import atomic_write_text
from pytest_saeval.spec.numbers import format_number

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.session import GateCheck, SuiteRun

__all__ = [
    "GITHUB_SUMMARY_LIMIT",
    "GateRow",
    "append_github_step_summary",
    "gate_rows",
    "format_headroom",
    "format_interval",
    "markdown_summary",
    "shown_value",
    "write_markdown",
]

GITHUB_SUMMARY_LIMIT = 1024 * 1024
"""GitHub's limit on one step's summary, in bytes."""

IntervalsBySAE = Mapping[str, Mapping[str, Interval]]


@dataclass(frozen=True)
class GateRow:
    """One checked gate, ready for a table."""

    suite_path: Path
    """The suite file the gate is in."""
    line: int | None
    """The gate's line in that file."""
    sae_id: str
    """The SAE's unique id."""
    metric: str
    """The gated metric."""
    passed: bool
    """Whether every bound held."""
    value: float
    """The measured value."""
    interval: Interval | None
    """Its bootstrap interval, when known."""
    bound: str
    """The bounds as a reader sees them, e.g. ``>= 0.80`` or ``>= baseline - 0.01 (= 0.9312)``."""
    headroom: float
    """Distance from the value to the nearest bound, negative when a bound fails (NaN for NaN values)."""
    message: str
    """The gate's one-line message."""
    thresholds: tuple[tuple[str, float], ...] = ()
    """Each bound as ``(op, resolved threshold)``."""

    @property
    def where(self) -> str:
        """``file:line`` of the gate."""
        return f"{self.suite_path}:{self.line}" if self.line else str(self.suite_path)


def _headroom(check: GateCheck) -> float:
    value = check.result.value
    if not math.isfinite(value):
        return math.nan
    gaps = [value - b.threshold if b.bound.is_lower else b.threshold - value for b in check.result.bounds]
    return min(gaps) if gaps else math.nan


def gate_rows(runs: Iterable[SuiteRun], intervals_by_sae: IntervalsBySAE | None = None) -> list[GateRow]:
    """Every checked gate of ``runs``: failures first, each group in run and file order.

    The interval is the one the gate was checked with, else the one in ``intervals_by_sae``, else
    the run's own ``intervals`` (see :func:`pytest_saeval.bootstrap.lookup`).
    """
    rows: list[GateRow] = []
    for run in runs:
        for check in run.checks:
            interval = check.result.interval
            if interval is None:
                interval = gate_interval(lookup(intervals_by_sae, run, check.sae_id), check.gate.metric)
            rows.append(GateRow(
                suite_path=check.suite_path, line=check.gate.line, sae_id=check.sae_id, metric=check.gate.metric,
                passed=check.passed, value=check.result.value, interval=interval,
                bound=check.gate.describe(check.result.baseline_value), headroom=_headroom(check),
                message=check.message,
                thresholds=tuple((b.bound.op, b.threshold) for b in check.result.bounds),
            ))
    return [r for r in rows if not r.passed] + [r for r in rows if r.passed]


def shown_value(value: float, thresholds: Sequence[tuple[str, float]] = ()) -> str:
    """``value`` with enough digits that it compares with each ``(op, threshold)`` as the exact number does."""
    if not math.isfinite(value):
        return format_number(value)
    for digits in range(4, 18):
        text = format_number(value, digits)
        shown = float(text)
        if all(_holds(op, shown, t) == _holds(op, value, t) for op, t in thresholds):
            return text
    return repr(value)  # pragma: no cover - 17 significant digits always round-trip


def _holds(op: str, a: float, b: float) -> bool:
    return {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b}[op]


def format_interval(interval: Interval | None) -> str:
    """``[0.7770, 0.7853]``, or ``""`` when there is none (or it is not finite)."""
    if interval is None or not all(math.isfinite(v) for v in interval):
        return ""
    return f"[{format_number(interval[0])}, {format_number(interval[1])}]"


def format_headroom(x: float) -> str:
    """Signed distance to the nearest bound: ``+0.0123`` passes, ``-0.0188`` fails."""
    if math.isnan(x):
        return ""
    return ("+" if x >= 0 else "-") + format_number(abs(x))


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return lines


def _row_cells(row: GateRow) -> list[str]:
    return [
        "❌ FAIL" if not row.passed else "✅ pass",
        f"`{row.sae_id}`",
        f"`{row.metric}`",
        shown_value(row.value, row.thresholds),
        format_interval(row.interval),
        row.bound,
        format_headroom(row.headroom),
        f"`{row.where}`",
    ]


def markdown_summary(runs: Sequence[SuiteRun], intervals_by_sae: IntervalsBySAE | None = None, *,
                     title: str = "saeval", details: bool = True) -> str:
    """A Markdown report: a headline, the gate table (failures first) and, per SAE, all scalar metrics.

    ``intervals_by_sae`` (as :func:`pytest_saeval.bootstrap.run_intervals` returns; default: the
    intervals the gates were checked with, or the runs' own ``intervals``) adds the 95% bootstrap
    interval of each value; ``details=False`` leaves out the per-SAE metric tables.
    """
    rows = gate_rows(runs, intervals_by_sae)
    n_fail = sum(not r.passed for r in rows)
    n_sae = sum(len(r.results) for r in runs)
    if not rows:
        headline = f"no gates checked ({n_sae} SAE{'s' if n_sae != 1 else ''} evaluated)"
    elif n_fail:
        headline = f"❌ {n_fail} of {len(rows)} gates failed ({n_sae} SAE{'s' if n_sae != 1 else ''})"
    else:
        headline = f"✅ all {len(rows)} gates passed ({n_sae} SAE{'s' if n_sae != 1 else ''})"
    out = [f"## {title}: {headline}", ""]
    if rows:
        header = ["Result", "SAE", "Metric", "Value", "95% interval", "Bound", "Headroom", "Where"]
        out.extend(_table(header, (_row_cells(r) for r in rows)))
        out.append("")
    has_intervals = any(r.interval is not None for r in rows)
    if has_intervals:
        out.append("Intervals: 95% percentile bootstrap over sequences. Headroom: distance to the nearest bound "
                   "(negative: failing).")
        out.append("")
    if details:
        for run in runs:
            for uid, result in run.results.items():
                found = lookup(intervals_by_sae, run, uid)
                metric_rows = []
                for name, value in result.metrics.items():
                    info = METRICS.get(name)
                    better = "" if info is None or info.higher_is_better is None else (
                        "↑" if info.higher_is_better else "↓")
                    iv = found.get(name) if name in INTERVAL_METRICS else None
                    metric_rows.append([f"`{name}`", format_number(value), format_interval(iv), better])
                out.append(f"<details><summary>All metrics of <code>{_html_escape(uid)}</code> "
                           f"({_html_escape(str(run.suite.path))})</summary>")
                out.append("")
                out.extend(_table(["Metric", "Value", "95% interval", "Better"], metric_rows))
                out.append("")
                out.append("</details>")
                out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def write_markdown(runs: Sequence[SuiteRun], path: str | os.PathLike[str],
                   intervals_by_sae: IntervalsBySAE | None = None) -> Path:
    """Write :func:`markdown_summary` to ``path`` (atomically) and return the path."""
    target = Path(path)
    atomic_write_text(target, markdown_summary(runs, intervals_by_sae))
    return target


def append_github_step_summary(text: str, *, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append ``text`` to the file named by ``$GITHUB_STEP_SUMMARY``; return it, or None when unset.

    Text beyond GitHub's 1 MiB limit is cut at a line end with a note.
    """
    env = os.environ if environ is None else environ
    target = env.get("GITHUB_STEP_SUMMARY", "").strip()
    if not target:
        return None
    data = text if text.endswith("\n") else text + "\n"
    room = GITHUB_SUMMARY_LIMIT - 200
    if len(data.encode("utf-8")) > room:
        cut = data.encode("utf-8")[:room].decode("utf-8", errors="ignore")
        data = cut[: cut.rfind("\n") + 1] + "\n_(summary cut at GitHub's 1 MiB limit; see the written report)_\n"
    path = Path(target)
    with path.open("a", encoding="utf-8") as f:
        f.write(data)
    return path
