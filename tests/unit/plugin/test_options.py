"""The plugin's options resolved once per run: command-line flags first (relative to the invocation folder),
then their ini twins (relative to the ini file's folder), then the defaults; a bad device is a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_saeval.plugin.options import PluginOptions, glob_problem, split_glob


def _options(pytester: pytest.Pytester, *args: str) -> PluginOptions:
    return PluginOptions.from_config(pytester.parseconfig(*args))


def test_defaults(pytester: pytest.Pytester) -> None:
    assert _options(pytester) == PluginOptions()
    assert PluginOptions() == PluginOptions(device=None, output_dir=None, update_baseline=False, suite=None,
                                            use_cache=True, cache_dir=None, report=None,
                                            thresholds=("thresholds/*.yaml",))


def test_command_line_paths_are_relative_to_the_invocation_folder(pytester: pytest.Pytester) -> None:
    options = _options(pytester, "--saeval-device", "cuda:1", "--saeval-output-dir", "out",
                       "--saeval-update-baseline", "--saeval-suite", "thresholds/demo.yaml", "--saeval-no-cache",
                       "--saeval-cache-dir", "c", "--saeval-report", "r/page.html")
    here = pytester.path
    assert options == PluginOptions(device="cuda:1", output_dir=here / "out", update_baseline=True,
                                    suite=here / "thresholds" / "demo.yaml", use_cache=False, cache_dir=here / "c",
                                    report=here / "r" / "page.html")


def test_ini_paths_are_relative_to_the_ini_file(pytester: pytest.Pytester) -> None:
    (pytester.path / "conf").mkdir()
    (pytester.path / "conf" / "pytest.ini").write_text(
        "[pytest]\nsaeval_thresholds = suites/*.yaml other/*.yml\nsaeval_device = cpu\nsaeval_output_dir = out\n"
        "saeval_suite = suites/a.yaml\nsaeval_cache = false\nsaeval_cache_dir = c\nsaeval_report = page.html\n"
    )
    options = _options(pytester, "-c", "conf/pytest.ini")
    conf = pytester.path / "conf"
    assert options == PluginOptions(device="cpu", output_dir=conf / "out", suite=conf / "suites" / "a.yaml",
                                    use_cache=False, cache_dir=conf / "c", report=conf / "page.html",
                                    thresholds=("suites/*.yaml", "other/*.yml"))
    # the flags win over the ini values
    flags = _options(pytester, "-c", "conf/pytest.ini", "--saeval-device", "auto", "--saeval-output-dir", "o2")
    assert flags.device == "auto" and flags.output_dir == pytester.path / "o2"


def test_paths_expand_the_home_folder(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """``saeval_cache_dir = ~/c`` and a quoted ``--saeval-output-dir '~/o'`` used to make folders named ``~``."""
    home = pytester.path / "home"
    monkeypatch.setenv("HOME", str(home))
    (pytester.path / "pytest.ini").write_text("[pytest]\nsaeval_output_dir = ~/o\nsaeval_cache_dir = ~/c\n"
                                              "saeval_report = ~/r.html\nsaeval_suite = ~/s.yaml\n")
    options = _options(pytester)
    assert (options.output_dir, options.cache_dir, options.report, options.suite) == (
        home / "o", home / "c", home / "r.html", home / "s.yaml")
    flags = _options(pytester, "--saeval-output-dir", "~/o2", "--saeval-cache-dir", "~/c2", "--saeval-report",
                     "~/r2.html", "--saeval-suite", "~/s2.yaml")
    assert (flags.output_dir, flags.cache_dir, flags.report, flags.suite) == (
        home / "o2", home / "c2", home / "r2.html", home / "s2.yaml")
    blank = _options(pytester, "--saeval-output-dir", " ", "--saeval-cache-dir", "")  # blank: the ini value
    assert (blank.output_dir, blank.cache_dir) == (home / "o", home / "c")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CUDA", "mps"])
def test_a_bad_device_is_a_usage_error(device: str) -> None:
    with pytest.raises(pytest.UsageError, match=f"--saeval-device must be auto, cpu, cuda or cuda:N, got '{device}'"):
        PluginOptions(device=device)


@pytest.mark.parametrize(("line", "message"), [
    ("saeval_device = gpu0", "saeval_device must be auto, cpu, cuda or cuda:N, got 'gpu0'"),
    ("saeval_shard_others = bogus", "saeval_shard_others must be one of first, all, none, got 'bogus'"),
])
def test_a_bad_ini_value_names_the_ini_file_and_key(pytester: pytest.Pytester, line: str, message: str) -> None:
    ini = pytester.path / "pytest.ini"
    ini.write_text(f"[pytest]\n{line}\n")
    with pytest.raises(pytest.UsageError) as info:
        _options(pytester)
    assert str(info.value).startswith(f"{ini}: {message}. Fix: ")
    flag = "--saeval-device=cpu" if "device" in line else "--saeval-shard-others=all"
    assert _options(pytester, flag) is not None  # the flag replaces the ini value: nothing to refuse


def test_thresholds_become_a_tuple() -> None:
    assert PluginOptions(thresholds=["a/*.yaml"]).thresholds == ("a/*.yaml",)  # type: ignore[arg-type]
    assert PluginOptions(output_dir=Path("o")).output_dir == Path("o")


@pytest.mark.parametrize(("pattern", "problem"), [
    ("thresholds/*.yaml", None), ("thresholds/**/*.yaml", None), ("/abs/*.yaml", None), ("**", None),
    ("", "it names no files"), (".", "it names no files"), ("/", "it names no files"),
    ("thresholds/***.yaml", "'**' can only be a whole path component"), ("a/b**/c.yaml", "'**' can only be a whole path component"),
])
def test_which_globs_can_be_used(pattern: str, problem: str | None) -> None:
    assert glob_problem(pattern) == problem
    if problem is not None:
        with pytest.raises(pytest.UsageError, match="saeval_thresholds: .* is not a glob of suite files"):
            PluginOptions(thresholds=(pattern,))


def test_an_absolute_glob_starts_at_its_anchor() -> None:
    assert split_glob(Path("/root"), "/tmp/suites/*.yaml") == (Path("/"), "tmp/suites/*.yaml")
    assert split_glob(Path("/root"), "thresholds/*.yaml") == (Path("/root"), "thresholds/*.yaml")
