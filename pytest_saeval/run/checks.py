"""Checking the gates of evaluated SAEs: each gate against its metric's value, its baseline value and,
in ``gate_mode: interval``, its bootstrap interval (pure Python)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_saeval.engine.results import SAEResult
from pytest_saeval.errors import BaselineError, Subject
from pytest_saeval.run.intervals import Interval, gate_interval
from pytest_saeval.run.plan import SAEEntry
from pytest_saeval.spec.baseline import Baseline
from pytest_saeval.spec.gates import Gate, Mode
from pytest_saeval.spec.suite import Suite
from pytest_saeval.spec.verdict import GateResult, check_gate

__all__ = ["GateCheck", "check_one", "check_suite", "check_with", "no_baseline_reason"]


@dataclass(frozen=True)
class GateCheck:
    """One gate of one SAE, checked."""

    suite_path: Path
    """The suite file."""
    sae_id: str
    """The SAE's unique id."""
    gate: Gate
    """The gate as written."""
    result: GateResult
    """The outcome, with the reviewer's one-line message."""

    @property
    def passed(self) -> bool:
        """Whether every bound held."""
        return self.result.passed

    @property
    def message(self) -> str:
        """``file:line: [sae] metric = value, needs ... (short by ...)``."""
        where = f"{self.suite_path}:{self.gate.line}" if self.gate.line else str(self.suite_path)
        return f"{where}: [{self.sae_id}] {self.result.message}"


def check_suite(suite: Suite, entries: Sequence[SAEEntry], results: Mapping[str, SAEResult],
                baseline: Baseline | None, intervals: Mapping[str, Mapping[str, Interval]],
                *, recording: bool = False) -> tuple[list[GateCheck], list[tuple[str, Gate]]]:
    """Check every gate of every evaluated entry; baseline-relative gates read ``baseline``.

    Returns ``(checks, unchecked)``. While a baseline is being recorded (``recording``), a
    baseline-relative gate without a baseline value goes to ``unchecked`` as ``(sae id, gate)``
    instead of raising :class:`~pytest_saeval.errors.BaselineError`. ``intervals`` (per SAE id) are
    shown next to the values in the gates' messages.
    """
    checks: list[GateCheck] = []
    unchecked: list[tuple[str, Gate]] = []
    for entry in entries:
        result = results.get(entry.unique_id)
        if result is None:
            continue
        for gate in entry.gates:
            if recording and gate.uses_baseline and (
                baseline is None or baseline.value(entry.unique_id, gate.metric) is None
            ):
                unchecked.append((entry.unique_id, gate))
                continue
            checks.append(check_one(suite, entry.unique_id, gate, result.metrics, baseline,
                                    intervals.get(entry.unique_id)))
    return checks, unchecked


def check_one(suite: Suite, sae_id: str, gate: Gate, metrics: Mapping[str, float], baseline: Baseline | None,
              intervals: Mapping[str, Interval] | None = None) -> GateCheck:
    """Check one gate; a metric the engine did not produce is NaN (and so fails, never passes)."""
    base = baseline.value(sae_id, gate.metric) if (baseline is not None and gate.uses_baseline) else None
    if gate.uses_baseline and base is None:
        raise BaselineError(
            f"the baseline file has no value of {gate.metric} for SAE {sae_id!r}",
            fix="record it with `pytest --saeval-update-baseline` or `saeval run --update-baseline`",
            file=str(suite.path), line=gate.line, key=gate.key, subject=Subject(suite=str(suite.path), sae=sae_id),
        )
    return check_with(suite, sae_id, gate, metrics, base, intervals)


def check_with(suite: Suite, sae_id: str, gate: Gate, metrics: Mapping[str, float], base: float | None,
               intervals: Mapping[str, Interval] | None = None) -> GateCheck:
    """Check one gate against a known baseline value (``None`` for a gate without ``baseline``): how
    :func:`check_one` ends, and how merged shards re-check their recorded values."""
    value = metrics.get(gate.metric, math.nan)
    interval = gate_interval(intervals, gate.metric)
    mode: Mode = "interval" if (suite.gate_mode == "interval" and interval is not None) else "point"
    return GateCheck(suite.path, sae_id, gate, check_gate(gate, value, base, interval=interval, mode=mode))


def no_baseline_reason(suite: Suite | None, uid: str, gate: Gate) -> str:
    """Why a baseline-relative gate was not checked (``suite`` given: with its file:line)."""
    where = "" if suite is None else (f"{suite.path}:{gate.line}: " if gate.line else f"{suite.path}: ")
    return (f"{where}[{uid}] {gate.metric} {gate.text}: the baseline has no value yet; "
            "--saeval-update-baseline records it in this run")
