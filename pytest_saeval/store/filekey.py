"""Content hashes of files and folders as they are on disk, and a stat-keyed memo that skips re-reading
files that cannot have changed (pure Python: xxhash, no torch).

A file's digest is the :class:`~.hashing.Hasher` (xxh3-128) of its bytes; a folder's covers every
regular file below it (symbolic links followed), each by its path relative to the folder and its
digest, so a byte changed, a file added, removed or renamed gives another digest. Folders named
``.git`` (a version-control store, never read by a loader) and ``__pycache__`` (Python's byte code of
the ``.py`` files next to it, which are hashed themselves) are left out.

**The memo.** Reading 500 MB of model weights costs about 0.1 s; the memo skips it for files that
cannot have changed since they were last read. An entry records the file's identity and timestamps
(device, inode, size, ``mtime_ns``, ``ctime_ns``), its digest, and the moment just before it was read.
It is trusted only when the file's stat is unchanged **and** both timestamps lie more than
:data:`RACY_WINDOW_NS` before that moment (git's racy-clean rule). Why that is safe: any write to a file
sets its ``mtime`` and ``ctime`` to the time of the write, rounded down to the file system's timestamp
granularity; a write after the entry's moment therefore gives timestamps later than the recorded ones,
which were older than that moment by more than the window (granularity: 2 s on FAT, 1 s or finer
elsewhere; the rest of the window covers a network file server's clock running apart from this
machine's). ``ctime`` cannot be set by a program (a tool that restores ``mtime`` after writing, such as
``cp -p`` or ``rsync -t``, moves ``ctime`` to now), so restoring the old ``mtime`` does not hide a write
either. A file written less than the window before it was read is "racy": it is hashed again on every
run until it is old enough. A file whose stat changes while it is read is not memoized, and the caller
is told (:class:`Unsettled`). On Windows, where ``ctime`` is the creation time, the memo is not used
(every file is read). What the rule cannot see: the system clock set back by more than the window.

The memo lives in one JSON file in the cache folder, with a digest of its entries; a file that cannot be
read or does not match its digest is started afresh with a :class:`~.entries.CacheWarning`. It is a
speed-up only: a memo that cannot be written leaves every digest correct (files are then read again).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_saeval.bounded import NotRegularFile, read_json
from pytest_saeval.fileio import atomic_write_bytes
from pytest_saeval.store.entries import warn_unusable
from pytest_saeval.store.hashing import Hasher, file_hash

__all__ = ["MEMO_FILE", "RACY_WINDOW_NS", "SKIPPED_FOLDERS", "FileDigests", "FileStat", "Unsettled"]

RACY_WINDOW_NS = 5_000_000_000
"""A memo entry is trusted only for files whose timestamps are older than its moment by more than this (5 s)."""

SKIPPED_FOLDERS = frozenset({".git", "__pycache__"})
"""Folder names left out of a folder's digest."""

MEMO_FILE = "filehashes.json"
"""The memo's file name inside the cache folder."""

_MEMO_FORMAT = 1
_MEMO_LIMIT = 4096
"""Entries kept (the most recently recorded)."""
_MEMO_BYTES = 64 * 1024 * 1024
"""Largest memo file read (64 MiB: 4096 entries of the longest paths take about 17 MiB)."""


class Unsettled(Exception):
    """A file changed while it was being read: its digest stands for no version of it."""


@dataclass(frozen=True)
class FileStat:
    """What a file's ``os.stat`` says about its identity and last change."""

    dev: int
    """The device holding it."""
    ino: int
    """Its inode number."""
    size: int
    """Its size in bytes."""
    mtime_ns: int
    """Last modification of its content."""
    ctime_ns: int
    """Last change of its content or metadata (set by the system, never by a program)."""

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        """The fields of ``st``."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def settled_before(self, moment_ns: int) -> bool:
        """Whether both timestamps lie more than :data:`RACY_WINDOW_NS` before ``moment_ns``."""
        return max(self.mtime_ns, self.ctime_ns) + RACY_WINDOW_NS < moment_ns


@dataclass(frozen=True)
class _Entry:
    """One memo line: a file's digest, valid while its stat is unchanged and was not racy when hashed."""

    stat: FileStat
    """The file's stat when it was hashed."""
    moment_ns: int
    """When it was hashed (the racy-clean rule compares the stat's times with this)."""
    digest: str
    """The digest of its bytes."""


