"""The ``saeval`` command: run suite files outside pytest.

``saeval run SUITE.yaml... [--output-dir DIR] [--device D] [--update-baseline] [--no-cache]
[--cache-dir DIR] [--no-progress]``

Prints one table per suite (SAE x gated metric: value, bound, PASS/FAIL), the failed gates and
any provenance notes on stdout. A progress bar goes to stderr when stderr is a terminal.

Exit codes: 0 every gate passed, 1 a gate failed, 2 bad input (one line on stderr,
``saeval: error: file:line: key: message. Fix: ...``, no traceback), 3 an internal error (a bug:
the traceback is printed so it can be reported), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pytest_saeval.errors import InputError, SaevalError
from pytest_saeval.settings import is_device

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.session import SuiteRun

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERNAL", "EXIT_OK", "main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3

# Environment switches of the loading libraries, set only while the command runs.
_QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}
# Warnings the loaders emit on every run that say nothing about the user's input.
_NOISY_WARNINGS = (
    (r".*HookedTransformer is deprecated.*", DeprecationWarning),
    (r".*TransformerBridge.*", DeprecationWarning),
    (r"The 'utils' module has been deprecated.*", DeprecationWarning),
    (r".*`torch_dtype` is deprecated.*", Warning),
)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit with code 2 through ``main`` instead of ``sys.exit``."""

    def error(self, message: str) -> Any:  # type: ignore[override]
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


# ---------------------------------------------------------------------------------------------
# quiet library loading


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Silence the loading libraries' progress bars, info logs and routine warnings; restore after.

    Only the libraries' own chatter is silenced: our errors are exceptions, and warnings other
    than the known routine ones still show.
    """
    saved_env = {k: os.environ.get(k) for k in _QUIET_ENV}
    os.environ.update(_QUIET_ENV)
    restore: list[Any] = []
    try:
        with warnings.catch_warnings():
            for message, category in _NOISY_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            restore.extend(_quiet_transformers())
            restore.extend(_quiet_datasets())
            yield
    finally:
        for undo in reversed(restore):
            try:
                undo()
            except Exception:  # noqa: BLE001, S110 - restoring a library's log level must never mask the run's result
                pass
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _quiet_transformers() -> list[Any]:
    try:
        from transformers.utils import logging as hf_logging

        hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
        hub_states: dict[str, bool] = hub_tqdm.progress_bar_states
    except Exception:  # noqa: BLE001 - not installed or another layout: nothing to silence
        return []
    undo: list[Any] = []
    saved_hub = dict(hub_states)

    def restore_hub() -> None:
        hub_states.clear()
        hub_states.update(saved_hub)

    undo.append(restore_hub)
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    def restore_transformers() -> None:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        restore_hub()

    undo.append(restore_transformers)
    return undo


def _quiet_datasets() -> list[Any]:
    if "datasets" not in sys.modules:  # the environment variable covers a later import
        return []
    try:
        from datasets.utils import logging as ds_logging
    except Exception:  # noqa: BLE001
        return []
    level, bars = ds_logging.get_verbosity(), ds_logging.is_progress_bar_enabled()
    ds_logging.set_verbosity_error()
    ds_logging.disable_progress_bar()

    def restore() -> None:
        ds_logging.set_verbosity(level)
        if bars:
            ds_logging.enable_progress_bar()

    return [restore]


# ---------------------------------------------------------------------------------------------
# the run command


def _check_args(args: argparse.Namespace) -> None:
    if args.device is not None:
        if not is_device(args.device.strip().lower()):
            raise InputError(
                f"unknown device {args.device!r}",
                fix="use --device auto, cpu, cuda or cuda:N (e.g. cuda:0)",
                key="--device",
            )
        if args.device.strip().lower().startswith("cuda"):
            from pytest_saeval.sources.models import resolve_device

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


def _report(runs: Sequence[SuiteRun], out: TextIO) -> None:
    from pytest_saeval.outputs import format_table

    for run in runs:
        print(format_table(run), file=out)
        for check in run.checks:
            if not check.passed:
                print(f"FAILED {check.message}", file=out)
        for uid, gate in run.unchecked:
            where = f"{run.suite.path}:{gate.line}" if gate.line else str(run.suite.path)
            print(f"UNCHECKED {where}: [{uid}] {gate.metric} {gate.text}: the baseline has no value yet; "
                  "this run records it", file=out)
        for note in run.notes:
            print(f"NOTE {note}", file=out)
    n_pass = sum(c.passed for r in runs for c in r.checks)
    n_fail = sum(not c.passed for r in runs for c in r.checks)
    n_unchecked = sum(len(r.unchecked) for r in runs)
    n_saes = sum(len(r.results) for r in runs)
    suites = "suite" if len(runs) == 1 else "suites"
    unchecked = f", {n_unchecked} unchecked" if n_unchecked else ""
    print(f"saeval: {n_pass} passed, {n_fail} failed{unchecked} ({n_saes} SAEs in {len(runs)} {suites})", file=out)


def _run(args: argparse.Namespace) -> int:
    from pytest_saeval.spec.loader import load_suites

    _check_args(args)
    suites = load_suites(args.suites)  # pure Python: a bad suite file fails fast, before torch loads
    progress = not args.no_progress and _is_terminal(sys.stderr)
    with _quiet_libraries():
        from pytest_saeval.outputs import write_baselines, write_outputs
        from pytest_saeval.session import Session

        session = Session(device=args.device, progress=progress, cache_dir=args.cache_dir, use_cache=not args.no_cache)
        # With --update-baseline a missing baseline (value) leaves its gates unchecked: this run records it.
        runs = session.run(suites, baseline_missing_ok=args.update_baseline)
    _report(runs, sys.stdout)
    from pytest_saeval.report_md import append_github_step_summary, markdown_summary, write_markdown

    if args.output_dir is not None:
        paths = write_outputs(runs, args.output_dir)
        paths.append(write_markdown(runs, Path(args.output_dir) / "summary.md"))
        print(f"saeval: wrote {len(paths)} files to {args.output_dir}")
    if args.report is not None:
        from pytest_saeval.report_html import write_html_report

        print(f"saeval: wrote report {write_html_report(runs, args.report)}")
    append_github_step_summary(markdown_summary(runs))
    if args.update_baseline:
        for path in write_baselines(runs):
            print(f"saeval: updated baseline {path}")
    return EXIT_OK if all(r.passed for r in runs) else EXIT_FAILED


def _init(args: argparse.Namespace) -> int:
    from pytest_saeval.propose import format_proposals, init_suite

    _check_args(args)
    progress = not args.no_progress and _is_terminal(sys.stderr)
    with _quiet_libraries():
        from pytest_saeval.session import Session

        path, proposals = init_suite(args.suite, output=args.output,
                                     session=Session(device=args.device, progress=progress))
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
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "init":
            return _init(args)
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
    return EXIT_BAD_INPUT  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
