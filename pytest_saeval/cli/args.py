"""The ``saeval`` command line: ``run``, ``init``, ``merge`` and ``schema`` and their options (argparse, with
usage errors returned to :func:`pytest_saeval.cli.main` instead of exiting). Path options expand ``~`` and refuse an
empty value."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pytest_saeval.settings import MarginPolicy

__all__ = ["MARGIN_FLAGS", "CommandLineError", "parser"]

MARGIN_FLAGS = {"k": "--margin-k", "abs_floor": "--margin-abs", "rel_floor": "--margin-rel",
                "range_rel_floor": "--margin-range-rel"}
"""``MarginPolicy`` field -> the ``saeval init`` option that sets it."""


class CommandLineError(Exception):
    """A usage error argparse found (exit 2 through ``main``)."""

    def __init__(self, message: str, usage: str, prog: str = "saeval") -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
        self.prog = prog
        """The command whose usage was wrong (``saeval merge``), for its ``--help``."""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit with code 2 through ``main`` instead of ``sys.exit``."""

    def error(self, message: str) -> Any:
        raise CommandLineError(message, self.format_usage(), self.prog)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """As argparse's, but arguments left over after a command are that command's usage error (argparse
        reports them as the top parser's)."""
        parsed, extra = super().parse_known_args(args, namespace)
        command = getattr(parsed, "command", None)
        if extra and self._subparsers is not None and command is not None:
            actions = [a for a in self._subparsers._group_actions if isinstance(a, argparse._SubParsersAction)]
            if actions and command in actions[0].choices:  # argparse offers no public way to the subparsers
                actions[0].choices[command].error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed, extra


