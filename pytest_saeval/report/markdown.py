"""Markdown summary of a run: one table of SAE x gated metric, failures first (pure Python).

Written next to the other outputs and appended to ``$GITHUB_STEP_SUMMARY`` on GitHub Actions, so
the job page shows which SAE missed which bound, by how much, and whether the miss is within the
measurement's noise (the bootstrap interval).
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pytest_saeval.catalogue import METRICS
from pytest_saeval.report.rows import GateRow, format_headroom, format_interval, gate_rows, unchecked_reasons
from pytest_saeval.report.table import sae_count
from pytest_saeval.run.intervals import INTERVAL_METRICS
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.spec.numbers import format_number

__all__ = ["GITHUB_SUMMARY_LIMIT", "append_github_step_summary", "markdown_summary"]

GITHUB_SUMMARY_LIMIT = 1024 * 1024
"""GitHub's limit on one step's summary, in bytes."""


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return lines


def _row_cells(row: GateRow) -> list[str]:
    return [
        "❌ FAIL" if not row.passed else "✅ pass",
        f"`{row.sae_id}`{row.inputs}",
        f"`{row.metric}`",
        format_number(row.value, row.digits),
        format_interval(row.interval, row.digits, value=row.value),
        row.bound,
        format_headroom(row.headroom, row.digits),
        f"`{row.where}`",
    ]


def markdown_summary(runs: Sequence[SuiteRun], *, title: str = "saeval", details: bool = True) -> str:
    """A Markdown report: a headline, the gate table (failures first) and, per SAE, all scalar metrics
    with their 95% bootstrap intervals; ``details=False`` leaves out the per-SAE metric tables."""
    rows = gate_rows(runs)
    unchecked = unchecked_reasons(runs)
    n_fail = sum(not r.passed for r in rows)
    n_sae = sae_count(runs)
    also = f", {len(unchecked)} unchecked" if unchecked else ""
    if not rows:
        headline = f"no gates checked{also} ({n_sae} evaluated)"
    elif n_fail:
        headline = f"❌ {n_fail} of {len(rows)} gates failed{also} ({n_sae})"
    else:
        headline = f"✅ all {len(rows)} gates passed{also} ({n_sae})"
    out = [f"## {title}: {headline}", ""]
    if rows:
        header = ["Result", "SAE", "Metric", "Value", "95% interval", "Bound", "Headroom", "Where"]
        out.extend(_table(header, (_row_cells(r) for r in rows)))
        out.append("")
    if unchecked:
        out.extend(["Unchecked (no baseline value yet):", "", *(f"- {_cell(text)}" for text in unchecked), ""])
    out.extend(_notes(runs))
    has_intervals = any(r.interval is not None for r in rows)
    if has_intervals:
        out.append("Intervals: 95% percentile bootstrap over sequences. Headroom: distance to the nearest bound "
                   "(negative: failing).")
        out.append("")
    if details:
        for run in runs:
            for uid, result in run.results.items():
                found = run.intervals_of(uid)
                metric_rows = []
                for name, value in result.metrics.items():
                    info = METRICS.get(name)
                    better = "" if info is None or info.higher_is_better is None else (
                        "↑" if info.higher_is_better else "↓")
                    iv = found.get(name) if name in INTERVAL_METRICS else None
                    metric_rows.append([f"`{name}`", format_number(value), format_interval(iv, value=value), better])
                out.append(f"<details><summary>All metrics of <code>{_html_escape(uid)}</code> "
                           f"({_html_escape(run.title)})</summary>")
                out.append("")
                out.extend(_table(["Metric", "Value", "95% interval", "Better"], metric_rows))
                out.append("")
                out.append("</details>")
                out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _notes(runs: Sequence[SuiteRun]) -> list[str]:
    """What the baselines were recorded on, where that differs from this run (loud ones first)."""
    notes = [(n.loud, run.suite.path, n.text) for run in runs for n in run.notes]
    if not notes:
        return []
    lines = ["Baselines:", ""]
    for loud, suite, text in sorted(notes, key=lambda n: not n[0]):
        lines.append(f"- {'**different inputs**: ' if loud else ''}`{suite}` {_cell(text)}")
    return [*lines, ""]


def _html_escape(text: str) -> str:
    return html.escape(text, quote=True)


def append_github_step_summary(text: str, *, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append ``text`` to the file named by ``$GITHUB_STEP_SUMMARY``; return it, or None when unset.

    Text beyond GitHub's 1 MiB limit is cut at a line end with a note. A write that fails (a full disk)
    raises :class:`OSError` naming the file, after cutting the file back to what it held before.
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
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        size = os.fstat(fd).st_size
        view = memoryview(data.encode("utf-8"))
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            try:
                os.ftruncate(fd, size)  # the summaries of earlier steps stay whole
            except OSError:
                pass
            raise OSError(e.errno, e.strerror, str(path)) from e
    finally:
        os.close(fd)
    return path
