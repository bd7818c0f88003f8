"""The end of a run, for the command and the plugin alike: the outputs, the HTML report, the GitHub step
summary and the baseline updates, with one line per thing done and problems returned as data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_saeval.errors import SaevalError, SuiteError
from pytest_saeval.report.finish import Finished, FinishOptions, finish
from tests.helpers import hand_run

WITH_BASELINE = """\
model: {path: m}
data: {tokens: t.npy}
baseline: baselines/with.json
saes:
  - id: a
    path: a
    gates:
      l0: "<= 60"
  - id: b
    path: b
    gates:
      mse: "<= 1"
"""

WITHOUT_BASELINE = """\
model: {path: m}
data: {tokens: t.npy}
saes:
  - id: c
    path: c
    gates:
      l0: "<= 60"
"""


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def _runs(tmp_path: Path, *, without: bool = False) -> list:
    (tmp_path / "with.yaml").write_text(WITH_BASELINE)
    runs = [hand_run(tmp_path / "with.yaml", {"a": {"l0": 4.0, "mse": float("nan")}, "b": {"mse": 0.5}})]
    if without:
        (tmp_path / "without.yaml").write_text(WITHOUT_BASELINE)
        runs.append(hand_run(tmp_path / "without.yaml", {"c": {"l0": 7.0}}))
    return runs


def test_nothing_asked_nothing_done(tmp_path: Path) -> None:
    done = finish(_runs(tmp_path), FinishOptions())
    assert done == Finished() and done.ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["with.yaml"]


def test_outputs_are_written_and_said(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = finish(_runs(tmp_path, without=True), FinishOptions(output_dir=out))
    assert done.ok and done.lines == (f"wrote 6 files to {out}",)
    assert sorted(p.name for p in out.iterdir()) == ["all_eval_results.csv", "all_eval_results.json", "summary.md",
                                                    "with__a.json", "with__b.json", "without__c.json"]
    record = json.loads((out / "with__a.json").read_text())
    assert record["metrics"] == {"l0": 4.0, "mse": None}  # NaN written as null
    assert "| `l0` |" in (out / "summary.md").read_text()
    shown = finish(_runs(tmp_path), FinishOptions(output_dir=out, display=lambda p: p.name))
    assert shown.lines == ("wrote 5 files to out",)


def test_no_runs_write_no_outputs(tmp_path: Path) -> None:
    done = finish([], FinishOptions(output_dir=tmp_path / "out", report=tmp_path / "r.html"))
    assert done == Finished() and not (tmp_path / "out").exists() and not (tmp_path / "r.html").exists()


def test_the_report_is_written_and_said(tmp_path: Path) -> None:
    page = tmp_path / "report" / "page.html"
    done = finish(_runs(tmp_path), FinishOptions(report=page))
    assert done.ok and done.lines == (f"wrote report {page}",)
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and '<table class="gates">' in text


def test_problems_are_returned_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = finish(_runs(tmp_path), FinishOptions(output_dir=blocker, report=blocker / "r.html"))
    assert not done.ok and done.lines == ()
    (what, error), (what2, error2) = done.problems
    assert what == "writing the outputs" and isinstance(error, SaevalError)
    assert str(error).startswith(f"cannot write {blocker}/") and "a file is in the way" in str(error)
    assert what2 == "writing the report" and isinstance(error2, SaevalError)
    assert str(error2).startswith(f"cannot write {blocker / 'r.html'}: a file is in the way") and "Fix: " in str(error2)


def test_the_step_summary_is_appended_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    finish([], FinishOptions())
    assert not summary.exists()
    assert finish(_runs(tmp_path), FinishOptions()).lines == ()
    assert summary.read_text(encoding="utf-8").startswith("## saeval: ✅ all 2 gates passed (2 SAEs)")


@pytest.mark.parametrize(("make", "reason", "fix"), [
    ("folder", "a folder is in the way", "point GITHUB_STEP_SUMMARY at a file, not a folder"),
    ("under-a-file", "a file is in the way where a folder is needed", "point GITHUB_STEP_SUMMARY at a file you can "
                                                                      "write"),
    ("full", "No space left on device", "free space on the runner"),
])
def test_a_step_summary_that_cannot_be_written_gets_the_fix_for_its_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: str, reason: str, fix: str) -> None:
    """A folder in the way used to get "free space on the runner", the fix for a full disk."""
    import errno
    import os

    target = tmp_path / "summary"
    if make == "folder":
        target.mkdir()
    elif make == "under-a-file":
        (tmp_path / "blocker").write_text("x")
        target = tmp_path / "blocker" / "summary.md"
    else:
        real_write = os.write

        def full(fd: int, data: bytes) -> int:
            if fd in (0, 1, 2):
                return real_write(fd, data)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "write", full)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    ((what, error),) = finish(_runs(tmp_path), FinishOptions()).problems
    assert what == "writing the step summary"
    assert str(error) == (f"cannot write $GITHUB_STEP_SUMMARY ({target}): {reason}. Fix: {fix}, or unset "
                          "GITHUB_STEP_SUMMARY; the summary is also in summary.md with --output-dir")


def test_baselines_are_updated_from_the_run(tmp_path: Path) -> None:
    done = finish(_runs(tmp_path), FinishOptions(update_baseline=True))
    path = tmp_path / "baselines" / "with.json"
    assert done.ok and done.lines == (f"updated baseline {path}",)
    assert json.loads(path.read_text())["saes"] == {"a": {"l0": 4.0}, "b": {"mse": 0.5}}  # finite values only


@pytest.mark.parametrize(("errors", "words"), [(["e"], "1 evaluation error"), (["e", "f"], "2 evaluation errors")])
def test_no_baseline_update_after_an_evaluation_error(tmp_path: Path, errors: list[str], words: str) -> None:
    out = tmp_path / "out"
    done = finish(_runs(tmp_path), FinishOptions(output_dir=out, update_baseline=True), errors=errors)
    assert done.ok
    assert done.lines == (f"wrote 5 files to {out}",
                          f"baseline NOT updated: {words} in this run (fix them and run again)")
    assert not (tmp_path / "baselines").exists()


def test_a_suite_without_a_baseline_key_is_a_note_for_pytest(tmp_path: Path) -> None:
    done = finish(_runs(tmp_path, without=True), FinishOptions(update_baseline=True))
    assert done.ok
    assert done.lines == (
        f"baseline not updated for {tmp_path / 'without.yaml'}: it has no `baseline:` key "
        "(add `baseline: baselines/<name>.json`; the file is created on update)",
        f"updated baseline {tmp_path / 'baselines' / 'with.json'}",
    )


def test_a_suite_without_a_baseline_key_is_a_problem_for_the_command(tmp_path: Path) -> None:
    done = finish(_runs(tmp_path, without=True), FinishOptions(update_baseline=True, strict_baselines=True))
    (what, error), = done.problems
    assert what == "updating the baseline" and isinstance(error, SuiteError)
    assert str(error) == (f"{tmp_path / 'without.yaml'}: baseline: updating the baseline needs a baseline file. "
                          "Fix: add `baseline: baselines/<name>.json` to the suite (the file is created on update)")
    assert done.lines == () and not (tmp_path / "baselines").exists()  # nothing is written half-way


def test_an_unwritable_baseline_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "baselines").write_text("a file where the folder should be")
    done = finish(_runs(tmp_path), FinishOptions(update_baseline=True))
    (what, error), = done.problems
    assert what == "updating the baseline" and isinstance(error, SaevalError)
    assert done.lines == ()


def test_baselines_come_from_the_suites_own_inputs_and_any_failure_blocks_them(tmp_path: Path) -> None:
    from dataclasses import replace

    from pytest_saeval.run.outcome import Inputs

    path = tmp_path / "with.yaml"
    path.write_text(WITH_BASELINE)
    own = hand_run(path, {"a": {"l0": 10.0}, "b": {"mse": 0.5}}, recording=True)
    other_inputs = Inputs(overridden=("saeval_tokens from tests/conftest.py",), tokens_xxh3="t")
    other = replace(hand_run(path, {"a": {"l0": 99.0}, "b": {"mse": 0.7}}, recording=True), inputs=other_inputs)
    done = finish([own, other], FinishOptions(update_baseline=True))
    assert done.lines == ("baseline NOT updated: 1 gate failed in this run (1 of them on a conftest's inputs) "
                          "(fix the SAEs, or record these values anyway with --update-baseline-force)",)
    assert not (tmp_path / "baselines" / "with.json").exists()
    done = finish([own, other], FinishOptions(update_baseline=True, force_baseline=True))
    assert done.lines[-1] == (f"updated baseline {tmp_path / 'baselines' / 'with.json'} "
                              "(recorded anyway: 1 gate failed in this run)")
    recorded = json.loads((tmp_path / "baselines" / "with.json").read_text())["saes"]
    assert recorded["a"]["l0"] == 10.0 and recorded["b"]["mse"] == 0.5  # never the override's values
    only_other = finish([other], FinishOptions(update_baseline=True, force_baseline=True))
    assert only_other.lines == (f"baseline not updated for {other.title}: only other inputs than the suite's own "
                                "were evaluated",)
