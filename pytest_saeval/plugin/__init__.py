"""pytest entry point of pytest-saeval (``pytest11: saeval``): hooks and fixtures only.

Each hook is a few lines that hand off to a plain module: :mod:`.options` (the ``--saeval-*``
options), :mod:`.items` (suite files as tests), :mod:`.runner` (per-run state in ``config.stash``:
what is selected, evaluated and reported), :mod:`.marker` (the ``saeval`` marker), :mod:`.xdist`
(scheduling under pytest-xdist), :mod:`.sharding` (``--saeval-shard``). Imports nothing heavy at import
time: torch, TransformerLens and SAE Lens load when something is evaluated.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_saeval.plugin import fixtures, marker, sharding, xdist
from pytest_saeval.plugin.items import (
    GateItem,
    SuiteFile,
    add_unreadable_suites,
    fit_short_summary,
    is_suite_file,
    tidy_report,
)
from pytest_saeval.plugin.options import PluginOptions, add_options
from pytest_saeval.plugin.runner import RUNNER_KEY, Runner, get_runner

if TYPE_CHECKING:  # pragma: no cover
    from xdist.workermanage import WorkerController

    from pytest_saeval.engine.protocols import SAELike
    from pytest_saeval.engine.results import SAEResult


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", marker.MARKER_HELP)
    config.stash[RUNNER_KEY] = Runner(config, PluginOptions.from_config(config))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SuiteFile | None:
    if is_suite_file(file_path, parent.session, get_runner(parent.config).globbed()):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    marker.check_collect_report(report)
    add_unreadable_suites(collector, report)
    return report


@pytest.hookimpl(trylast=True)  # after -k, -m and --deselect: a shard partitions what they selected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    sharding.select_shard(config, items)
    xdist.colocate_marked(config, items)  # of the shard's items


def pytest_collection_finish(session: pytest.Session) -> None:
    get_runner(session.config).plan(item for item in session.items if isinstance(item, GateItem))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield  # the test body; if it failed, its exception goes on and the gates are not checked
    marker.after_call(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield
    marker.after_teardown(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    tidy_report(item, call, report)
    if isinstance(item, GateItem):
        get_runner(item.config).ledger.note(item.path, item.sae_id, item.gate.metric, report.when, report.passed)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    xdist.remove_marks(session.config)
    runner = get_runner(session.config)
    if runner.is_worker:
        session.config.workeroutput["saeval"] = runner.to_wire()  # type: ignore[attr-defined]
        return
    finished = runner.finish(complete=sharding.complete(session))
    sharding.exit_status(session)
    if not finished and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    fit_short_summary(terminalreporter.stats.get("failed", ()), config)  # pytest prints that summary after this
    lines = get_runner(config).summary()
    if lines:
        terminalreporter.write_sep("=", "saeval")
        for line in lines:
            terminalreporter.write_line(line)


# -- fixtures: the marker's or --saeval-suite's suite; a conftest may override them -------------------
@pytest.fixture
def saeval_model(request: pytest.FixtureRequest) -> Any:
    """The model of the test's ``saeval`` marker suite (else ``--saeval-suite``); override it in a conftest
    to evaluate another."""
    return fixtures.fixture_model(get_runner(request.config), request)


@pytest.fixture
def saeval_tokens(request: pytest.FixtureRequest, saeval_model: Any) -> Any:
    """The suite's token rows ``[n, context_size]``."""
    return fixtures.fixture_tokens(get_runner(request.config), request, saeval_model)


@pytest.fixture
def saeval_saes(request: pytest.FixtureRequest, saeval_model: Any) -> dict[str, SAELike]:
    """The suite's SAEs by id, on the model's device (only the marker's ``sae=`` when it names one)."""
    return fixtures.fixture_saes(get_runner(request.config), request, saeval_model)


@pytest.fixture
def saeval_results(request: pytest.FixtureRequest, saeval_model: Any, saeval_saes: dict[str, SAELike],
                   saeval_tokens: Any) -> dict[str, SAEResult]:
    """``{sae id: SAEResult}`` for those SAEs on the three fixtures above (the gate tests' evaluation when
    nothing is overridden)."""
    return fixtures.fixture_results(get_runner(request.config), request, saeval_model, saeval_saes, saeval_tokens)


# -- pytest-xdist (these hooks exist only when it is installed) ------------------------------------
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return xdist.make_scheduler(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: WorkerController) -> None:
    xdist.configure_node(node)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: WorkerController, error: object) -> None:
    get_runner(node.config).add_remote(getattr(node, "workeroutput", {}).get("saeval"))