def _path(text: str) -> Path:
    """The value of a path option: ``~`` expanded (a quoted ``'~/out'``, or a CI system's variable, reaches the command
    unexpanded); an empty value is a usage error (an unset variable in the command would name the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"the path is empty ({text!r}; an unset variable in the command?), which "
                                         "would name the current folder")
    return Path(text).expanduser()


def parser() -> argparse.ArgumentParser:
    """The ``saeval`` parser."""
    top = _Parser(prog="saeval", description="Gate trained sparse autoencoders (SAEs) with threshold files.")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(sub)
    _add_merge(sub)
    _add_init(sub)
    sub.add_parser(
        "schema",
        help="print the suite file format as a JSON Schema",
        description="Print the JSON Schema of suite files (for editors: save it, then start a suite with "
        "`# yaml-language-server: $schema=<path to the saved file>`).",
    )
    return top


_CACHE_DIR_HELP = ("folder of the caches (default: .saeval-cache in the project's root, the nearest folder above the "
                   "(first) suite with a pyproject.toml, pytest.ini, setup.cfg, tox.ini or setup.py; else next to the suite; "
                   "$SAEVAL_CACHE_DIR overrides both)")


def _add_common(command: argparse.ArgumentParser) -> None:
    """Options of every command that evaluates."""
    command.add_argument("--device", default=None, metavar="D",
                         help="override every suite's model.device: auto, cpu, cuda or cuda:N")
    command.add_argument("--no-cache", action="store_true",
                         help="do not read or write the caches (file-keyed answers, results, model-side)")
    command.add_argument("--cache-dir", type=_path, default=None, metavar="DIR", help=_CACHE_DIR_HELP)
    command.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    command.add_argument("-v", "--verbose", action="store_true", help="show long error messages whole")


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="evaluate suite files and check their gates",
        description="Evaluate the SAEs of each suite file and check their gates. "
        "Exit 0: every gate passed; 1: a gate failed; 2: bad input.",
    )
    run.add_argument("suites", nargs="+", metavar="SUITE.yaml", help="suite (threshold) files")
    run.add_argument("--output-dir", type=_path, default=None, metavar="DIR",
                     help="write one JSON per SAE, all_eval_results.json and all_eval_results.csv here")
    run.add_argument("--update-baseline", action="store_true",
                     help="rewrite each suite's baseline file from this run (gates are checked against the old "
                     "values first; nothing is written when a gate failed)")
    run.add_argument("--update-baseline-force", action="store_true",
                     help="as --update-baseline, and record the values even when gates failed")
    run.add_argument("--report", type=_path, default=None, metavar="PAGE.html",
                     help="write a self-contained HTML report (gate table and the SAE Lens evals plots)")
    run.add_argument("--shard", default=None, metavar="K/N",
                     help="evaluate only shard K of N (numbered from 1) of the suites' evaluation groups, and record "
                     "it in --output-dir for `saeval merge`; `auto` reads the CI system's index variables "
                     "(default: $SAEVAL_SHARD)")
    _add_common(run)


def _add_merge(sub: Any) -> None:
    merge = sub.add_parser(
        "merge",
        help="merge the output folders of the N shards of one partition into one verdict (no model is loaded)",
        description="Check that the folders hold all N shards of one partition, each once, then write the merged "
        "outputs and report, and check every gate again from the recorded values (no model is loaded). "
        "Exit 0: every gate passed; 1: a gate failed; 2: a shard is missing, doubled or inconsistent.",
    )
    merge.add_argument("folders", nargs="+", metavar="DIR", help="the --output-dir folders of the shards")
    merge.add_argument("--output-dir", type=_path, required=True, metavar="OUT",
                       help="write the merged per-SAE JSON, all_eval_results.json/.csv and summary.md here")
    merge.add_argument("--report", type=_path, default=None, metavar="PAGE.html",
                       help="write the self-contained HTML report of the merged run")
    merge.add_argument("--update-baseline", action="store_true",
                       help="rewrite each suite's baseline file from the merged results (instead of in the shards; "
                       "from the suites' own inputs only; nothing is written when a gate failed)")
    merge.add_argument("--update-baseline-force", action="store_true",
                       help="as --update-baseline, and record the values even when gates failed")
    merge.add_argument("--no-cache", action="store_true",
                       help="do not keep the shards' timings in the cache folder for the next partition (a merge "
                       "keeps them only when every gate passed)")
    merge.add_argument("--cache-dir", type=_path, default=None, metavar="DIR",
                       help="cache folder that keeps the timings (default: as for saeval run, from the first "
                       "merged suite)")
    merge.add_argument("-v", "--verbose", action="store_true", help="show long error messages whole")


def _add_init(sub: Any) -> None:
    init = sub.add_parser(
        "init",
        help="propose noise-aware gates for a suite from one evaluation (or write a new suite)",
        description="Evaluate a suite and propose gates for each SAE from the measured values, with margins from "
        "their bootstrap intervals: m = max(k * half-width, abs, rel * |value|) (range metrics such as l0 use "
        "range-rel), bounds rounded outward. Gates the suite already has stay as written unless --update-gates. "
        "Only the gates: entries of the file change (or use --output). Without a SUITE.yaml, --model, --sae and "
        "--tokens write a new suite to --output first.",
    )
    init.add_argument("suite", nargs="?", default=None, metavar="SUITE.yaml", help="the suite file to propose gates for")
    init.add_argument("--output", "-o", type=_path, default=None, metavar="NEW.yaml",
                      help="write the proposed suite here instead of editing SUITE.yaml in place")
    init.add_argument("--update-gates", action="store_true",
                      help="also replace gates the suite already has (each change is printed as old -> new)")
    init.add_argument("--model", type=_path, default=None, metavar="PATH", help="new suite: the model folder")
    init.add_argument("--sae", type=_path, action="append", default=None, metavar="PATH",
                      help="new suite: an SAE folder (repeat for several)")
    init.add_argument("--tokens", type=_path, default=None, metavar="PATH", help="new suite: the token file")
    defaults = MarginPolicy()
    for (name, flag), what in zip(MARGIN_FLAGS.items(), (
        "interval half-widths between the interval's end and the bound",
        "smallest margin, in the metric's units",
        "smallest margin relative to |value| (one-sided gates)",
        "smallest margin relative to |value| (ranges such as l0)",
    )):
        default = getattr(defaults, name)
        init.add_argument(flag, dest=f"margin_{name}", type=float, default=default, metavar="X",
                          help=f"{what} (default {default}; {MarginPolicy.range_text(name)})")
    _add_common(init)
