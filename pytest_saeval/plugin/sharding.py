"""``pytest --saeval-shard K/N``: one shard of a session's gate tests, for CI matrices and job arrays.

After collection and deselection (``-k``, ``-m``, ``--deselect``), the selected gate tests are
partitioned by evaluation group (:func:`~pytest_saeval.run.shards.plan_shards`, the same partition as
``saeval run --shard``); the gate tests of the other shards' groups are deselected. A test marked with a
suite (its first ``saeval`` marker), or one that asks for the saeval fixtures of ``--saeval-suite``, runs
in the shard that evaluates that suite's group, so it shares that evaluation and its results are recorded
by the shard that owns them. Every other test -- including a marked test whose suite's group is not part
of the partition (no gate test of it is selected) -- runs in shard 1 only (``--saeval-shard-others
first``), in every shard (``all``) or in none (``none``). Under pytest-xdist every worker computes the
same partition from the same collection, and sends it to the controller, which records it next to the
outputs (:func:`~pytest_saeval.report.finish.finish`).

A shard records itself only when it ran everything it selected (:func:`complete`): after a collection
error or an early stop its outputs are written, but ``saeval merge`` does not take the folder for a shard.
A shard with nothing to do is a pass: pytest's exit code 5 (no tests collected) becomes 0, with a note,
as long as the session collected something (a session that collected nothing at all stays 5).
"""

from __future__ import annotations

import pytest

from pytest_saeval.errors import SaevalError
from pytest_saeval.plugin.items import GateItem
from pytest_saeval.plugin.marker import MarkerUsageError, marker_calls
from pytest_saeval.plugin.runner import Runner, get_runner
from pytest_saeval.report.shardfile import clear_shard_record
from pytest_saeval.run.plan import GroupKey, group_key
from pytest_saeval.run.shards import ShardPlan, plan_shards, suite_name
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.timings import load_timings

__all__ = ["FIXTURES", "complete", "exit_status", "select_shard"]

FIXTURES = frozenset({"saeval_model", "saeval_saes", "saeval_tokens", "saeval_results"})
"""The fixtures that serve a suite (a test asking for one without a marker gets ``--saeval-suite``'s)."""


def _suite_of(runner: Runner, item: pytest.Item) -> Suite | None:
    """The suite a test that is not a gate test evaluates: its first marker's, else ``--saeval-suite``'s when
    it asks for the saeval fixtures; ``None`` for an ordinary test (or a marker or suite that is wrong: the test
    itself reports that)."""
    try:
        calls = marker_calls(item)
        if calls:
            return runner.load_suite(calls[0].path)
        if runner.options.suite is not None and FIXTURES & set(getattr(item, "fixturenames", ())):
            return runner.load_suite(runner.options.suite)
    except (SaevalError, MarkerUsageError):
        pass
    return None


def _owners_by_key(plan: ShardPlan, suites: list[Suite], device: str | None) -> dict[GroupKey, int]:
    """The shard of each fused-pass group of the partition, by group key."""
    found: dict[GroupKey, int] = {}
    for suite in suites:
        owner = plan.owner(suite_name(suite.path))
        if owner is not None:
            found[group_key(suite, device)] = owner
    return found


def select_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the items of this shard (``--saeval-shard``), deselecting the rest; nothing without a shard."""
    runner = get_runner(config)
    options = runner.options
    if options.shard is None:
        return
    if options.output_dir is not None:  # until this shard has finished, its folder is not a shard
        try:
            clear_shard_record(options.output_dir)
        except OSError:
            pass  # the end of the run says what cannot be written there
    selection: dict[str, tuple[Suite, dict[str, set[str]]]] = {}
    for item in items:
        if isinstance(item, GateItem):
            _, saes = selection.setdefault(suite_name(item.suite.path), (item.suite, {}))
            saes.setdefault(item.sae_id, set()).add(item.gate.metric)
    plan = plan_shards(options.shard, [selection[name] for name in sorted(selection)], device=options.device,
                       timings=load_timings(runner.cache_folder))
    runner.shard_plan = plan
    keys = _owners_by_key(plan, [suite for suite, _ in selection.values()], options.device)
    others = {"first": options.shard.index == 1, "all": True, "none": False}[options.shard_others]
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        if isinstance(item, GateItem):
            mine = plan.owns_suite(suite_name(item.suite.path))
        else:
            suite = _suite_of(runner, item)
            owner = keys.get(group_key(suite, options.device)) if suite is not None else None
            mine = others if owner is None else owner == options.shard.index
        (keep if mine else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        runner.shard_deselected += len(drop)
        runner.ledger.sharded += sum(isinstance(item, GateItem) for item in drop)


def exit_status(session: pytest.Session) -> None:
    """A shard left empty by the partition exits 0, not 5 (no tests collected); a session that collected
    nothing at all stays 5."""
    runner = get_runner(session.config)
    if runner.shard_plan is not None and (runner.shard_plan.groups or runner.shard_deselected) \
            and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


def complete(session: pytest.Session) -> bool:
    """Whether the session ran everything it selected: no collection error, not stopped early (``-x``,
    ``--maxfail``, an interruption). Only a complete shard records itself for ``saeval merge``."""
    if session.shouldstop or session.shouldfail or session.exitstatus in (
            pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        return False
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    errors = getattr(reporter, "stats", {}).get("error", [])
    return not any(isinstance(report, pytest.CollectReport) for report in errors)
