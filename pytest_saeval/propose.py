"""``saeval init``'s proposals: noise-aware gates from measured values (written by :mod:`pytest_saeval.suite_init`).

For each SAE and metric, the proposal starts from the measured value and its bootstrap interval
``[lo, hi]`` (see :mod:`pytest_saeval.run.intervals`; metrics without an interval use ``lo = hi = value``)
and leaves a margin ``m = max(k · half-width, abs_floor, rel_floor · |value|)``:

* higher is better (catalogue): ``>= lo − m``, rounded down;
* lower is better: ``<= hi + m``, rounded up;
* neither (``l0``, ...): a range ``>= lo − m'`` and ``<= hi + m'`` with ``m'`` using
  ``range_rel_floor`` (the lower end is left out when it would fall below 0 for a non-negative value).

Bounds are rounded outward to a multiple of ``10^floor(log10 m)`` (or of the value's 12th significant digit, when
that is coarser), so they read as short decimals (scientific beyond 20 characters) and loosen the gate by less than
one more margin; a bound that would be no finite number is not proposed. A proposed gate therefore always
passes on the run it came from. A bound at or beyond the values a metric can take (a share's 0 and 1, see
:data:`~pytest_saeval.catalogue.LIMITS`) could never fail and is left out. Gates relative to the
baseline are kept as written; gates the suite already has are kept unless asked (``--update-gates``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

from pytest_saeval.catalogue import LIMITS, METRICS, SCALAR_METRICS
from pytest_saeval.errors import SuiteError, did_you_mean
from pytest_saeval.run.intervals import Interval, intervals
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.settings import MarginPolicy
from pytest_saeval.spec.gates import parse_bound
from pytest_saeval.spec.numbers import format_number, interval_text
from pytest_saeval.spec.suite import SAESpec

__all__ = [
    "DEFAULT_METRICS",
    "ProposedGate",
    "SAEProposal",
    "format_proposals",
    "propose_bounds",
    "propose_gates",
    "to_write",
]

DEFAULT_METRICS: tuple[str, ...] = (
    "explained_variance",
    "kl_div_score",
    "ce_loss_score",
    "ce_loss_increase",
    "l0",
    "frac_alive",
    "freq_over_10_percent",
)
"""Metrics proposed for every SAE (plus every metric the suite already gates with a fixed bound)."""

@dataclass(frozen=True)
class ProposedGate:
    """One proposed gate for one SAE entry."""

    metric: str
    """The gated scalar metric."""
    expressions: tuple[str, ...]
    """One or two gate expressions, e.g. ``(">= 0.78",)`` or ``(">= 30", "<= 39")``."""
    value: float
    """The measured value the bounds came from (for several matched SAEs: the one that set the loosest bound)."""
    interval: Interval | None
    """Its bootstrap interval, when the metric has one."""
    n_saes: int = 1
    """How many evaluated SAEs (matches of one release regex) the bounds cover."""
    existing: tuple[str, ...] | None = None
    """The expressions the entry gates the metric with now (None: not gated yet); those stay unless asked."""

    def __post_init__(self) -> None:
        if self.metric not in SCALAR_METRICS:
            raise SuiteError(f"cannot propose a gate on unknown metric {self.metric!r}", key=self.metric,
                             fix="use a scalar metric from the catalogue")
        if not 1 <= len(self.expressions) <= 2:
            raise SuiteError(f"a proposed gate needs one or two expressions, got {self.expressions!r}",
                             key=self.metric, fix="give a lower bound, an upper bound, or both")

    @property
    def yaml_value(self) -> str:
        """The value as it is written into the suite file: ``">= 0.78"`` or ``[">= 30", "<= 39"]``."""
        quoted = [f'"{e}"' for e in self.expressions]
        return quoted[0] if len(quoted) == 1 else "[" + ", ".join(quoted) + "]"

    @property
    def comment(self) -> str:
        """``measured 0.8012 [0.7950, 0.8071]`` (with the number of SAEs when there are several)."""
        text = f"measured {format_number(self.value)}"
        if self.interval is not None and all(math.isfinite(v) for v in self.interval):
            text += " " + interval_text(self.interval, self.value)
        if self.n_saes > 1:
            text += f" (loosest of {self.n_saes} SAEs)"
        return text


@dataclass(frozen=True)
class SAEProposal:
    """The proposed gates of one ``saes:`` entry of one suite file."""

    suite_path: Path
    """The suite file."""
    sae_id: str
    """The entry's ``id`` in the suite file."""
    gates: tuple[ProposedGate, ...]
    """Proposed gates, in catalogue order."""
    skipped: tuple[str, ...] = ()
    """``"metric: reason"`` for metrics that got no proposal (not measured, not finite, baseline gate)."""


# --------------------------------------------------------------------------------------------
# proposing


_PLAIN_LENGTH = 20
"""Longest bound written as a plain decimal; a longer one is written in scientific notation (``1.5E+24``)."""


