"""The Markdown summary: failures first, values with intervals, headroom, the GitHub step summary."""

from __future__ import annotations

import math
from pathlib import Path

from pytest_saeval.report.markdown import (
    GITHUB_SUMMARY_LIMIT,
    append_github_step_summary,
    markdown_summary,
)
from pytest_saeval.report.rows import format_headroom, gate_rows
from pytest_saeval.run.checks import GateCheck, check_suite
from pytest_saeval.run.outcome import EvalConfig, SuiteRun
from pytest_saeval.run.plan import entries_of
from pytest_saeval.spec.loader import load_suite
from pytest_saeval.spec.verdict import check_gate
from tests.helpers import demo_suite_file

SUITE = """\
model:
  path: ../model
data:
  tokens: ../tokens.npy
saes:
  - id: layer1-topk
    path: ../saes/a
    gates:
      explained_variance: ">= 0.80"
      l0: [">= 10", "<= 60"]
  - id: layer2-relu
    path: ../saes/b
    gates:
      explained_variance: ">= 0.80"
      kl_div_score: ">= 0.95"
"""


EVAL_CFG = EvalConfig(suite="demo.yaml", dataset="tokens.npy", context_size=8, batch_size_prompts=4,
                      n_eval_reconstruction_batches=1, n_eval_sparsity_variance_batches=1,
                      exclude_special_tokens=True, library_version="x", saeval_version="y")


class _Result:
    """Just what the report reads from an engine result."""

    def __init__(self, metrics):
        self.metrics = metrics
        self.feature_metrics = {}


def _runs(tmp_path: Path, a: dict, b: dict, intervals: dict | None = None) -> list[SuiteRun]:
    suite = load_suite(demo_suite_file(tmp_path, SUITE))
    entries = entries_of(suite)
    results = {"layer1-topk": _Result(a), "layer2-relu": _Result(b)}
    checks, _ = check_suite(suite, entries, results, None, intervals or {})
    return [SuiteRun(suite=suite, entries=entries, results=results, checks=checks, eval_cfg=EVAL_CFG,
                     intervals=dict(intervals or {}))]


GOOD = {"explained_variance": 0.85, "l0": 32.0, "kl_div_score": 0.97, "frac_alive": 1.0}
BAD = {"explained_variance": 0.7812, "l0": 32.0, "kl_div_score": 0.97, "frac_alive": 1.0}


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and "`" in line and "<" not in line[:3]]


def test_failures_come_first_with_value_interval_bound_headroom_and_place(tmp_path):
    runs = _runs(tmp_path, GOOD, BAD, {"layer2-relu": {"explained_variance": (0.7770, 0.7853)}})
    text = markdown_summary(runs, details=False)
    assert text.startswith("## saeval: ❌ 1 of 4 gates failed (2 SAEs)\n")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| Result | SAE | Metric | Value | 95% interval | Bound | Headroom | Where |"
    body = rows[1:]
    assert len(body) == 4
    where = f"{tmp_path / 'thresholds' / 'demo.yaml'}:14"
    assert body[0] == (f"| ❌ FAIL | `layer2-relu` | `explained_variance` | 0.7812 | [0.7770, 0.7853] | >= 0.80 "
                       f"| -0.0188 | `{where}` |")
    assert [r.split(" | ")[0] for r in body[1:]] == ["| ✅ pass"] * 3
    assert "| `l0` | 32 |  | >= 10 and <= 60 | +22 |" in body[2]
    assert "Intervals: 95% percentile bootstrap over sequences." in text


def test_all_passing_headline_and_no_interval_note(tmp_path):
    text = markdown_summary(_runs(tmp_path, GOOD, GOOD), details=False)
    assert text.startswith("## saeval: ✅ all 4 gates passed (2 SAEs)\n")
    assert "Intervals:" not in text


def test_the_interval_a_gate_was_checked_with_wins(tmp_path):
    runs = _runs(tmp_path, GOOD, GOOD, {"layer1-topk": {"explained_variance": (0.0, 1.0)},
                                        "layer2-relu": {"kl_div_score": (0.9, 1.0)}})
    run = runs[0]
    c = run.checks[0]
    checked = GateCheck(c.suite_path, c.sae_id, c.gate, check_gate(c.gate, 0.85, interval=(0.84, 0.86)))
    run.checks[0] = checked
    rows = gate_rows(runs)
    assert rows[0].interval == (0.84, 0.86)
    # a gate checked without one shows the run's own interval of its metric
    assert rows[3].interval == (0.9, 1.0)


