"""The ``saeval`` command: run suite files outside pytest.

``saeval run SUITE.yaml... [--output-dir DIR] [--device D] [--update-baseline] [--no-cache]
[--cache-dir DIR] [--no-progress] [--shard K/N]``

``saeval merge DIR... --output-dir OUT [--report PAGE.html] [--update-baseline]``: the shards of one
partition into one verdict (exit 2 also when a shard is missing, doubled or inconsistent).

Prints one table per suite (SAE x gated metric: value, bound, PASS/FAIL), the failed gates and
any provenance notes on stdout. A progress bar goes to stderr when stderr is a terminal.

Exit codes: 0 every gate passed, 1 a gate failed, 2 bad input (one line on stderr,
``saeval: error: file:line: key: message. Fix: ...``, no traceback), 3 an internal error (a bug:
the traceback is printed so it can be reported), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_saeval.errors import InputError, SaevalError
from pytest_saeval.propose import format_proposals, init_suite
from pytest_saeval.report.finish import FinishOptions, finish
from pytest_saeval.report.merge import merge_shards
from pytest_saeval.report.shardfile import clear_shard_record
from pytest_saeval.report.table import command_lines
from pytest_saeval.run.outcome import SuiteRun
from pytest_saeval.run.plan import entries_of
from pytest_saeval.run.quiet import quiet_libraries
from pytest_saeval.run.session import RunOptions, Session
from pytest_saeval.run.shards import ShardPlan, plan_shards, shard_from, suite_name
from pytest_saeval.settings import is_device
from pytest_saeval.spec.loader import load_suites
from pytest_saeval.spec.suite import Suite
from pytest_saeval.store.folder import default_cache_dir
from pytest_saeval.store.timings import load_timings

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERNAL", "EXIT_OK", "main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit with code 2 through ``main`` instead of ``sys.exit``."""

    def error(self, message: str) -> Any:
        raise _UsageError(message, self.format_usage())


class _UsageError(Exception):
    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="saeval", description="Gate trained sparse autoencoders (SAEs) with threshold files.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="evaluate suite files and check their gates",
        description="Evaluate the SAEs of each suite file and check their gates. "
        "Exit 0: every gate passed; 1: a gate failed; 2: bad input.",
    )
    run.add_argument("suites", nargs="+", metavar="SUITE.yaml", help="suite (threshold) files")
    run.add_argument("--output-dir", type=Path, default=None, metavar="DIR",
                     help="write one JSON per SAE, all_eval_results.json and all_eval_results.csv here")
    run.add_argument("--device", default=None, metavar="D",
                     help="override every suite's model.device: auto, cpu, cuda or cuda:N")
    run.add_argument("--update-baseline", action="store_true",
                     help="rewrite each suite's baseline file from this run (gates are checked against the old values first)")
    run.add_argument("--no-cache", action="store_true", help="do not read or write the results and model-side caches")
    run.add_argument("--cache-dir", type=Path, default=None, metavar="DIR", help="folder of the caches (default .saeval-cache or $SAEVAL_CACHE_DIR)")
    run.add_argument("--report", type=Path, default=None, metavar="PAGE.html",
                     help="write a self-contained HTML report (gate table and the SAE Lens evals plots)")
    run.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    run.add_argument("--shard", default=None, metavar="K/N",
                     help="evaluate only shard K of N (numbered from 1) of the suites' evaluation groups, and record "
                     "it in --output-dir for `saeval merge`; `auto` reads the CI system's index variables "
                     "(default: $SAEVAL_SHARD)")
    _merge_parser(sub)
    init = sub.add_parser(
        "init",
        help="propose noise-aware gates for a suite from one evaluation",
        description="Evaluate a suite and write proposed gates for each SAE from the measured values, with "
        "margins from their bootstrap intervals. Only the gates: entries of the file change (or use --output).",
    )
    init.add_argument("suite", metavar="SUITE.yaml", help="the suite file to propose gates for")
    init.add_argument("--output", type=Path, default=None, metavar="NEW.yaml",
                      help="write the proposed suite here instead of editing SUITE.yaml in place")
    init.add_argument("--device", default=None, metavar="D",
                      help="override the suite's model.device: auto, cpu, cuda or cuda:N")
    init.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    return parser


def _merge_parser(sub: Any) -> None:
    merge = sub.add_parser(
        "merge",
        help="merge the output folders of the N shards of one partition into one verdict",
        description="Check that the folders hold all N shards of one partition, each once, then write the merged "
        "outputs and report, and check every gate again from the recorded values (no model is loaded). "
        "Exit 0: every gate passed; 1: a gate failed; 2: a shard is missing, doubled or inconsistent.",
    )
    merge.add_argument("folders", nargs="+", metavar="DIR", help="the --output-dir folders of the shards")
    merge.add_argument("--output-dir", type=Path, required=True, metavar="OUT",
                       help="write the merged per-SAE JSON, all_eval_results.json/.csv and summary.md here")
    merge.add_argument("--report", type=Path, default=None, metavar="PAGE.html",
                       help="write the self-contained HTML report of the merged run")
    merge.add_argument("--update-baseline", action="store_true",
                       help="rewrite each suite's baseline file from the merged results (instead of in the shards)")
    merge.add_argument("--no-cache", action="store_true",
                       help="do not keep the shards' timings in the cache folder for the next partition (a merge "
                       "keeps them only when every gate passed)")
    merge.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                       help="cache folder that keeps the timings (default .saeval-cache or $SAEVAL_CACHE_DIR)")


