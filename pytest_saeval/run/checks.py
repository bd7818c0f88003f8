"""Checking the gates of evaluated SAEs: each gate against its metric's value, its baseline value and,
in ``gate_mode: interval``, its bootstrap interval (pure Python)."""

from __future__ import annotations

import dataclasses
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

__all__ = ["GateCheck", "check_fixed", "check_one", "check_suite", "check_with", "no_baseline_reason"]


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
    partial: bool = False
    """Only the gate's fixed bounds were checked: its baseline value is being recorded in this run."""

    @property
    def passed(self) -> bool:
        """Whether every bound held."""
        return self.result.passed

    @property
    def where(self) -> str:
        """``file:line`` of the gate."""
        return f"{self.suite_path}:{self.gate.line}" if self.gate.line else str(self.suite_path)

    @property
    def message(self) -> str:
        """``[sae] metric = value [interval], needs ... (short by ...) — file:line``: the numbers first, so a
        line cut short (pytest's short summary) still shows them."""
        return self.message_on("")

    def message_on(self, inputs: str) -> str:
        """:attr:`message` with ``inputs`` (e.g. `` (with saeval_tokens from tests/conftest.py)``, see
        :meth:`~pytest_saeval.run.outcome.Inputs.describe`) before its ``file:line``: a failure on a
        conftest's inputs says so, where the same gate on the suite's own may have passed."""
        return f"[{self.sae_id}] {self.result.message}{inputs} — {self.where}"

    @property
    def reading(self) -> str:
        """``value [interval], needs ... (short by ...) — file:line``: the message without the SAE and metric,
        for a line whose node id already names them (``...::layer1-res-topk::explained_variance``)."""
        return self.reading_on("")

    def reading_on(self, inputs: str) -> str:
        """:attr:`reading` with ``inputs`` before its ``file:line`` (see :meth:`message_on`)."""
        return f"{self.result.reading}{inputs} — {self.where}"


def check_suite(suite: Suite, entries: Sequence[SAEEntry], results: Mapping[str, SAEResult],
                baseline: Baseline | None, intervals: Mapping[str, Mapping[str, Interval]],
                *, recording: bool = False) -> tuple[list[GateCheck], list[tuple[str, Gate]]]:
    """Check every gate of every evaluated entry; baseline-relative gates read ``baseline``.

    Returns ``(checks, unchecked)``. While a baseline is being recorded (``recording``), a
    baseline-relative gate without a baseline value is not an error: its fixed bounds (a gate such as
    ``[">= 0.97", ">= baseline - 0.002"]`` has one) are still checked, and when they hold (or there
    are none) the gate goes to ``unchecked`` as ``(sae id, gate)``; when they fail, the failing check
    is kept (``partial``). ``intervals`` (per SAE id) are shown next to the values in the messages.
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
                check = check_fixed(suite, entry.unique_id, gate, result.metrics, intervals.get(entry.unique_id))
                if check is not None and not check.passed:
                    checks.append(check)
                else:
                    unchecked.append((entry.unique_id, gate))
                continue
            checks.append(check_one(suite, entry.unique_id, gate, result.metrics, baseline,
                                    intervals.get(entry.unique_id)))
    return checks, unchecked


def check_fixed(suite: Suite, sae_id: str, gate: Gate, metrics: Mapping[str, float],
                intervals: Mapping[str, Interval] | None = None) -> GateCheck | None:
    """Check only the fixed bounds of a baseline-relative gate (its baseline value is being recorded): a
    ``partial`` check of ``gate``, or ``None`` when every bound is relative to the baseline."""
    fixed = _fixed_part(gate)
    if fixed is None:
        return None
    return dataclasses.replace(check_with(suite, sae_id, fixed, metrics, None, intervals), gate=gate, partial=True)


def _fixed_part(gate: Gate) -> Gate | None:
    """The gate with only its fixed bounds (None when every bound is relative to the baseline)."""
    fixed = tuple(b for b in gate.bounds if not b.uses_baseline)
    if not fixed:
        return None
    return dataclasses.replace(gate, bounds=fixed, text=", ".join(f"{b.op} {b.text}" for b in fixed))


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


def no_baseline_reason(suite: Suite | None, uid: str, gate: Gate, *, own: bool = True) -> str:
    """Why a baseline-relative gate was not checked (``suite`` given: ending with its file:line); ``own``:
    whether the evaluation was on the suite's own inputs (only those are recorded)."""
    fixed = "its fixed bounds hold, " if _fixed_part(gate) is not None else ""
    records = "this run records it" if own else "it is recorded from the suite's own inputs, not from these"
    text = f"[{uid}] {gate.metric} {gate.text}: {fixed}the baseline has no value yet; {records}"
    if suite is None:
        return text
    return f"{text} — {suite.path}:{gate.line}" if gate.line else f"{text} — {suite.path}"
