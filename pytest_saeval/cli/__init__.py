"""The ``saeval`` command: run suite files outside pytest.

``saeval run SUITE.yaml... [--output-dir DIR] [--device D] [--update-baseline[-force]] [--no-cache]
[--cache-dir DIR] [--report PAGE.html] [--shard K/N] [--no-progress] [-v]``, ``saeval merge DIR...
--output-dir OUT [--report PAGE.html] [--update-baseline[-force]] [--no-cache] [--cache-dir DIR] [-v]`` (the shards of one partition into one
verdict), ``saeval init [SUITE.yaml] ...``, ``saeval schema`` (see ``--help``; the options in :mod:`.args`,
the commands in :mod:`.commands`, SIGINT / SIGTERM / SIGHUP in :mod:`.signals`).

Prints one table per suite (SAE x gated metric: value, bound, PASS/FAIL), the failed gates and
any provenance notes on stdout. A progress bar goes to stderr when it is a terminal; warnings (a
cache that cannot be used) are one ``saeval: warning: ...`` line each.

Exit codes: 0 every gate passed, 1 a gate failed, 2 bad input or something that cannot be written (for
``merge`` also a shard missing, doubled or inconsistent; stdout too: a command whose stdout fails still
writes its outputs, then says ``cannot write stdout: reason``, except for a reader that left the pipe,
``| head``, after which the exit code stays the verdict)
(one line on stderr, ``saeval: error: file:line: key: message. Fix: ...``, no traceback; ``-v`` shows
a long message whole), 3 an internal error (a bug: the traceback is printed so it can be reported),
130 / 143 / 129 stopped by SIGINT / SIGTERM / SIGHUP (one line). A signal that arrives while the outputs,
report, step summary or baselines are being written takes effect once they are complete, so they are
either as they were before the run or wholly new; cache entries are written atomically one by one.

Heavy modules (the run, torch) are imported inside the commands, so the signal handlers are in place
within milliseconds of start.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TextIO

from pytest_saeval.cli import commands
from pytest_saeval.cli.args import CommandLineError, parser
from pytest_saeval.cli.commands import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERNAL, EXIT_OK
from pytest_saeval.cli.signals import Interrupted, Signals
from pytest_saeval.errors import SaevalError
from pytest_saeval.fileio import os_reason

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERNAL", "EXIT_OK", "Interrupted", "console", "main"]


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
    """Run the ``saeval`` command in this process and return its exit code (the previous signal
    handlers come back after)."""
    return _main(argv, restore=True)


def console(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saeval`` console script and ``python -m pytest_saeval.cli``: :func:`main`,
    except that SIGINT / SIGTERM stay ignored once the command is done, until the process exits with
    its code (a late signal could otherwise end it with a traceback after complete outputs)."""
    return _main(argv, restore=False)


def _main(argv: Sequence[str] | None, *, restore: bool) -> int:
    signals = Signals()
    with signals.installed(restore=restore):
        try:
            try:
                args = parser().parse_args(argv)
            except CommandLineError as e:
                print(f"saeval: error: {_one_line(e.message)}. Fix: see `{e.prog} --help`", file=sys.stderr)
                return EXIT_BAD_INPUT
            except SystemExit as e:  # --help / --version
                return int(e.code or 0)
            return _guarded(_COMMANDS[args.command], args, signals)
        except KeyboardInterrupt as e:  # a signal while parsing or while reporting
            signals.depth += 1
            return _interrupted(e)


_COMMANDS: dict[str, Callable[[argparse.Namespace, Signals], int]] = {
    "run": commands.run, "merge": commands.merge, "init": commands.init, "schema": commands.schema}


def _interrupted(e: KeyboardInterrupt) -> int:
    signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
    print(f"saeval: interrupted by {signal.Signals(signum).name}; nothing is half-written (outputs, caches "
          "and baselines are the old ones or complete new ones)", file=sys.stderr)
    return 128 + int(signum)


class _Stdout(io.TextIOBase):
    """stdout for a command: a write that fails (a full disk, a reader that left the pipe) is kept as
    :attr:`error` instead of ending the command, so its outputs, report and baselines are still written."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        if self.error is None:
            try:
                self.inner.write(text)
            except OSError as e:
                self.error = e
        return len(text)

    def flush(self) -> None:
        if self.error is None:
            try:
                self.inner.flush()
            except OSError as e:
                self.error = e


def _guarded(command: Callable[[argparse.Namespace, Signals], int], args: argparse.Namespace,
             signals: Signals) -> int:
    """Run a command with stdout that cannot end it; a stdout that failed for another reason than a reader
    leaving the pipe (``| head``: the exit code stays the verdict) is one ``cannot write stdout`` line, exit 2."""
    stdout = _Stdout(sys.stdout)
    sys.stdout = stdout
    try:
        code = _run(command, args, signals)
        stdout.flush()
    finally:
        sys.stdout = stdout.inner
    if stdout.error is None:
        return code
    _silence_stdout()  # what is left in its buffer would fail again at exit
    if isinstance(stdout.error, BrokenPipeError):
        return code
    print(f"saeval: error: cannot write stdout: {os_reason(stdout.error)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _run(command: Callable[[argparse.Namespace, Signals], int], args: argparse.Namespace, signals: Signals) -> int:
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
    except Exception as e:  # noqa: BLE001 - a bug, not bad input: show everything needed to report it
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(f"saeval: internal error: {_one_line(f'{type(e).__name__}: {e}')} "
              "(this is a bug in pytest-saeval; please report it with the traceback above)", file=sys.stderr)
        return EXIT_INTERNAL
