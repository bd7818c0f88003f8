"""The plugin with places it cannot write and messages too long for one line."""

from __future__ import annotations

import pytest

from tests.integration.plugin_helpers import Assets, saeval_section


def _suite(assets: Assets, extra: str = "") -> str:
    return (assets.model_block() + assets.data_block().replace("  n_sparsity_batches: 2\n", f"  n_sparsity_batches: 2\n{extra}")
            + f"saes:\n  - id: a\n    path: {assets.sae0}\n    gates:\n      l0: '>= 0'\n")


def test_an_output_folder_under_a_file_is_a_usage_error_before_any_test(pytester: pytest.Pytester,
                                                                         assets: Assets) -> None:
    pytester.makefile(".yaml", **{"thresholds/s": _suite(assets)})
    pytester.makefile(".txt", blocker="x")
    result = pytester.runpytest("-p", "no:cacheprovider", "--saeval-output-dir", "blocker.txt/out")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--saeval-output-dir: cannot write *blocker.txt/out: *a file is in the way*Fix:*"])


def test_a_step_summary_that_cannot_be_written_is_an_error_line(pytester: pytest.Pytester, assets: Assets,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makefile(".yaml", **{"thresholds/s": _suite(assets)})
    (pytester.path / "summary").mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "summary"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--saeval-no-cache")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # what was asked could not be written
    section = saeval_section(result.stdout.str())
    assert "ERROR writing the step summary: cannot write $GITHUB_STEP_SUMMARY" in section
    assert "a folder is in the way" in section


@pytest.mark.parametrize("verbose", [False, True])
def test_a_long_message_is_cut_unless_verbose(pytester: pytest.Pytester, assets: Assets, verbose: bool) -> None:
    key = "k" * 3000  # an unknown key of 3,000 characters (an explicit YAML key)
    pytester.makefile(".yaml", **{"thresholds/s": _suite(assets, f"  ? {key}\n  : 1\n")})
    result = pytester.runpytest("-p", "no:cacheprovider", *(["-v"] if verbose else []))
    out = result.stdout.str()
    assert f"data.{key[:100]}" in out and "unknown key" in out and "Traceback" not in out
    assert (key in out) == verbose
    assert ("characters left out" in out) != verbose
