"""``--saeval-output-dir`` (ini: ``saeval_output_dir``, relative to the ini file): one JSON per SAE, the
combined JSON and CSV and summary.md; the option wins over the ini key; an unwritable folder fails the
run after its tests."""

from __future__ import annotations

import json

import pytest

from tests.integration.plugin_helpers import Assets, all_results, line_of, run_pytest, saeval_section

FILES = ["all_eval_results.csv", "all_eval_results.json", "demo__a.json", "demo__b.json", "summary.md"]


def _project(pytester: pytest.Pytester, assets: Assets) -> str:
    (pytester.path / "thresholds").mkdir()
    text = (
        assets.model_block() + assets.data_block() + "saes:\n"
        f"  - id: a\n    path: {assets.sae0}\n    gates:\n      l0: '<= 1000'\n"
        f"  - id: b\n    path: {assets.sae1}\n    gates:\n      l0: '<= 1000'\n"
    )
    (pytester.path / "thresholds" / "demo.yaml").write_text(text)
    return text


def test_outputs_go_to_the_ini_folder_unless_the_option_says_otherwise(
    pytester: pytest.Pytester, assets: Assets, reference: dict[tuple[str, str], dict[str, float]]
) -> None:
    text = _project(pytester, assets)
    (pytester.path / "pytest.ini").write_text("[pytest]\nsaeval_output_dir = results/run\n")
    result = run_pytest(pytester, "plain")
    result.assert_outcomes(passed=2)
    assert "wrote 5 files to results/run" in saeval_section(result.stdout.str())
    out = pytester.path / "results" / "run"
    assert sorted(p.name for p in out.iterdir()) == FILES
    records = all_results(out)
    assert records["a"]["metrics"] == pytest.approx(reference[("model", "sae0")], rel=1e-12, abs=1e-12)
    assert records["b"]["gates"] == [{"metric": "l0", "bound": "<= 1000", "value": 4.0, "passed": True,
                                      "message": "l0 = 4 [4, 4] (<= 1000)", "line": line_of(text, "l0:", after="id: b"),
                                      "baseline": None}]
    assert json.loads((out / "demo__a.json").read_text()) == records["a"]

    result = run_pytest(pytester, "plain", "--saeval-output-dir", "elsewhere")
    result.assert_outcomes(passed=2)
    assert "wrote 5 files to elsewhere" in saeval_section(result.stdout.str())
    assert sorted(p.name for p in (pytester.path / "elsewhere").iterdir()) == FILES
    assert all_results(pytester.path / "elsewhere") == records
