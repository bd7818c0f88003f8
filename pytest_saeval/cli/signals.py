"""SIGINT, SIGTERM and SIGHUP for the ``saeval`` command: they end a run with one line and exit 130 / 143 / 129, and
wait while the end-of-run writes are under way (so those are either the old files or complete new ones)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

__all__ = ["Interrupted", "Signals"]

_SIGNALS = tuple(s for s in (getattr(signal, name, None) for name in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)
"""Ctrl-C, a CI cancel or ``kill``, a closed terminal or ssh session: each ends a run with one line."""


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived during a command (``signum`` says which)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Signals:
    """SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted`; inside :meth:`deferred` they wait for the block to end."""

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
    def installed(self, *, restore: bool = True) -> Iterator[None]:
        """Handle the signals while the block runs; after it the previous handlers come back, or, with
        ``restore=False`` (a process that exits right after), the signals are ignored: a signal that
        arrives once the command's work is done cannot turn its result into a traceback."""
        try:
            previous = {s: signal.signal(s, self.handle) for s in _SIGNALS}
        except ValueError:  # not the main thread: leave signals alone
            previous = {}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler if restore else signal.SIG_IGN)
