"""A test marked with a suite gets that suite's model, SAEs, tokens and results from the four fixtures,
without ``--saeval-suite``: ``sae=`` narrows the SAE fixtures, the gate tests' evaluation is shared
(each SAE evaluated once), and a failing gate of the marked SAE fails the test. Plainly and under
pytest-xdist. A test without marker or ``--saeval-suite`` keeps the clear error
(``test_option_suite_fixtures.py``)."""

from __future__ import annotations

import pytest

from tests.integration.plugin_helpers import Assets, counting_conftest, junit_cases, read_log, run_pytest

MARKED = '''
import pytest


@pytest.mark.saeval("thresholds/demo.yaml", sae="good")
def test_good_results(saeval_model, saeval_saes, saeval_tokens, saeval_results):
    assert sorted(saeval_saes) == ["good"] and sorted(saeval_results) == ["good"]
    assert tuple(saeval_tokens.shape) == (16, 16)
    assert saeval_model.cfg.n_layers == 2
    assert 0 <= saeval_results["good"].metrics["l0"] <= 64


@pytest.mark.saeval("thresholds/demo.yaml")
def test_whole_suite(saeval_saes, saeval_results):
    assert sorted(saeval_saes) == ["bad", "good"] and sorted(saeval_results) == ["bad", "good"]


@pytest.mark.saeval("thresholds/demo.yaml", sae="bad")
def test_bad_results(saeval_results):
    assert saeval_results["bad"].metrics["l0"] >= 0
'''


def _project(pytester: pytest.Pytester, assets: Assets) -> None:
    root = pytester.path
    (root / "thresholds").mkdir()
    (root / "tests").mkdir()
    (root / "log").mkdir()
    (root / "pytest.ini").write_text("[pytest]\nsaeval_thresholds = thresholds/*.yaml\n")  # no saeval_suite
    (root / "conftest.py").write_text(counting_conftest(root / "log"))
    (root / "thresholds" / "demo.yaml").write_text(
        assets.model_block() + assets.data_block() + "saes:\n"
        f"  - id: good\n    path: {assets.sae0}\n    gates:\n      l0: \"<= 1000\"\n"
        f"  - id: bad\n    path: {assets.sae1}\n    gates:\n      l0: \">= 1000\"\n"
    )
    (root / "tests" / "test_marked.py").write_text(MARKED)


@pytest.mark.parametrize("mode", ["plain", "n2"])
def test_a_marked_test_gets_its_suites_fixtures(pytester: pytest.Pytester, assets: Assets, mode: str) -> None:
    _project(pytester, assets)
    result = run_pytest(pytester, mode, "--junitxml=junit.xml")
    text = result.stdout.str()
    cases = junit_cases(pytester.path / "junit.xml")
    by_node = {k: v for k, v in cases.items() if "test_marked" in k}
    good = next(v for k, v in by_node.items() if k.endswith("test_good_results"))
    bad = next(v for k, v in by_node.items() if k.endswith("test_bad_results"))
    assert good["outcome"] == "passed", text[-3000:]
    whole = next(v for k, v in by_node.items() if k.endswith("test_whole_suite"))
    assert whole["outcome"] == "failed"  # the whole suite's gates include bad's
    # the marked SAE's failing gate fails the test, with the gate's line
    assert bad["outcome"] == "failed"
    assert str(bad["message"]).startswith("[bad] l0 = ") and "needs >= 1000" in str(bad["message"])
    assert "The saeval fixtures need a suite file" not in text and "need a suite file" not in text
    # one evaluation per SAE, shared by the gate tests and every marked test
    evaluations = sorted(uid for _, uid in read_log(pytester.path / "log")["eval"])
    assert evaluations == ["demo/bad", "demo/good"], evaluations


def test_a_fixture_that_cannot_load_fails_its_test_in_one_line(pytester: pytest.Pytester, assets: Assets) -> None:
    _project(pytester, assets)
    suite = pytester.path / "thresholds" / "demo.yaml"
    suite.write_text(suite.read_text().replace(f"path: {assets.model}", f"path: {assets.model}-moved"))
    result = run_pytest(pytester, "plain", "tests/test_marked.py::test_bad_results")
    text = result.stdout.str()
    result.assert_outcomes(errors=1)
    # once in the error report: not a chain of three (the short summary below repeats the line, cut to the
    # terminal's width except where pytest sees a CI environment, so it is left out of the count)
    report = text.split("short test summary info")[0]
    assert report.count("model-moved' does not exist") == 1, text[-3000:]
    assert "direct cause of the following exception" not in text and "During handling" not in text, text[-3000:]
    assert "thresholds/demo.yaml:2: model.path: model folder" in text
