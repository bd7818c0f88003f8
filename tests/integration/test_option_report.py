"""``--saeval-report PAGE`` (ini: ``saeval_report``): the self-contained HTML report of a pytest run, with the
gate table and the plots of every evaluated SAE, written once by the controller under pytest-xdist."""

from __future__ import annotations

import pytest

from tests.integration.plugin_helpers import REPORT_PLOTS, Assets, read_report, run_pytest, saeval_section


def _project(pytester: pytest.Pytester, assets: Assets) -> None:
    """Two suites on two models (two fused passes: two workers under ``-n 2``); one gate fails."""
    (pytester.path / "thresholds").mkdir()
    (pytester.path / "thresholds" / "one.yaml").write_text(
        assets.model_block() + assets.data_block() + "saes:\n"
        f"  - id: good\n    path: {assets.sae0}\n    gates:\n      l0: '<= 1000'\n      explained_variance: '<= 1'\n"
        f"  - id: bad\n    path: {assets.sae1}\n    gates:\n      l0: '>= 1000'\n"
    )
    (pytester.path / "thresholds" / "two.yaml").write_text(
        assets.model_block(assets.model2) + assets.data_block() + "saes:\n"
        f"  - id: other\n    path: {assets.sae0b}\n    gates:\n      frac_alive: '>= 0'\n"
    )


@pytest.mark.parametrize(("mode", "where"), [("plain", "option"), ("n2", "option"), ("plain", "ini")])
def test_the_report_page_holds_the_gate_table_and_the_plots_of_every_sae(
    pytester: pytest.Pytester, assets: Assets, mode: str, where: str
) -> None:
    _project(pytester, assets)
    if where == "ini":
        (pytester.path / "pytest.ini").write_text("[pytest]\nsaeval_report = reports/page.html\n")
        result = run_pytest(pytester, mode)
    else:
        result = run_pytest(pytester, mode, "--saeval-report", "reports/page.html")
    out = result.stdout.str()
    result.assert_outcomes(passed=3, failed=1)
    assert "wrote report reports/page.html" in saeval_section(out)

    page = pytester.path / "reports" / "page.html"
    rows, plots = read_report(page)
    assert rows == [  # failures first, then suite and file order
        ("FAIL", "bad", "l0"),
        ("PASS", "good", "l0"),
        ("PASS", "good", "explained_variance"),
        ("PASS", "other", "frac_alive"),
    ]
    assert plots == {"good": REPORT_PLOTS, "bad": REPORT_PLOTS, "other": REPORT_PLOTS}
    assert "1 of 4 gates failed." in page.read_text(encoding="utf-8")


def test_no_report_without_the_option(pytester: pytest.Pytester, assets: Assets) -> None:
    _project(pytester, assets)
    result = run_pytest(pytester, "plain", "-k", "other")
    result.assert_outcomes(passed=1, deselected=3)
    assert "wrote report" not in result.stdout.str()
    assert sorted(p.name for p in pytester.path.iterdir() if not p.name.startswith(".")) == ["thresholds"]
