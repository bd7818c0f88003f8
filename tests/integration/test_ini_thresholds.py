"""``saeval_thresholds``: the globs of suite files. An absolute glob works as a relative one; a glob Python
cannot use is a usage error naming the ini key; a match named like a suite that is no readable file (a
dangling link, a FIFO, a device, a folder) is a collection error saying what it is, never passed over."""

from __future__ import annotations

import os
import sys

import pytest

from tests.integration.plugin_helpers import Assets

SUITE = "saes:\n  - id: a\n    path: {sae}\n    gates:\n      l0: '<= 1000'\n"


def _good_suite(pytester: pytest.Pytester, assets: Assets) -> None:
    (pytester.path / "thresholds").mkdir()
    (pytester.path / "thresholds" / "good.yaml").write_text(
        assets.model_block() + assets.data_block() + SUITE.format(sae=assets.sae0))


def test_an_absolute_glob_collects_like_a_relative_one(pytester: pytest.Pytester, assets: Assets) -> None:
    _good_suite(pytester, assets)
    (pytester.path / "pytest.ini").write_text(f"[pytest]\nsaeval_thresholds = {pytester.path}/thresholds/*.yaml\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert "thresholds/good.yaml::a::l0" in result.stdout.lines


@pytest.mark.parametrize(("pattern", "problem"), [
    ("thresholds/***.yaml", "'**' can only be a whole path component"),
    (".", "it names no files"),
])
def test_a_glob_that_cannot_be_used_is_a_usage_error(pytester: pytest.Pytester, pattern: str, problem: str) -> None:
    (pytester.path / "pytest.ini").write_text(f"[pytest]\nsaeval_thresholds = {pattern}\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == (f"ERROR: saeval_thresholds: {pattern!r} is not a glob of suite files: {problem}. "
                                      "Fix: write globs relative to the rootdir (or absolute), e.g. saeval_thresholds "
                                      "= thresholds/*.yaml thresholds/**/*.yaml")
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero are POSIX")
def test_a_match_that_is_no_readable_file_is_a_collection_error(pytester: pytest.Pytester, assets: Assets) -> None:
    _good_suite(pytester, assets)
    folder = pytester.path / "thresholds"
    (folder / "dangling.yaml").symlink_to("moved.yaml")
    os.mkfifo(folder / "fifo.yaml")
    (folder / "zero.yaml").symlink_to("/dev/zero")
    (folder / "dir.yaml").mkdir()
    (folder / "notes.txt").symlink_to("nowhere")  # not named like a suite: not the plugin's to report
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    for line in (
        "thresholds/dangling.yaml: is a symbolic link to 'moved.yaml', which does not exist. Fix: point the link at "
        "the suite file, or remove it",
        "thresholds/fifo.yaml: is not a regular file (a FIFO). Fix: pass a .yaml file",
        "thresholds/zero.yaml: is not a regular file (a character device). Fix: pass a .yaml file",
        "thresholds/dir.yaml: is a folder, not a suite file. Fix: pass a .yaml file",
    ):
        assert line in result.stdout.lines, out
    assert "4 errors" in out and "notes.txt" not in out and "Traceback" not in out