class FileDigests:
    """Digests of files and folders, memoized by stat in ``memo_file`` (``None``: the memo lives in this
    object only). ``use_memo=False`` reads every file every time (the default on Windows); ``clock`` is
    the wall clock in nanoseconds (tests set it)."""

    def __init__(self, memo_file: Path | None = None, *, use_memo: bool = os.name != "nt",
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.memo_file = memo_file
        self.use_memo = use_memo
        self.clock = clock
        self.reads = 0
        """Files read (tests use it to prove the memo skips unchanged files)."""
        self._entries: dict[str, _Entry] | None = None
        self._changed = False

    def file(self, path: str | os.PathLike[str]) -> str:
        """The digest of a regular file's bytes. Raises :class:`OSError` when it cannot be read and
        :class:`Unsettled` when it changed while being read."""
        key = os.path.abspath(path)
        st = os.stat(key)
        if not stat.S_ISREG(st.st_mode):  # a pipe or device would block or never end
            raise OSError(errno.EINVAL, "not a regular file", key)
        before = FileStat.of(st)
        entries = self._memo()
        known = entries.get(key)
        if self.use_memo and known is not None and known.stat == before and before.settled_before(known.moment_ns):
            return known.digest
        moment = self.clock()
        digest = file_hash(key)
        self.reads += 1
        if FileStat.of(os.stat(key)) != before:
            raise Unsettled(f"{key} changed while it was read")
        if self.use_memo and before.settled_before(moment):
            entries[key] = _Entry(before, moment, digest)
            self._changed = True
        return digest

    def tree(self, path: str | os.PathLike[str]) -> str:
        """The digest of a file, or of a folder: every regular file below it by relative path and digest
        (other kinds of file by name and kind; :data:`SKIPPED_FOLDERS` left out). Raises as :meth:`file`."""
        h = Hasher()
        if not os.path.isdir(path):
            h.text("file")
            h.text(self.file(path))
            return h.hexdigest()
        h.text("folder")
        for rel, full in _walk(Path(path)):
            h.text(rel)
            mode = os.stat(full).st_mode if os.path.exists(full) else 0
            h.text(self.file(full) if stat.S_ISREG(mode) else f"not a regular file ({stat.S_IFMT(mode):o})")
        return h.hexdigest()

    def save(self) -> None:
        """Write the memo when it gained entries (merged with what other processes wrote meanwhile).
        Raises :class:`OSError` when it cannot be written."""
        if self.memo_file is None or not self._changed or self._entries is None:
            return
        merged = {**_read_memo(self.memo_file, quiet=True), **self._entries}
        kept = sorted(merged.items(), key=lambda kv: kv[1].moment_ns)[-_MEMO_LIMIT:]
        rows = {k: [e.stat.dev, e.stat.ino, e.stat.size, e.stat.mtime_ns, e.stat.ctime_ns, e.moment_ns, e.digest]
                for k, e in kept}
        text = json.dumps(rows, sort_keys=True)
        data = json.dumps({"format": _MEMO_FORMAT, "digest": _text_digest(text), "entries": rows})
        atomic_write_bytes(self.memo_file, data.encode(), store=True)
        self._changed = False

    def _memo(self) -> dict[str, _Entry]:
        if self._entries is None:
            self._entries = _read_memo(self.memo_file) if (self.memo_file is not None and self.use_memo) else {}
        return self._entries


def _walk(root: Path) -> Iterator[tuple[str, str]]:
    """``(relative posix path, full path)`` of every entry that is not a folder below ``root``, sorted;
    symbolic links to folders are followed once (a link back up is not followed again)."""
    seen: set[tuple[int, int]] = set()
    found: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_FOLDERS)
        rel = Path(folder).relative_to(root)
        found.extend(((rel / name).as_posix(), os.path.join(folder, name)) for name in files)
    return iter(sorted(found))


def _text_digest(text: str) -> str:
    h = Hasher()
    h.text(text)
    return h.hexdigest()


def _read_memo(path: Path | None, *, quiet: bool = False) -> dict[str, _Entry]:
    """The memo's entries; a memo that cannot be used is started afresh (with a warning unless ``quiet``)."""
    if path is None:
        return {}
    try:
        data = read_json(path, limit=_MEMO_BYTES)
        rows = data["entries"]
        if data.get("format") != _MEMO_FORMAT or data.get("digest") != _text_digest(json.dumps(rows, sort_keys=True)):
            raise ValueError("does not match its digest")
        return {str(k): _Entry(FileStat(*(int(x) for x in row[:5])), int(row[5]), str(row[6]))
                for k, row in rows.items()}
    except NotRegularFile as e:  # a FIFO or a device: the next save replaces it
        if not quiet:
            warn_unusable(path, f"is {e.strerror}")
        return {}
    except OSError:  # missing, or a broken cache folder (the caches report that once)
        return {}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:  # too large, not JSON, too deep, ...
        if not quiet:
            warn_unusable(path, f"cannot be used ({type(e).__name__}: {e})")
        return {}
