"""``--saeval-device``: checked when pytest starts, and used instead of every suite's ``model.device``."""

from __future__ import annotations

import pytest

from tests.integration.plugin_helpers import Assets, all_results, run_pytest


def test_bad_device_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--saeval-device", "gpu0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --saeval-device must be auto, cpu, cuda or cuda:N, got 'gpu0'*"])


def _project(pytester: pytest.Pytester, assets: Assets, device: str) -> None:
    (pytester.path / "thresholds").mkdir()
    (pytester.path / "thresholds" / "demo.yaml").write_text(
        assets.model_block().replace("device: cpu", f"device: {device}") + assets.data_block()
        + f"saes:\n  - id: a\n    path: {assets.sae0}\n    gates:\n      l0: '<= 1000'\n"
    )


@pytest.mark.parametrize("where", ["option", "ini"])
def test_the_device_replaces_every_suites_device(pytester: pytest.Pytester, assets: Assets, where: str) -> None:
    _project(pytester, assets, "cuda:7")
    if where == "ini":
        (pytester.path / "pytest.ini").write_text("[pytest]\nsaeval_device = cpu\n")
        result = run_pytest(pytester, "plain", "--saeval-output-dir", "out")
    else:
        result = run_pytest(pytester, "plain", "--saeval-device", "cpu", "--saeval-output-dir", "out")
    result.assert_outcomes(passed=1)
    assert all_results(pytester.path / "out")["a"]["provenance"]["device"] == "cpu"


def test_an_unusable_suite_device_is_an_error_of_its_gates(pytester: pytest.Pytester, assets: Assets) -> None:
    import torch

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    _project(pytester, assets, "cuda:7")
    result = run_pytest(pytester, "plain")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*thresholds/demo.yaml:3: model.device: *cuda*"])


def test_an_unusable_device_option_is_named_as_the_option(pytester: pytest.Pytester, assets: Assets) -> None:
    import torch

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    _project(pytester, assets, "cpu")
    result = run_pytest(pytester, "plain", "--saeval-device", "cuda:7")
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "--saeval-device: device 'cuda:7' asked for" in text and "Fix: use --saeval-device " in text, text[-2000:]
    assert "demo.yaml:" not in text.split("--saeval-device: device", 1)[0].splitlines()[-1]  # not the suite's line
