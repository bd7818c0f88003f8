"""What ``saeval run``, ``saeval init`` and ``saeval schema`` do. The run's modules (and torch) are
imported inside the commands, so the signal handlers are in place within milliseconds of start."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.cli.args import MARGIN_FLAGS
from pytest_saeval.cli.signals import Signals
from pytest_saeval.errors import InputError, OutputError, SaevalError
from pytest_saeval.fileio import write_problem
from pytest_saeval.settings import is_device

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.propose import MarginPolicy
    from pytest_saeval.run.session import RunOptions

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERNAL", "EXIT_OK", "init", "run", "schema"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def _check_device(device: str | None) -> None:
    if device is None:
        return
    if not is_device(device.strip().lower()):
        raise InputError(f"unknown device {device!r}", fix="use --device auto, cpu, cuda or cuda:N (e.g. cuda:0)",
                         key="--device")
    if device.strip().lower().startswith("cuda"):
        from pytest_saeval.sources.devices import resolve_device

        try:
            resolve_device(device)
        except SaevalError as e:
            raise InputError(e.message, fix=(e.fix or "").replace("device: auto", "--device auto"),
                             key="--device") from e


def _check_writable(path: Path | None, flag: str, *, folder: bool, fix: str) -> None:
    """Refuse, before anything runs, a place to write that cannot be written (see :func:`write_problem`)."""
    if path is None:
        return
    problem = write_problem(path, folder=folder)
    if problem is not None:
        raise OutputError(f"cannot write {path}: {problem}", fix=fix, key=flag)


def _is_file(path: Path | None) -> bool:
    """Whether ``path`` names something that is not a folder (a path that cannot be looked up is not)."""
    try:
        return path is not None and path.exists() and not path.is_dir()
    except (OSError, ValueError):
        return False


def _check_args(args: argparse.Namespace) -> None:
    _check_device(args.device)
    output_dir, cache_dir = getattr(args, "output_dir", None), getattr(args, "cache_dir", None)
    if _is_file(output_dir):
        raise InputError("the output folder is a file", fix="give --output-dir a folder (it is created when missing)",
                         file=str(output_dir), key="--output-dir")
    if _is_file(cache_dir):  # any other cache problem: the run goes on without the cache, with a warning
        raise InputError("the cache folder is a file", fix="give --cache-dir a folder (it is created when missing)",
                         file=str(cache_dir), key="--cache-dir")
    _check_writable(output_dir, "--output-dir", folder=True, fix="give --output-dir a folder you can write to")
    _check_writable(getattr(args, "report", None), "--report", folder=False,
                    fix="give --report a file name in a folder you can write to")
    _check_writable(getattr(args, "output", None), "--output", folder=False,
                    fix="give --output a file name in a folder you can write to")


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (False for closed or replaced streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _run_options(args: argparse.Namespace, suite: Path, *, recording_baseline: bool = False) -> RunOptions:
    """The run's options from the command line; the caches default to the project's root (see ``--cache-dir``)."""
    from pytest_saeval.run.session import RunOptions
    from pytest_saeval.sources.common import project_root
    from pytest_saeval.store.folder import default_cache_dir, file_keyed_from_env

    root = project_root(suite.absolute().parent) or suite.absolute().parent
    return RunOptions(device=args.device, progress=not args.no_progress and is_terminal(sys.stderr),
                      use_cache=not args.no_cache, cache_dir=args.cache_dir or default_cache_dir(root),
                      recording_baseline=recording_baseline, file_keyed=file_keyed_from_env())


def run(args: argparse.Namespace, signals: Signals) -> int:
    """``saeval run``: evaluate, print the tables, write what was asked; 0 / 1 by the gates."""
    from pytest_saeval.report.finish import FinishOptions, finish
    from pytest_saeval.report.table import command_lines
    from pytest_saeval.run import session
    from pytest_saeval.run.quiet import quiet_libraries
    from pytest_saeval.spec.loader import load_suites

    _check_args(args)
    suites = load_suites(args.suites)  # pure Python: a bad suite file fails fast, before torch loads
    recording = args.update_baseline or args.update_baseline_force
    # a missing baseline (value) leaves its gates unchecked: this run records it
    options = _run_options(args, suites[0].path, recording_baseline=recording)
    with quiet_libraries():
        runs = session.Session(options).run(suites)
    for line in command_lines(runs):
        print(line)
    with signals.deferred():
        done = finish(runs, FinishOptions(output_dir=args.output_dir, report=args.report, update_baseline=recording,
                                          force_baseline=args.update_baseline_force, strict_baselines=True))
    for line in done.lines:
        print(f"saeval: {line}")
    if done.problems:
        raise done.problems[0][1]
    return EXIT_OK if all(r.passed for r in runs) else EXIT_FAILED


def init(args: argparse.Namespace, signals: Signals) -> int:
    """``saeval init``: propose gates for a suite (or a new one) from one evaluation and write them."""
    from pytest_saeval.propose import format_proposals
    from pytest_saeval.run import session
    from pytest_saeval.run.quiet import quiet_libraries
    from pytest_saeval.suite_init import init_suite

    _check_args(args)
    policy = _margin_policy(args)
    suite = Path(args.suite) if args.suite else _new_suite(args)
    output = None if args.suite is None else args.output
    try:
        with quiet_libraries():
            path, proposals = init_suite(suite, output=output, session=session.Session(_run_options(args, suite)),
                                         policy=policy, update_gates=args.update_gates)
    except BaseException:
        if args.suite is None:  # a new suite that could not be evaluated is not left behind
            suite.unlink(missing_ok=True)
        raise
    print(format_proposals(proposals, update_gates=args.update_gates))
    print(f"saeval: wrote {path}")
    return EXIT_OK


def _margin_policy(args: argparse.Namespace) -> MarginPolicy:
    """The margins from ``--margin-*``; a bad value names its flag."""
    from pytest_saeval.propose import MarginPolicy

    try:
        return MarginPolicy(**{name: getattr(args, f"margin_{name}") for name in MARGIN_FLAGS})
    except SaevalError as e:
        flag = MARGIN_FLAGS.get(e.location.key or "", "--margin-k")
        raise InputError(e.message.replace(f"margin {e.location.key}", flag), key=flag,
                         fix=f"give {flag} a number >= 0 (see saeval init --help)") from e


def _new_suite(args: argparse.Namespace) -> Path:
    """``saeval init --model ... --sae ... --tokens ... --output NEW.yaml``: write the new suite first."""
    from pytest_saeval.suite_init import new_suite

    missing = [flag for flag, value in (("--model", args.model), ("--sae", args.sae), ("--tokens", args.tokens),
                                        ("--output", args.output)) if not value]
    if missing:
        raise InputError(f"without a suite file, init needs {', '.join(missing)}", key="init",
                         fix="pass SUITE.yaml, or --model MODEL_FOLDER --sae SAE_FOLDER --tokens TOKENS.npy "
                         "--output thresholds/new.yaml to start a new suite")
    return new_suite(args.output, model=args.model, saes=args.sae, tokens=args.tokens)


def schema(args: argparse.Namespace, signals: Signals) -> int:
    """``saeval schema``: print the suite format's JSON Schema."""
    from pytest_saeval.spec.schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK
