"""The plugin's options: command-line flags and their ini twins, resolved once per run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath

import pytest

from pytest_saeval.errors import SaevalError
from pytest_saeval.fileio import write_problem
from pytest_saeval.plugin.ledger import absolute
from pytest_saeval.run.shards import Shard, shard_from
from pytest_saeval.settings import DEVICE_CHOICES, is_device
from pytest_saeval.store.folder import file_keyed_from_env

__all__ = ["SHARD_OTHERS", "SUFFIXES", "PluginOptions", "add_options", "glob_problem", "glob_suites", "split_glob"]

SUFFIXES = (".yaml", ".yml")
"""File name endings of suite files."""

SHARD_OTHERS: tuple[str, ...] = ("first", "all", "none")
"""Where the tests that are not gate tests run in a sharded session: shard 1, every shard, no shard."""


@dataclass(frozen=True)
class PluginOptions:
    """The plugin's command-line options and ini values, resolved."""

    device: str | None = None
    """``--saeval-device`` / ``saeval_device``: overrides every suite's ``model.device``."""
    output_dir: Path | None = None
    """``--saeval-output-dir`` / ``saeval_output_dir``: where the JSON and CSV outputs go."""
    update_baseline: bool = False
    """``--saeval-update-baseline``: rewrite each suite's baseline file from this run."""
    force_baseline: bool = False
    """``--saeval-update-baseline-force``: record the baseline even when gates failed."""
    suite: Path | None = None
    """``--saeval-suite`` / ``saeval_suite``: the suite the session fixtures serve."""
    use_cache: bool = True
    """``saeval_cache`` (``--saeval-no-cache`` turns it off): read and write the results and model-side caches."""
    cache_dir: Path | None = None
    """``--saeval-cache-dir`` / ``saeval_cache_dir``: folder of the caches."""
    file_keyed: bool = True
    """``$SAEVAL_FILE_KEYED`` (``0`` turns it off): answer unchanged file-based suites from the file-keyed cache."""
    report: Path | None = None
    """``--saeval-report`` / ``saeval_report``: the self-contained HTML report to write."""
    thresholds: tuple[str, ...] = ("thresholds/*.yaml",)
    """``saeval_thresholds``: globs, relative to the rootdir, of the suite files to collect."""
    shard: Shard | None = None
    """``--saeval-shard K/N`` (else ``$SAEVAL_SHARD``): run only shard K of N of the gate tests' evaluation groups."""
    shard_others: str = "first"
    """``--saeval-shard-others`` / ``saeval_shard_others``: which shards run the tests that are not gate tests
    (one of :data:`SHARD_OTHERS`)."""

    def __post_init__(self) -> None:
        if self.device is not None and not is_device(self.device):
            raise pytest.UsageError(
                f"--saeval-device must be {DEVICE_CHOICES}, got {self.device!r}. "
                "Fix: pass e.g. --saeval-device cpu or --saeval-device cuda:0"
            )
        if self.shard_others not in SHARD_OTHERS:
            raise pytest.UsageError(
                f"--saeval-shard-others must be one of {', '.join(SHARD_OTHERS)}, got {self.shard_others!r}. "
                "Fix: first (shard 1 runs the other tests), all (every shard) or none (no shard)"
            )
        object.__setattr__(self, "thresholds", tuple(self.thresholds))
        for pattern in self.thresholds:
            problem = glob_problem(pattern)
            if problem is not None:
                raise pytest.UsageError(
                    f"saeval_thresholds: {pattern!r} is not a glob of suite files: {problem}. Fix: write globs relative "
                    "to the rootdir (or absolute), e.g. saeval_thresholds = thresholds/*.yaml thresholds/**/*.yaml"
                )
        for flag, path, folder in (("--saeval-output-dir", self.output_dir, True), ("--saeval-report", self.report, False)):
            problem = write_problem(path, folder=folder) if path is not None else None
            if problem is not None:  # found before any test runs, not after the evaluation
                raise pytest.UsageError(f"{flag}: cannot write {path}: {problem}. Fix: give {flag} a place you can write to")

    @classmethod
    def from_config(cls, config: pytest.Config) -> PluginOptions:
        """Command-line options first, then ini values (ini paths are relative to the ini file's folder; ``~`` is
        expanded in both, and a blank value counts as unset)."""
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        cwd = config.invocation_params.dir

        def path_option(option: str, ini: str) -> Path | None:
            """The flag (relative to the invocation folder), else the ini value (relative to the ini file); ``~``
            expanded (a quoted flag or an ini value reaches us unexpanded), a blank value unset."""
            value = config.getoption(option)
            if value and value.strip():
                return cwd / Path(value).expanduser()
            value = config.getini(ini)
            return base / Path(value).expanduser() if value and value.strip() else None

        _check_ini_choices(config)
        device = config.getoption("saeval_device") or config.getini("saeval_device") or None
        try:
            shard = shard_from(config.getoption("saeval_shard"), key="--saeval-shard")
            file_keyed = file_keyed_from_env()
        except SaevalError as e:
            raise pytest.UsageError(str(e)) from None
        return cls(
            shard=shard,
            shard_others=config.getoption("saeval_shard_others") or config.getini("saeval_shard_others") or "first",
            device=device,
            output_dir=path_option("saeval_output_dir", "saeval_output_dir"),
            update_baseline=bool(config.getoption("saeval_update_baseline") or config.getoption("saeval_update_baseline_force")),
            force_baseline=bool(config.getoption("saeval_update_baseline_force")),
            suite=path_option("saeval_suite", "saeval_suite"),
            use_cache=not config.getoption("saeval_no_cache") and bool(config.getini("saeval_cache")),
            cache_dir=path_option("saeval_cache_dir", "saeval_cache_dir"),
            file_keyed=file_keyed,
            report=path_option("saeval_report", "saeval_report"),
            thresholds=tuple(config.getini("saeval_thresholds")),
        )


