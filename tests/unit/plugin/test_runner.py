"""The run's state in the plugin, through its public surface: suite files found and loaded once, gate items
planned into evaluation units, evaluation errors kept once, and what a worker sends read back on the
controller. (Evaluation itself: tests/integration/test_gate_outcomes.py, test_xdist.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.plugin.runner import RUNNER_KEY, Runner, get_runner
from pytest_saeval.run.shards import Shard, ShardPlan, WorkGroup
from tests.helpers import hand_run
from tests.unit.plugin.conftest import collected


def _runner(pytester: pytest.Pytester, *args: str) -> tuple[Runner, list[pytest.Item]]:
    session = collected(pytester, *args)
    return get_runner(session.config), list(session.items)


def test_the_runner_lives_in_the_config_stash(pytester: pytest.Pytester, project: Path) -> None:
    runner, items = _runner(pytester)
    assert items[0].config.stash[RUNNER_KEY] is runner
    assert not runner.is_worker and runner.worker_count == 1 and runner.unit_kind == "group"


def test_globbed_suite_files_and_display_paths(pytester: pytest.Pytester, project: Path) -> None:
    runner, _ = _runner(pytester)
    assert runner.globbed() == {project / "thresholds" / f"{n}.yaml" for n in "abc"}
    assert runner.display_path(project / "thresholds" / "a.yaml") == Path("thresholds/a.yaml")
    assert runner.display_path(Path("/elsewhere/x.yaml")) == Path("/elsewhere/x.yaml")


def test_a_suite_is_loaded_once_and_named_as_messages_show_it(pytester: pytest.Pytester, project: Path) -> None:
    runner, items = _runner(pytester)
    suite = runner.load_suite(project / "thresholds" / "a.yaml")
    assert runner.load_suite(project / "thresholds" / ".." / "thresholds" / "a.yaml") is suite
    assert items[0].suite is suite  # type: ignore[attr-defined]
    assert suite.path == Path("thresholds/a.yaml")


def test_the_cache_folder(pytester: pytest.Pytester, project: Path) -> None:
    assert _runner(pytester)[0].cache_folder == project / ".saeval-cache"
    assert _runner(pytester, "--saeval-cache-dir", "c")[0].cache_folder == project / "c"
    assert _runner(pytester, "--saeval-no-cache")[0].cache_folder is None


def test_planning_counts_the_selected_gates(pytester: pytest.Pytester, project: Path) -> None:
    runner, items = _runner(pytester)
    assert runner.ledger.selected == len(items) == 5
    assert runner.ledger.collected == 5
    deselected, _ = _runner(pytester, "-k", "x")
    assert deselected.ledger.selected == 2 and deselected.ledger.collected == 5


def test_selection_is_every_sae_or_one_entry_and_its_gates(pytester: pytest.Pytester, project: Path) -> None:
    runner, _ = _runner(pytester)
    a = project / "thresholds" / "a.yaml"
    assert runner.selection(a, None) == {a: None}
    assert runner.selection(a, "x") == {a: {"x": {"l0", "mse"}}}


def test_errors_are_kept_once_per_message(pytester: pytest.Pytester, project: Path) -> None:
    runner, _ = _runner(pytester)
    runner.record_error(ValueError("boom"))
    runner.record_error(ValueError("boom"))
    runner.record_error(KeyError("k"))
    assert runner.errors == ["ValueError: boom", "KeyError: 'k'"]


def test_what_a_worker_sends_the_controller_reads_back(pytester: pytest.Pytester, project: Path) -> None:
    worker, _ = _runner(pytester)
    worker.worker_id = "gw1"
    worker.evaluations = {"gw1": 3}
    worker.record_error(ValueError("boom"))
    plan = ShardPlan(Shard(1, 2), (WorkGroup("g", ("a.yaml",), (("a.yaml", "x", ("l0",)),), 1.0),), (1,))
    worker.shard_plan, worker.shard_deselected = plan, 4
    worker.runs.append(hand_run(project / "thresholds" / "a.yaml", {"x": {"l0": 2.0, "mse": 3.0}}))
    payload = worker.to_wire()
    controller, _ = _runner(pytester)
    controller.evaluations = {"gw1": 1}
    controller.add_remote(payload)
    controller.add_remote(payload)  # a second worker with the same message
    assert controller.evaluations == {"gw1": 1 + 3 + 3}
    assert controller.errors == ["ValueError: boom"]
    assert controller.shard_plan == plan and controller.shard_deselected == 4
    back = controller.runs[0]
    assert len(controller.runs) == 2 and back.suite.path.name == "a.yaml"
    assert [(c.sae_id, c.gate.metric, c.passed) for c in back.checks] == [("x", "l0", True), ("x", "mse", False)]
    controller.add_remote(None)  # a worker that sent nothing
    assert controller.evaluations == {"gw1": 7}
