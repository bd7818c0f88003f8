"""Gate expressions: parse ``">= 0.8"`` / ``">= baseline - 0.01"`` into :class:`Gate` s (pure Python).

Grammar (whitespace between the parts is optional)::

    gate   := OP VALUE
    OP     := ">=" | ">" | "<=" | "<"
    VALUE  := NUMBER | "baseline" | "baseline" ("+" | "-" | "*") NUMBER
    NUMBER := decimal or scientific literal, e.g. 10, 0.8, .5, -2, 1e-3

Digits are ASCII ``0-9`` and whitespace is ASCII (a digit of another script or a no-break space is refused,
never read as a number). A suite file gives a metric either one expression or a list of at most
:data:`~pytest_saeval.spec.fields.MAX_GATE_EXPRESSIONS` different expressions that must all hold; an expression
holds at most :data:`~pytest_saeval.spec.fields.MAX_EXPRESSION_LENGTH` characters. NaN and infinite values never
pass a gate (checking is :mod:`.verdict`'s).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from pytest_saeval.catalogue import METRICS, SCALAR_METRICS
from pytest_saeval.errors import BaselineError, SuiteError, brief, did_you_mean
from pytest_saeval.spec.fields import MAX_EXPRESSION_LENGTH, MAX_GATE_EXPRESSIONS
from pytest_saeval.spec.numbers import format_number

__all__ = ["BASELINE_FIX", "GATE_PATTERN", "GRAMMAR", "MODES", "Bound", "Gate", "Mode", "Op", "holds", "parse_bound",
           "parse_gate"]

Op = Literal[">=", ">", "<=", "<"]
"""Comparison operators a gate may use."""

Mode = Literal["point", "interval"]
"""``point``: the value itself must satisfy every bound. ``interval``: a bound fails only when the
whole confidence interval lies on its wrong side."""

_OPS: tuple[str, ...] = get_args(Op)
MODES: tuple[str, ...] = get_args(Mode)
"""The gate modes, in order."""

GRAMMAR = (
    "write OP VALUE, with OP one of >=, >, <=, < and VALUE a number, baseline, baseline + X, "
    "baseline - X or baseline * X (e.g. \">= 0.8\", \"<= 60\" or \">= baseline - 0.01\")"
)
"""The accepted grammar, as the fix text of parse errors."""

# ASCII classes written out: Python's \d and \s (and ECMAScript's \s) would take other scripts' digits and spaces
_D = "[0-9]"
_S = "[ \\t\\n\\r\\f\\v]*"
_NUMBER = rf"[+-]?(?:{_D}+(?:\.{_D}*)?|\.{_D}+)(?:[eE][+-]?{_D}+)?"
_OP = r">=|<=|>|<"
_EXPR_RE = re.compile(
    rf"^{_S}(?P<op>{_OP}){_S}(?:(?P<number>{_NUMBER})|baseline{_S}(?:(?P<sign>[-+*]){_S}(?P<arg>{_NUMBER}))?){_S}\Z",
    re.ASCII,
)
GATE_PATTERN = rf"^{_S}(?:{_OP}){_S}(?:{_NUMBER}|baseline{_S}(?:[-+*]{_S}{_NUMBER})?){_S}$"
"""The grammar above as one ECMAScript-compatible regular expression (the suite schema's), from the same parts
as the parser's: ASCII digits and whitespace only, in both languages."""
_NOT_ASCII_FIX = ("write the expression in ASCII: the operators >=, >, <=, <, the digits 0-9 and plain spaces (a digit "
                  "or sign of another script, or a no-break space, looks alike but is another character), e.g. \">= 0.8\"")
BASELINE_FIX = (
    "record baseline values with `pytest --saeval-update-baseline` or `saeval run --update-baseline`, "
    "and point the suite's `baseline:` key at that file"
)


# --------------------------------------------------------------------------------------------
# bounds and gates


def holds(op: str, value: float, threshold: float) -> bool:
    """Whether ``value OP threshold``; never true for NaN or infinite values."""
    if not math.isfinite(value):
        return False
    if op == ">=":
        return value >= threshold
    if op == ">":
        return value > threshold
    if op == "<=":
        return value <= threshold
    return value < threshold


@dataclass(frozen=True)
class Bound:
    """One comparison, ``OP VALUE``: against a fixed number or relative to the baseline value.

    A baseline-relative bound resolves to ``baseline * factor + offset``.
    """

    op: Op
    """The comparison: ``>=``, ``>``, ``<=`` or ``<``."""
    constant: float | None = None
    """The threshold when it is a fixed number; ``None`` when it is relative to the baseline."""
    offset: float = 0.0
    """Added to the baseline value (``baseline + X``; ``baseline - X`` stores ``-X``)."""
    factor: float = 1.0
    """Multiplies the baseline value (``baseline * X``)."""
    text: str = ""
    """The value part as written, e.g. ``0.80`` or ``baseline - 0.01`` (derived when empty)."""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise SuiteError(f"unknown gate operator {self.op!r}", fix=GRAMMAR)
        for name in ("constant", "offset", "factor"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SuiteError(f"gate {name} must be a finite number, got {value!r}", fix=GRAMMAR)
            object.__setattr__(self, name, float(value))
        if self.constant is not None and (self.offset != 0.0 or self.factor != 1.0):
            raise SuiteError("a fixed gate threshold cannot also have a baseline offset or factor", fix=GRAMMAR)
        if not self.text:
            object.__setattr__(self, "text", self._canonical_text())

    def _canonical_text(self) -> str:
        if self.constant is not None:
            return repr(self.constant) if not self.constant.is_integer() else str(int(self.constant))
        text = "baseline"
        if self.factor != 1.0:
            text += f" * {self.factor!r}"
        if self.offset > 0:
            text += f" + {self.offset!r}"
        elif self.offset < 0:
            text += f" - {-self.offset!r}"
        return text

    @property
    def uses_baseline(self) -> bool:
        """True when the threshold is relative to the baseline value."""
        return self.constant is None

    @property
    def is_lower(self) -> bool:
        """True for ``>=`` / ``>`` (the value must stay above the threshold)."""
        return self.op in (">=", ">")

    def resolve(self, baseline_value: float | None = None) -> float:
        """The threshold as a number. Baseline-relative bounds need a finite ``baseline_value``."""
        if self.constant is not None:
            return self.constant
        if baseline_value is None:
            raise BaselineError(
                f"gate bound '{self.op} {self.text}' refers to the baseline, but no baseline value was given",
                fix=BASELINE_FIX,
            )
        if not math.isfinite(baseline_value):
            raise BaselineError(
                f"gate bound '{self.op} {self.text}' refers to a baseline value of {format_number(baseline_value)}",
                fix="a baseline must be a finite number: " + BASELINE_FIX,
            )
        return float(baseline_value) * self.factor + self.offset

    def holds(self, value: float, baseline_value: float | None = None) -> bool:
        """Whether ``value`` satisfies this bound (NaN and infinities never do)."""
        return holds(self.op, float(value), self.resolve(baseline_value))

    def describe(self, baseline_value: float | None = None, digits: int = 4) -> str:
        """E.g. ``>= 0.80``; a baseline bound with its value: ``>= baseline - 0.01 (= 0.9312)``."""
        text = f"{self.op} {self.text}"
        if self.uses_baseline and baseline_value is not None:
            text += f" (= {format_number(self.resolve(baseline_value), digits)})"
        return text


def parse_bound(expression: str) -> Bound:
    """Parse one expression like ``">= 0.8"`` or ``"<= baseline * 1.1"``.

    Raises :class:`SuiteError` (without a location; callers add it) naming the expression and the
    accepted grammar.
    """
    if not isinstance(expression, str):
        raise SuiteError(f"a gate expression must be a string, got {brief(expression)}", fix=GRAMMAR)
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise SuiteError(f"gate expression {expression[:24]!r}... is {len(expression):,} characters long; an expression "
                         f"holds at most {MAX_EXPRESSION_LENGTH}", fix="write the number in a few digits (e.g. \">= 0.8\" "
                         "or \">= 1.5e-3\"); more digits than a float holds change nothing")
    match = _EXPR_RE.match(expression)
    if match is None:
        odd = next((c for c in expression if not c.isascii()), None)
        if odd is not None:
            raise SuiteError(f"cannot parse gate expression {expression!r}: it holds {odd!r} (U+{ord(odd):04X}), which "
                             "is not an ASCII digit, sign or space", fix=_NOT_ASCII_FIX)
        raise SuiteError(f"cannot parse gate expression {expression!r}{_parse_hint(expression)}", fix=GRAMMAR)
    op = match["op"]
    number = match["number"]
    if number is not None:
        value = float(number)
        if not math.isfinite(value):
            raise SuiteError(f"gate expression {expression!r}: {number} is not a finite number", fix=GRAMMAR)
        return Bound(op=op, constant=value, text=number)  # type: ignore[arg-type]
    sign, arg = match["sign"], match["arg"]
    if sign is None:
        return Bound(op=op, text="baseline")  # type: ignore[arg-type]
    amount = float(arg)
    if not math.isfinite(amount):
        raise SuiteError(f"gate expression {expression!r}: {arg} is not a finite number", fix=GRAMMAR)
    text = f"baseline {sign} {arg}"
    if sign == "*":
        return Bound(op=op, factor=amount, text=text)  # type: ignore[arg-type]
    return Bound(op=op, offset=amount if sign == "+" else -amount, text=text)  # type: ignore[arg-type]


def _same(a: Bound, b: Bound) -> bool:
    """Whether two bounds say the same (``>= 1`` and ``>= 1.0`` do)."""
    return (a.op, a.constant, a.offset, a.factor) == (b.op, b.constant, b.offset, b.factor)


def _parse_hint(expression: str) -> str:
    """A short reason for the most common mistakes, or ``""``."""
    text = expression.strip()
    if not text:
        return " (it is empty)"
    if text.startswith(("=>", "=<", "==", "=", "!=")):
        return " (the operator must be one of >=, >, <=, <)"
    if not text.startswith((">", "<")):
        return " (it must start with an operator: >=, >, <=, <)"
    rest = text.lstrip("<>=").strip()
    if not rest:
        return " (a value is missing after the operator)"
    if rest.lower() in ("nan", "inf", "+inf", "-inf", "infinity"):
        return " (the value must be a finite number)"
    if rest.lower().startswith("baseline") and not rest.startswith("baseline"):
        return " (write baseline in lower case)"
    return ""


def _metric_problem(metric: object) -> tuple[str, str] | None:
    """(message, fix) when ``metric`` cannot be gated, else None."""
    if not isinstance(metric, str):
        return (
            f"a gate's metric name must be a string, got {metric!r}",
            "use a scalar metric name such as explained_variance or l0",
        )
    if metric in SCALAR_METRICS:
        return None
    info = METRICS.get(metric)
    if info is not None and info.per_feature:
        scalar = f"average_{metric}"
        suggestion = (
            f"gate the scalar summary {scalar} instead"
            if scalar in SCALAR_METRICS
            else "gate a scalar summary instead, e.g. frac_alive, freq_over_1_percent or freq_over_10_percent"
        )
        return (
            f"'{metric}' is a per-feature metric (one value per SAE feature) and cannot be gated",
            suggestion,
        )
    hint = did_you_mean(metric, SCALAR_METRICS)
    if hint:
        return f"unknown metric '{metric}'{hint}", "rename the gate to a metric name from the catalogue"
    return (
        f"unknown metric '{metric}'",
        "use one of the scalar metrics: " + ", ".join(SCALAR_METRICS),
    )


@dataclass(frozen=True)
class Gate:
    """All bounds on one metric of one SAE, as written in a suite file."""

    metric: str
    """A scalar metric from the catalogue (``explained_variance``, ``l0``, ...)."""
    bounds: tuple[Bound, ...]
    """Every bound must hold for the gate to pass."""
    text: str = ""
    """The expression(s) as written; a list is joined with ``", "`` (derived when empty)."""
    line: int | None = None
    """1-based line of the gate's key in the suite file, when it came from one."""
    file: str | None = None
    """The suite file it came from, as given to the loader."""
    key: str | None = None
    """Key path in the suite file, e.g. ``saes[1].gates.l0`` or ``defaults.gates.l0``."""

    def __post_init__(self) -> None:
        problem = _metric_problem(self.metric)
        if problem is not None:
            raise SuiteError(problem[0], fix=problem[1], file=self.file, line=self.line, key=self.key)
        bounds = tuple(self.bounds)
        if not bounds or not all(isinstance(b, Bound) for b in bounds):
            raise SuiteError(
                f"gate on {self.metric} needs at least one bound",
                fix=GRAMMAR,
                file=self.file,
                line=self.line,
                key=self.key,
            )
        object.__setattr__(self, "bounds", bounds)
        if not self.text:
            object.__setattr__(self, "text", ", ".join(f"{b.op} {b.text}" for b in bounds))
        self._refuse_empty_range()

    def _refuse_empty_range(self) -> None:
        """Fixed bounds that no value meets (``>= 40`` and ``<= 20``): a gate that always fails is a typo."""
        fixed = [b for b in self.bounds if b.constant is not None]
        lows = [b for b in fixed if b.op in (">=", ">")]
        highs = [b for b in fixed if b.op in ("<=", "<")]
        if not lows or not highs:
            return
        low = max(lows, key=lambda b: (b.constant, b.op == ">"))
        high = min(highs, key=lambda b: (b.constant, b.op == "<"))
        assert low.constant is not None and high.constant is not None
        if low.constant > high.constant or (low.constant == high.constant and (low.op == ">" or high.op == "<")):
            raise SuiteError(f"gate on {self.metric} can never pass: no value is {low.op} {low.text} and "
                             f"{high.op} {high.text}", fix="swap or correct the bounds (a range is [\">= LOW\", "
                             "\"<= HIGH\"] with LOW <= HIGH)", file=self.file, line=self.line, key=self.key)

    @property
    def uses_baseline(self) -> bool:
        """True when any bound is relative to the baseline value."""
        return any(b.uses_baseline for b in self.bounds)

    def describe(self, baseline_value: float | None = None, digits: int = 4) -> str:
        """All bounds joined with ``and``, e.g. ``>= 10 and <= 60``."""
        return " and ".join(b.describe(baseline_value, digits) for b in self.bounds)


def _expression(value: object) -> Bound:
    """One item of a gate as a bound; a :class:`SuiteError` without a location when it is none (a bare
    number: the message shows the expression to write instead)."""
    if isinstance(value, bool) or value is None:
        raise SuiteError(f"a gate expression must be a string, got {value!r}", fix=GRAMMAR)
    if isinstance(value, (int, float)):
        raise SuiteError(f"a gate needs a comparison, got the bare number {value!r}",
                         fix=f'write a quoted expression with an operator, e.g. ">= {value}" or "<= {value}"')
    if not isinstance(value, str):
        raise SuiteError(f"a gate expression must be a string, got {type(value).__name__}", fix=GRAMMAR)
    return parse_bound(value)


def _expressions(metric: str, spec: Sequence[object], item_lines: Sequence[int | None],
                 key: str | None) -> tuple[Bound, ...]:
    """The bounds of a gate's list: at most :data:`MAX_GATE_EXPRESSIONS`, no two alike; errors located at their item
    (line and key) where known."""
    if not spec:
        raise SuiteError(f"gate on {metric} is an empty list", fix=GRAMMAR)
    if len(spec) > MAX_GATE_EXPRESSIONS:
        raise SuiteError(f"gate on {metric} lists {len(spec):,} expressions; a gate holds at most {MAX_GATE_EXPRESSIONS}",
                         fix='keep the bounds that decide: a range is [">= LOW", "<= HIGH"] (every expression must '
                         "hold, so a lower bound below another one adds nothing)")
    bounds: list[Bound] = []
    for i, item in enumerate(spec):
        at, sub = item_lines[i] if i < len(item_lines) else None, f"{key}[{i}]"
        try:
            bound = _expression(item)
            twin = next((j for j, b in enumerate(bounds) if _same(b, bound)), None)
            if twin is not None:
                raise SuiteError(f"gate on {metric} lists {bound.op} {bound.text} twice (items {twin} and {i})",
                                 fix="remove the repeated expression (every expression of the list must hold; once "
                                 "is enough)")
        except SuiteError as e:
            raise SuiteError(e.message, fix=e.fix or GRAMMAR, line=at, key=sub) from e
        bounds.append(bound)
    return tuple(bounds)


def parse_gate(
    metric: str,
    spec: object,
    *,
    file: str | None = None,
    line: int | None = None,
    key: str | None = None,
    item_lines: Sequence[int] | None = None,
) -> Gate:
    """Build a :class:`Gate` from a suite file entry: one expression string or a list of them.

    ``file``, ``line`` and ``key`` locate the entry for error messages and are kept on the gate;
    ``item_lines`` gives the line of each list item. A bare number is refused (the message shows
    the expression to write instead).
    """
    key = key if key is not None else (metric if isinstance(metric, str) else None)
    problem = _metric_problem(metric)
    if problem is not None:
        raise SuiteError(problem[0], fix=problem[1], file=file, line=line, key=key)
    try:
        if isinstance(spec, (list, tuple)):
            bounds = _expressions(metric, spec, list(item_lines or ()), key)
            text = ", ".join(item.strip() for item in spec)
        else:
            bounds = (_expression(spec),)
            text = str(spec).strip()
    except SuiteError as e:
        raise SuiteError(e.message, fix=e.fix or GRAMMAR, file=file, line=e.location.line or line,
                         key=e.location.key or key) from e
    return Gate(metric=metric, bounds=bounds, text=text, line=line, file=file, key=key)
