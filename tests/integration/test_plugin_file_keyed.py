"""The plugin on unchanged files: collection and gate items of a fully answered suite need no model (a run in a
fresh process imports neither torch nor TransformerLens nor SAE Lens), JUnit properties and output files are
those of a cold run, and the fixtures still load what a test asks for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.plugin_helpers import Assets, junit_cases

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HEAVY = ("torch", "transformer_lens", "sae_lens")

RECORDER = """\
import json, sys


def pytest_sessionfinish(session):
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy})
    with open("heavy.json", "w") as fh:
        json.dump(heavy, fh)
"""


def project(pytester: pytest.Pytester, assets: Assets) -> None:
    pytester.makeini("[pytest]\nsaeval_thresholds = thresholds/*.yaml\nsaeval_suite = thresholds/demo.yaml\n")
    (pytester.path / "thresholds").mkdir()
    (pytester.path / "thresholds" / "demo.yaml").write_text(
        assets.model_block() + assets.data_block() + "saes:\n"
        f"  - id: good\n    path: {assets.sae0}\n    gates:\n      l0: '>= 0'\n      explained_variance: '<= 1'\n"
        f"  - id: bad\n    path: {assets.sae1}\n    gates:\n      l0: '>= 1000'\n")
    (pytester.path / "conftest.py").write_text(RECORDER.format(heavy=set(HEAVY)))


def run_args(name: str) -> list[str]:
    return ["-p", "no:cacheprovider", f"--junitxml={name}.xml", f"--saeval-output-dir={name}",
            f"--saeval-report={name}.html", "thresholds"]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def heavy(pytester: pytest.Pytester) -> list[str]:
    return list(json.loads((pytester.path / "heavy.json").read_text()))


def test_a_warm_run_needs_no_model_and_reports_what_a_cold_run_reports(pytester: pytest.Pytester,
                                                                         assets: Assets) -> None:
    project(pytester, assets)
    pytester.runpytest("--saeval-no-cache", *run_args("cold")).assert_outcomes(passed=2, failed=1)
    pytester.runpytest(*run_args("first")).assert_outcomes(passed=2, failed=1)
    assert list((pytester.path / ".saeval-cache" / "answers").rglob("*.json"))
    warm = pytester.runpytest_subprocess(*run_args("warm"))
    warm.assert_outcomes(passed=2, failed=1)
    assert heavy(pytester) == []
    warm.stdout.fnmatch_lines(["*[[]bad[]] l0 = *, needs >= 1000*"])
    cold = junit_cases(pytester.path / "cold.xml")
    assert sorted(key.rpartition(".")[2] for key in cold) == ["bad::l0", "good::explained_variance", "good::l0"]
    for name in ("first", "warm"):
        # Outcomes, messages, lines and the value / bound properties; the XML's own time and timestamp
        # attributes differ from run to run and are not compared.
        assert junit_cases(pytester.path / f"{name}.xml") == cold
        assert files_of(pytester.path / name) == files_of(pytester.path / "cold")
        assert (pytester.path / f"{name}.html").read_bytes() == (pytester.path / "cold.html").read_bytes()
    assert all(case["props"] for case in cold.values())


def test_fixtures_load_what_a_test_asks_for_when_the_gates_are_answered(pytester: pytest.Pytester,
                                                                          assets: Assets) -> None:
    project(pytester, assets)
    pytester.runpytest(*run_args("first")).assert_outcomes(passed=2, failed=1)
    pytester.makepyfile(test_fixtures=(
        "import json\n\n\n"
        "def test_fixtures(saeval_model, saeval_saes, saeval_tokens, saeval_results):\n"
        "    assert saeval_model.cfg.n_layers == 2 and tuple(saeval_tokens.shape) == (16, 16)\n"
        "    assert sorted(saeval_saes) == sorted(saeval_results) == ['bad', 'good']\n"
        "    written = json.load(open('first/all_eval_results.json'))\n"
        "    for record in written:\n"
        "        assert saeval_results[record['unique_id']].metrics['l0'] == record['metrics']['l0']\n"))
    result = pytester.runpytest("-p", "no:cacheprovider", "thresholds", "test_fixtures.py")
    result.assert_outcomes(passed=3, failed=1)
    assert set(heavy(pytester)) >= set(HEAVY)  # the fixtures loaded the model and SAEs when asked
