"""Gate outcomes end to end, through pytester: one run exercising every surface of the plugin.

Passing and failing gates with their one-line messages, a collection error, an evaluation error on
every affected item, ``-k``, the marker, the fixtures and their conftest override, the summary, JUnit
properties and outputs. The run is parametrized over ``plain`` (in-process, no xdist) and ``n2`` (a
subprocess with ``-n 2``): both must give the same outcomes, messages, summary, JUnit properties,
outputs and baseline file.
"""

from __future__ import annotations

import math
import re

import pytest

from tests.integration.plugin_helpers import (
    Assets,
    all_results,
    junit_cases,
    line_of,
    run_pytest,
    saeval_section,
    write_rich_project,
)

MODES = ["plain", "n2"]


def _junit_key(nodeid: str) -> str:
    """The ``classname::name`` JUnit XML gives a node id (pytest's own mangling)."""
    path, _, rest = nodeid.partition("::")
    parts = [path.replace("/", ".").removesuffix(".py"), *rest.split("::")] if rest else [path.replace("/", ".")]
    return f"{'.'.join(parts[:-1])}::{parts[-1]}"


@pytest.mark.parametrize("mode", MODES)
def test_every_surface_in_one_run(
    pytester: pytest.Pytester, assets: Assets, reference: dict[tuple[str, str], dict[str, float]], mode: str
) -> None:
    """Passing and failing gates, messages at the YAML line, a collection error, an evaluation error
    on every affected item, ``-k``, the marker, fixtures and their conftest override, the summary,
    JUnit properties and outputs; ``--saeval-update-baseline`` writes nothing after an error."""
    project = write_rich_project(pytester.path, assets)
    result = run_pytest(pytester, mode, "--continue-on-collection-errors", "-k", "not skipme",
                        "--junitxml=junit.xml", "--saeval-output-dir=out", "--saeval-update-baseline")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED

    cases = junit_cases(pytester.path / "junit.xml")
    outcomes = {k: v["outcome"] for k, v in cases.items()}
    expected = {
        _junit_key(nodeid): {"PASSED": "passed", "FAILED": "failed", "ERROR": "error", "SKIPPED": "skipped",
                             "PASSED+ERROR": "passed+teardown-error"}[word]
        for nodeid, word in project.expected.items()
    }
    assert outcomes == expected

    # A failing gate: one line with the YAML line, the value, the bound and the shortfall; no traceback.
    bad_line = project.line("l0:", after="id: bad")
    message = f"[bad] l0 = 4 [4, 4], needs >= 1000 (short by 996) — thresholds/demo.yaml:{bad_line}"
    assert cases[_junit_key("thresholds/demo.yaml::bad::l0")]["message"] == message
    # pytest cuts the short summary's line at 80 columns (off CI): the node id names SAE and metric, the number stays
    assert "FAILED thresholds/demo.yaml::bad::l0 - 4 [4, 4], needs >= 1000 (short by 996)" in out
    failures = out[out.index("= FAILURES ="):out.index("= PASSES =")]
    block = failures[failures.index("_ bad::l0 _"):]
    assert message in block.splitlines()[1:3]
    assert "Traceback" not in failures and "_collect.py" not in failures and "GateFailed" not in out

    # The marker: a failing gate fails the test with the same message; a failing body is reported as itself.
    assert cases[_junit_key("tests/test_py.py::test_marker_fail")]["message"] == message
    assert cases[_junit_key("tests/test_py.py::test_marker_body_fails_first")]["message"] == "assert 1 == 2"

    # Evaluation errors: an error (not a failure) on every affected item, with the located message.
    mismatch = "thresholds/mismatch.yaml:11: saes[0].d_in: SAE d_in is 16 but hook 'blocks.0.hook_resid_pre'"
    for nodeid in ("thresholds/mismatch.yaml::narrow::l0", "thresholds/mismatch.yaml::narrow::explained_variance",
                   "tests/test_py.py::test_marker_error"):
        assert mismatch in str(cases[_junit_key(nodeid)]["message"]), nodeid
    assert f"thresholds/broken.yaml:{line_of((pytester.path / 'thresholds/broken.yaml').read_text(), 'varianse')}: " \
           "saes[0].gates.explained_varianse: unknown metric" in out

    # A baseline-relative gate without a baseline value is skipped at its YAML line while recording.
    cossim_line = project.line("cossim:")
    assert re.search(rf"^SKIPPED \[1\] thresholds/demo.yaml:{cossim_line}: \[good\] cossim >= baseline - 0.001: "
                     "the baseline has no value yet", out, re.M)

    # JUnit properties: value and bound.
    props = cases[_junit_key("thresholds/demo.yaml::good::l0")]["props"]
    assert props["bound"] == "<= 1000 and >= 0"
    assert math.isclose(float(props["value"]), reference[("model", "sae0")]["l0"], rel_tol=0, abs_tol=1e-12)
    assert cases[_junit_key("other/ov.yaml::ov::l0")]["props"]["bound"] == "<= 1000"

    # Outputs hold exactly the evaluated SAEs (not the deselected one), with the library's own values.
    results = all_results(pytester.path / "out")
    assert sorted(results) == ["bad", "fine", "good", "ov"]
    assert results["good"]["metrics"] == pytest.approx(reference[("model", "sae0")], rel=1e-12, abs=1e-12)
    assert results["bad"]["metrics"] == pytest.approx(reference[("model", "sae1")], rel=1e-12, abs=1e-12)
    # The conftest override of saeval_model was used: the suite's own model folder does not exist.
    assert results["ov"]["metrics"] == pytest.approx(reference[("model", "sae0")], rel=1e-12, abs=1e-12)
    assert 0 < results["fine"]["metrics"]["l0"] <= 64  # other batch settings than the reference
    # other/ov.yaml is evaluated only on other/conftest.py's model: a file of its own, named by those inputs
    names = sorted(p.name for p in (pytester.path / "out").iterdir())
    assert [n for n in names if not n.startswith("ov__ov~with-")] == [
        "all_eval_results.csv", "all_eval_results.json", "demo__bad.json", "demo__good.json", "mismatch__fine.json",
        "summary.md"]
    assert len(names) == 7

    # The terminal summary covers every suite; the baseline is not written after an evaluation error.
    summary = saeval_section(out)
    assert re.search(r"^  bad\s+l0\s+4\s+\[4, 4\]\s+>= 1000\s+FAIL\s*$", summary, re.M)
    assert re.search(r"^  good\s+l0\s+\S+\s+\[\S+, \S+\]\s+<= 1000 and >= 0\s+PASS\s*$", summary, re.M)
    assert re.search(r"^  ov\s+l0\s+\S+\s+\[\S+, \S+\]\s+<= 1000\s+PASS\s*$", summary, re.M)
    assert "ERROR " + mismatch in summary
    assert "baseline NOT updated: 1 evaluation error" in summary
    assert "wrote 7 files to out" in summary
    assert not (pytester.path / "baselines").exists()


