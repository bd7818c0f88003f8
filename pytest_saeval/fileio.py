"""Small file helpers: atomic writes, temp-file cleanup, write checks and folder locks (pure Python).

Every file the package writes (outputs, baselines, caches) goes through :func:`atomic_write_bytes`,
:func:`atomic_write_text` or :func:`atomic_write_many`, so a reader never sees a half-written file and
a failed write (a full disk, a folder in the way) leaves the previous files untouched. A write that is
killed outright (SIGKILL, power loss) can leave its hidden temporary file behind; the next write to
the same place removes such leftovers (:func:`remove_stale_temps`, also those of an earlier run that had this
process's id, as runs in containers do), so repeated cancellations do not fill a disk. An error names the file that was to be written, never the temporary one. A symbolic link is written
through (it stays a link); a FIFO, device or socket in the way is refused, never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from pytest_saeval.errors import NotRegularFile, special_kind

__all__ = ["atomic_write_bytes", "atomic_write_many", "atomic_write_text", "folder_lock", "os_reason",
           "remove_stale_temps", "write_problem"]

_NAME_MAX = 255
_PATH_MAX = 4095
_OLD_TEMP_SECONDS = 600
"""A temporary file without a live writer we can identify is left alone for this long (10 minutes)."""


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, store: bool = False) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, which is flushed and fsync'ed and then
    moved over ``path`` with :func:`os.replace`. Parent folders are created. On any error the
    temporary file is removed, the previous content of ``path`` (if any) stays as it was, and the
    error propagates. ``store``: see :func:`atomic_write_many`.
    """
    atomic_write_many([(Path(path), data)], store=store)


def atomic_write_many(files: Sequence[tuple[str | os.PathLike[str], bytes]], *, store: bool = False) -> None:
    """Write several files so that either all of them are replaced or none is.

    Every file's bytes first go to a temporary file next to it (flushed and fsync'ed); only when
    all of them are written are they moved over their targets, one :func:`os.replace` each. An error
    before that (a full disk, a folder in the way) removes the temporary files and leaves every target
    as it was; the :class:`OSError` names the target. Leftover temporary files of earlier, killed
    writes to the same targets are removed first. A symbolic link is written through and a FIFO or device
    refused (:func:`_real_target`), except with ``store``: files of a store the package owns (cache entries),
    where the path itself is replaced, whatever stands there (a stray link or FIFO is repaired, never followed).
    """
    given = [Path(p) for p, _ in files]
    for _, data in files:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"atomic_write_bytes needs bytes, got {type(data).__name__}")
    temps: list[Path] = []
    targets: list[Path] = []
    name = given[0] if given else Path()
    try:
        for name, (_, data) in zip(given, files):
            target = name if store else _real_target(name)
            targets.append(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target)
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, "it is a folder", str(name))
            temps.append(_write_temp(target, data))
        for i, tmp in enumerate(temps):
            name = given[i]  # the file an error names
            os.replace(tmp, targets[i])
            _WRITING.discard(tmp.name)
    except OSError as e:
        _discard(temps)
        raise OSError(e.errno, e.strerror or str(e), str(name)) from e
    except BaseException:
        _discard(temps)
        raise
    for folder in dict.fromkeys(t.parent for t in targets):
        _fsync_dir(folder)


