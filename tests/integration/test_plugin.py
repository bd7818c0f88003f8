"""The pytest plugin end to end, through pytester.

Collection-only checks run in-process and evaluate nothing. The full runs are parametrized over
``plain`` (in-process, no xdist) and ``n2`` (a subprocess with ``-n 2``): both must give the same
outcomes, messages, summary, JUnit properties, outputs and baseline file.
"""

from __future__ import annotations

import json
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


# -- collection --------------------------------------------------------------------------------
def test_collection_ids_locations_and_deselection(pytester: pytest.Pytester, assets: Assets) -> None:
    project = write_rich_project(pytester.path, assets)
    (pytester.path / "thresholds" / "broken.yaml").unlink()
    (pytester.path / "notes").mkdir()
    outside = pytester.path / "notes" / "named.yaml"  # matches no glob: collected only when named
    outside.write_text((pytester.path / "thresholds" / "demo.yaml").read_text().replace("../baselines", "../b"))

    collected, reprec = pytester.inline_genitems("-k", "not skipme")
    deselected = [i.nodeid for c in reprec.getcalls("pytest_deselected") for i in c.items]
    assert deselected == ["thresholds/extra.yaml::skipme::l0"]
    items = [i for i in collected if i.nodeid not in deselected]
    ids = [i.nodeid for i in items]
    assert [i for i in ids if i.startswith("thresholds/")] == [
        "thresholds/demo.yaml::good::explained_variance",
        "thresholds/demo.yaml::good::l0",
        "thresholds/demo.yaml::good::cossim",
        "thresholds/demo.yaml::bad::frac_alive",
        "thresholds/demo.yaml::bad::l0",
        "thresholds/mismatch.yaml::narrow::l0",
        "thresholds/mismatch.yaml::narrow::explained_variance",
        "thresholds/mismatch.yaml::fine::l0",
    ]
    assert "other/ov.yaml::ov::l0" in ids
    assert not any(i.startswith("notes/") for i in ids)

    by_id = {i.nodeid: i for i in items}
    l0 = by_id["thresholds/demo.yaml::bad::l0"]
    gate_line = project.line("l0:", after="id: bad")
    assert l0.location == ("thresholds/demo.yaml", gate_line - 1, "bad::l0")
    assert l0.reportinfo()[1] == gate_line - 1
    good_ev = by_id["thresholds/demo.yaml::good::explained_variance"]
    assert good_ev.location[1] == project.line("explained_variance:", after="id: good") - 1

    # Named on the command line, a suite file outside the globs is collected too.
    items, _ = pytester.inline_genitems("notes/named.yaml")
    assert [i.nodeid for i in items] == [
        "notes/named.yaml::good::explained_variance",
        "notes/named.yaml::good::l0",
        "notes/named.yaml::good::cossim",
        "notes/named.yaml::bad::frac_alive",
        "notes/named.yaml::bad::l0",
    ]


