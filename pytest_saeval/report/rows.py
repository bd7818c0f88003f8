"""One checked gate as a table row, and how its numbers are spelled: shared by the terminal table,
the Markdown summary and the HTML report (pure Python)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pytest_saeval.run.checks import GateCheck, no_baseline_reason
from pytest_saeval.run.intervals import Interval, gate_interval
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.spec.numbers import format_number, interval_text

__all__ = ["GateRow", "format_headroom", "format_interval", "gate_rows", "unchecked_reasons"]


@dataclass(frozen=True)
class GateRow:
    """One checked gate, ready for a table."""

    suite_path: Path
    """The suite file the gate is in."""
    line: int | None
    """The gate's line in that file."""
    sae_id: str
    """The SAE's unique id."""
    inputs: str
    """``""`` for the suite's own inputs, else what replaced them (``" (with saeval_tokens from ...)"``)."""
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
    digits: int = 4
    """Significant digits of the value, its interval and the headroom (those of the gate's message)."""

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


def gate_rows(runs: Iterable[SuiteRun]) -> list[GateRow]:
    """Every checked gate of ``runs``: failures first, each group in run and file order.

    The interval is the one the gate was checked with, else the run's own for that metric.
    """
    rows: list[GateRow] = []
    for run in runs:
        for check in run.checks:
            interval = check.result.interval
            if interval is None:
                interval = gate_interval(run.intervals_of(check.sae_id), check.gate.metric)
            rows.append(GateRow(
                suite_path=check.suite_path, line=check.gate.line, sae_id=check.sae_id, inputs=run.inputs.describe(), metric=check.gate.metric,
                passed=check.passed, value=check.result.value, interval=interval,
                bound=check.gate.describe(check.result.baseline_value), headroom=_headroom(check),
                message=check.message,
                thresholds=tuple((b.bound.op, b.threshold) for b in check.result.bounds),
                digits=check.result.digits,
            ))
    return [r for r in rows if not r.passed] + [r for r in rows if r.passed]


def unchecked_reasons(runs: Iterable[SuiteRun]) -> list[str]:
    """One line per gate left unchecked (baseline-relative, the baseline has no value for it yet), saying
    why and where: ``[sae] metric >= baseline - 0.01: the baseline has no value yet; this run records it — file:line``."""
    return [no_baseline_reason(run.suite, uid, gate, own=run.inputs.own) for run in runs for uid, gate in run.unchecked]


def format_interval(interval: Interval | None, digits: int = 4, *, value: float | None = None) -> str:
    """``[0.7770, 0.7853]`` (with the decimals ``value`` shows, when given), or ``""`` when there is none
    (or it is not finite)."""
    if interval is None or not all(math.isfinite(v) for v in interval):
        return ""
    if value is not None:
        return interval_text(interval, value, digits)
    return f"[{format_number(interval[0], digits)}, {format_number(interval[1], digits)}]"


def format_headroom(x: float, digits: int = 4) -> str:
    """Signed distance to the nearest bound: ``+0.0123`` passes, ``-0.0188`` fails."""
    if math.isnan(x):
        return ""
    return ("+" if x >= 0 else "-") + format_number(abs(x), digits)