def _round(x: float, step_exp: int, down: bool) -> str | None:
    """``x`` rounded down (up) to a multiple of ``10**step_exp``, as a short decimal string (plain, or scientific
    beyond :data:`_PLAIN_LENGTH` characters); None when ``x`` or the rounded number is no finite float."""
    if not math.isfinite(x):
        return None
    # 12 significant digits first, so float noise (0.94 - 0.02 = 0.9199999999999999) does not cost a step
    exact = Decimal(f"{x:.12g}")
    # a step below that 12th digit changes nothing but the number's length (and would outgrow Decimal's precision)
    coarse = exact.adjusted() - 11 > step_exp
    step_exp = max(step_exp, exact.adjusted() - 11)
    step = Decimal(1).scaleb(step_exp)
    d = (exact / step).to_integral_value(rounding=ROUND_FLOOR if down else ROUND_CEILING) * step
    if coarse and (d > Decimal(x) if down else d < Decimal(x)):  # 12 digits rounded x itself the wrong way
        d = d - step if down else d + step
    if step_exp < 0:
        d = d.quantize(step)
    text = "0" if d == 0 else format(d, "f")
    if len(text) > _PLAIN_LENGTH:
        text = format(d.normalize(), "E")
    return text if math.isfinite(float(text)) else None


def _step_exp(margin: float) -> int:
    return math.floor(math.log10(margin))


def propose_bounds(metric: str, value: float, interval: Interval | None, policy: MarginPolicy) -> tuple[str, ...]:
    """The gate expressions proposed for one measured ``value`` (and its interval) of ``metric``:
    ``()`` when no bound at this margin could ever fail (it would lie at or beyond the values the
    metric can take, :data:`~pytest_saeval.catalogue.LIMITS`, e.g. ``<= 1.02`` for a share) or when the
    bound would be no finite number (a value near the largest float)."""
    return _bounds(metric, value, interval, policy)[0]


def _bounds(metric: str, value: float, interval: Interval | None, policy: MarginPolicy) -> tuple[tuple[str, ...], str]:
    """:func:`propose_bounds`, and why it proposes nothing when it does not."""
    lo, hi = value, value
    half = 0.0
    if interval is not None and all(math.isfinite(v) for v in interval):
        lo, hi = min(interval[0], value), max(interval[1], value)
        half = (interval[1] - interval[0]) / 2
    direction = METRICS[metric].higher_is_better
    rel = policy.range_rel_floor if direction is None else policy.rel_floor
    margin = max(policy.k * half, policy.abs_floor, rel * abs(value))
    if not math.isfinite(margin):
        return (), "no finite bound at this margin"
    exp = _step_exp(margin)
    lowest, highest = LIMITS.get(metric, (None, None))
    lower = _round(lo - margin, exp, down=True) if direction is not False else None
    upper = _round(hi + margin, exp, down=False) if direction is not True else None
    parts = []
    # a range's lower end below 0 for a non-negative value says nothing either
    if lower is not None and (lowest is None or float(lower) > lowest) and not (
            direction is None and float(lower) <= 0 <= value):
        parts.append(f">= {lower}")
    if upper is not None and (highest is None or float(upper) < highest):
        parts.append(f"<= {upper}")
    parts = [p for p in parts if _readable(p)]
    overflow = (direction is not False and lower is None) or (direction is not True and upper is None)
    return tuple(parts), "no finite bound at this margin" if overflow else "no bound at this margin could fail"


def _readable(expression: str) -> bool:
    """Whether a suite file's loader reads ``expression`` back (it always should: a last check before writing)."""
    try:
        parse_bound(expression)
    except SuiteError:
        return False
    return True


def _bound_number(expression: str) -> float:
    return float(expression.split()[-1])


def _loosest(gates: Sequence[ProposedGate]) -> ProposedGate:
    """Merge proposals for several SAEs of one entry: the loosest lower and upper bound."""
    if len(gates) == 1:
        return gates[0]
    lowers = [(g, e) for g in gates for e in g.expressions if e.startswith(">")]
    uppers = [(g, e) for g in gates for e in g.expressions if e.startswith("<")]
    parts: list[str] = []
    chosen = gates[0]
    if lowers and len(lowers) == len(gates):
        chosen, low = min(lowers, key=lambda ge: _bound_number(ge[1]))
        parts.append(low)
    if uppers:
        g_up, up = max(uppers, key=lambda ge: _bound_number(ge[1]))
        if not parts:
            chosen = g_up
        parts.append(up)
    return ProposedGate(metric=chosen.metric, expressions=tuple(parts), value=chosen.value,
                        interval=chosen.interval, n_saes=len(gates))