def _real_target(path: Path) -> Path:
    """Where a write of ``path`` lands: through a symbolic link to its target (the link stays, as with
    ``open(path, "w")``); :class:`NotRegularFile` for a FIFO, device or socket, which a rename would
    replace with a regular file (``--report /dev/null`` run as root would make ``/dev/null`` one)."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    kind = special_kind(mode)
    if kind is not None:
        raise NotRegularFile(path, kind)
    return target


def _write_temp(target: Path, data: bytes | bytearray | memoryview) -> Path:
    """``data`` in a new fsync'ed temporary file next to ``target`` (with ``target``'s permission bits)."""
    tmp, fd = _create_temp(target)
    try:
        try:
            view = memoryview(data).cast("B")
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        _copy_mode(target, tmp)
    except BaseException:
        _discard([tmp])
        raise
    return tmp


def _discard(temps: Sequence[Path]) -> None:
    for tmp in temps:
        _WRITING.discard(tmp.name)
        try:
            os.unlink(tmp)
        except OSError:
            pass


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8", *, store: bool = False) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Newlines are written as given (no platform translation).
    """
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text needs str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode(encoding), store=store)


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _create_temp(target: Path) -> tuple[Path, int]:
    """Create a new temporary file next to ``target``; return its path and an open write fd.

    The name ``.<target>.<host>-<pid>-<random>.tmp`` says which process wrote it (see
    :func:`remove_stale_temps`). ``os.open`` with mode 0o666 lets the process umask decide the
    permissions, as for a plain ``open(path, "w")``.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = target.with_name(f".{target.name}.{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        _WRITING.add(tmp.name)  # before the file exists: another thread's cleanup must never see it unclaimed
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits colliding
            _WRITING.discard(tmp.name)
            continue
        except BaseException:
            _WRITING.discard(tmp.name)
            raise
        return tmp, fd


# Process-wide by nature (module state on purpose): which temporary files this process's threads are writing.
_WRITING: set[str] = set()
"""The names of the temporary files this process is writing now (added just before they are created, dropped once
moved over their target or discarded). A temporary file named with this process's id that is not among them was left
by an earlier process that had the same id -- in a container every run can be pid 1 -- and is stale
(:func:`remove_stale_temps`)."""


def _own_ids() -> set[int]:
    """This process's id and its threads' ids (``os.kill(tid, 0)`` succeeds for a thread of ours too, so a killed
    run whose pid is one of them would look alive)."""
    ids = {os.getpid()}
    try:
        ids.update(int(name) for name in os.listdir("/proc/self/task"))
    except (OSError, ValueError):  # no /proc: the threads Python knows
        ids.update(t.native_id for t in threading.enumerate() if t.native_id is not None)
    return ids


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (POSIX only: on Windows ``os.kill`` would end it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files that killed writes of ``target`` left behind; return what was removed.

    A temporary file is stale when the process that wrote it (same host, its pid in the name) is gone, or when
    its pid is this process's own (or one of its threads' ids) but this process is not writing it: an earlier
    run with the same id left it (in a container every run can be pid 1); or, for one from another host or an
    older naming, when it is older than 10 minutes. Temporary files of writes still going on are left alone.
    Best effort: what cannot be listed or removed stays.
    """
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:([0-9a-f]{{6}})-(\d+)-[0-9a-f]{{8}}|[0-9a-f]{{12}})\.tmp")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    now, host = time.time(), _host()
    own: set[int] | None = None
    for entry in entries:
        found = pattern.fullmatch(entry.name)
        if found is None:
            continue
        try:
            if found[1] == host and os.name != "nt":  # on Windows age decides: a pid cannot be probed safely
                pid = int(found[2])
                own = _own_ids() if own is None else own
                stale = entry.name not in _WRITING if pid in own else not _alive(pid)
            else:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > _OLD_TEMP_SECONDS
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def os_reason(e: OSError) -> str:
    """What an :class:`OSError` means, for a "cannot write X: reason" message: the system's own words
    (``No space left on device``, ``Read-only file system``, ``File name too long``), clearer ones where a
    file or folder is in the way."""
    if e.errno == errno.EISDIR:
        return "a folder is in the way"
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a file is in the way where a folder is needed"
    return (e.strerror or str(e)).rstrip(".")


def _too_long(full: Path) -> str | None:
    for part in full.parts:
        if len(part.encode()) > _NAME_MAX:
            return f"a file name is too long ({len(part.encode())} bytes; at most {_NAME_MAX})"
    if len(str(full).encode()) > _PATH_MAX:
        return f"the path is too long ({len(str(full).encode())} bytes; at most {_PATH_MAX})"
    return None


def _unwritable(home: Path) -> str | None:
    try:
        if hasattr(os, "statvfs") and os.statvfs(home).f_flag & getattr(os, "ST_RDONLY", 1):
            return f"{home} is on a read-only file system"
    except OSError as e:  # pragma: no cover - a file system that cannot say
        return os_reason(e)
    if not os.access(home, os.W_OK | os.X_OK):
        return f"{home} is not writable (permission denied)"
    return None


def write_problem(path: str | os.PathLike[str], *, folder: bool) -> str | None:
    """Why ``path`` cannot be written, or None when nothing stands in the way; looks, creates nothing.

    ``folder``: ``path`` is a folder to create (if missing) and write files in; else a file. Checked:
    names and the whole path within the file system's limits, no file where a folder must be (or a
    folder where the file must be), and the nearest existing folder writable and not on a read-only
    file system. A full disk shows only when writing.
    """
    full = Path(os.path.abspath(path))
    problem = _too_long(full)
    if problem is not None:
        return problem
    probe = full
    while True:
        try:
            mode = os.stat(probe).st_mode
            break
        except FileNotFoundError:
            probe = probe.parent
        except OSError as e:
            return os_reason(e)
    is_dir = stat.S_ISDIR(mode)
    if probe == full and is_dir != folder:
        return "it is a folder" if is_dir else "it is a file, not a folder"
    kind = special_kind(mode)
    if probe == full and not folder and kind is not None:
        return f"it is {kind}, not a regular file"
    if probe != full and not is_dir:
        return f"{probe} is a file, not a folder"
    return _unwritable(probe if is_dir else probe.parent)


def _copy_mode(target: Path, tmp: Path) -> None:
    """Keep the permission bits of a file that is being replaced."""
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return
    os.chmod(tmp, mode & 0o7777)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself where the platform allows fsync on a folder (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``folder`` (``flock`` on the folder itself, so no lock file
    is left behind) while the block runs: read-modify-write cycles of files in it by several
    processes then follow one another instead of overwriting each other's changes.

    Where folders cannot be locked (no ``fcntl``, e.g. Windows, or a file system that refuses), the
    block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # pragma: no cover - a file system without flock
            pass
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
