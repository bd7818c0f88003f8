"""``saeval init``: propose noise-aware gates from measured values and write them into the suite file.

For each SAE and metric, the proposal starts from the measured value and its bootstrap interval
``[lo, hi]`` (see :mod:`pytest_saeval.bootstrap`; metrics without an interval use ``lo = hi = value``)
and leaves a margin ``m = max(k · half-width, abs_floor, rel_floor · |value|)``:

* higher is better (catalogue): ``>= lo − m``, rounded down;
* lower is better: ``<= hi + m``, rounded up;
* neither (``l0``, ...): a range ``>= lo − m'`` and ``<= hi + m'`` with ``m'`` using
  ``range_rel_floor`` (the lower end is left out when it would fall below 0 for a non-negative value).

Bounds are rounded outward to a multiple of ``10^floor(log10 m)``, so they read as short decimals and
loosen the gate by less than one more margin. A proposed gate therefore always passes on the run it
came from. Gates relative to the baseline are kept as written.

The suite file is edited textually (positions from PyYAML's node marks): only the proposed gates'
values change or are added, each with a ``# measured ...`` comment; every other key, comment and
blank line stays byte for byte.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from pytest_saeval.bootstrap import Interval, intervals, lookup
from pytest_saeval.catalogue import METRICS, SCALAR_METRICS
from pytest_saeval.errors import SuiteError
from pytest_saeval.fileio import atomic_write_text
from pytest_saeval.spec.numbers import format_number

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.session import Session, SuiteRun

__all__ = [
    "DEFAULT_METRICS",
    "MarginPolicy",
    "ProposedGate",
    "SAEProposal",
    "format_proposals",
    "init_suite",
    "propose_gates",
    "write_proposed_suite",
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

_MEASURED = "# measured"


@dataclass(frozen=True)
class MarginPolicy:
    """How far below (above) the measurement a proposed bound sits."""

    k: float = 2.0
    """Multiples of the interval half-width between the interval's end and the bound."""
    abs_floor: float = 0.005
    """Smallest margin, in the metric's units (metrics without an interval get at least this)."""
    rel_floor: float = 0.02
    """Smallest margin relative to ``|value|`` for one-sided gates."""
    range_rel_floor: float = 0.1
    """Smallest margin relative to ``|value|`` for metrics with no better direction (ranges, e.g. ``l0``)."""

    def __post_init__(self) -> None:
        for name in ("k", "abs_floor", "rel_floor", "range_rel_floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise SuiteError(f"margin {name} must be a finite number >= 0, got {value!r}", key=name,
                                 fix=f"set {name} to e.g. {getattr(MarginPolicy, name)}")
        if self.abs_floor <= 0:
            raise SuiteError(f"margin abs_floor must be > 0, got {self.abs_floor!r}", key="abs_floor",
                             fix="set abs_floor to a small positive number such as 0.005")


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
            text += f" [{format_number(self.interval[0])}, {format_number(self.interval[1])}]"
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


def _round(x: float, step_exp: int, down: bool) -> str:
    """``x`` rounded down (up) to a multiple of ``10**step_exp``, as a plain decimal string."""
    # 12 significant digits first, so float noise (0.94 - 0.02 = 0.9199999999999999) does not cost a step
    exact = Decimal(f"{x:.12g}")
    step = Decimal(1).scaleb(step_exp)
    d = (exact / step).to_integral_value(rounding=ROUND_FLOOR if down else ROUND_CEILING) * step
    if step_exp < 0:
        d = d.quantize(step)
    return "0" if d == 0 else format(d, "f")


def _step_exp(margin: float) -> int:
    return math.floor(math.log10(margin))


def _one(metric: str, value: float, interval: Interval | None, policy: MarginPolicy) -> tuple[str, ...]:
    lo, hi = value, value
    half = 0.0
    if interval is not None and all(math.isfinite(v) for v in interval):
        lo, hi = min(interval[0], value), max(interval[1], value)
        half = (interval[1] - interval[0]) / 2
    direction = METRICS[metric].higher_is_better
    rel = policy.range_rel_floor if direction is None else policy.rel_floor
    margin = max(policy.k * half, policy.abs_floor, rel * abs(value))
    exp = _step_exp(margin)
    if direction is True:
        return (f">= {_round(lo - margin, exp, down=True)}",)
    if direction is False:
        return (f"<= {_round(hi + margin, exp, down=False)}",)
    upper = f"<= {_round(hi + margin, exp, down=False)}"
    if lo - margin <= 0 <= value:
        return (upper,)
    return (f">= {_round(lo - margin, exp, down=True)}", upper)


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