def test_unloadable_suite_is_a_collection_error_naming_file_line_and_fix(
    pytester: pytest.Pytester, assets: Assets
) -> None:
    (pytester.path / "thresholds").mkdir()
    text = assets.model_block() + assets.data_block() + (
        f"saes:\n  - id: x\n    path: {assets.sae0}\n    gates:\n      explained_varianse: \">= 0.5\"\n"
    )
    (pytester.path / "thresholds" / "broken.yaml").write_text(text)
    (pytester.path / "thresholds" / "syntax.yaml").write_text("model:\n  path: [unclosed\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    line = line_of(text, "explained_varianse")
    lines = result.stdout.lines
    at = next(i for i, t in enumerate(lines) if "ERROR collecting thresholds/broken.yaml" in t)
    assert lines[at + 1].startswith(
        f"thresholds/broken.yaml:{line}: saes[0].gates.explained_varianse: unknown metric 'explained_varianse' "
        "(did you mean 'explained_variance'"
    )
    assert ". Fix: rename the gate" in lines[at + 1]
    at = next(i for i, t in enumerate(lines) if "ERROR collecting thresholds/syntax.yaml" in t)
    assert lines[at + 1].startswith("thresholds/syntax.yaml:3: invalid YAML")
    assert "Traceback" not in result.stdout.str()
    assert "_collect.py" not in result.stdout.str()


# -- usage errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("marker", "expected", "mode"),
    [
        ("@pytest.mark.saeval('thresholds/demo.yaml', sea='good')",
         "test_m.py::test_x: @pytest.mark.saeval got unknown argument sea. Fix: use @pytest.mark.saeval(", "plain"),
        ("@pytest.mark.saeval('thresholds/demo.yaml', sea='good')",
         "test_m.py::test_x: @pytest.mark.saeval got unknown argument sea. Fix: use @pytest.mark.saeval(", "n2"),
        ("@pytest.mark.saeval('thresholds/demo.yaml', sae='goood')",
         "test_m.py::test_x: @pytest.mark.saeval: thresholds/demo.yaml: no SAE with id 'goood' in this suite "
         "(did you mean 'good'?)", "plain"),
        ("@pytest.mark.saeval('thresholds/nope.yaml')",
         "test_m.py::test_x: @pytest.mark.saeval: suite file thresholds/nope.yaml not found. Fix: ", "plain"),
        ("@pytest.mark.saeval()", "test_m.py::test_x: @pytest.mark.saeval needs exactly one suite file path", "plain"),
    ],
)
def test_bad_marker_is_a_collection_error_of_its_file(
    pytester: pytest.Pytester, assets: Assets, marker: str, expected: str, mode: str
) -> None:
    write_rich_project(pytester.path, assets)
    pytester.makepyfile(test_m=f"import pytest\n\n\n{marker}\ndef test_x():\n    pass\n")
    result = run_pytest(pytester, mode, "test_m.py")
    # pytest stops after collection errors; pytest-xdist reports them as errors of the run
    assert result.ret == (pytest.ExitCode.INTERRUPTED if mode == "plain" else pytest.ExitCode.TESTS_FAILED)
    lines = result.stdout.lines
    at = next(i for i, t in enumerate(lines) if "ERROR collecting test_m.py" in t)
    assert any(t.startswith(expected) for t in lines[at + 1:at + 3]), lines[at:at + 3]
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()


def test_options_share_one_group_with_ini_twins(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    section = text[text.index("SAE quality gates (pytest-saeval):"):]
    section = section[: section.index("\n\n")]
    for option in ("--saeval-device", "--saeval-output-dir", "--saeval-update-baseline", "--saeval-suite",
                   "--saeval-no-cache", "--saeval-cache-dir"):
        assert option in section
    for ini in ("saeval_thresholds", "saeval_device", "saeval_output_dir", "saeval_suite", "saeval_cache",
                "saeval_cache_dir"):
        assert re.search(rf"^  {ini} \(", text, re.M), ini
    assert "saeval(path, sae=None)" in pytester.runpytest("--markers").stdout.str()


def test_bad_device_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--saeval-device", "gpu0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --saeval-device must be auto, cpu, cuda or cuda:N, got 'gpu0'*"])


# -- full runs -----------------------------------------------------------------------------------
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
    message = f"thresholds/demo.yaml:{bad_line}: [bad] l0 = 4 [4, 4], needs >= 1000 (short by 996)"
    assert cases[_junit_key("thresholds/demo.yaml::bad::l0")]["message"] == message
    assert f"FAILED thresholds/demo.yaml::bad::l0 - {message}"[:60] in out
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
    assert sorted(p.name for p in (pytester.path / "out").iterdir()) == [
        "all_eval_results.csv", "all_eval_results.json", "demo__bad.json", "demo__good.json", "mismatch__fine.json",
        "ov__ov.json", "summary.md"]

    # The terminal summary covers every suite; the baseline is not written after an evaluation error.
    summary = saeval_section(out)
    assert re.search(r"^  bad\s+l0\s+4\s+\[4, 4\]\s+>= 1000\s+FAIL\s*$", summary, re.M)
    assert re.search(r"^  good\s+l0\s+\S+\s+\[\S+, \S+\]\s+<= 1000 and >= 0\s+PASS\s*$", summary, re.M)
    assert re.search(r"^  ov\s+l0\s+\S+\s+\[\S+, \S+\]\s+<= 1000\s+PASS\s*$", summary, re.M)
    assert "ERROR " + mismatch in summary
    assert "baseline NOT updated: 1 evaluation error" in summary
    assert "wrote 7 files to out" in summary
    assert not (pytester.path / "baselines").exists()


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
    result.stdout.fnmatch_lines([f"thresholds/demo.yaml:{line_of(text, 'cossim:')}: [[]good[]] cossim = *baseline*"])
    # ... and still rewrites the file from this run (gate failures do not block recording).
    assert json.loads(baseline.read_text())["saes"]["good"]["cossim"] == pytest.approx(expected_cossim, abs=1e-6)
