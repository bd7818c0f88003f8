"""What the four session fixtures serve: the ``--saeval-suite`` suite's model, tokens, SAEs and results,
the very objects (and evaluation) its gate tests use."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_saeval.errors import SaevalError
from pytest_saeval.plugin.runner import Runner
from pytest_saeval.run.plan import Overrides, entries_of
from pytest_saeval.spec.suite import Suite

__all__ = ["fixture_model", "fixture_results", "fixture_saes", "fixture_suite", "fixture_tokens"]


def fixture_suite(runner: Runner) -> Suite:
    """The suite named by ``--saeval-suite`` / ``saeval_suite``."""
    if runner.options.suite is None:
        pytest.fail(
            "the saeval fixtures need a suite file. Fix: pass --saeval-suite thresholds/<name>.yaml "
            "or set saeval_suite in the ini file",
            pytrace=False,
        )
    try:
        return runner.load_suite(runner.options.suite)
    except SaevalError as e:
        pytest.fail(str(e), pytrace=False)


def fixture_model(runner: Runner) -> Any:
    """The fixture suite's model (the same object its gates are evaluated on)."""
    suite = fixture_suite(runner)
    try:
        return runner.session.loader.model(suite, Overrides())
    except SaevalError as e:
        pytest.fail(str(e), pytrace=False)


def fixture_tokens(runner: Runner, model: Any) -> Any:
    """The fixture suite's token rows, checked against ``model``'s vocabulary."""
    suite = fixture_suite(runner)
    try:
        return runner.session.loader.tokens(suite, model, Overrides())
    except SaevalError as e:
        pytest.fail(str(e), pytrace=False)


def fixture_saes(runner: Runner, model: Any) -> dict[str, Any]:
    """The fixture suite's SAEs by unique id, on ``model``'s device."""
    from pytest_saeval.run.evaluation import device_of

    suite = fixture_suite(runner)
    try:
        return runner.session.loader.saes(suite, entries_of(suite), device_of(model), Overrides())
    except SaevalError as e:
        pytest.fail(str(e), pytrace=False)


def fixture_results(runner: Runner, model: Any, saes: Mapping[str, Any], tokens: Any) -> dict[str, Any]:
    """Results of every SAE of the fixture suite on these objects (kept results are reused)."""
    suite = fixture_suite(runner)
    try:
        runs = runner.evaluate({Path(os.path.abspath(suite.path)): None}, Overrides(model=model, saes=saes, tokens=tokens))
    except SaevalError as e:
        runner.record_error(e)
        pytest.fail(str(e), pytrace=False)
    return dict(runs[0].results) if runs else {}
