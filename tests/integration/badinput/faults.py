"""Folders that are read-only or full, for tests of what a run does when it cannot write.

:func:`faulty_folder` makes a real one where the platform allows: a small tmpfs mounted over the folder
(root on Linux; 512 KiB more than the folder held), remounted read-only or filled to the last byte. Elsewhere a read-only folder is made
by its permissions (not as root), and what is left is injected in this process: ``os.open`` /
``os.mkdir`` under the folder fail with ``EROFS``, or writes to files under it fail with ``ENOSPC``.
The context manager yields which of these it used ("mount", "permissions" or "injected").
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

__all__ = ["can_mount", "faulty_folder", "fill"]

_MOUNT_BYTES = 512 * 1024
"""Room a mounted folder has beyond what it held (then filled, when it must be full)."""


@functools.lru_cache(maxsize=1)
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with the right, on Linux, with ``mount`` installed)."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"saeval-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], capture_output=True, check=True)
        return True
    finally:
        probe.rmdir()


def fill(folder: Path) -> None:
    """Write a filler file into ``folder`` until its file system has no byte left."""
    fd = os.open(folder / ".filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 16, 4096, 512, 1):  # big chunks first, then the last partial block
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


@contextlib.contextmanager
def _mounted(folder: Path, kind: str) -> Iterator[str]:
    saved = [(p.relative_to(folder), p.read_bytes()) for p in folder.rglob("*") if p.is_file()]
    size = max(_MOUNT_BYTES, sum(len(data) + 8192 for _, data in saved) + _MOUNT_BYTES)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(folder)],
                   capture_output=True, check=True)
    try:
        for rel, data in saved:  # what the folder held stays visible on the mount
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        if kind == "readonly":
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True, check=True)
        else:
            fill(folder)
        yield "mount"
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=True)


@contextlib.contextmanager
def _injected(folder: Path, kind: str) -> Iterator[str]:
    root = str(folder.resolve())
    real_open, real_mkdir, real_write = os.open, os.mkdir, os.write
    full_fds: set[int] = set()

    def under(path: Any) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(root)
        except TypeError:
            return False

    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND)
        if writing and under(path) and kind == "readonly":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        fd = real_open(path, flags, *args, **kwargs)
        if writing and under(path):
            full_fds.add(fd)
        return fd

    def fake_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if under(path) and kind == "readonly":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        real_mkdir(path, *args, **kwargs)

    def fake_write(fd: int, data: Any) -> int:
        if fd in full_fds and len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "open", fake_open)
        mp.setattr(os, "mkdir", fake_mkdir)
        if kind == "full":
            mp.setattr(os, "write", fake_write)
        yield "injected"


@contextlib.contextmanager
def faulty_folder(folder: Path, kind: Literal["readonly", "full"], *, inject: bool = False) -> Iterator[str]:
    """``folder`` (created when missing; its files stay visible) read-only or full while the block runs
    (``inject``: always by injection, to test that way on every platform)."""
    folder.mkdir(parents=True, exist_ok=True)
    if inject:
        with _injected(folder, kind) as how:
            yield how
    elif can_mount():
        with _mounted(folder, kind) as how:
            yield how
    elif kind == "readonly" and os.name == "posix" and os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for p in modes:
            p.chmod(0o555)
        try:
            yield "permissions"
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
    else:
        with _injected(folder, kind) as how:
            yield how
