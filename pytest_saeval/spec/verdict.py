"""Checking a value against a :class:`~.gates.Gate`: each bound resolved and checked, and the one-line
message a reviewer reads (pure Python). NaN and infinite values never pass a gate."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_saeval.errors import BaselineError
from pytest_saeval.spec.gates import BASELINE_FIX, MODES, Bound, Gate, Mode, holds
from pytest_saeval.spec.numbers import difference, format_number, interval_text

__all__ = ["BoundCheck", "GateResult", "check_gate", "digits_for"]

@dataclass(frozen=True)
class BoundCheck:
    """One bound of a gate, resolved to a number and checked."""

    bound: Bound
    """The bound as parsed."""
    threshold: float
    """The resolved threshold (baseline bounds: ``baseline * factor + offset``)."""
    passed: bool
    """Whether this bound holds (in the gate's mode)."""


@dataclass(frozen=True)
class GateResult:
    """The outcome of checking one gate against one value."""

    gate: Gate
    """The gate that was checked."""
    passed: bool
    """True only when every bound holds; never for NaN or infinite values."""
    value: float
    """The metric value that was checked."""
    bounds: tuple[BoundCheck, ...]
    """Each bound resolved to a number, with its own outcome."""
    message: str
    """One line for a reviewer, e.g. ``explained_variance = 0.7812, needs >= 0.80 (short by 0.0188)``."""
    baseline_value: float | None = None
    """The baseline value the baseline-relative bounds were resolved against, if any."""
    interval: tuple[float, float] | None = None
    """A confidence interval ``(lo, hi)`` for the value, when one was given."""
    mode: Mode = "point"
    """``point`` or ``interval`` (see :data:`Mode`)."""
    digits: int = 4
    """Significant digits at which every shown number compares with every shown threshold as the exact
    numbers do (reports show the value, its interval and the headroom with these)."""

    @property
    def metric(self) -> str:
        """The gated metric's name."""
        return self.gate.metric

    @property
    def reading(self) -> str:
        """The message after ``metric = ``, for where the metric is already named (pytest's short summary
        line, whose node id ends with it): ``0.7812, needs >= 0.80 (short by 0.0188)``."""
        return self.message.removeprefix(f"{self.gate.metric} = ")


def _as_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {value!r}")
    return float(value)


def check_gate(
    gate: Gate,
    value: float,
    baseline_value: float | None = None,
    *,
    interval: tuple[float, float] | None = None,
    mode: Mode = "point",
) -> GateResult:
    """Check ``value`` against every bound of ``gate``.

    ``baseline_value`` resolves baseline-relative bounds; a gate that needs it when it is ``None``
    (or not finite) raises :class:`BaselineError` naming the metric and the fix. In ``point`` mode
    the value decides; in ``interval`` mode (``interval`` required) a bound fails only when the whole
    interval is on its wrong side. NaN and infinite values (and, in interval mode, non-finite interval
    ends) never pass. The message shows the interval whenever one is given: ``0.7812 [0.7770, 0.7853]``.
    """
    if not isinstance(gate, Gate):
        raise TypeError(f"check_gate needs a Gate, got {type(gate).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x = _as_float(value, f"value of {gate.metric}")
    if interval is not None:
        if len(interval) != 2:
            raise ValueError(f"interval must be (lo, hi), got {interval!r}")
        lo, hi = (_as_float(v, "interval end") for v in interval)
        if lo > hi:
            raise ValueError(f"interval must have lo <= hi, got ({lo}, {hi})")
        interval = (lo, hi)
    elif mode == "interval":
        raise ValueError("mode='interval' needs an interval (lo, hi)")

    if baseline_value is not None:
        baseline_value = _as_float(baseline_value, "baseline value")
    if gate.uses_baseline and (baseline_value is None or not math.isfinite(baseline_value)):
        what = "no baseline value" if baseline_value is None else f"a baseline value of {format_number(baseline_value)}"
        raise BaselineError(
            f"gate '{gate.metric}: {gate.text}' refers to the baseline, but there is {what} for {gate.metric}",
            fix=BASELINE_FIX,
            file=gate.file,
            line=gate.line,
            key=gate.key,
        )

    thresholds = [b.resolve(baseline_value) for b in gate.bounds]

    def probe(b: Bound) -> float:
        if mode == "point" or interval is None:
            return x
        return interval[1] if b.is_lower else interval[0]

    finite = math.isfinite(x) and (mode == "point" or all(math.isfinite(v) for v in interval or ()))
    checks = tuple(
        BoundCheck(bound=b, threshold=t, passed=finite and holds(b.op, probe(b), t))
        for b, t in zip(gate.bounds, thresholds)
    )
    result = GateResult(gate=gate, passed=all(c.passed for c in checks), value=x, bounds=checks, message="",
                        baseline_value=baseline_value, interval=interval, mode=mode)
    digits = digits_for(x, interval, checks)
    return dataclasses.replace(result, message=_message(result, digits), digits=digits)


def _shown_threshold(check: BoundCheck, digits: int) -> float:
    """The threshold as the reader sees it: the literal for fixed bounds, rounded for baseline ones."""
    if check.bound.uses_baseline:
        return float(format_number(check.threshold, digits))
    return check.threshold


def digits_for(x: float, interval: tuple[float, float] | None, checks: Sequence[BoundCheck]) -> int:
    """Fewest digits (>= 4) at which every shown number compares with every shown threshold as the
    exact numbers do, so a failing value never reads as passing (or the other way round)."""
    shown = [v for v in (x, *(interval or ())) if math.isfinite(v)]
    for digits in range(4, 21):
        if all(
            holds(c.bound.op, float(format_number(v, digits)), _shown_threshold(c, digits))
            == holds(c.bound.op, v, c.threshold)
            for v in shown
            for c in checks
        ):
            return digits
    return 20  # pragma: no cover - 17 significant digits always round-trip


def _value_text(x: float, interval: tuple[float, float] | None, digits: int) -> str:
    text = format_number(x, digits)
    if interval is not None:
        text += " " + interval_text(interval, x, digits)
    return text


def _message(r: GateResult, digits: int) -> str:
    """The reviewer's line: the value (and interval), and either the bounds it meets or what it misses by."""
    gate, x, interval, base = r.gate, r.value, r.interval, r.baseline_value
    head = f"{gate.metric} = {_value_text(x, interval, digits)}"
    if r.passed:
        described = ", ".join(c.bound.describe(base, digits) for c in r.bounds)
        if r.mode == "interval" and not all(holds(c.bound.op, x, c.threshold) for c in r.bounds):
            described += "; the interval reaches the bound"
        return f"{head} ({described})"
    if not math.isfinite(x):
        return f"{head}, needs {gate.describe(base, digits)} ({format_number(x)} never passes)"
    if r.mode == "interval" and interval is not None and not all(math.isfinite(v) for v in interval):
        return f"{head}, needs {gate.describe(base, digits)} (the interval is not finite, so it never passes)"
    failed = [c for c in r.bounds if not c.passed]
    needs = " and ".join(c.bound.describe(base, digits) for c in failed)
    return f"{head}, needs {needs} ({'; '.join(_miss(r, c) for c in failed)})"


def _miss(r: GateResult, c: BoundCheck) -> str:
    """How one failed bound is missed: by how much, or that the whole interval lies on its wrong side."""
    lower = c.bound.is_lower
    if r.mode == "interval" and r.interval is not None:
        end = r.interval[1] if lower else r.interval[0]
        side, which = ("below", "upper") if lower else ("above", "lower")
        gap = abs(c.threshold - end)
        if gap == 0:
            return f"the whole interval is {side}; its {which} end equals the bound"
        return f"the whole interval is {side}; {which} end {'short by' if lower else 'over by'} {difference(gap)}"
    gap = abs(c.threshold - r.value)
    if gap == 0:
        return "equal to the bound, needs strictly " + ("greater" if lower else "less")
    return ("short by " if lower else "over by ") + difference(gap)
