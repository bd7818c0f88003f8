"""pytest glue for pytest-saeval: options, collection, fixtures, marker, summary, xdist.

Each hook hands off to a plain module: ``_collect`` (suite files as tests), ``_runner`` (per-run
state in ``config.stash``: what is selected, evaluated and reported), ``_marker`` (the ``saeval``
marker), ``_xdist`` (scheduling and devices under pytest-xdist). Imports nothing heavy at import
time: torch, TransformerLens and SAE Lens load when something is evaluated.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_saeval import _marker, _report, _xdist
from pytest_saeval._collect import SuiteFile, is_suite_file, tidy_report
from pytest_saeval._options import PluginOptions
from pytest_saeval._runner import RUNNER_KEY, Runner, get_runner

if TYPE_CHECKING:  # pragma: no cover
    from xdist.workermanage import WorkerController


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("saeval", "SAE quality gates (pytest-saeval)")
    group.addoption("--saeval-device", dest="saeval_device", default=None, metavar="DEVICE",
                    help="load every suite's model on DEVICE: auto, cpu, cuda or cuda:N (ini: saeval_device)")
    group.addoption("--saeval-output-dir", dest="saeval_output_dir", default=None, metavar="DIR",
                    help="write one JSON per SAE, all_eval_results.json and all_eval_results.csv to DIR "
                         "(ini: saeval_output_dir)")
    group.addoption("--saeval-update-baseline", dest="saeval_update_baseline", action="store_true", default=False,
                    help="rewrite each suite's baseline file from this run; gates still compare with the old "
                         "values, and a run with evaluation errors writes nothing")
    group.addoption("--saeval-suite", dest="saeval_suite", default=None, metavar="FILE",
                    help="the suite file served by the saeval_model, saeval_saes, saeval_tokens and "
                         "saeval_results fixtures (ini: saeval_suite)")
    group.addoption("--saeval-report", dest="saeval_report", default=None, metavar="PAGE",
                    help="write a self-contained HTML report (gate table and the SAE Lens evals plots) to PAGE "
                         "(ini: saeval_report)")
    group.addoption("--saeval-no-cache", dest="saeval_no_cache", action="store_true", default=False,
                    help="do not read or write the results and model-side caches (ini: saeval_cache = false)")
    group.addoption("--saeval-cache-dir", dest="saeval_cache_dir", default=None, metavar="DIR",
                    help="folder of the caches (ini: saeval_cache_dir)")
    parser.addini("saeval_thresholds", type="args", default=["thresholds/*.yaml"],
                  help="globs (relative to the rootdir) of suite files collected as tests")
    parser.addini("saeval_device", default="", help="default for --saeval-device")
    parser.addini("saeval_output_dir", default="", help="default for --saeval-output-dir (relative to the ini file)")
    parser.addini("saeval_report", default="", help="default for --saeval-report (relative to the ini file)")
    parser.addini("saeval_suite", default="", help="default for --saeval-suite (relative to the ini file)")
    parser.addini("saeval_cache", type="bool", default=True, help="read and write the results and model-side caches (default true)")
    parser.addini("saeval_cache_dir", default="", help="default for --saeval-cache-dir (relative to the ini file)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _marker.MARKER_HELP)
    config.stash[RUNNER_KEY] = Runner(config, PluginOptions.from_config(config))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SuiteFile | None:
    if is_suite_file(file_path, parent.session, get_runner(parent.config).globbed()):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _marker.check_collect_report(report)
    return report


def pytest_collection_finish(session: pytest.Session) -> None:
    get_runner(session.config).plan(session.items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield  # the test body; if it failed, its exception goes on and the gates are not checked
    _marker.after_call(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield
    _marker.after_teardown(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    tidy_report(item, call, report)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    runner = get_runner(session.config)
    if runner.is_worker:
        session.config.workeroutput["saeval"] = runner.to_wire()  # type: ignore[attr-defined]
    elif not _report.finish(runner) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = _report.summary_lines(get_runner(config))
    if lines:
        terminalreporter.write_sep("=", "saeval")
        for line in lines:
            terminalreporter.write_line(line)


# -- fixtures: the --saeval-suite suite's objects; a conftest may override them ---------------------
@pytest.fixture(scope="session")
def saeval_model(request: pytest.FixtureRequest) -> Any:
    """The model of the ``--saeval-suite`` suite (override it in a conftest to evaluate another)."""
    return get_runner(request.config).fixture_model()


@pytest.fixture(scope="session")
def saeval_tokens(request: pytest.FixtureRequest, saeval_model: Any) -> Any:
    """The token rows ``[n, context_size]`` of the ``--saeval-suite`` suite."""
    return get_runner(request.config).fixture_tokens(saeval_model)


@pytest.fixture(scope="session")
def saeval_saes(request: pytest.FixtureRequest, saeval_model: Any) -> Any:
    """The SAEs of the ``--saeval-suite`` suite by id, on the model's device."""
    return get_runner(request.config).fixture_saes(saeval_model)


@pytest.fixture(scope="session")
def saeval_results(request: pytest.FixtureRequest, saeval_model: Any, saeval_saes: Any, saeval_tokens: Any) -> Any:
    """``{sae id: SAEResult}`` for the ``--saeval-suite`` suite on the three fixtures above."""
    return get_runner(request.config).fixture_results(saeval_model, saeval_saes, saeval_tokens)


# -- pytest-xdist (these hooks exist only when it is installed) ------------------------------------
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return _xdist.make_scheduler(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: WorkerController) -> None:
    _xdist.configure_node(node)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: WorkerController, error: object) -> None:
    get_runner(node.config).add_remote(getattr(node, "workeroutput", {}).get("saeval"))
