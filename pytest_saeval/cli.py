"""The ``saeval`` command: run suite files outside pytest.

``saeval run SUITE.yaml... [--output-dir DIR] [--device D] [--update-baseline] [--no-cache]
[--cache-dir DIR] [--no-progress] [-v]``, ``saeval init SUITE.yaml``, ``saeval schema``.

Prints one table per suite (SAE x gated metric: value, bound, PASS/FAIL), the failed gates and
any provenance notes on stdout. A progress bar goes to stderr when it is a terminal; warnings (a
cache that cannot be used) are one ``saeval: warning: ...`` line each.

Exit codes: 0 every gate passed, 1 a gate failed, 2 bad input or something that cannot be written
(one line on stderr, ``saeval: error: file:line: key: message. Fix: ...``, no traceback; ``-v`` shows
a long message whole), 3 an internal error (a bug: the traceback is printed so it can be reported),
130 / 143 stopped by SIGINT / SIGTERM (one line). A signal that arrives while the outputs, report,
step summary or baselines are being written takes effect once they are complete, so they are either
as they were before the run or wholly new; cache entries are written atomically one by one.

Heavy modules (the run, torch) are imported inside the commands, so the signal handlers are in place
within milliseconds of start.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from pytest_saeval.errors import InputError, OutputError, SaevalError
from pytest_saeval.fileio import write_problem
from pytest_saeval.settings import is_device

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERNAL", "EXIT_OK", "Interrupted", "main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during a command (``signum`` says which)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """SIGINT and SIGTERM raise :class:`Interrupted`; inside :meth:`deferred` they wait for the block to end."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.depth:
            self.pending = self.pending or signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Finish the block before a signal takes effect (what it writes is then complete)."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending is not None:
            signum, self.pending = self.pending, None
            raise Interrupted(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals while the block runs (the previous handlers come back after)."""
        try:
            previous = {s: signal.signal(s, self.handle) for s in _SIGNALS}
        except ValueError:  # not the main thread: leave signals alone
            previous = {}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


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
    run.add_argument("-v", "--verbose", action="store_true", help="show long error messages whole")
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
    init.add_argument("-v", "--verbose", action="store_true", help="show long error messages whole")
    sub.add_parser(
        "schema",
        help="print the suite file format as a JSON Schema",
        description="Print the JSON Schema of suite files (for editors: save it, then start a suite with "
        "`# yaml-language-server: $schema=<path to the saved file>`).",
    )
    return parser


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


def _run(args: argparse.Namespace, signals: _Signals) -> int:
    from pytest_saeval.report.finish import FinishOptions, finish
    from pytest_saeval.report.table import command_lines
    from pytest_saeval.run.quiet import quiet_libraries
    from pytest_saeval.run.session import RunOptions, Session
    from pytest_saeval.spec.loader import load_suites

    _check_args(args)
    suites = load_suites(args.suites)  # pure Python: a bad suite file fails fast, before torch loads
    options = RunOptions(device=args.device, progress=not args.no_progress and _is_terminal(sys.stderr),
                         use_cache=not args.no_cache, cache_dir=args.cache_dir,
                         # a missing baseline (value) leaves its gates unchecked: this run records it
                         recording_baseline=args.update_baseline)
    with quiet_libraries():
        runs = Session(options).run(suites)
    for line in command_lines(runs):
        print(line)
    with signals.deferred():
        done = finish(runs, FinishOptions(output_dir=args.output_dir, report=args.report,
                                          update_baseline=args.update_baseline, strict_baselines=True))
    for line in done.lines:
        print(f"saeval: {line}")
    if done.problems:
        raise done.problems[0][1]
    return EXIT_OK if all(r.passed for r in runs) else EXIT_FAILED


def _init(args: argparse.Namespace, signals: _Signals) -> int:
    from pytest_saeval.propose import format_proposals, init_suite
    from pytest_saeval.run.quiet import quiet_libraries
    from pytest_saeval.run.session import RunOptions, Session

    _check_args(args)
    options = RunOptions(device=args.device, progress=not args.no_progress and _is_terminal(sys.stderr))
    with quiet_libraries():
        path, proposals = init_suite(args.suite, output=args.output, session=Session(options))
    print(format_proposals(proposals))
    print(f"saeval: wrote {path}")
    return EXIT_OK


def _schema(args: argparse.Namespace, signals: _Signals) -> int:
    from pytest_saeval.spec.schema import schema_text

    sys.stdout.write(schema_text())
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


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """Warnings as one ``saeval: warning: ...`` line each on stderr."""
    print(f"saeval: warning: {_one_line(str(message))}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saeval`` console script; returns the exit code."""
    signals = _Signals()
    with signals.installed():
        try:
            try:
                args = _parser().parse_args(argv)
            except _UsageError as e:
                print(f"saeval: error: {_one_line(e.message)}. Fix: see `saeval run --help`", file=sys.stderr)
                return EXIT_BAD_INPUT
            except SystemExit as e:  # --help / --version
                return int(e.code or 0)
            return _guarded(_COMMANDS[args.command], args, signals)
        except KeyboardInterrupt as e:  # a signal while parsing or while reporting
            signals.depth += 1
            return _interrupted(e)


_COMMANDS: dict[str, Callable[[argparse.Namespace, _Signals], int]] = {"run": _run, "init": _init, "schema": _schema}


def _interrupted(e: KeyboardInterrupt) -> int:
    signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
    print(f"saeval: interrupted by {signal.Signals(signum).name}; nothing is half-written (outputs, caches "
          "and baselines are the old ones or complete new ones)", file=sys.stderr)
    return 128 + int(signum)


def _guarded(command: Callable[[argparse.Namespace, _Signals], int], args: argparse.Namespace,
             signals: _Signals) -> int:
    """Run a command; bad input, interruptions and bugs each end in their one exit code."""
    try:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return command(args, signals)
        except BaseException:
            signals.depth += 1  # a further signal waits: the one line below is said whole
            raise
    except SaevalError as e:
        text = e.detail if getattr(args, "verbose", False) else str(e)
        print(f"saeval: error: {_one_line(text)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as e:
        return _interrupted(e)
    except BrokenPipeError:  # e.g. `saeval run ... | head`: the reader left; say nothing more
        _silence_stdout()
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - a bug, not bad input: show everything needed to report it
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(f"saeval: internal error: {_one_line(f'{type(e).__name__}: {e}')} "
              "(this is a bug in pytest-saeval; please report it with the traceback above)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