def propose_gates(
    runs: Iterable[SuiteRun],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    policy: MarginPolicy | None = None,
    intervals_by_sae: Mapping[str, Mapping[str, Interval]] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[SAEProposal]:
    """Propose gates for every evaluated SAE entry of ``runs``.

    Args:
        runs: the output of :meth:`pytest_saeval.session.Session.run`.
        metrics: metrics to propose for every SAE; metrics an entry already gates with fixed bounds
            are proposed too (baseline-relative gates are kept as written).
        policy: the margins (see :class:`MarginPolicy`).
        intervals_by_sae: precomputed intervals (as :func:`pytest_saeval.bootstrap.run_intervals`
            returns). When None: the run's own ``intervals`` if it carries them, else computed from
            each result's per-sequence sums with ``n_boot`` / ``seed``.

    Returns:
        One :class:`SAEProposal` per ``saes:`` entry that was evaluated, in file order. Entries that
        expand to several SAEs (a release regex) get bounds that hold for all of them.
    """
    policy = policy or MarginPolicy()
    unknown = [m for m in metrics if m not in SCALAR_METRICS]
    if unknown:
        from pytest_saeval.errors import did_you_mean

        raise SuiteError(f"cannot propose gates on unknown metric {unknown[0]!r}{did_you_mean(unknown[0], SCALAR_METRICS)}",
                         key="metrics", fix="use scalar metric names from the catalogue")
    proposals: list[SAEProposal] = []
    for run in runs:
        by_spec: dict[str, list[str]] = {}
        for entry in run.entries:
            if entry.unique_id in run.results:
                by_spec.setdefault(entry.spec.id, []).append(entry.unique_id)
        for spec in run.suite.saes:
            uids = by_spec.get(spec.id)
            if not uids:
                continue
            baseline_gated = {g.metric for g in spec.gates if g.uses_baseline}
            wanted = [m for m in SCALAR_METRICS if (m in metrics or spec.gate(m) is not None)]
            gates: list[ProposedGate] = []
            skipped: list[str] = []
            for metric in wanted:
                if metric in baseline_gated:
                    skipped.append(f"{metric}: relative to the baseline, kept as written")
                    continue
                per_sae: list[ProposedGate] = []
                problem = None
                for uid in uids:
                    result = run.results[uid]
                    value = result.metrics.get(metric, math.nan)
                    if not math.isfinite(value):
                        problem = f"{metric}: measured {format_number(value)} for {uid}, no gate proposed"
                        break
                    found = lookup(intervals_by_sae, run, uid)
                    if not found and intervals_by_sae is None:
                        found = intervals(result, n_boot=n_boot, seed=seed)
                    interval = found.get(metric)
                    per_sae.append(ProposedGate(metric, _one(metric, value, interval, policy), value, interval))
                if problem is not None:
                    skipped.append(problem)
                    continue
                gates.append(_loosest(per_sae))
            proposals.append(SAEProposal(run.suite.path, spec.id, tuple(gates), tuple(skipped)))
    return proposals


def format_proposals(proposals: Iterable[SAEProposal]) -> str:
    """A plain-text summary of proposals for the terminal."""
    lines: list[str] = []
    for p in proposals:
        lines.append(f"{p.suite_path} [{p.sae_id}]")
        for g in p.gates:
            lines.append(f"  {g.metric}: {', '.join(g.expressions)}  ({g.comment})")
        for s in p.skipped:
            lines.append(f"  skipped {s}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# writing


def _content_end(node: yaml.Node) -> int:
    """Index just after the last character of ``node``'s content (block collections end at their last item)."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return node.end_mark.index
    if isinstance(node, yaml.MappingNode):
        return _content_end(node.value[-1][1]) if node.value else node.end_mark.index
    if isinstance(node, yaml.SequenceNode):
        return _content_end(node.value[-1]) if node.value else node.end_mark.index
    return node.end_mark.index  # pragma: no cover - composed nodes are scalars, mappings or sequences


def _line_end(text: str, index: int) -> int:
    """Index just after the newline that ends the line containing ``index`` (or the text's end)."""
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


class _Editor:
    """Collects (start, end, replacement) edits on the suite text and applies them back to front."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.edits: list[tuple[int, int, str]] = []

    def error(self, message: str, line: int | None, fix: str) -> SuiteError:
        return SuiteError(message, fix=fix, file=self.file, line=line)

    def insert_lines(self, after_index: int, lines: Sequence[str]) -> None:
        at = _line_end(self.text, after_index)
        prefix = "" if at == 0 or self.text[at - 1] == "\n" else self.newline
        self.edits.append((at, at, prefix + "".join(line + self.newline for line in lines)))

    def entry(self, indent: int, gate: ProposedGate) -> str:
        return f"{' ' * indent}{gate.metric}: {gate.yaml_value}  # {gate.comment}"

    def replace_value(self, key: yaml.Node, value: yaml.Node, gate: ProposedGate) -> None:
        end = _content_end(value)
        eol = _line_end(self.text, end)
        rest = self.text[end:eol].rstrip("\r\n")
        comment = f"  # {gate.comment}"
        if rest.strip().startswith(_MEASURED):
            self.edits.append((key.end_mark.index, end + len(rest), f": {gate.yaml_value}{comment}"))
        elif rest.strip():
            self.edits.append((key.end_mark.index, end, f": {gate.yaml_value}"))
        else:
            self.edits.append((key.end_mark.index, end + len(rest), f": {gate.yaml_value}{comment}"))

    def apply(self) -> str:
        out = self.text
        for start, end, new in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            out = out[:start] + new + out[end:]
        return out


def _pairs(node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    return {str(k.value): (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _edit_entry(ed: _Editor, item: yaml.MappingNode, gates: Sequence[ProposedGate]) -> None:
    line = item.start_mark.line + 1
    if item.flow_style:
        raise ed.error("cannot add gates to an SAE entry written in flow style ({id: ..., ...})", line,
                       "write the entry in block style (one key per line), or add the gates by hand")
    pairs = _pairs(item)
    sae_indent = item.value[0][0].start_mark.column
    start, stop = item.start_mark.index, _content_end(item)
    if "gates" not in pairs:
        ed.insert_lines(stop, [f"{' ' * sae_indent}gates:", *(ed.entry(sae_indent + 2, g) for g in gates)])
        return
    key, value = pairs["gates"]
    if not start <= value.start_mark.index <= stop:
        raise ed.error("cannot edit a gates block that is a YAML alias", key.start_mark.line + 1,
                       "write the SAE's gates out in place, or add the proposed gates by hand")
    if isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null":
        if value.end_mark.index > value.start_mark.index:  # gates: ~ / gates: null
            ed.edits.append((key.end_mark.index, value.end_mark.index, ":"))
        ed.insert_lines(key.end_mark.index, [ed.entry(sae_indent + 2, g) for g in gates])
        return
    if not isinstance(value, yaml.MappingNode):
        raise ed.error("gates must be a mapping", key.start_mark.line + 1, 'write gates: with lines like explained_variance: ">= 0.8"')
    existing = _pairs(value)
    if value.flow_style:  # gates: {} or gates: {a: ">= 1"}: rewrite as a block, keeping the other entries' text
        indent = sae_indent + 2
        proposed = {g.metric for g in gates}
        kept = [
            f"{' ' * indent}{ed.text[k.start_mark.index:k.end_mark.index]}: {ed.text[v.start_mark.index:v.end_mark.index]}"
            for name, (k, v) in existing.items() if name not in proposed
        ]
        ed.edits.append((key.end_mark.index, value.end_mark.index, ":"))
        ed.insert_lines(value.end_mark.index, [*kept, *(ed.entry(indent, g) for g in gates)])
        return
    indent = value.value[0][0].start_mark.column
    new_lines = []
    for gate in gates:
        if gate.metric in existing:
            ed.replace_value(*existing[gate.metric], gate)
        else:
            new_lines.append(ed.entry(indent, gate))
    if new_lines:
        ed.insert_lines(_content_end(value), new_lines)


def edit_suite_text(text: str, proposals: Iterable[SAEProposal], *, file: str = "<suite>") -> str:
    """The suite text with the proposed gates written into each SAE entry's ``gates:`` block."""
    by_id = {p.sae_id: p.gates for p in proposals if p.gates}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise SuiteError(f"invalid YAML: {e}", fix="fix the suite file first (saeval run reports where)", file=file) from e
    saes = _pairs(root).get("saes") if isinstance(root, yaml.MappingNode) else None
    if saes is None or not isinstance(saes[1], yaml.SequenceNode):
        raise SuiteError("the suite file has no saes: list", fix="add the saes: section", file=file, key="saes")
    ed = _Editor(text, file)
    seen: set[str] = set()
    for item in saes[1].value:
        if not isinstance(item, yaml.MappingNode):
            continue
        id_pair = _pairs(item).get("id")
        sae_id = str(id_pair[1].value) if id_pair is not None else None
        if sae_id in by_id and sae_id not in seen:
            seen.add(sae_id)
            _edit_entry(ed, item, by_id[sae_id])
    missing = sorted(set(by_id) - seen)
    if missing:
        raise SuiteError(f"no SAE entry with id {missing[0]!r} in the suite file", key="saes",
                         fix="propose gates from a run of this same suite file", file=file)
    return ed.apply()


def _same_file(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def write_proposed_suite(suite_path: str | os.PathLike[str], proposals: Iterable[SAEProposal],
                         output: str | os.PathLike[str] | None = None) -> Path:
    """Write the proposals for ``suite_path`` into that file (or into ``output``) and return the path written.

    Only the proposed gates' lines change or are added; everything else stays as it was. The
    result is loaded again and checked to hold exactly the proposed gates. Relative paths in the
    suite are copied as written, so an ``output`` in another folder resolves them from there.
    """
    from pytest_saeval.spec.loader import load_suite

    source = Path(suite_path)
    mine = [p for p in proposals if _same_file(p.suite_path, source)]
    try:
        text = source.read_bytes().decode("utf-8")
    except OSError as e:
        raise SuiteError(f"cannot read the suite file: {e.strerror or e}", fix="check the path", file=str(source)) from e
    except UnicodeDecodeError as e:
        raise SuiteError("the file is not UTF-8 text", fix="save it as UTF-8", file=str(source)) from e
    new_text = edit_suite_text(text, mine, file=str(source))
    target = Path(output) if output is not None else source
    atomic_write_text(target, new_text)
    suite = load_suite(target)
    for p in mine:
        spec = suite.sae(p.sae_id)
        for g in p.gates:
            gate = spec.gate(g.metric)
            written = tuple(f"{b.op} {b.text}" for b in gate.bounds) if gate is not None else ()
            if written != g.expressions:  # pragma: no cover - a safety net for unusual YAML layouts
                raise SuiteError(
                    f"the edited file does not hold the proposed gate {g.metric}: {', '.join(g.expressions)}",
                    fix="add the proposed gates by hand (see saeval init's summary)", file=str(target),
                    line=gate.line if gate is not None else spec.line, key=f"saes[{p.sae_id}].gates.{g.metric}")
    return target


def init_suite(
    suite_path: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    session: Session | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    policy: MarginPolicy | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[Path, list[SAEProposal]]:
    """``saeval init``: evaluate the suite's SAEs once (gates and baseline ignored), propose gates, write them.

    Returns the path written and the proposals.
    """
    from pytest_saeval.session import Session
    from pytest_saeval.spec.loader import load_suite

    suite = load_suite(suite_path)
    bare = replace(suite, saes=tuple(replace(s, gates=()) for s in suite.saes), baseline=None, default_gates=())
    runs = (session or Session()).run([bare])
    runs = [replace(r, suite=suite) for r in runs]
    proposals = propose_gates(runs, metrics=metrics, policy=policy, n_boot=n_boot, seed=seed)
    return write_proposed_suite(suite_path, proposals, output), proposals
