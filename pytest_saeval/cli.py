"""The ``saeval`` command: run suite files outside pytest.

``saeval run SUITE.yaml... [--output-dir DIR] [--device D] [--update-baseline[-force]] [--no-cache]
[--cache-dir DIR] [--report PAGE.html] [--no-progress]``; ``saeval init [SUITE.yaml] ...`` (see ``--help``).

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
from pytest_saeval.propose import MarginPolicy, format_proposals
from pytest_saeval.report.finish import FinishOptions, finish
from pytest_saeval.report.table import command_lines
from pytest_saeval.run.quiet import quiet_libraries
from pytest_saeval.run.session import RunOptions, Session
from pytest_saeval.settings import is_device
from pytest_saeval.sources.common import project_root
from pytest_saeval.spec.loader import load_suites
from pytest_saeval.store.folder import default_cache_dir
from pytest_saeval.suite_init import init_suite, new_suite

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
    _add_run(sub)
    _add_init(sub)
    return parser


def _add_common(command: argparse.ArgumentParser) -> None:
    """Options of every command that evaluates."""
    command.add_argument("--device", default=None, metavar="D",
                         help="override every suite's model.device: auto, cpu, cuda or cuda:N")
    command.add_argument("--no-cache", action="store_true", help="do not read or write the results and model-side caches")
    command.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                         help="folder of the caches (default: .saeval-cache in the project's root, the nearest folder "
                         "above the suite with a pyproject.toml, pytest.ini, setup.cfg or tox.ini; else next to the "
                         "suite; $SAEVAL_CACHE_DIR overrides both)")
    command.add_argument("--no-progress", action="store_true", help="never show a progress bar")


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="evaluate suite files and check their gates",
        description="Evaluate the SAEs of each suite file and check their gates. "
        "Exit 0: every gate passed; 1: a gate failed; 2: bad input.",
    )
    run.add_argument("suites", nargs="+", metavar="SUITE.yaml", help="suite (threshold) files")
    run.add_argument("--output-dir", type=Path, default=None, metavar="DIR",
                     help="write one JSON per SAE, all_eval_results.json and all_eval_results.csv here")
    run.add_argument("--update-baseline", action="store_true",
                     help="rewrite each suite's baseline file from this run (gates are checked against the old "
                     "values first; nothing is written when a gate failed)")
    run.add_argument("--update-baseline-force", action="store_true",
                     help="as --update-baseline, and record the values even when gates failed")
    run.add_argument("--report", type=Path, default=None, metavar="PAGE.html",
                     help="write a self-contained HTML report (gate table and the SAE Lens evals plots)")
    _add_common(run)


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
    init.add_argument("--output", "-o", type=Path, default=None, metavar="NEW.yaml",
                      help="write the proposed suite here instead of editing SUITE.yaml in place")
    init.add_argument("--update-gates", action="store_true",
                      help="also replace gates the suite already has (each change is printed as old -> new)")
    init.add_argument("--model", type=Path, default=None, metavar="PATH", help="new suite: the model folder")
    init.add_argument("--sae", type=Path, action="append", default=None, metavar="PATH",
                      help="new suite: an SAE folder (repeat for several)")
    init.add_argument("--tokens", type=Path, default=None, metavar="PATH", help="new suite: the token file")
    for flag, name, default, what in (
        ("--margin-k", "k", 2.0, "interval half-widths between the interval's end and the bound"),
        ("--margin-abs", "abs_floor", 0.005, "smallest margin, in the metric's units"),
        ("--margin-rel", "rel_floor", 0.02, "smallest margin relative to |value| (one-sided gates)"),
        ("--margin-range-rel", "range_rel_floor", 0.1, "smallest margin relative to |value| (ranges such as l0)"),
    ):
        init.add_argument(flag, dest=f"margin_{name}", type=float, default=default, metavar="X",
                          help=f"{what} (default {default})")
    _add_common(init)


def _check_args(args: argparse.Namespace) -> None:
    if args.device is not None:
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
    # a missing baseline (value) leaves its gates unchecked: this run records it
    options = _run_options(args, suites[0].path, recording_baseline=args.update_baseline or args.update_baseline_force)
    with quiet_libraries():
        runs = Session(options).run(suites)
    for line in command_lines(runs):
        print(line)
    done = finish(runs, FinishOptions(output_dir=args.output_dir, report=args.report,
                                      update_baseline=args.update_baseline or args.update_baseline_force,
                                      force_baseline=args.update_baseline_force, strict_baselines=True))
    for line in done.lines:
        print(f"saeval: {line}")
    if done.problems:
        raise done.problems[0][1]
    return EXIT_OK if all(r.passed for r in runs) else EXIT_FAILED


def _run_options(args: argparse.Namespace, suite: Path, *, recording_baseline: bool = False) -> RunOptions:
    """The run's options from the command line; the caches default to the project's root (see ``--cache-dir``)."""
    root = project_root(suite.absolute().parent) or suite.absolute().parent
    return RunOptions(device=args.device, progress=not args.no_progress and _is_terminal(sys.stderr),
                      use_cache=not args.no_cache, cache_dir=args.cache_dir or default_cache_dir(root),
                      recording_baseline=recording_baseline)


def _init(args: argparse.Namespace) -> int:
    _check_args(args)
    policy = _margin_policy(args)
    suite = Path(args.suite) if args.suite else _new_suite(args)
    output = None if args.suite is None else args.output
    try:
        with quiet_libraries():
            path, proposals = init_suite(suite, output=output, session=Session(_run_options(args, suite)),
                                         policy=policy, update_gates=args.update_gates)
    except BaseException:
        if args.suite is None:  # a new suite that could not be evaluated is not left behind
            suite.unlink(missing_ok=True)
        raise
    print(format_proposals(proposals, update_gates=args.update_gates))
    print(f"saeval: wrote {path}")
    return EXIT_OK


_MARGIN_FLAGS = {"k": "--margin-k", "abs_floor": "--margin-abs", "rel_floor": "--margin-rel",
                 "range_rel_floor": "--margin-range-rel"}


def _margin_policy(args: argparse.Namespace) -> MarginPolicy:
    """The margins from ``--margin-*``; a bad value names its flag."""
    try:
        return MarginPolicy(**{name: getattr(args, f"margin_{name}") for name in _MARGIN_FLAGS})
    except SaevalError as e:
        flag = _MARGIN_FLAGS.get(e.location.key or "", "--margin-k")
        raise InputError(e.message.replace(f"margin {e.location.key}", flag), key=flag,
                         fix=f"give {flag} a number >= 0 (see saeval init --help)") from e


def _new_suite(args: argparse.Namespace) -> Path:
    """``saeval init --model ... --sae ... --tokens ... --output NEW.yaml``: write the new suite first."""
    missing = [flag for flag, value in (("--model", args.model), ("--sae", args.sae), ("--tokens", args.tokens),
                                        ("--output", args.output)) if not value]
    if missing:
        raise InputError(f"without a suite file, init needs {', '.join(missing)}", key="init",
                         fix="pass SUITE.yaml, or --model MODEL_FOLDER --sae SAE_FOLDER --tokens TOKENS.npy "
                         "--output thresholds/new.yaml to start a new suite")
    return new_suite(args.output, model=args.model, saes=args.sae, tokens=args.tokens)


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


_COMMANDS = {"run": _run, "init": _init}


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