def _check_args(args: argparse.Namespace) -> None:
    if getattr(args, "device", None) is not None:
        if not is_device(args.device.strip().lower()):
            raise InputError(
                f"unknown device {args.device!r}",
                fix="use --device auto, cpu, cuda or cuda:N (e.g. cuda:0)",
                key="--device",
            )
        if args.device.strip().lower().startswith("cuda"):
            from pytest_saeval.sources.devices import resolve_device

            try:
                resolve_device(args.device)
            except SaevalError as e:
                raise InputError(e.message, fix=(e.fix or "").replace("device: auto", "--device auto"),
                                 key="--device") from e
    output_dir, cache_dir = getattr(args, "output_dir", None), getattr(args, "cache_dir", None)
    if output_dir is not None and output_dir.exists() and not output_dir.is_dir():
        raise InputError(
            "the output folder is a file",
            fix="give --output-dir a folder (it is created when missing)",
            file=str(output_dir),
            key="--output-dir",
        )
    if cache_dir is not None and cache_dir.exists() and not cache_dir.is_dir():
        raise InputError(
            "the cache folder is a file",
            fix="give --cache-dir a folder (it is created when missing)",
            file=str(cache_dir),
            key="--cache-dir",
        )


def _run(args: argparse.Namespace) -> int:
    _check_args(args)
    suites = load_suites(args.suites)  # pure Python: a bad suite file fails fast, before torch loads
    plan = _shard_plan(args, suites)
    if plan is not None:
        if args.output_dir is not None:
            clear_shard_record(args.output_dir)  # until this shard has finished, its folder is not a shard
        print(f"saeval: {plan.describe()}")
        suites = [s for s in suites if plan.owns_suite(suite_name(s.path))]
    options = RunOptions(device=args.device, progress=not args.no_progress and _is_terminal(sys.stderr),
                         use_cache=not args.no_cache, cache_dir=args.cache_dir,
                         # a missing baseline (value) leaves its gates unchecked: this run records it
                         recording_baseline=args.update_baseline)
    with quiet_libraries():
        runs = Session(options).run(suites) if suites else []
    for line in command_lines(runs):
        print(line)
    return _finish(runs, FinishOptions(
        output_dir=args.output_dir, report=args.report, update_baseline=args.update_baseline, strict_baselines=True,
        shard=plan, timings_dir=_cache_dir(args)))


def _cache_dir(args: argparse.Namespace) -> Path | None:
    return None if args.no_cache else (args.cache_dir or default_cache_dir())


def _shard_plan(args: argparse.Namespace, suites: list[Suite]) -> ShardPlan | None:
    shard = shard_from(args.shard, key="--shard")
    if shard is None:
        return None
    selection = [(s, {e.unique_id: e.spec.metrics for e in entries_of(s)}) for s in suites]
    return plan_shards(shard, selection, device=args.device, timings=load_timings(_cache_dir(args)))


def _finish(runs: list[SuiteRun], options: FinishOptions) -> int:
    done = finish(runs, options)
    for line in done.lines:
        print(f"saeval: {line}")
    if done.problems:
        raise done.problems[0][1]
    return EXIT_OK if all(r.passed for r in runs) else EXIT_FAILED


def _merge(args: argparse.Namespace) -> int:
    out = Path(os.path.abspath(args.output_dir))
    if any(Path(os.path.abspath(f)) == out for f in args.folders):
        raise InputError("the merged outputs would overwrite a shard's folder", fix="give --output-dir a new folder",
                         file=str(args.output_dir), key="--output-dir")
    _check_args(args)
    merged = merge_shards(args.folders)
    for line in command_lines(merged.runs):
        print(line)
    for note in merged.notes:
        print(f"saeval: {note}")
    # Only a passing merge keeps the timings: a shard re-run after a failing one gets its siblings' partition.
    return _finish(merged.runs, FinishOptions(output_dir=args.output_dir, report=args.report,
                                              update_baseline=args.update_baseline, strict_baselines=True,
                                              timings_dir=_cache_dir(args) if merged.passed else None))


def _init(args: argparse.Namespace) -> int:
    _check_args(args)
    options = RunOptions(device=args.device, progress=not args.no_progress and _is_terminal(sys.stderr))
    with quiet_libraries():
        path, proposals = init_suite(args.suite, output=args.output, session=Session(options))
    print(format_proposals(proposals))
    print(f"saeval: wrote {path}")
    return EXIT_OK


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured in-process)
        pass


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saeval`` console script; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except _UsageError as e:
        print(f"saeval: error: {_one_line(e.message)}. Fix: see `saeval run --help`", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SystemExit as e:  # --help / --version
        return int(e.code or 0)
    return _guarded(_COMMANDS[args.command], args)


_COMMANDS = {"run": _run, "init": _init, "merge": _merge}


def _guarded(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; bad input, interruptions and bugs each end in their one exit code."""
    try:
        return command(args)
    except SaevalError as e:
        print(f"saeval: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("saeval: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `saeval run ... | head`: the reader left; say nothing more
        _silence_stdout()
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - a bug, not bad input: show everything needed to report it
        traceback.print_exc(file=sys.stderr)
        print(f"saeval: internal error: {_one_line(f'{type(e).__name__}: {e}')} "
              "(this is a bug in pytest-saeval; please report it with the traceback above)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
