"""The ``saeval`` parser: each command's options and defaults, and usage errors raised (for exit 2) instead of
argparse exiting the process."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pytest_saeval.cli.args import MARGIN_FLAGS, CommandLineError, parser


def test_run_options_and_defaults() -> None:
    args = parser().parse_args(["run", "a.yaml", "b.yaml", "--output-dir", "out", "--shard", "2/3", "--no-cache"])
    assert (args.command, args.suites, args.output_dir, args.shard) == ("run", ["a.yaml", "b.yaml"], Path("out"), "2/3")
    assert args.no_cache and not args.update_baseline and args.report is None and args.device is None
    assert args.cache_dir is None and not args.verbose and not args.no_progress


def test_merge_needs_an_output_folder() -> None:
    args = parser().parse_args(["merge", "s1", "s2", "--output-dir", "o", "--update-baseline-force"])
    assert args.folders == ["s1", "s2"] and args.output_dir == Path("o") and args.update_baseline_force
    with pytest.raises(CommandLineError, match="--output-dir") as info:
        parser().parse_args(["merge", "s1"])
    assert info.value.usage.startswith("usage: saeval merge") and info.value.prog == "saeval merge"


def test_init_margins_default_and_take_their_flags() -> None:
    args = parser().parse_args(["init", "s.yaml"])
    assert {name: getattr(args, f"margin_{name}") for name in MARGIN_FLAGS} == {
        "k": 2.0, "abs_floor": 0.005, "rel_floor": 0.02, "range_rel_floor": 0.1}
    flags = [arg for name, flag in MARGIN_FLAGS.items() for arg in (flag, "0.5")]
    changed = parser().parse_args(["init", *flags, "--sae", "a", "--sae", "b"])
    assert all(getattr(changed, f"margin_{name}") == 0.5 for name in MARGIN_FLAGS)
    assert changed.suite is None and changed.sae == [Path("a"), Path("b")]


@pytest.mark.parametrize(("argv", "words"), [
    ([], "the following arguments are required: command"),
    (["run"], "the following arguments are required: SUITE.yaml"),
    (["run", "a.yaml", "--bogus"], "unrecognized arguments: --bogus"),
    (["init", "--margin-k", "x"], "argument --margin-k: invalid float value: 'x'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
], ids=["no-command", "no-suite", "unknown-flag", "bad-number", "unknown-command"])
def test_usage_errors_are_raised_not_exited(argv: list[str], words: str) -> None:
    with pytest.raises(CommandLineError) as info:
        parser().parse_args(argv)
    assert words in info.value.message and info.value.usage.startswith("usage: saeval")
    command = argv[0] if argv and argv[0] in ("run", "init") else None
    assert info.value.prog == (f"saeval {command}" if command else "saeval")  # whose --help the fix names


_PATH_FLAGS = [("run", "--output-dir"), ("run", "--cache-dir"), ("run", "--report"), ("merge", "--output-dir"),
               ("merge", "--report"), ("merge", "--cache-dir"), ("init", "--output"), ("init", "--cache-dir"),
               ("init", "--model"), ("init", "--sae"), ("init", "--tokens")]


def _with(command: str, flag: str, value: str) -> list[str]:
    given = {"run": ["run", "a.yaml"], "merge": ["merge", "s1", "--output-dir", "o"], "init": ["init"]}[command]
    return [*given, flag, value]


@pytest.mark.parametrize(("command", "flag"), _PATH_FLAGS)
def test_path_options_expand_the_home_folder(command: str, flag: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A quoted ``'~/out'`` (or a CI variable holding one) reaches the command unexpanded: it used to make a folder
    named ``~``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    args = parser().parse_args(_with(command, flag, "~/x"))
    value = getattr(args, flag.lstrip("-").replace("-", "_"))
    assert value == ([tmp_path / "x"] if flag == "--sae" else tmp_path / "x")


@pytest.mark.parametrize(("command", "flag"), _PATH_FLAGS)
@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_path_option_is_a_usage_error(command: str, flag: str, empty: str) -> None:
    """``--output-dir ''`` used to write into the current folder, ``--cache-dir ''`` to scatter caches there."""
    with pytest.raises(CommandLineError) as info:
        parser().parse_args(_with(command, flag, empty))
    named = "--output/-o" if flag == "--output" else flag
    assert info.value.message.startswith(f"argument {named}: the path is empty ({empty!r}; an unset variable")
    assert info.value.prog == f"saeval {command}"


def test_schema_takes_no_options() -> None:
    assert parser().parse_args(["schema"]).command == "schema"
    with pytest.raises(CommandLineError):
        parser().parse_args(["schema", "extra"])


README = Path(__file__).resolve().parents[3] / "README.md"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]  # argparse has no public way
    return dict(actions[0].choices)


@pytest.mark.parametrize("command", ["run", "merge", "init", "schema"])
def test_the_readme_usage_block_lists_every_option(command: str) -> None:
    block = README.read_text(encoding="utf-8").split("## The `saeval` command", 1)[1].split("```")[1]
    lines = re.split(r"\n(?=saeval )", block)
    written = {flag for line in lines if line.startswith(f"saeval {command}") for flag in re.findall(r"--?[\w-]+", line)}
    options = [set(action.option_strings) for action in _subparsers()[command]._actions
               if action.option_strings and "--help" not in action.option_strings]
    missing = [sorted(names) for names in options if not names & written]
    assert not missing, f"saeval {command} options missing from the README's usage block"
    assert written <= set().union(*options), f"the README names options saeval {command} does not have"
