"""``saeval init``: one evaluation of a suite, proposed gates written into a copy (``--output``) or the
file itself, every other line kept; the proposed suite then passes ``saeval run`` on the same inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.cli import main
from pytest_saeval.spec.loader import load_suite
from tests.integration.badinput.cases import Assets
from tests.integration.cli_helpers import NO_CACHE, run, write_suite


def _init(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["init", *args, "--no-progress"])
    out, err = capsys.readouterr()
    return rc, out, err


def _commented(path: Path) -> str:
    text = path.read_text()
    text = text.replace("model:\n", "# reviewed thresholds\nmodel:\n", 1)
    path.write_text(text.replace("  - id: topk\n", "  - id: topk  # the layer-1 SAE\n"))
    return path.read_text()


def test_init_writes_proposed_gates_that_pass_on_the_same_inputs(
    tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path / "s.yaml", tiny, gates0='l0: "<= 0.5"', gates1='explained_variance: ">= 0.999"')
    original = _commented(suite)
    assert run(capsys, str(suite), *NO_CACHE)[0] == 1  # too strict on purpose

    proposed = tmp_path / "proposed.yaml"
    rc, out, err = _init(capsys, str(suite), "--output", str(proposed))
    assert rc == 0, out + err
    assert err == ""
    assert out.splitlines()[-1] == f"saeval: wrote {proposed}"
    assert f"{suite} [sae0]" in out and f"{suite} [topk]" in out
    assert suite.read_text() == original  # --output leaves the suite file alone

    new = proposed.read_text()
    assert "# reviewed thresholds\n" in new and "  - id: topk  # the layer-1 SAE\n" in new
    assert 'l0: "<= 0.5"' not in new and 'explained_variance: ">= 0.999"' not in new
    loaded = load_suite(proposed)
    for sae in loaded.saes:
        assert {"l0", "explained_variance"} <= set(sae.metrics), sae.metrics
    rc, out, err = run(capsys, str(proposed), *NO_CACHE)
    assert rc == 0, out + err
    assert "FAILED" not in out


def test_init_edits_the_suite_in_place(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "s.yaml", tiny, second=False)
    before = _commented(suite)
    rc, out, _ = _init(capsys, str(suite))
    assert rc == 0 and out.splitlines()[-1] == f"saeval: wrote {suite}"
    after = suite.read_text()
    assert after != before and "# reviewed thresholds\n" in after and "# measured" in after
    assert run(capsys, str(suite), *NO_CACHE)[0] == 0


def test_init_on_a_bad_suite_is_bad_input(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path / "s.yaml", tiny, gates0='l00: ">= 0"')
    text = suite.read_text()
    rc, out, err = _init(capsys, str(suite))
    assert rc == 2 and out == ""
    assert err.startswith(f"saeval: error: {suite}:") and "unknown metric 'l00'" in err and len(err.splitlines()) == 1
    assert suite.read_text() == text
    rc, _, err = _init(capsys, str(tmp_path / "missing.yaml"))
    assert rc == 2 and "suite file not found" in err