def _check_ini_choices(config: pytest.Config) -> None:
    """An ini value that the command line does not replace, checked where it is written (the ini file and
    its key, not the flag the user did not give)."""
    where = str(config.inipath) if config.inipath is not None else "the ini file"
    device = config.getini("saeval_device")
    if device and not config.getoption("saeval_device") and not is_device(device):
        raise pytest.UsageError(f"{where}: saeval_device must be {DEVICE_CHOICES}, got {device!r}. "
                                "Fix: write e.g. saeval_device = cpu, or leave it out (the suites' own model.device)")
    others = config.getini("saeval_shard_others")
    if others and not config.getoption("saeval_shard_others") and others not in SHARD_OTHERS:
        raise pytest.UsageError(f"{where}: saeval_shard_others must be one of {', '.join(SHARD_OTHERS)}, got "
                                f"{others!r}. Fix: first (shard 1 runs the other tests), all (every shard) or none")


def add_options(parser: pytest.Parser) -> None:
    """Register the ``--saeval-*`` options (one group) and the ``saeval_*`` ini keys."""
    group = parser.getgroup("saeval", "SAE quality gates (pytest-saeval)")
    group.addoption("--saeval-device", dest="saeval_device", default=None, metavar="DEVICE",
                    help="load every suite's model on DEVICE: auto, cpu, cuda or cuda:N (ini: saeval_device)")
    group.addoption("--saeval-output-dir", dest="saeval_output_dir", default=None, metavar="DIR",
                    help="write one JSON per SAE, all_eval_results.json and all_eval_results.csv to DIR "
                         "(ini: saeval_output_dir)")
    group.addoption("--saeval-update-baseline", dest="saeval_update_baseline", action="store_true", default=False,
                    help="rewrite each suite's baseline file from this run (from the suite's own inputs); gates still "
                         "compare with the old values, and a run with evaluation errors or failing gates writes nothing")
    group.addoption("--saeval-update-baseline-force", dest="saeval_update_baseline_force", action="store_true",
                    default=False, help="as --saeval-update-baseline, and record the values even when gates failed")
    group.addoption("--saeval-suite", dest="saeval_suite", default=None, metavar="FILE",
                    help="the suite file served by the saeval_model, saeval_saes, saeval_tokens and "
                         "saeval_results fixtures (ini: saeval_suite)")
    group.addoption("--saeval-report", dest="saeval_report", default=None, metavar="PAGE",
                    help="write a self-contained HTML report (gate table and the SAE Lens evals plots) to PAGE "
                         "(ini: saeval_report)")
    group.addoption("--saeval-no-cache", dest="saeval_no_cache", action="store_true", default=False,
                    help="do not read or write the caches: file-keyed answers, results, model-side (ini: saeval_cache = false)")
    group.addoption("--saeval-cache-dir", dest="saeval_cache_dir", default=None, metavar="DIR",
                    help="folder of the caches (ini: saeval_cache_dir)")
    group.addoption("--saeval-shard", dest="saeval_shard", default=None, metavar="K/N",
                    help="run only shard K of N (numbered from 1) of the gate tests' evaluation groups and record it "
                         "in --saeval-output-dir for `saeval merge`; auto reads the CI system's index variables "
                         "(default: $SAEVAL_SHARD)")
    group.addoption("--saeval-shard-others", dest="saeval_shard_others", default=None, choices=SHARD_OTHERS,
                    help="with --saeval-shard: which shards run the tests that are not gate tests: first (shard 1, "
                         "the default), all or none (ini: saeval_shard_others)")
    parser.addini("saeval_thresholds", type="args", default=["thresholds/*.yaml"],
                  help="globs (relative to the rootdir) of suite files collected as tests")
    parser.addini("saeval_device", default="", help="default for --saeval-device")
    parser.addini("saeval_output_dir", default="", help="default for --saeval-output-dir (relative to the ini file)")
    parser.addini("saeval_report", default="", help="default for --saeval-report (relative to the ini file)")
    parser.addini("saeval_suite", default="", help="default for --saeval-suite (relative to the ini file)")
    parser.addini("saeval_cache", type="bool", default=True, help="read and write the results and model-side caches (default true)")
    parser.addini("saeval_shard_others", default="", help="default for --saeval-shard-others (first, all or none)")
    parser.addini("saeval_cache_dir", default="", help="default for --saeval-cache-dir (relative to the ini file)")


def glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a ``saeval_thresholds`` glob (which ``Path.glob`` would raise on), or None."""
    path = PurePath(pattern)
    rest = path.parts[1:] if path.is_absolute() else path.parts
    if not rest or rest == (".",):
        return "it names no files"
    if any("**" in part and part != "**" for part in rest):
        return "'**' can only be a whole path component"
    return None


def split_glob(root: Path, pattern: str) -> tuple[Path, str]:
    """The folder to glob from and the relative pattern: the rootdir, or the anchor of an absolute pattern."""
    path = PurePath(pattern)
    if path.is_absolute():
        return Path(path.anchor), str(path.relative_to(path.anchor))
    return root, pattern


def glob_suites(root: Path, patterns: Iterable[str]) -> tuple[frozenset[Path], frozenset[Path]]:
    """The files the ``saeval_thresholds`` globs match (absolute paths), and the matches named like suite
    files that are no readable files (a dangling link, a FIFO, a device, a folder): those are collected as
    suite files whose error says what they are, never passed over."""
    found: set[Path] = set()
    for pattern in patterns:
        folder, relative = split_glob(root, pattern)
        found.update(absolute(p) for p in folder.glob(relative))
    files = frozenset(p for p in found if p.is_file())
    return files, frozenset(p for p in found - files if p.suffix in SUFFIXES)
