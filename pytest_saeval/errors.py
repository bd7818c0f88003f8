"""Error types. Every message names where (file:line), what (the key path) and the fix.

A configuration or input error is never reported as a gate failure: the plugin turns
:class:`SaevalError` into a collection/usage error and the ``saeval`` command into exit code 2.

An error also carries what it is about as data (:class:`Subject`: the suite file, the SAE entry),
set where it is raised or where a layer above locates it; whoever routes errors (the plugin, to
tell which tests an error belongs to) reads that, never the message or key text.
"""

from __future__ import annotations

import difflib
import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

MESSAGE_LIMIT = 800
"""Characters of an error's message (and of its fix) shown on its one line; the whole text
stays in :attr:`SaevalError.detail` (``saeval -v`` and ``pytest -v`` show it)."""


def clip(text: str, limit: int) -> str:
    """``text`` cut in the middle to at most about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    keep = max(limit - 40, 20)
    head, tail = text[: keep * 2 // 3], text[-(keep // 3):]
    return f"{head} ...({len(text) - len(head) - len(tail)} characters left out)... {tail}"


def brief(value: object, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut to about ``limit`` characters (a value can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text)} characters)"


@dataclass(frozen=True)
class Location:
    """Where a value came from: a file, an optional 1-based line and a key path like ``saes[0].gates.l0``."""

    file: str | None = None
    """The file, as messages show it (relative to where the run started when it lies below)."""
    line: int | None = None
    """1-based line of the value in ``file``, when known."""
    key: str | None = None
    """The key path (``saes[0].gates.l0``) or option (``--device``) the value was given as."""

    def prefix(self, limit: int | None = None) -> str:
        """``file:line: key`` (a key longer than ``limit`` characters cut in the middle)."""
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.key:
            parts.append(self.key if limit is None else clip(self.key, limit))
        return ": ".join(parts)


@dataclass(frozen=True)
class Subject:
    """What an error is about, as data: which suite and which SAE entry (any part may be unknown)."""

    suite: str | None = None
    """The suite file, as the run names it."""
    entry: int | None = None
    """Index of the SAE entry in the suite's ``saes:`` list."""
    sae: str | None = None
    """The SAE: its key in the ``saes`` mapping given to ``evaluate``, or its unique id in a suite."""
    part: str | None = None
    """The SAE's attribute at fault (``hook_name``, ``d_in``, ...), when the error concerns one."""


class SaevalError(Exception):
    """Bad input: a suite file, a source, tokens or arguments that cannot be used.

    ``str(err)`` is one line: ``file:line: key: what is wrong. Fix: what to do``, its message and fix
    cut to :data:`MESSAGE_LIMIT` characters (:attr:`detail` is the whole text). Without an explicit
    ``key``, an error about an SAE outside a suite (``subject=Subject(sae=...)``, as ``evaluate`` raises
    them) shows ``saes.<sae>[.<part>]`` as its key.
    """

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        subject: Subject | None = None,
    ) -> None:
        self.message = message
        self.fix = fix
        self.subject = subject or Subject()
        if key is None and self.subject.sae is not None and self.subject.suite is None:
            key = f"saes.{self.subject.sae}" + (f".{self.subject.part}" if self.subject.part else "")
        self.location = Location(file=file, line=line, key=key)
        super().__init__(self.render())

    def render(self, limit: int | None = MESSAGE_LIMIT) -> str:
        """The one line: location, message and fix (each part cut to ``limit`` characters unless None)."""
        prefix = self.location.prefix(None if limit is None else limit // 4)
        message = self.message if limit is None else clip(self.message, limit)
        text = f"{prefix}: {message}" if prefix else message
        if self.fix:
            fix = self.fix if limit is None else clip(self.fix, limit)
            text = f"{text.rstrip('.')}. Fix: {fix}"
        return text

    @property
    def detail(self) -> str:
        """The whole one-line text, nothing cut."""
        return self.render(limit=None)

    def located(
        self, file: str | None = None, line: int | None = None, key: str | None = None,
        subject: Subject | None = None,
    ) -> SaevalError:
        """Return a copy of this error with missing location parts filled in (existing parts win).

        A line belongs to its file: ``line`` is only filled in when this error names no file yet
        (or the same file), so a suite's line never ends up next to another file's name.
        ``subject`` replaces the error's subject when given.
        """
        own_file = self.location.file
        return self._copy(
            self.message,
            file=own_file or file,
            line=self.location.line or (line if own_file is None or own_file == file else None),
            key=self.location.key or key,
            subject=subject or self.subject,
        )

    def moved(self, *, file: str | None, line: int | None, key: str | None, subject: Subject,
              detail: str = "", fix: str | None = None) -> SaevalError:
        """A copy of this error located anew (a layer above knows better where its subject lives), with
        ``detail`` appended to the message when given, and ``fix`` (when given) in place of its own."""
        message = f"{self.message.rstrip('.')} ({detail})" if detail else self.message
        return self._copy(message, file=file, line=line, key=key, subject=subject, fix=fix)

    def _copy(self, message: str, *, file: str | None, line: int | None, key: str | None,
              subject: Subject, fix: str | None = None) -> SaevalError:
        new = type(self).__new__(type(self))
        SaevalError.__init__(new, message, fix=fix or self.fix, file=file, line=line, key=key, subject=subject)
        new.__cause__ = self.__cause__
        return new

    def __reduce__(self) -> tuple[object, ...]:  # keep picklable (pytest-xdist ships errors between processes)
        loc = self.location
        return (_rebuild, (type(self), self.message, self.fix, loc.file, loc.line, loc.key, self.subject))


def _rebuild(cls: type[SaevalError], message: str, fix: str | None, file: str | None, line: int | None,
             key: str | None, subject: Subject) -> SaevalError:
    return cls(message, fix=fix, file=file, line=line, key=key, subject=subject)


class SuiteError(SaevalError):
    """A suite (threshold YAML) file is malformed: syntax, types, unknown keys, bad gates."""


class SourceError(SaevalError):
    """A model, SAE or token source cannot be loaded (missing, corrupt, wrong type)."""


class InputError(SaevalError):
    """Loaded objects that cannot be evaluated together (shapes, hooks, vocabulary, batch counts)."""


class BaselineError(SaevalError):
    """A baseline file is missing, corrupt, or lacks a value a gate refers to."""


class OutputError(SaevalError):
    """Something the run was asked to write (outputs, report, step summary, baseline) could not be written:
    ``cannot write X: reason``. What was there before stays as it was."""


class ShardError(SaevalError):
    """Shard outputs that do not make one verdict: a shard missing or given twice, shards of different
    partitions or selections, a result recorded twice or differently, a suite file changed since."""


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidates, or ``""`` when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
    if not close:
        return ""
    if len(close) == 1:
        return f" (did you mean '{close[0]}'?)"
    return " (did you mean " + ", ".join(f"'{c}'" for c in close[:-1]) + f" or '{close[-1]}'?)"


class NotRegularFile(OSError):
    """A path that names a FIFO, a device or a socket: reading it could block forever or never end, and
    replacing it with a file would destroy what it is."""

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({kind})", os.fspath(path))
        self.kind = kind
        """What it is instead: ``a FIFO``, ``a character device``, ..."""


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket"}


def special_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is when it is neither a regular file nor a folder (``a FIFO``,
    ``a character device``, ...), else None."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return _KINDS.get(stat.S_IFMT(mode), "a special file")
