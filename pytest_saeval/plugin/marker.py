"""``@pytest.mark.saeval("thresholds/x.yaml", sae=None)``: check a suite's gates after a test passes.

The path is relative to the rootdir. ``sae`` picks one SAE id; without it every SAE of the file
is checked. Arguments, the suite file and the SAE id are checked when the test's file is collected:
a bad call is a collection error of that file (under pytest-xdist too). The gates are evaluated after
the test body passed, and every failing gate's message fails the test. A suite that cannot be
evaluated is reported as an error of the test (at teardown), never as a gate failure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_saeval.errors import SaevalError
from pytest_saeval.plugin.items import GateItem
from pytest_saeval.plugin.outcomes import EvaluationError, GateFailed
from pytest_saeval.plugin.runner import get_runner

__all__ = ["MARKER_HELP", "MarkerCall", "MarkerUsageError", "after_call", "after_teardown", "check_collect_report",
           "marker_calls"]

MARKER_HELP = (
    "saeval(path, sae=None): after the test passes, check the gates of that suite file "
    "(path relative to the rootdir; sae: one SAE id, default all)"
)
_USAGE = "use @pytest.mark.saeval('thresholds/<name>.yaml') or @pytest.mark.saeval('thresholds/<name>.yaml', sae='<id>')"
_ERROR_KEY = pytest.StashKey[SaevalError]()


class MarkerUsageError(Exception):
    """A ``saeval`` marker that cannot be used as written; the message names the test and the fix."""


@dataclass(frozen=True)
class MarkerCall:
    """One ``saeval`` marker on a test, checked."""

    path: Path
    """The suite file (absolute)."""
    sae: str | None = None
    """One SAE id, or ``None`` for every SAE of the suite."""


def _parse(item: pytest.Item, mark: pytest.Mark) -> MarkerCall:
    where = f"{item.nodeid}: @pytest.mark.saeval"
    unknown = sorted(set(mark.kwargs) - {"sae"})
    if unknown:
        raise MarkerUsageError(f"{where} got unknown argument{'s' if len(unknown) > 1 else ''} "
                                f"{', '.join(unknown)}. Fix: {_USAGE}")
    if len(mark.args) != 1 or not isinstance(mark.args[0], (str, os.PathLike)):
        raise MarkerUsageError(f"{where} needs exactly one suite file path, got {len(mark.args)} "
                                f"positional argument(s). Fix: {_USAGE}")
    sae = mark.kwargs.get("sae")
    if sae is not None and not isinstance(sae, str):
        raise MarkerUsageError(f"{where}: sae must be an SAE id string, got {sae!r}. Fix: {_USAGE}")
    return MarkerCall(Path(item.config.rootpath, os.fspath(mark.args[0])), sae)


def marker_calls(item: pytest.Item) -> list[MarkerCall]:
    """The ``saeval`` markers of a Python test, parsed (gate items have none)."""
    if isinstance(item, GateItem):
        return []
    return [_parse(item, mark) for mark in item.iter_markers("saeval")]


def _check(item: pytest.Item) -> None:
    for call in marker_calls(item):
        runner = get_runner(item.config)
        if not call.path.is_file():
            raise MarkerUsageError(
                f"{item.nodeid}: @pytest.mark.saeval: suite file {runner.display_path(call.path)} not found. "
                f"Fix: give the path relative to the rootdir ({item.config.rootpath})"
            )
        try:
            suite = runner.load_suite(call.path)
            if call.sae is not None:
                suite.sae(call.sae)
        except SaevalError as e:
            raise MarkerUsageError(f"{item.nodeid}: @pytest.mark.saeval: {e}") from e


def check_collect_report(report: pytest.CollectReport) -> None:
    """Turn the collection of a file whose tests misuse the marker into a collection error."""
    if report.outcome != "passed":
        return
    problems: list[str] = []
    for node in report.result:
        if isinstance(node, pytest.Item):
            try:
                _check(node)
            except MarkerUsageError as e:
                problems.append(str(e))
    if problems:
        report.outcome = "failed"
        report.longrepr = "\n".join(problems)
        report.result = []


def after_call(item: pytest.Item) -> None:
    """Evaluate the test's markers after its body passed; raise the failing gates' messages."""

    calls = marker_calls(item)
    if not calls:
        return
    runner = get_runner(item.config)
    messages: list[str] = []
    for call in calls:
        try:
            messages += runner.marker_failures(item, item._request, call.path, call.sae)  # type: ignore[attr-defined]
        except SaevalError as e:
            item.stash[_ERROR_KEY] = e
            return
    if messages:
        raise GateFailed("\n".join(messages))


def after_teardown(item: pytest.Item) -> None:
    """Report a marker's evaluation error as an error of the test."""
    error = item.stash.get(_ERROR_KEY, None)
    if error is not None:
        raise EvaluationError(str(error))