def propose_gates(runs: Iterable[SuiteRun], *, metrics: Sequence[str] = DEFAULT_METRICS,
                  policy: MarginPolicy | None = None) -> list[SAEProposal]:
    """Propose gates for every evaluated SAE entry of ``runs``.

    Args:
        runs: the output of :meth:`pytest_saeval.run.session.Session.run`.
        metrics: metrics to propose for every SAE; metrics an entry already gates with fixed bounds
            are proposed too (baseline-relative gates are kept as written).
        policy: the margins (see :class:`MarginPolicy`).

    The intervals are the runs' own (computed from each result's per-sequence sums when a run
    carries none).

    Returns:
        One :class:`SAEProposal` per ``saes:`` entry that was evaluated, in file order. Entries that
        expand to several SAEs (a release regex) get bounds that hold for all of them.
    """
    policy = policy or MarginPolicy()
    unknown = [m for m in metrics if m not in SCALAR_METRICS]
    if unknown:
        raise SuiteError(f"cannot propose gates on unknown metric {unknown[0]!r}{did_you_mean(unknown[0], SCALAR_METRICS)}",
                         key="metrics", fix="use scalar metric names from the catalogue")
    proposals: list[SAEProposal] = []
    for run in runs:
        by_spec: dict[str, list[str]] = {}
        for entry in run.entries:
            if entry.unique_id in run.results:
                by_spec.setdefault(entry.spec.id, []).append(entry.unique_id)
        proposals.extend(_propose_entry(run, spec, by_spec[spec.id], metrics, policy)
                         for spec in run.suite.saes if by_spec.get(spec.id))
    return proposals


def _propose_entry(run: SuiteRun, spec: SAESpec, uids: Sequence[str], metrics: Sequence[str],
                   policy: MarginPolicy) -> SAEProposal:
    """The proposal for one ``saes:`` entry, from the results of its SAEs ``uids``."""
    baseline_gated = {g.metric for g in spec.gates if g.uses_baseline}
    gates: list[ProposedGate] = []
    skipped: list[str] = []
    for metric in (m for m in SCALAR_METRICS if (m in metrics or spec.gate(m) is not None)):
        if metric in baseline_gated:
            skipped.append(f"{metric}: relative to the baseline, kept as written")
            continue
        gate = _propose_metric(run, metric, uids, policy, skipped)
        current = spec.gate(metric)
        if gate is not None:
            existing = tuple(f"{b.op} {b.text}" for b in current.bounds) if current is not None else None
            gates.append(dataclasses.replace(gate, existing=existing))
        elif current is not None:  # nothing to propose: the gate as written stays, and says if it fails now
            failing = [c for c in run.checks if c.gate.metric == metric and c.sae_id in uids and not c.passed]
            kept = ", ".join(f'"{b.op} {b.text}"' for b in current.bounds)
            skipped[-1] += f"; kept {kept} as written" + (
                f" (it fails now: {failing[0].result.message}; edit or remove it by hand)" if failing else "")
    return SAEProposal(run.suite.path, spec.id, tuple(gates), tuple(skipped))


def _propose_metric(run: SuiteRun, metric: str, uids: Sequence[str], policy: MarginPolicy,
                    skipped: list[str]) -> ProposedGate | None:
    """The gate on ``metric`` that holds for every SAE of ``uids`` (None, with a reason, when there is none)."""
    per_sae: list[ProposedGate] = []
    for uid in uids:
        result = run.results[uid]
        value = result.metrics.get(metric, math.nan)
        if not math.isfinite(value):
            skipped.append(f"{metric}: measured {format_number(value)} for {uid}, no gate proposed")
            return None
        interval = (run.intervals_of(uid) or intervals(result)).get(metric)
        bounds, why = _bounds(metric, value, interval, policy)
        if not bounds:
            skipped.append(f"{metric}: measured {format_number(value)} for {uid}; {why}")
            return None
        per_sae.append(ProposedGate(metric, bounds, value, interval))
    return _loosest(per_sae)


def format_proposals(proposals: Iterable[SAEProposal], *, update_gates: bool = False) -> str:
    """What ``saeval init`` did, for the terminal: each gate as ``metric: old -> new (measured ...)``;
    a gate the suite had is kept as written unless ``update_gates``."""
    lines: list[str] = []
    for p in proposals:
        lines.append(f"{p.suite_path} [{p.sae_id}]")
        for g in p.gates:
            new = ", ".join(f'"{e}"' for e in g.expressions)
            if g.existing is None:
                lines.append(f"  {g.metric}: (none) -> {new} ({g.comment})")
                continue
            old = ", ".join(f'"{e}"' for e in g.existing)
            if g.existing == g.expressions:
                lines.append(f"  {g.metric}: {old} kept, as proposed ({g.comment})")
            elif update_gates:
                lines.append(f"  {g.metric}: {old} -> {new} ({g.comment})")
            else:
                lines.append(f"  {g.metric}: {old} kept (proposed {new}; {g.comment}; --update-gates replaces it)")
        lines.extend(f"  skipped {s}" for s in p.skipped)
    return "\n".join(lines)


def to_write(proposal: SAEProposal, *, update_gates: bool = False) -> tuple[ProposedGate, ...]:
    """The gates of a proposal that get written: new ones, and changed ones when ``update_gates``."""
    return tuple(g for g in proposal.gates if g.existing is None or (update_gates and g.existing != g.expressions))
