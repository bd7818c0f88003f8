"""What the four fixtures serve: a suite's model, tokens, SAEs and results — the suite of the test's
``saeval`` marker (narrowed to its ``sae=``), else the ``--saeval-suite`` suite — the very objects and
evaluation its gate tests use. A conftest may override ``saeval_model``, ``saeval_saes`` or
``saeval_tokens``: results on overridden inputs are then an evaluation of their own."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_saeval.errors import SaevalError
from pytest_saeval.plugin.marker import marker_calls
from pytest_saeval.plugin.overrides import overridden, override_values
from pytest_saeval.plugin.runner import Runner
from pytest_saeval.run.plan import Overrides, entries_of
from pytest_saeval.run.quiet import quiet_libraries
from pytest_saeval.spec.suite import Suite

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.engine.protocols import SAELike
    from pytest_saeval.engine.results import SAEResult

__all__ = ["fixture_model", "fixture_results", "fixture_saes", "fixture_suite", "fixture_tokens"]

_T = TypeVar("_T")


def fixture_suite(runner: Runner, request: pytest.FixtureRequest) -> tuple[Suite, str | None]:
    """The suite the requesting test's fixtures serve, and the SAE entry its marker names (if any)."""
    item = request.node
    calls = marker_calls(item) if isinstance(item, pytest.Item) else []
    path = calls[0].path if calls else runner.options.suite
    if path is None:
        pytest.fail(
            "the saeval fixtures need a suite file. Fix: mark the test with @pytest.mark.saeval('thresholds/<name>.yaml'), "
            "pass --saeval-suite thresholds/<name>.yaml or set saeval_suite in the ini file",
            pytrace=False,
        )
    try:
        return runner.load_suite(path), calls[0].sae if calls else None
    except SaevalError as e:
        message = str(e)
    pytest.fail(message, pytrace=False)  # outside the except: the failure is one line, not a chain of three


def _loaded(load: Callable[[], _T]) -> _T:
    """What ``load`` loads, with the loading libraries quiet; a load error fails the test in one line."""
    try:
        with quiet_libraries():
            return load()
    except SaevalError as e:
        message = str(e)
    pytest.fail(message, pytrace=False)  # outside the except: one line


def fixture_model(runner: Runner, request: pytest.FixtureRequest) -> Any:
    """The suite's model (the same object its gates are evaluated on)."""
    suite, _ = fixture_suite(runner, request)
    return _loaded(lambda: runner.session.loader.model(suite, Overrides()))


def fixture_tokens(runner: Runner, request: pytest.FixtureRequest, model: Any) -> Any:
    """The suite's token rows, checked against ``model``'s vocabulary."""
    suite, _ = fixture_suite(runner, request)
    return _loaded(lambda: runner.session.loader.tokens(suite, model, Overrides()))


def fixture_saes(runner: Runner, request: pytest.FixtureRequest, model: Any) -> dict[str, SAELike]:
    """The suite's SAEs by unique id (only the marker's entry when it names one), on ``model``'s device."""
    from pytest_saeval.run.evaluation import device_of

    suite, sae = fixture_suite(runner, request)
    entries = [e for e in entries_of(suite) if sae is None or e.spec.id == sae]
    return _loaded(lambda: runner.session.loader.saes(suite, entries, device_of(model), Overrides()))


def fixture_results(runner: Runner, request: pytest.FixtureRequest, model: Any, saes: Mapping[str, SAELike],
                    tokens: Any) -> dict[str, SAEResult]:
    """Results of the suite's SAEs (only the marker's entry when it names one) on these objects.

    Without a conftest override these are the suite's own inputs: the gate tests' evaluation, reused.
    """
    suite, sae = fixture_suite(runner, request)
    names = [name for name, _ in overridden(request.node)]
    overrides = override_values(request, names) if names else None
    try:
        runs = runner.evaluate(runner.selection(Path(suite.path), sae), overrides)
    except SaevalError as e:
        runner.record_error(e)
        message = str(e)
    else:
        wanted = set(saes)
        return {uid: result for run in runs for uid, result in run.results.items() if uid in wanted}
    pytest.fail(message, pytrace=False)  # outside the except: one line