def test_a_value_just_below_its_bound_never_reads_as_the_bound(tmp_path):
    runs = _runs(tmp_path, {**GOOD, "explained_variance": 0.79996}, GOOD)
    text = markdown_summary(runs, details=False)
    assert "| 0.79996 |" in text
    assert format_headroom(-4e-05) == "-0.00004000"


def test_nan_values_fail_and_show_as_nan(tmp_path):
    text = markdown_summary(_runs(tmp_path, {**GOOD, "l0": math.nan}, GOOD), details=False)
    fail = _table_lines(text)[0]
    assert fail.startswith("| ❌ FAIL | `layer1-topk` | `l0` | NaN |  | >= 10 and <= 60 |  |")


def test_details_list_every_metric_with_its_direction_and_interval(tmp_path):
    runs = _runs(tmp_path, GOOD, BAD, {"layer1-topk": {"explained_variance": (0.84, 0.86), "frac_alive": (0.0, 1.0)}})
    text = markdown_summary(runs)
    assert "<details><summary>All metrics of <code>layer1-topk</code>" in text
    assert "| `explained_variance` | 0.8500 | [0.8400, 0.8600] | ↑ |" in text
    assert "| `l0` | 32 |  |  |" in text
    # frac_alive has no bootstrap interval: an interval given for it is not shown
    assert "| `frac_alive` | 1 |  | ↑ |" in text
    assert text.count("<details>") == 2 and text.count("</details>") == 2


def test_no_gates(tmp_path):
    runs = _runs(tmp_path, GOOD, GOOD)
    runs[0].checks.clear()
    assert markdown_summary(runs, details=False) == "## saeval: no gates checked (2 SAEs evaluated)\n"


def test_github_step_summary_appends_only_when_set(tmp_path):
    target = tmp_path / "step_summary.md"
    target.write_text("earlier step\n")
    assert append_github_step_summary("x", environ={}) is None
    assert append_github_step_summary("x", environ={"GITHUB_STEP_SUMMARY": " "}) is None
    assert append_github_step_summary("## one", environ={"GITHUB_STEP_SUMMARY": str(target)}) == target
    append_github_step_summary("## two\n", environ={"GITHUB_STEP_SUMMARY": str(target)})
    assert target.read_text() == "earlier step\n## one\n## two\n"


def test_github_step_summary_reads_the_environment(tmp_path, monkeypatch):
    target = tmp_path / "s.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert append_github_step_summary("hello") == target
    assert target.read_text() == "hello\n"


def test_github_step_summary_is_cut_at_the_limit(tmp_path):
    target = tmp_path / "s.md"
    text = "".join(f"| row {i} | ✅ |\n" for i in range(80_000))
    append_github_step_summary(text, environ={"GITHUB_STEP_SUMMARY": str(target)})
    data = target.read_bytes()
    assert len(data) <= GITHUB_SUMMARY_LIMIT
    assert data.decode("utf-8").endswith("_(summary cut at GitHub's 1 MiB limit; see the written report)_\n")
    assert b"| row 0 |" in data


def test_intervals_carried_by_the_run_are_used(tmp_path):
    runs = _runs(tmp_path, GOOD, BAD, {"layer2-relu": {"explained_variance": (0.7770, 0.7853), "l0": (math.nan, math.nan)}})
    text = markdown_summary(runs)
    assert "| 0.7812 | [0.7770, 0.7853] |" in text


def test_gates_left_unchecked_are_counted_in_the_headline_and_listed(tmp_path: Path) -> None:
    """summary.md (and so the step summary) says how many gates were left unchecked and why, as the terminal does."""
    from tests.helpers import hand_run

    path = tmp_path / "demo.yaml"
    path.write_text(SUITE.replace('kl_div_score: ">= 0.95"', 'kl_div_score: ">= baseline - 0.01"')
                    .replace("saes:", "baseline: b.json\nsaes:"))
    run = hand_run(path, {"layer1-topk": {"explained_variance": 0.9, "l0": 20.0},
                          "layer2-relu": {"explained_variance": 0.9, "kl_div_score": 0.99}}, recording=True)
    text = markdown_summary([run], details=False)
    assert text.splitlines()[0] == "## saeval: ✅ all 3 gates passed, 1 unchecked (2 SAEs)"
    assert ("- [layer2-relu] kl_div_score >= baseline - 0.01: the baseline has no value yet; this run records it "
            f"— {path}:16") in text.splitlines()
