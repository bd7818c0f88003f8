"""``--saeval-suite`` (ini: ``saeval_suite``) and the session fixtures: ``saeval_model``, ``saeval_tokens`` and
``saeval_saes`` are the very objects the suite's gates are evaluated on, and ``saeval_results`` their one
evaluation; without a suite, or with a bad one, a test using them errors with the fix."""

from __future__ import annotations

import pytest

from tests.integration.plugin_helpers import Assets, counting_conftest, read_log, run_pytest

FIXTURE_TEST = """\
def test_objects(saeval_model, saeval_saes, saeval_tokens, saeval_results):
    assert saeval_model.cfg.n_layers == 2 and saeval_model.cfg.d_model == 32
    assert tuple(saeval_tokens.shape) == (16, 16) and int(saeval_tokens[0, 0]) == 0
    assert sorted(saeval_saes) == ["a", "b"]
    assert saeval_saes["b"].cfg.metadata.hook_name == "blocks.1.hook_resid_pre"
    assert sorted(saeval_results) == ["a", "b"]
    assert saeval_results["a"].hook_name == "blocks.0.hook_resid_pre"
    assert saeval_results["b"].metrics["l0"] == 4.0  # a top-k SAE with k = 4
"""


def _project(pytester: pytest.Pytester, assets: Assets, test: str) -> None:
    (pytester.path / "thresholds").mkdir()
    (pytester.path / "thresholds" / "demo.yaml").write_text(
        assets.model_block() + assets.data_block() + "saes:\n"
        f"  - id: a\n    path: {assets.sae0}\n    gates:\n      l0: '<= 1000'\n"
        f"  - id: b\n    path: {assets.sae1}\n    gates:\n      l0: '<= 1000'\n"
    )
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_fx.py").write_text(test)


def test_the_fixtures_are_the_objects_the_gates_are_evaluated_on(pytester: pytest.Pytester, assets: Assets) -> None:
    _project(pytester, assets, FIXTURE_TEST)
    log = pytester.path / "log"
    log.mkdir()
    (pytester.path / "conftest.py").write_text(counting_conftest(log))
    (pytester.path / "pytest.ini").write_text("[pytest]\nsaeval_suite = thresholds/demo.yaml\n")
    result = run_pytest(pytester, "plain")
    result.assert_outcomes(passed=3)
    seen = read_log(log)
    assert sorted(sae for _, sae in seen["eval"]) == ["demo/a", "demo/b"]  # once each: fixture and gates share it
    assert [folder for _, folder in seen["model"]] == ["model"]


def test_the_option_names_the_suite(pytester: pytest.Pytester, assets: Assets) -> None:
    _project(pytester, assets, FIXTURE_TEST)
    result = run_pytest(pytester, "plain", "--saeval-suite", "thresholds/demo.yaml", "tests")
    result.assert_outcomes(passed=1)


def test_without_a_suite_the_fixtures_error_with_the_fix(pytester: pytest.Pytester, assets: Assets) -> None:
    _project(pytester, assets, "def test_needs(saeval_model):\n    pass\n")
    result = run_pytest(pytester, "plain", "tests")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the saeval fixtures need a suite file. Fix: mark the test with "
                                 "@pytest.mark.saeval('thresholds/<name>.yaml'), pass --saeval-suite "
                                 "thresholds/<name>.yaml or set saeval_suite in the ini file*"])
    assert "Traceback" not in result.stdout.str()


def test_a_missing_suite_file_is_the_fixtures_error(pytester: pytest.Pytester, assets: Assets) -> None:
    _project(pytester, assets, "def test_needs(saeval_tokens):\n    pass\n")
    result = run_pytest(pytester, "plain", "--saeval-suite", "thresholds/nope.yaml", "tests")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*thresholds/nope.yaml: suite file not found*"])
