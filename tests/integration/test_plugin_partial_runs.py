"""pytest stopped early or narrowed: the saeval summary, outputs and baselines cover only the gates that ran,
and say how many were deselected or not run (``-x``, ``--maxfail``, ``-k``, a keyboard interrupt, under xdist too)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.integration.plugin_helpers import Assets, saeval_section

# forced: a's l0 fails on purpose, and what is recorded must still cover only the gates that ran
BASE = ("-p", "no:cacheprovider", "--saeval-no-cache", "--saeval-output-dir", "out", "--saeval-update-baseline-force")


def _project(pytester: pytest.Pytester, assets: Assets) -> None:
    """Two SAEs with two gates each; the first gate fails (l0 is never negative)."""
    saes = (f"  - id: a\n    path: {assets.sae0}\n    gates:\n      l0: '< 0'\n      l1: '>= 0'\n"
            f"  - id: b\n    path: {assets.sae1}\n    gates:\n      l0: '>= 0'\n      l1: '>= 0'\n")
    pytester.makefile(".yaml", **{"thresholds/s": assets.model_block() + assets.data_block() +
                                  "baseline: base.json\nsaes:\n" + saes})


def _rows(section: str) -> list[tuple[str, str, str]]:
    """``(sae, metric, result)`` of the summary tables."""
    rows = []
    for line in section.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[-1] in ("PASS", "FAIL") and parts[0] in ("a", "b"):
            rows.append((parts[0], parts[1], parts[-1]))
    return rows


def _written(root: Path) -> tuple[dict[str, list[str]], dict[str, object]]:
    records = json.loads((root / "out" / "all_eval_results.json").read_text())
    gates = {r["unique_id"]: [g["metric"] for g in r["gates"]] for r in records}
    baseline = json.loads((root / "thresholds" / "base.json").read_text())["saes"]
    return gates, baseline


@pytest.mark.parametrize("stop", [["-x"], ["--maxfail=1"]], ids=["x", "maxfail"])
def test_an_early_stop_reports_only_the_gate_that_ran(pytester: pytest.Pytester, assets: Assets, stop: list[str]) -> None:
    _project(pytester, assets)
    result = pytester.runpytest(*BASE, *stop)
    result.assert_outcomes(failed=1)
    section = saeval_section(result.stdout.str())
    assert _rows(section) == [("a", "l0", "FAIL")]
    assert ("4 gates collected: 3 not run (pytest stopped early: -x, --maxfail, a collection error or an interruption); "
            "the summary, outputs and baselines cover the 1 that ran") in section
    gates, baseline = _written(pytester.path)
    assert gates == {"a": ["l0"]}  # b was evaluated with a (one unit) but none of its gates ran
    assert list(baseline) == ["a"]
    assert "1 passed, 1 failed" not in section


def test_collect_only_runs_writes_and_summarises_nothing(pytester: pytest.Pytester, assets: Assets) -> None:
    _project(pytester, assets)
    (pytester.path / "out").mkdir()
    (pytester.path / "out" / "all_eval_results.json").write_text("[]\n# an earlier run's\n")
    result = pytester.runpytest(*BASE, "--collect-only")
    assert result.ret == 0
    assert "not run" not in result.stdout.str() and not re.search(r"^=+ saeval =+$", result.stdout.str(), re.M)
    assert (pytester.path / "out" / "all_eval_results.json").read_text() == "[]\n# an earlier run's\n"
    assert not (pytester.path / "thresholds" / "base.json").exists()


def test_deselected_gates_are_counted_and_left_out(pytester: pytest.Pytester, assets: Assets) -> None:
    _project(pytester, assets)
    result = pytester.runpytest(*BASE, "-k", "b and l0")
    result.assert_outcomes(passed=1, deselected=3)
    section = saeval_section(result.stdout.str())
    assert _rows(section) == [("b", "l0", "PASS")]
    assert "4 gates collected: 3 deselected (-k, -m or deselection); the summary, outputs and baselines cover the 1 " \
           "that ran" in section
    assert _written(pytester.path)[0] == {"b": ["l0"]}


def test_a_keyboard_interrupt_reports_what_ran_before_it(pytester: pytest.Pytester, assets: Assets) -> None:
    _project(pytester, assets)
    pytester.makeconftest(
        "import pytest\n\n\n"
        "@pytest.hookimpl(tryfirst=True)\n"
        "def pytest_runtest_call(item):\n"
        "    if item.nodeid.endswith('::b::l0'):\n"
        "        raise KeyboardInterrupt\n"
    )
    result = pytester.runpytest(*BASE, no_reraise_ctrlc=True)  # the interrupt stays inside that run
    assert result.ret == pytest.ExitCode.INTERRUPTED
    section = saeval_section(result.stdout.str())
    assert _rows(section) == [("a", "l0", "FAIL"), ("a", "l1", "PASS")]
    assert "2 not run" in section and "cover the 2 that ran" in section
    gates, baseline = _written(pytester.path)
    assert gates == {"a": ["l0", "l1"]} and list(baseline) == ["a"]


def test_under_xdist_the_summary_matches_the_reports(pytester: pytest.Pytester, assets: Assets) -> None:
    _project(pytester, assets)
    result = pytester.runpytest_subprocess(*BASE, "-n", "2", "-x")
    outcomes = result.parseoutcomes()
    ran = outcomes.get("passed", 0) + outcomes.get("failed", 0)
    section = saeval_section(result.stdout.str())
    assert ("a", "l0", "FAIL") in _rows(section) and len(_rows(section)) == ran
    gates, _ = _written(pytester.path)
    assert sum(len(v) for v in gates.values()) == ran
    if ran < 4:
        assert f"{4 - ran} not run" in section
