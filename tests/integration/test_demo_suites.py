"""The shipped demo suites: thresholds/demo.yaml passes, examples/weak.yaml fails with the expected messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_saeval.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "thresholds" / "demo.yaml"
WEAK = ROOT / "examples" / "weak.yaml"

WEAK_MESSAGES = [
    r"\[weak-layer1-res-standard\] explained_variance = 0\.7\d+ \[[^\]]+\], needs >= 0\.88 \(short by 0\.1\d+\) — "
    r"\S*weak\.yaml:\d+",
    r"\[weak-layer1-res-standard\] kl_div_score = 0\.9\d+ \[[^\]]+\], needs >= 0\.98 \(short by 0\.0\d+\)",
    r"\[weak-layer1-res-standard\] ce_loss_score = 0\.9\d+ \[[^\]]+\], needs >= 0\.98 \(short by 0\.0\d+\)",
    r"\[weak-layer1-res-standard\] l0 = 1\d\d(\.\d+)? \[[^\]]+\], needs <= 40 \(over by \d+(\.\d+)?\)",
    r"\[weak-layer1-res-standard\] cossim = 0\.8\d+ \[[^\]]+\], needs >= 0\.94 \(short by 0\.0\d+\)",
]


def test_demo_suite_passes(capsys, tmp_path):
    code = main(["run", str(DEMO), "--no-progress", "--no-cache", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "18 passed, 0 failed" in out
    assert (tmp_path / "all_eval_results.json").is_file()


def test_weak_suite_fails_with_reviewer_messages(capsys):
    code = main(["run", str(WEAK), "--no-progress", "--no-cache"])
    out = capsys.readouterr().out
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == len(WEAK_MESSAGES)
    for pattern in WEAK_MESSAGES:
        assert any(re.search(pattern, line) for line in failed), (pattern, failed)


@pytest.mark.parametrize("extra", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_weak_suite_under_pytest(pytester, extra):
    result = pytester.runpytest_subprocess(str(WEAK), "-p", "no:cacheprovider", "--saeval-no-cache", *extra)
    result.assert_outcomes(failed=5)
    text = result.stdout.str()
    for pattern in WEAK_MESSAGES:
        assert re.search(pattern, text), pattern
