"""Suite files as pytest test files: one item per SAE x gated metric.

``thresholds/demo.yaml`` -> :class:`SuiteFile` -> one :class:`SAENode` per SAE entry (regex
releases expanded) -> one :class:`GateItem` per gate, with node id
``thresholds/demo.yaml::<sae id>::<metric>`` and a location at the gate's line in the YAML file.

Nothing is evaluated here: a gate item asks the run's :class:`~pytest_saeval.plugin.runner.Runner` for its
check in ``setup`` (evaluation problems are errors of the items, never failures) and fails in
``runtest`` with the gate's one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# pytest has no public way to give a non-Python item fixtures: its own doctest items use TopRequest and
# _fixturemanager as GateItem does (pyproject's floor is the oldest pytest this was run on).
from _pytest.fixtures import TopRequest

from pytest_saeval.errors import SaevalError
from pytest_saeval.plugin.options import SUFFIXES
from pytest_saeval.plugin.outcomes import EvaluationError, GateFailed
from pytest_saeval.plugin.runner import get_runner
from pytest_saeval.run.plan import SAEEntry, entries_of
from pytest_saeval.spec.gates import Gate
from pytest_saeval.spec.suite import Suite

if TYPE_CHECKING:  # pragma: no cover
    from _pytest._code.code import ExceptionInfo, TerminalRepr

__all__ = ["READING", "GateItem", "SAENode", "SuiteFile", "add_unreadable_suites", "fit_short_summary", "is_suite_file",
           "tidy_report"]



def is_suite_file(file_path: Path, session: pytest.Session, globbed: frozenset[Path]) -> bool:
    """A ``.yaml``/``.yml`` file matched by the ``saeval_thresholds`` globs or named on the command line."""
    if file_path.suffix not in SUFFIXES:
        return False
    return file_path in globbed or session.isinitpath(file_path)


def add_unreadable_suites(collector: pytest.Collector, report: pytest.CollectReport) -> None:
    """Add to a folder's collected nodes the glob matches in it that are no readable files (a dangling link,
    a FIFO, a device, a folder named like a suite), which pytest's walk passes over: each becomes a
    :class:`SuiteFile` whose collection error says what it is, so a suite that cannot be read never passes
    silently."""
    if not isinstance(collector, pytest.Directory) or not report.passed:
        return
    have = {getattr(node, "path", None) for node in report.result if not isinstance(node, pytest.Directory)}
    folder = collector.path
    for path in sorted(get_runner(collector.config).unreadable()):
        if path.parent == folder and path not in have:
            report.result.append(SuiteFile.from_parent(collector, path=path))


class SuiteFile(pytest.File):
    """One suite (threshold YAML) file; a file that cannot be loaded is a collection error."""

    def collect(self) -> Iterator[SAENode]:
        runner = get_runner(self.config)
        suite = runner.load_suite(self.path)
        entries = entries_of(suite)
        if not any(entry.gates for entry in entries):
            runner.ledger.gateless[str(runner.display_path(self.path))] = len(entries)
        for entry in entries:
            yield SAENode.from_parent(self, name=entry.unique_id, suite=suite, entry=entry)

    def repr_failure(self, excinfo: ExceptionInfo[BaseException]) -> str | TerminalRepr:  # type: ignore[override]
        """A bad suite file is its one-line error (long messages cut; ``-v`` shows them whole), never a traceback."""
        error = excinfo.value
        if isinstance(error, SaevalError):
            return error.detail if self.config.get_verbosity() > 0 else str(error)
        return super().repr_failure(excinfo)


class SAENode(pytest.Collector):
    """One SAE of a suite; its gates are the items."""

    def __init__(self, *, suite: Suite, entry: SAEEntry, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.entry = entry

    def collect(self) -> Iterator[GateItem]:
        for gate in self.entry.gates:
            get_runner(self.config).ledger.collected += 1
            yield GateItem.from_parent(self, name=gate.metric, gate=gate)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.entry.spec.line
        return self.path, (line - 1 if line else None), self.entry.unique_id


class GateItem(pytest.Item):
    """One gate of one SAE. Uses fixtures like pytest's own doctest items (autouse ones included)."""

    def __init__(self, *, gate: Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parent = self.parent
        assert isinstance(parent, SAENode)
        self.gate = gate
        self.suite: Suite = parent.suite
        self.entry: SAEEntry = parent.entry
        self.obj = None
        self._fixtureinfo = self.session._fixturemanager.getfixtureinfo(node=self, func=None, cls=None)
        self.fixturenames = self._fixtureinfo.names_closure
        self.funcargs: dict[str, object] = {}
        self._request = TopRequest(self, _ispytest=True)  # type: ignore[arg-type]

    @property
    def sae_id(self) -> str:
        """The SAE's unique id in its suite."""
        return self.entry.unique_id

    def setup(self) -> None:
        self._request._fillfixtures()
        self._outcome = get_runner(self.config).gate_outcome(self, self._request)

    def runtest(self) -> None:
        outcome = self._outcome
        if outcome.skip_reason is not None:
            # reported at the gate's YAML line, like a skip mark
            raise pytest.skip.Exception(outcome.skip_reason, _use_item_location=True)
        check = outcome.check
        assert check is not None
        self.user_properties.append(("value", check.result.value))
        self.user_properties.append(("bound", check.gate.describe(check.result.baseline_value)))
        if not check.passed:
            raise GateFailed(check.message_on(outcome.inputs), check.reading_on(outcome.inputs))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.gate.line
        return self.path, (line - 1 if line else None), f"{self.sae_id}::{self.gate.metric}"


READING = "saeval_reading"
"""The attribute of a gate failure's report that holds its reading (sent with the report from xdist workers)."""


def tidy_report(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """Make the short summary line of a gate failure or evaluation error its message, at the gate's YAML line.

    pytest would prefix the exception's type name and point at Python code; a reviewer wants
    ``FAILED ...::layer1-res-topk::l0 - [layer1-res-topk] l0 = 72.3, needs <= 32 (over by 40.3) — thresholds/demo.yaml:36``.
    A gate failure's report also keeps its reading (:data:`READING`) for :func:`fit_short_summary`.
    """
    excinfo = call.excinfo
    if excinfo is None or not isinstance(excinfo.value, (GateFailed, EvaluationError)):
        return
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is None:
        return
    lines = str(excinfo.value).splitlines() or [""]
    crash.message = lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")
    if isinstance(item, GateItem) and item.gate.line:
        crash.path = str(item.path)
        crash.lineno = item.gate.line
    reading = getattr(excinfo.value, "reading", None)
    if isinstance(item, GateItem) and reading:  # a marked test's node id does not name the SAE and metric
        setattr(report, READING, reading)


def fit_short_summary(reports: Iterable[Any], config: pytest.Config) -> None:
    """Where pytest cuts its short summary's lines to the terminal's width (off CI, below ``-vv``, or with
    ``--force-short-summary``), a gate failure's line that would be cut shows its reading instead:

    ``FAILED thresholds/demo.yaml::layer1-res-topk::explained_variance - 0.7812 [0.7770, 0...``

    The node id names the SAE and the metric, so the cut keeps the number. The failure's own section, JUnit
    XML and the outputs keep the whole message (JUnit read it when the test was reported, before this).
    """
    ci = any(os.environ.get(name) for name in ("CI", "BUILD_NUMBER"))  # pytest's own test for a CI run
    if (ci or config.option.verbose >= 2) and not getattr(config.option, "force_short_summary", False):
        return
    width = config.get_terminal_writer().fullwidth
    for report in reports:
        reading = getattr(report, READING, None)
        crash = getattr(report.longrepr, "reprcrash", None)
        if not reading or crash is None:
            continue
        line = f"FAILED {_shown_nodeid(config, report.nodeid)} - {crash.message}"
        if len(line) > width:
            crash.message = reading


def _shown_nodeid(config: pytest.Config, nodeid: str) -> str:
    """The node id as the short summary shows it: its file relative to the folder pytest was started in."""
    path, sep, rest = nodeid.partition("::")
    return os.path.relpath(config.rootpath / path, config.invocation_params.dir) + sep + rest