@pytest.mark.parametrize(("env", "args", "cut"), [({}, (), True), ({"CI": "true"}, (), False), ({}, ("-vv",), False),
                                                 ({"CI": "true"}, ("--force-short-summary",), True)])
def test_a_short_summary_line_cut_to_the_terminal_keeps_the_number(
    pytester: pytest.Pytester, assets: Assets, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
    args: tuple[str, ...], cut: bool,
) -> None:
    """Where pytest cuts its short summary to the terminal's width, a gate failure's line shows the value, bound
    and shortfall after the node id (which names the SAE and metric); where it does not cut (on CI, ``-vv``),
    the whole message. JUnit XML keeps the whole message either way."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (pytester.path / "thresholds").mkdir()
    suite = (assets.model_block() + assets.data_block()
             + f"saes:\n  - id: layer1-topk-wide\n    path: {assets.sae1}\n    gates:\n"
             '      explained_variance: "<= 1"\n      l0: ">= 1000"\n')
    (pytester.path / "thresholds" / "demo.yaml").write_text(suite)
    result = pytester.runpytest("-p", "no:cacheprovider", "--junitxml=junit.xml", "thresholds/demo.yaml", *args)
    result.assert_outcomes(passed=1, failed=1)
    node = "thresholds/demo.yaml::layer1-topk-wide::l0"
    message = "[layer1-topk-wide] l0 = 4 [4, 4], needs >= 1000 (short by 996) — thresholds/demo.yaml:15"
    lines = [line for line in result.stdout.lines if line.startswith(f"FAILED {node}")]
    assert len(lines) == 1
    if cut:
        assert lines[0].startswith(f"FAILED {node} - 4 [4, 4], needs >= 1000") and len(lines[0]) <= 80
    else:
        assert lines[0] == f"FAILED {node} - {message}"
    assert junit_cases(pytester.path / "junit.xml")["thresholds.demo.yaml.layer1-topk-wide::l0"]["message"] == message
