"""``--saeval-shard``: the gate items of other shards' groups deselected (a group never split), marked tests
with their suite's group, other tests per ``--saeval-shard-others``; an emptied shard exits 0."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_saeval.plugin.runner import get_runner
from pytest_saeval.plugin.sharding import exit_status, select_shard
from tests.unit.plugin.conftest import collect, collected

TESTS = ("import pytest\n\n@pytest.mark.saeval('thresholds/c.yaml')\ndef test_marked_c():\n    pass\n\n"
         "def test_plain():\n    pass\n")


def _shard(pytester: pytest.Pytester, k: int, *args: str) -> list[str]:
    pytester.makepyfile(test_more=TESTS)
    items = collect(pytester, "--saeval-shard", f"{k}/2", *args)
    return [i.nodeid for i in items]


def test_the_two_shards_split_the_groups_and_keep_each_whole(pytester: pytest.Pytester, project: Path) -> None:
    first, second = _shard(pytester, 1), _shard(pytester, 2)
    gates = [n for n in first + second if ".yaml::" in n]
    assert sorted(gates) == sorted(["thresholds/a.yaml::x::l0", "thresholds/a.yaml::x::mse", "thresholds/a.yaml::y::l0",
                                    "thresholds/b.yaml::z::l0", "thresholds/c.yaml::w::l0"])  # each in one shard
    owner_a = 1 if "thresholds/a.yaml::x::l0" in first else 2
    owned = first if owner_a == 1 else second
    assert "thresholds/b.yaml::z::l0" in owned  # a.yaml and b.yaml share model A: one group
    other = second if owner_a == 1 else first
    assert "thresholds/c.yaml::w::l0" in other
    assert "test_more.py::test_marked_c" in other  # with its suite's group
    assert "test_more.py::test_plain" in first and "test_more.py::test_plain" not in second  # others: shard 1


@pytest.mark.parametrize(("others", "in_first", "in_second"), [("all", True, True), ("none", False, False)])
def test_other_tests_follow_shard_others(pytester: pytest.Pytester, project: Path, others: str, in_first: bool,
                                         in_second: bool) -> None:
    assert ("test_more.py::test_plain" in _shard(pytester, 1, "--saeval-shard-others", others)) is in_first
    assert ("test_more.py::test_plain" in _shard(pytester, 2, "--saeval-shard-others", others)) is in_second


def test_without_a_shard_nothing_is_deselected(pytester: pytest.Pytester, project: Path) -> None:
    items = collect(pytester)
    config = items[0].config
    before = list(items)
    select_shard(config, items)
    assert items == before and get_runner(config).shard_plan is None


def test_the_runner_keeps_the_plan_and_counts_what_was_deselected(pytester: pytest.Pytester, project: Path) -> None:
    items = collect(pytester, "--saeval-shard", "1/3")
    runner = get_runner(items[0].config)
    assert runner.shard_plan is not None and str(runner.shard_plan.shard) == "1/3"
    assert len(runner.shard_plan.groups) == 2
    assert runner.shard_deselected == 5 - len(items) and runner.ledger.sharded == runner.shard_deselected


def test_an_emptied_shard_exits_zero_but_an_empty_session_stays_five(pytester: pytest.Pytester, project: Path) -> None:
    emptied = collected(pytester, "--saeval-shard", "3/3")  # two groups, three shards: nothing left here
    assert emptied.items == []
    config = emptied.config
    session = SimpleNamespace(config=config, exitstatus=pytest.ExitCode.NO_TESTS_COLLECTED)
    exit_status(session)  # type: ignore[arg-type]
    assert session.exitstatus == pytest.ExitCode.OK
    get_runner(config).shard_plan = None  # no partition: pytest's own exit code stays
    session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
    exit_status(session)  # type: ignore[arg-type]
    assert session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED
