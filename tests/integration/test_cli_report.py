"""``saeval run --report PAGE``: the self-contained HTML report with the gate table and the plots of every
SAE, written whether the gates pass or fail; an unwritable page is bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.badinput.cases import Assets
from tests.integration.cli_helpers import NO_CACHE, run, write_suite
from tests.integration.plugin_helpers import REPORT_PLOTS, read_report


def test_run_with_report_writes_the_page(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_suite(tmp_path / "a.yaml", tiny, gates1='frac_alive: "> 2"')
    b = write_suite(tmp_path / "b.yaml", tiny, context=4, second=False)
    page = tmp_path / "pages" / "report.html"
    rc, out, err = run(capsys, str(a), str(b), "--report", str(page), *NO_CACHE)
    assert rc == 1, out + err  # a failing gate fails the run; the report is written all the same
    assert err == ""
    assert f"saeval: wrote report {page}" in out.splitlines()
    rows, plots = read_report(page)
    assert rows == [("FAIL", "topk", "frac_alive"), ("PASS", "sae0", "l0"), ("PASS", "sae0", "l0")]
    assert plots == {"sae0": REPORT_PLOTS * 2, "topk": REPORT_PLOTS}  # sae0 of both suites
    text = page.read_text(encoding="utf-8")
    assert "1 of 3 gates failed." in text
    assert f"<code>{a}:" in text and f"<code>{b}:" in text  # each row says where its gate is


def test_an_unwritable_report_is_bad_input(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    suite = write_suite(tmp_path / "s.yaml", tiny, second=False)
    rc, out, err = run(capsys, str(suite), "--report", str(blocker / "report.html"), *NO_CACHE)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # found before anything is evaluated
    assert err.startswith(f"saeval: error: --report: cannot write {blocker / 'report.html'}: ") and "Fix: " in err
    assert out == ""
