"""``--saeval-update-baseline``: record a baseline, check against it, fail against it and record it again (the
controller's writing under xdist: ``test_xdist.py``; no writing after an evaluation error:
``test_gate_outcomes.py``)."""

from __future__ import annotations

import json

import pytest

from tests.integration.plugin_helpers import Assets, line_of, run_pytest, saeval_section


def _baseline_project(pytester: pytest.Pytester, assets: Assets) -> str:
    (pytester.path / "thresholds").mkdir()
    text = assets.model_block() + assets.data_block() + "baseline: ../baselines/demo.json\nsaes:\n" + (
        f"  - id: good\n    path: {assets.sae0}\n    gates:\n"
        '      cossim: ">= baseline - 0.001"\n'
        '      l0: "<= 1000"\n'
    )
    (pytester.path / "thresholds" / "demo.yaml").write_text(text)
    return text


def test_baseline_update(
    pytester: pytest.Pytester, assets: Assets, reference: dict[tuple[str, str], dict[str, float]]
) -> None:
    """Record, check against, fail against, and re-record a baseline (the controller's writing under
    xdist is checked by ``test_xdist.py``)."""
    text = _baseline_project(pytester, assets)
    baseline = pytester.path / "baselines" / "demo.json"
    expected_cossim = reference[("model", "sae0")]["cossim"]

    # Recording: the gate without a value is skipped, the file is written.
    result = run_pytest(pytester, "plain", "--saeval-update-baseline")
    result.assert_outcomes(passed=1, skipped=1)
    assert "updated baseline baselines/demo.json" in saeval_section(result.stdout.str())
    recorded = json.loads(baseline.read_text())
    assert recorded["saes"]["good"]["cossim"] == pytest.approx(expected_cossim, abs=1e-6)

    # Checking against it.
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)

    # A worse run: the gate compares with the recorded value and fails at its YAML line.
    recorded["saes"]["good"]["cossim"] = expected_cossim + 0.5
    baseline.write_text(json.dumps(recorded))
    result = pytester.runpytest("-p", "no:cacheprovider", "--saeval-update-baseline")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"[[]good[]] cossim = *baseline* — thresholds/demo.yaml:{line_of(text, 'cossim:')}"])
    # ... and the failing run is not recorded: the line says how many gates failed and how to record anyway
    assert ("baseline NOT updated: 1 gate failed in this run (fix the SAEs, or record these values anyway with "
            "--saeval-update-baseline-force)") in saeval_section(result.stdout.str())
    assert json.loads(baseline.read_text())["saes"]["good"]["cossim"] == pytest.approx(expected_cossim + 0.5)

    # Forced: recorded from this run although a gate failed.
    result = pytester.runpytest("-p", "no:cacheprovider", "--saeval-update-baseline-force")
    result.assert_outcomes(passed=1, failed=1)
    assert ("updated baseline baselines/demo.json (recorded anyway: 1 gate failed in this run)"
            in saeval_section(result.stdout.str()))
    assert json.loads(baseline.read_text())["saes"]["good"]["cossim"] == pytest.approx(expected_cossim, abs=1e-6)
