"""What ``saeval run``, ``saeval merge``, ``saeval init`` and ``saeval schema`` do. The run's modules (and
torch) are imported inside the commands, so the signal handlers are in place within milliseconds of start;
``merge`` never imports torch."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.cli.args import MARGIN_FLAGS
from pytest_saeval.cli.signals import Signals
from pytest_saeval.errors import InputError, OutputError, SaevalError
from pytest_saeval.fileio import write_problem
from pytest_saeval.settings import DEVICE_CHOICES, MarginPolicy, is_device

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.report.finish import FinishOptions
    from pytest_saeval.run.outcome import SuiteRun
    from pytest_saeval.run.session import RunOptions
    from pytest_saeval.run.shards import ShardPlan
    from pytest_saeval.spec.suite import Suite

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERNAL", "EXIT_OK", "init", "merge", "run", "schema"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def _check_device(device: str | None) -> None:
    if device is None:
        return
    if not is_device(device):  # the one vocabulary, lower case, as in suite files and --saeval-device
        raise InputError(f"unknown device {device!r}", fix=f"use --device {DEVICE_CHOICES} (e.g. cuda:0)",
                         key="--device")
    if device.strip().startswith("cuda"):
        from pytest_saeval.sources.devices import resolve_device

        try:
            resolve_device(device, option="--device")
        except SaevalError as e:
            raise InputError(e.message, fix=e.fix, key="--device") from e


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
    _check_device(getattr(args, "device", None))
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


def _cache_folder(args: argparse.Namespace, folder: Path) -> Path:
    """``--cache-dir``, else ``.saeval-cache`` in the project's root above ``folder`` (a suite's), else in
    ``folder`` (see ``--cache-dir``)."""
    from pytest_saeval.sources.common import project_root
    from pytest_saeval.store.folder import default_cache_dir

    return args.cache_dir or default_cache_dir(project_root(folder.absolute()) or folder.absolute())


def _run_options(args: argparse.Namespace, suite: Path, *, recording_baseline: bool = False) -> RunOptions:
    """The run's options from the command line; the caches default to the project's root (see ``--cache-dir``)."""
    from pytest_saeval.run.session import RunOptions
    from pytest_saeval.store.folder import file_keyed_from_env

    return RunOptions(device=args.device, progress=not args.no_progress and is_terminal(sys.stderr),
                      use_cache=not args.no_cache, cache_dir=_cache_folder(args, suite.parent),
                      recording_baseline=recording_baseline, file_keyed=file_keyed_from_env())


def _shard_plan(args: argparse.Namespace, suites: Sequence[Suite], options: RunOptions) -> ShardPlan | None:
    """``--shard K/N`` (else ``$SAEVAL_SHARD``): the partition of the suites' work, seen from shard K."""
    from pytest_saeval.run.plan import entries_of
    from pytest_saeval.run.shards import plan_shards, shard_from
    from pytest_saeval.store.timings import load_timings

    shard = shard_from(args.shard, key="--shard")
    if shard is None:
        return None
    selection = [(s, {e.unique_id: e.spec.metrics for e in entries_of(s)}) for s in suites]
    return plan_shards(shard, selection, device=args.device,
                       timings=load_timings(options.cache_dir if options.use_cache else None))


def _finished(runs: Sequence[SuiteRun], options: FinishOptions, signals: Signals, errors: Sequence[str] = ()) -> int:
    """Write what ``options`` asks for, say what was written; 0 / 1 by the gates (a write problem: exit 2)."""
    from pytest_saeval.report.finish import finish

    with signals.deferred():
        done = finish(runs, options, errors)
    for line in done.lines:
        print(f"saeval: {line}")
    if done.problems:
        raise done.problems[0][1]
    return EXIT_OK if all(r.passed for r in runs) else EXIT_FAILED


def run(args: argparse.Namespace, signals: Signals) -> int:
    """``saeval run``: evaluate (one shard's suites with ``--shard``), print the tables, write what was asked;
    0 / 1 by the gates."""
    from pytest_saeval.report.finish import FinishOptions
    from pytest_saeval.report.shardfile import clear_shard_record
    from pytest_saeval.report.table import command_lines
    from pytest_saeval.run import session
    from pytest_saeval.run.quiet import quiet_libraries
    from pytest_saeval.run.shards import suite_name
    from pytest_saeval.spec.loader import load_suites

    _check_args(args)
    suites = load_suites(args.suites)  # pure Python: a bad suite file fails fast, before torch loads
    recording = args.update_baseline or args.update_baseline_force
    # a missing baseline (value) leaves its gates unchecked: this run records it
    options = _run_options(args, suites[0].path, recording_baseline=recording)
    plan = _shard_plan(args, suites, options)
    if plan is not None:
        if args.output_dir is not None:
            clear_shard_record(args.output_dir)  # until this shard has finished, its folder is not a shard
        print(f"saeval: {plan.describe()}")
        suites = [s for s in suites if plan.owns_suite(suite_name(s.path))]
    runner = session.Session(options)
    with quiet_libraries():
        runs = runner.run(suites) if suites else []
    for line in command_lines(runs):
        print(line)
    return _finished(runs, FinishOptions(
        output_dir=args.output_dir, report=args.report, update_baseline=recording,
        force_baseline=args.update_baseline_force, strict_baselines=True, shard=plan,
        timings_dir=runner.cache_folder), signals)


