"""A full disk at the end of a run: each thing that cannot be written is one ``cannot write X: No space left on
device`` line, and every previous output, report, baseline and step summary stays byte for byte as it was; a
full cache folder turns the cache off with one warning.

The disk is a real one where the platform allows (a tmpfs of 512 KiB mounted over the folder and filled to
the last byte, when the tests run as root on Linux); elsewhere the same faults are injected (``ENOSPC`` from
writes under the folder) -- :func:`tests.integration.badinput.faults.faulty_folder` says which it used.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.cli import main
from tests.integration.badinput.cases import Assets, shared_assets
from tests.integration.badinput.faults import faulty_folder
from tests.integration.badinput.kit import base_suite, write_suite


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    return shared_assets(tmp_path_factory)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".filler"}


@pytest.mark.parametrize("inject", [False, True], ids=["real-where-possible", "injected"])
def test_a_full_disk_leaves_every_previous_file_intact(tiny: Assets, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, inject: bool) -> None:
    disk = tmp_path / "disk"
    suite = write_suite(tmp_path, base_suite(tiny).replace("saes:\n", f"baseline: {disk / 'base.json'}\nsaes:\n", 1))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(disk / "step-summary.md"))
    args = ["run", str(suite), "--output-dir", str(disk / "out"), "--report", str(disk / "report.html"),
            "--update-baseline", "--no-cache", "--no-progress"]
    assert main(args) == 0
    suite.write_text(suite.read_text().replace('l0: ">= 0"', 'l0: ">= 1"'))  # the next outputs would differ
    summary = disk / "step-summary.md"
    summary.write_text(summary.read_text() + "\n" * (-summary.stat().st_size % 4096))  # no room left in its last page
    before = _snapshot(disk)
    assert {"out/all_eval_results.json", "out/suite__sae0.json", "out/summary.md", "report.html", "base.json",
            "step-summary.md"} <= set(before)
    capsys.readouterr()
    with faulty_folder(disk, "full", inject=inject) as how:
        assert how == "injected" or not inject
        rc = main(args)
        out, err = capsys.readouterr()
        after = _snapshot(disk)
        leftovers = [p.name for p in disk.rglob("*.tmp")]
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err  # the first problem is the one line
    assert err.startswith("saeval: error: cannot write ") and "No space left on device" in err
    assert "previous outputs were left as they were" in err
    assert after == before, [k for k in before if after.get(k) != before[k]]
    assert leftovers == []
    assert "PASS" in out  # the gates were checked; only writing failed


def test_a_full_cache_folder_warns_once_and_the_run_passes(tiny: Assets, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    suite = write_suite(tmp_path, base_suite(tiny))
    with faulty_folder(tmp_path / "disk", "full"):
        rc = main(["run", str(suite), "--cache-dir", str(tmp_path / "disk" / "cache"), "--no-progress"])
        leftovers = [p.name for p in (tmp_path / "disk").rglob("*.tmp")]
    out, err = capsys.readouterr()
    assert rc == 0 and "1 passed" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saeval: warning: saeval cache: cannot write ") and \
        "No space left on device" in lines[0], err
    assert leftovers == []
