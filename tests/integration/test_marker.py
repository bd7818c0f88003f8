"""The ``saeval`` marker's usage errors: a collection error of the test file, with the fix (its outcomes are
checked in ``test_gate_outcomes.py``)."""

from __future__ import annotations

import pytest

from tests.integration.plugin_helpers import Assets, run_pytest, write_rich_project


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