def merge(args: argparse.Namespace, signals: Signals) -> int:
    """``saeval merge``: the shards' output folders into one verdict (no model, no torch); 0 / 1 by the gates,
    2 when a shard is missing, doubled or inconsistent."""
    from pytest_saeval.report.finish import FinishOptions
    from pytest_saeval.report.merge import merge_shards
    from pytest_saeval.report.table import command_lines

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
    keep = not args.no_cache and merged.passed
    first = merged.runs[0].suite.path.parent if merged.runs else Path.cwd()
    timings = _cache_folder(args, first) if keep else None
    return _finished(merged.runs, FinishOptions(
        output_dir=args.output_dir, report=args.report, update_baseline=args.update_baseline or args.update_baseline_force,
        force_baseline=args.update_baseline_force, strict_baselines=True, timings_dir=timings), signals,
        [e for s in merged.shards for e in s.errors])


def init(args: argparse.Namespace, signals: Signals) -> int:
    """``saeval init``: propose gates for a suite (or a new one) from one evaluation and write them."""
    from pytest_saeval.propose import format_proposals
    from pytest_saeval.run import session
    from pytest_saeval.run.quiet import quiet_libraries
    from pytest_saeval.suite_init import init_suite

    _check_args(args)
    policy = _margin_policy(args)
    given = [flag for flag, value in (("--model", args.model), ("--sae", args.sae), ("--tokens", args.tokens)) if value]
    if args.suite and given:
        raise InputError(f"a suite file and {', '.join(given)} were given; {', '.join(given)} only start a new suite",
                         key="init", fix=f"drop {', '.join(given)} to propose gates for {args.suite}, or drop "
                         f"{args.suite} to write a new suite from --model, --sae and --tokens")
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
    values = {name: getattr(args, f"margin_{name}") for name in MARGIN_FLAGS}
    for name, value in values.items():
        rule = MarginPolicy.rule(name, value)
        if rule is not None:
            flag = MARGIN_FLAGS[name]
            raise InputError(f"{flag} must be {rule}, got {value!r}", key=flag,
                             fix=f"give {flag} {rule} (see saeval init --help)")
    return MarginPolicy(**values)


def _new_suite(args: argparse.Namespace) -> Path:
    """``saeval init --model ... --sae ... --tokens ... --output NEW.yaml``: write the new suite first."""
    from pytest_saeval.sources.formats import checkpoints_in, inspect_sae_folder
    from pytest_saeval.suite_init import new_suite

    missing = [flag for flag, value in (("--model", args.model), ("--sae", args.sae), ("--tokens", args.tokens),
                                        ("--output", args.output)) if not value]
    if missing:
        raise InputError(f"without a suite file, init needs {', '.join(missing)}", key="init",
                         fix="pass SUITE.yaml, or --model MODEL_FOLDER --sae SAE_FOLDER --tokens TOKENS.npy "
                         "--output thresholds/new.yaml to start a new suite")
    for flag, path, folder in [("--model", args.model, True), *(("--sae", p, True) for p in args.sae),
                               ("--tokens", args.tokens, False)]:
        if not (path.is_dir() if folder else path.is_file()):
            kind = "folder" if folder else "file"
            what = "is a file" if path.is_file() else "is a folder" if path.is_dir() else "does not exist"
            raise InputError(f"{path} {what}; it must be a {kind}", key=flag,
                             fix=f"give {flag} an existing {kind} (relative paths are relative to the current folder)")
    for folder in args.sae:  # a checkpoint, or a run folder of checkpoints (one entry each)
        for checkpoint in checkpoints_in(folder) or [folder]:
            try:
                inspect_sae_folder(checkpoint)
            except SaevalError as e:
                raise e.located(key="--sae") from e
    return new_suite(args.output, model=args.model, saes=args.sae, tokens=args.tokens)


def schema(args: argparse.Namespace, signals: Signals) -> int:
    """``saeval schema``: print the suite format's JSON Schema."""
    from pytest_saeval.spec.schema import schema_text

    sys.stdout.write(schema_text())
    return EXIT_OK
