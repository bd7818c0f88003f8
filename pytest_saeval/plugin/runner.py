"""Per-run state of the pytest plugin: what is selected, what was evaluated, what to report.

One :class:`Runner` per pytest run lives in ``config.stash[RUNNER_KEY]``. After collection it groups the selected
gate items into *units* (by default: suites that share a model, token set and settings, so one fused pass serves
them); the first item of a unit to run evaluates the whole unit with one shared
:class:`~pytest_saeval.run.session.Session`, and every other item reads its check.

Under pytest-xdist each worker has its own runner. A worker sends what it evaluated to the controller
(``workeroutput``); the controller merges, writes the outputs and the baseline, and prints the summary.

A unit is evaluated whole, but the summary, outputs and baselines hold only the gates whose items actually ran: when
pytest stops early (``-x``, ``--maxfail``, a keyboard interrupt) the gates it never reached are left out, and the
summary says how many were deselected and how many were not run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import pytest

from pytest_saeval.errors import SaevalError
from pytest_saeval.plain import JSON, to_plain
from pytest_saeval.plugin.ledger import GateLedger, absolute
from pytest_saeval.plugin.options import PluginOptions, glob_suites
from pytest_saeval.plugin.outcomes import EvaluationError, GateOutcome
from pytest_saeval.plugin.overrides import overridden, override_values
from pytest_saeval.plugin.workers import worker_device, worker_threads
from pytest_saeval.report.finish import FinishOptions, finish
from pytest_saeval.report.table import summary_lines
from pytest_saeval.run.checks import no_baseline_reason
from pytest_saeval.run.outcome import SuiteRun, merge_runs
from pytest_saeval.run.plan import Overrides, SAEEntry, entries_of, group_key
from pytest_saeval.run.quiet import quiet_libraries
from pytest_saeval.run.session import RunOptions, Session
from pytest_saeval.run.shards import ShardPlan
from pytest_saeval.run.wire import run_from_wire, run_to_wire
from pytest_saeval.spec.gates import Gate
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.folder import default_cache_dir

__all__ = ["RUNNER_KEY", "GateNode", "Runner", "get_runner"]

UNITS: tuple[str, ...] = ("group", "file", "sae")
"""How gate items are evaluated together: suites sharing a fused pass, one suite file, one SAE."""

_PLUGIN_PACKAGE = "pytest_saeval.plugin"


class GateNode(Protocol):
    """What the runner needs of a gate item (:class:`~pytest_saeval.plugin.items.GateItem`)."""

    path: Path
    suite: Suite
    entry: SAEEntry
    gate: Gate
    session: pytest.Session

    @property
    def nodeid(self) -> str: ...

    @property
    def sae_id(self) -> str: ...


@dataclass
class _Unit:
    """Gate items evaluated together, and the result once evaluated (mutable: planned at collection,
    filled when its first item runs)."""

    selected: dict[Path, dict[str, set[str]]] = field(default_factory=dict)
    """Suite file -> SAE id -> gated metrics of the selected items."""
    done: bool = False
    """Whether the unit was evaluated (successfully or not)."""
    runs: list[SuiteRun] = field(default_factory=list)
    """The runs of the SAEs that could be evaluated."""
    errors: dict[tuple[Path, str], BaseException] = field(default_factory=dict)
    """(suite file, SAE id) -> the error that kept that SAE from being evaluated."""


class Runner:
    """Everything the plugin knows about one pytest run (one per process)."""

    def __init__(self, config: pytest.Config, options: PluginOptions) -> None:
        self.config = config
        self.options = options
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.worker_id: str | None = workerinput.get("workerid") if workerinput else None
        self.worker_count: int = int(workerinput.get("workercount", 1)) if workerinput else 1
        unit_kind = (workerinput or {}).get("saeval_unit", "group")
        self.unit_kind: str = unit_kind if unit_kind in UNITS else "sae"
        self._session: Session | None = None
        self._suites: dict[Path, Suite] = {}
        self._units: dict[tuple[Any, ...], _Unit] = {}
        self._unit_of: dict[tuple[Path, str], tuple[Any, ...]] = {}
        self._entry_index: dict[tuple[Path, str], int] = {}
        self.runs: list[SuiteRun] = []
        """Runs of markers and fixtures in this process, and on the controller the workers' runs (gate items'
        runs of this process are kept apart: only the gates that ran are reported, see :attr:`ledger`)."""
        self.errors: list[str] = []
        """Messages of evaluations that failed with an error, in this process and its workers."""
        self.evaluations: dict[str, int] = {}
        """SAEs evaluated, per process (``main`` or the xdist worker id)."""
        self.finish_lines: list[str] = []
        """Lines for the summary: files written, baselines updated, problems doing so."""
        self.collect_only: bool = bool(config.getoption("collectonly", False))
        """``pytest --collect-only``: nothing runs, so nothing is written or summarised."""
        self._unit_runs: list[SuiteRun] = []
        self.ledger = GateLedger()
        """Gate items collected, selected and run (here and, on the controller, in the workers)."""
        self.shard_plan: ShardPlan | None = None
        """With ``--saeval-shard``: the partition, from this process's collection or a worker's."""
        self.shard_deselected = 0
        """Items the shard deselected (in this process, or the most any worker did)."""

    # -- suites and collection ------------------------------------------------------------------
    @property
    def is_worker(self) -> bool:
        """Whether this process is a pytest-xdist worker."""
        return self.worker_id is not None

    @cached_property
    def _matches(self) -> tuple[frozenset[Path], frozenset[Path]]:
        return glob_suites(self.config.rootpath, self.options.thresholds)

    def globbed(self) -> frozenset[Path]:
        """Files matched by the ``saeval_thresholds`` globs (relative to the rootdir), found once."""
        return self._matches[0]

    def unreadable(self) -> frozenset[Path]:
        """Matches of the globs named like suites that are no readable files (see :func:`glob_suites`)."""
        return self._matches[1]

    def display_path(self, path: Path) -> Path:
        """``path`` relative to the invocation folder when it lies inside it (as messages show it)."""
        path = absolute(path)
        try:
            return path.relative_to(self.config.invocation_params.dir)
        except ValueError:
            return path

    def load_suite(self, path: Path) -> Suite:
        """Load a suite file once per run; errors name the file as messages show it."""
        key = absolute(path)
        if key not in self._suites:
            self._suites[key] = load_suite(self.display_path(key))
        return self._suites[key]

    @property
    def cache_folder(self) -> Path | None:
        """The caches' folder (``--saeval-cache-dir``, else the rootdir's ``.saeval-cache``); ``None`` when off, or
        given up on by the session (:attr:`Session.cache_folder`)."""
        if self._session is not None:
            return self._session.cache_folder
        return self._cache_dir if self.options.use_cache else None

    @property
    def _cache_dir(self) -> Path:
        return self.options.cache_dir or default_cache_dir(self.config.rootpath)

    @property
    def session(self) -> Session:
        """The one :class:`Session` of this process (created on first use)."""
        if self._session is None:
            auto = worker_device(self.worker_id) if self.options.device is None else None
            self._session = Session(RunOptions(device=self.options.device, device_option="--saeval-device",
                                               auto_device=auto, use_cache=self.options.use_cache,
                                               file_keyed=self.options.file_keyed, cache_dir=self._cache_dir,
                                               recording_baseline=self.options.update_baseline,
                                               threads=worker_threads(self.worker_count) if self.is_worker else None))
        return self._session

    def plan(self, items: Iterable[GateNode]) -> None:
        """Group the selected gate items into evaluation units (after deselection)."""
        sigs: dict[Path, tuple[tuple[str, int], ...]] = {}
        for item in items:
            path = absolute(item.path)
            if path not in sigs:
                sigs[path] = overridden(item)
            if self.unit_kind == "group":
                key: tuple[Any, ...] = ("group", group_key(item.suite, self.options.device), sigs[path])
            elif self.unit_kind == "file":
                key = ("file", str(path), sigs[path])
            else:
                key = ("sae", str(path), item.sae_id, sigs[path])
            unit = self._units.setdefault(key, _Unit())
            unit.selected.setdefault(path, {}).setdefault(item.sae_id, set()).add(item.gate.metric)
            self._unit_of[(path, item.sae_id)] = key
            self._entry_index[(path, item.sae_id)] = item.entry.index
            self.ledger.selected += 1

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, suites_selected: Mapping[Path, Mapping[str, set[str]] | None],
                 overrides: Overrides | None, *, for_items: bool = False) -> list[SuiteRun]:
        """Run the session on some SAEs of some suites; ``None`` selects every SAE and gate of a suite.

        ``for_items``: the runs serve gate items (only the gates whose items run are reported); else a
        marker or fixture asked (everything is reported)."""
        suites = [self._suites[p] for p in suites_selected]
        by_suite = {self._suites[p].path: sel for p, sel in suites_selected.items()}

        def selected(suite: Suite, uid: str) -> bool:
            sel = by_suite.get(suite.path)
            return sel is None or uid in sel

        session = self.session
        before = session.evaluations
        try:
            with quiet_libraries():
                runs = session.run(suites, selected, overrides)
        finally:
            who = self.worker_id or "main"
            self.evaluations[who] = self.evaluations.get(who, 0) + session.evaluations - before
        kept = []
        for run in runs:
            sel = by_suite.get(run.suite.path)
            if sel is not None:
                run = replace(run, checks=[c for c in run.checks if c.gate.metric in sel.get(c.sae_id, ())],
                              unchecked=[(u, g) for u, g in run.unchecked if g.metric in sel.get(u, ())])
            kept.append(run)
        (self._unit_runs if for_items else self.runs).extend(kept)
        return kept

    def record_error(self, error: BaseException) -> None:
        """Remember an evaluation error for the summary (once per message)."""
        text = str(error) if isinstance(error, SaevalError) else f"{type(error).__name__}: {error}"
        if text not in self.errors:
            self.errors.append(text)

    def _culprits(self, error: SaevalError, selected: Mapping[Path, Mapping[str, set[str]]]) -> list[tuple[Path, str]]:
        """The selected SAEs an error is about (from its subject), or ``[]`` when it names no suite.

        An error about one SAE concerns that SAE; one about an SAE entry, every SAE of that entry; one
        about a suite (or its baseline file), every selected SAE of that suite.
        """
        subject = error.subject
        if subject.suite is None:
            return []
        for path, uids in selected.items():
            if str(self._suites[path].path) != subject.suite:
                continue
            if subject.sae is not None and subject.sae in uids:
                return [(path, subject.sae)]
            if subject.entry is not None:
                return [(path, uid) for uid in uids if self._entry_index.get((path, uid)) == subject.entry]
            return [(path, uid) for uid in uids]
        return []

    def _evaluate_unit(self, unit: _Unit, overrides: Overrides | None) -> None:
        """Evaluate a unit; an SAE that cannot be evaluated is set aside and the others are evaluated without it."""
        selected = {path: dict(uids) for path, uids in unit.selected.items()}
        while selected:
            try:
                unit.runs.extend(self.evaluate(selected, overrides, for_items=True))
                return
            except SaevalError as e:
                self.record_error(e)
                culprits = self._culprits(e, selected)
                if not culprits or sum(len(u) for u in selected.values()) == len(culprits):
                    culprits = [(path, uid) for path, uids in selected.items() for uid in uids]
                for path, uid in culprits:
                    unit.errors[(path, uid)] = e
                    del selected[path][uid]
                selected = {path: uids for path, uids in selected.items() if uids}

    def gate_outcome(self, item: GateNode, request: pytest.FixtureRequest) -> GateOutcome:
        """The check of ``item``, evaluating its unit first if needed.

        Raises :class:`~pytest_saeval.plugin.outcomes.EvaluationError` (an error of the item, not a
        failure) when its SAE could not be evaluated.
        """
        path = absolute(item.path)
        key = self._unit_of.get((path, item.sae_id))
        if key is None:  # collected after planning (should not happen): evaluate it on its own
            self.plan([item])
            key = self._unit_of[(path, item.sae_id)]
        unit = self._units[key]
        if not unit.done:
            unit.done = True
            try:
                overrides = override_values(request, (name for name, _ in key[-1])) if key[-1] else None
                self._evaluate_unit(unit, overrides)
            except Exception as e:  # noqa: BLE001 - a bug, a device problem or a failing override: every item shows it
                self.record_error(e)
                for p, uids in unit.selected.items():
                    for uid in uids:
                        unit.errors.setdefault((p, uid), e)
        error = unit.errors.get((path, item.sae_id))
        if isinstance(error, SaevalError):
            raise EvaluationError(error.detail if self.config.get_verbosity() > 0 else str(error))
        if error is not None:
            raise error
        return self._outcome_in(unit, path, item)

    @staticmethod
    def _outcome_in(unit: _Unit, path: Path, item: GateNode) -> GateOutcome:
        for run in unit.runs:
            if absolute(run.suite.path) != path:
                continue
            for check in run.checks:
                if check.sae_id == item.sae_id and check.gate.metric == item.gate.metric:
                    return GateOutcome(check=check, inputs=run.inputs.describe())
            for uid, gate in run.unchecked:
                if uid == item.sae_id and gate.metric == item.gate.metric:
                    return GateOutcome(skip_reason=no_baseline_reason(None, uid, gate, own=run.inputs.own))
        raise EvaluationError(f"{item.nodeid}: the evaluation produced no check for this gate")

    def selection(self, suite_path: Path, sae: str | None) -> dict[Path, dict[str, set[str]] | None]:
        """One suite's SAEs as :meth:`evaluate` selects them: all (``None``), or the entry ``sae`` (with every
        SAE its release regex matches) and its gates."""
        suite = self.load_suite(suite_path)
        if sae is None:
            return {absolute(suite_path): None}
        metrics = set(suite.sae(sae).metrics)
        return {absolute(suite_path): {e.unique_id: metrics for e in entries_of(suite) if e.spec.id == sae}}

    def marker_failures(self, item: pytest.Item, request: pytest.FixtureRequest, suite_path: Path,
                        sae: str | None) -> list[str]:
        """Evaluate a ``saeval`` marker's suite (one SAE or all) and return the failing gates' messages."""
        names = [name for name, _ in overridden(item)]
        overrides = override_values(request, names) if names else None
        try:
            runs = self.evaluate(self.selection(suite_path, sae), overrides)
        except BaseException as e:
            self.record_error(e)
            raise
        return [c.message_on(run.inputs.describe()) for run in runs for c in run.checks if not c.passed]

    # -- end of the run ---------------------------------------------------------------------------
    def to_wire(self) -> JSON:
        """What a worker sends to the controller: plain data only."""
        return to_plain({"worker": self.worker_id, "evaluations": self.evaluations, "errors": self.errors,
                         "runs": [run_to_wire(r) for r in [*self.runs, *self.ledger.only_ran(self._unit_runs)]],
                         "gates": self.ledger.to_wire(),
                         "shard": self.shard_plan.to_dict() if self.shard_plan is not None else None,
                         "shard_deselected": self.shard_deselected})

    def add_remote(self, payload: Mapping[str, Any] | None) -> None:
        """Take in a worker's results (on the controller)."""
        if not payload:
            return
        for who, n in payload.get("evaluations", {}).items():
            self.evaluations[who] = self.evaluations.get(who, 0) + int(n)
        for text in payload.get("errors", []):
            if text not in self.errors:
                self.errors.append(text)
        for data in payload.get("runs", []):
            self.runs.append(run_from_wire(data, self.load_suite))
        self.ledger.add_remote(payload.get("gates") or {})
        if payload.get("shard") and self.shard_plan is None:
            self.shard_plan = ShardPlan.from_dict(payload["shard"])
        self.shard_deselected = max(self.shard_deselected, int(payload.get("shard_deselected", 0)))

    def merged(self) -> list[SuiteRun]:
        """Every run of this process and its workers (of gate items, the gates that ran), one per suite file."""
        return merge_runs([*self.runs, *self.ledger.only_ran(self._unit_runs)])

    def finish(self, complete: bool = True) -> bool:
        """Write the outputs, the report and the baselines (controller or single process); False when that failed.

        ``complete``: the session ran everything it selected (a shard records itself only then). Under
        ``--collect-only`` nothing is written (the outputs of an earlier run stay as they are).
        """
        if self.collect_only:
            return True
        opts = self.options
        done = finish(self.merged(), FinishOptions(
            output_dir=opts.output_dir, report=opts.report, update_baseline=opts.update_baseline,
            force_baseline=opts.force_baseline, force_flag="--saeval-update-baseline-force", display=self.display_path,
            shard=self.shard_plan, shard_complete=complete, surface="pytest", timings_dir=self.cache_folder), self.errors)
        self.finish_lines.extend(done.lines)
        self.finish_lines.extend(f"ERROR {what}: {e}" for what, e in done.problems)
        return done.ok

    def summary(self) -> list[str]:
        """The lines of the terminal summary section (under ``--collect-only`` only which shard this is)."""
        shard = [self.shard_plan.describe()] if self.shard_plan is not None else []
        ran = [*summary_lines(self.merged(), self.evaluations, self.errors), *self.ledger.lines(), *self.finish_lines]
        return shard if self.collect_only else [*shard, *ran]


RUNNER_KEY = pytest.StashKey[Runner]()
"""Where the run's :class:`Runner` lives in ``config.stash``."""


def get_runner(config: pytest.Config) -> Runner:
    """The run's :class:`Runner` (created by the plugin's ``pytest_configure``)."""
    return config.stash[RUNNER_KEY]
