"""Atomic writes and file hashes: all or none, leftovers of killed writes removed by the next write, problems
found before writing."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_saeval import fileio
from pytest_saeval.fileio import (
    atomic_write_bytes,
    atomic_write_many,
    atomic_write_text,
    os_reason,
    remove_stale_temps,
    write_problem,
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_text_creates_parents_and_content(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    atomic_write_text(target, "héllo\nworld\n")
    assert target.read_bytes() == "héllo\nworld\n".encode()
    assert _leftovers(target.parent) == []


def test_write_bytes_replaces_existing(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"\x00\x01new")
    assert target.read_bytes() == b"\x00\x01new"
    assert _leftovers(tmp_path) == []


def test_write_accepts_str_path_and_large_data(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 7)
    atomic_write_bytes(str(tmp_path / "big.bin"), data)
    assert (tmp_path / "big.bin").read_bytes() == data


def test_failure_mid_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "baseline.json"
    target.write_text("old content\n")
    real_write = os.write
    calls = []

    def half_then_fail(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "write", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new content that is long enough\n")
    assert len(calls) == 2  # it really did write part of the data first
    assert target.read_text() == "old content\n"
    assert _leftovers(tmp_path) == []


def test_failure_in_fsync_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def boom(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(fileio.os, "fsync", boom)
    with pytest.raises(OSError, match="I/O error"):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_failure_in_replace_removes_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.csv"

    def boom(src: object, dst: object) -> None:
        raise PermissionError(13, "denied")

    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(PermissionError):
        atomic_write_text(target, "new\n")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_also_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.txt"
    target.write_text("keep\n")

    def interrupted(fd: int, data: bytes) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "keep\n"
    assert _leftovers(tmp_path) == []


def test_writing_over_a_folder_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "dir", "x")
    assert (tmp_path / "dir").is_dir()
    assert _leftovers(tmp_path) == []


def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    (tmp_path / "real.yaml").write_text("old")
    (tmp_path / "link.yaml").symlink_to("real.yaml")
    atomic_write_text(tmp_path / "link.yaml", "new")
    assert (tmp_path / "link.yaml").is_symlink() and (tmp_path / "real.yaml").read_text() == "new"
    (tmp_path / "dangling.yaml").symlink_to("made.yaml")
    atomic_write_text(tmp_path / "dangling.yaml", "made")
    assert (tmp_path / "dangling.yaml").is_symlink() and (tmp_path / "made.yaml").read_text() == "made"
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_or_device_in_the_way_is_refused_never_replaced(tmp_path: Path) -> None:
    """A rename would put a regular file where the FIFO (or, run as root, ``/dev/null``) was."""
    os.mkfifo(tmp_path / "report.html")
    (tmp_path / "via-link.html").symlink_to("report.html")
    for name in ("report.html", "via-link.html"):
        with pytest.raises(OSError, match=r"not a regular file \(a FIFO\)") as info:
            atomic_write_many([(tmp_path / "ok.json", b"{}"), (tmp_path / name, b"x")])
        assert info.value.filename == str(tmp_path / name)
    assert stat.S_ISFIFO(os.stat(tmp_path / "report.html").st_mode) and not (tmp_path / "ok.json").exists()
    assert write_problem(tmp_path / "report.html", folder=False) == "it is a FIFO, not a regular file"
    assert write_problem("/dev/null", folder=False) == "it is a character device, not a regular file"
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_store_replaces_a_stray_link_or_fifo_itself(tmp_path: Path) -> None:
    """Cache entries (``store=True``): what stands at the path is replaced, never written through or refused."""
    os.mkfifo(tmp_path / "entry")
    (tmp_path / "target").write_text("kept")
    (tmp_path / "link").symlink_to("target")
    atomic_write_bytes(tmp_path / "entry", b"a", store=True)
    atomic_write_text(tmp_path / "link", "b", store=True)
    assert (tmp_path / "entry").read_bytes() == b"a"
    assert not (tmp_path / "link").is_symlink() and (tmp_path / "link").read_text() == "b"
    assert (tmp_path / "target").read_text() == "kept"


def test_existing_permissions_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "script.sh"
    target.write_text("old\n")
    target.chmod(0o750)
    atomic_write_text(target, "new\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o750


def test_new_file_respects_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


def test_wrong_types_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write_text(tmp_path / "f.txt", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "f.bin", "text")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_several_files_are_replaced_all_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in "abc":
        (tmp_path / name).write_text("old\n")
    real_write, calls = os.write, []

    def third_write_fails(fd: int, data: bytes) -> int:
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(fileio.os, "write", third_write_fails)
    with pytest.raises(OSError, match="No space left on device") as info:
        atomic_write_many([(tmp_path / n, b"new\n") for n in "abc"])
    assert info.value.filename == str(tmp_path / "c")  # the file that was to be written, not a temporary one
    assert [(tmp_path / n).read_text() for n in "abc"] == ["old\n"] * 3
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    atomic_write_many([(tmp_path / n, b"new\n") for n in "abc"])
    assert [(tmp_path / n).read_text() for n in "abc"] == ["new\n"] * 3


def test_a_folder_in_the_way_stops_the_write_before_anything_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("old\n")
    (tmp_path / "b").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        atomic_write_many([(tmp_path / "a", b"new\n"), (tmp_path / "b", b"new\n")])
    assert info.value.filename == str(tmp_path / "b") and os_reason(info.value) == "a folder is in the way"
    assert (tmp_path / "a").read_text() == "old\n" and _leftovers(tmp_path) == []


_KILLED_WRITER = """
import os, signal, sys
from pytest_saeval import fileio
real_fsync = os.fsync
def killed(fd):
    real_fsync(fd)
    os.kill(os.getpid(), signal.SIGKILL)
fileio.os.fsync = killed
fileio.atomic_write_text(sys.argv[1], "new\\n" * 1000)
"""


def test_a_write_killed_outright_leaves_a_temp_file_that_the_next_write_removes(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old\n")
    for _ in range(3):  # repeated CI cancellations
        proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], capture_output=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert proc.returncode == -9
        assert len(_leftovers(tmp_path)) == 1  # each killed run removed the one before it: leftovers never pile up
    assert target.read_text() == "old\n"
    (tmp_path / ".other.json.abcdef-1-12345678.tmp").write_text("another file's")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert _leftovers(tmp_path) == [".other.json.abcdef-1-12345678.tmp"]  # only the same target's leftovers go


def test_temp_files_of_live_writers_and_recent_foreign_ones_stay(tmp_path: Path) -> None:
    target = tmp_path / "t"
    host = fileio._host()  # the naming scheme is what is tested
    live = tmp_path / f".t.{host}-{os.getppid()}-0000abcd.tmp"  # our parent: alive
    mine, fd = fileio._create_temp(target)  # a write of this process still going on
    os.close(fd)
    foreign = tmp_path / ".t.000000-1-0000abcf.tmp"  # another host: only old ones go
    legacy = tmp_path / ".t.0123456789ab.tmp"  # the earlier naming
    for p in (live, mine, foreign, legacy):
        p.write_text("x")
    assert remove_stale_temps(target) == []
    old = time.time() - 3600
    os.utime(foreign, (old, old))
    os.utime(legacy, (old, old))
    assert sorted(p.name for p in remove_stale_temps(target)) == sorted([foreign.name, legacy.name])
    assert live.exists() and mine.exists()
    fileio._discard([mine])


def test_temp_files_of_an_earlier_process_with_our_id_or_a_thread_id_of_ours_go(tmp_path: Path) -> None:
    """In a container every run can be pid 1, and ``os.kill(tid, 0)`` succeeds for a thread of ours: a killed run's
    temporary file named with such an id looked alive and was never removed."""
    import threading

    target = tmp_path / "t"
    host = fileio._host()
    started, done = threading.Event(), threading.Event()
    tids: list[int] = []
    worker = threading.Thread(target=lambda: (tids.append(threading.get_native_id()), started.set(), done.wait()))
    worker.start()
    try:
        started.wait()
        assert tids[0] != os.getpid()
        earlier = tmp_path / f".t.{host}-{os.getpid()}-0000abce.tmp"  # our pid, but not a write of ours
        by_thread_id = tmp_path / f".t.{host}-{tids[0]}-0000abcf.tmp"  # a pid that is now one of our threads
        for p in (earlier, by_thread_id):
            p.write_text("x")
        ours, fd = fileio._create_temp(target)  # our own write, still going on, stays
        os.close(fd)
        assert sorted(p.name for p in remove_stale_temps(target)) == sorted([earlier.name, by_thread_id.name])
        assert ours.exists()
        writing = set(fileio._WRITING)
        atomic_write_text(target, "new\n")  # a finished write forgets its temporary file (moved over the target)
        assert writing == fileio._WRITING and ours.exists() and target.read_text() == "new\n"
        fileio._discard([ours])
        assert _leftovers(tmp_path) == [] and ours.name not in fileio._WRITING
    finally:
        done.set()
        worker.join()


def test_write_problem_finds_what_stands_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    assert write_problem(tmp_path / "new" / "deeper", folder=True) is None
    assert write_problem(tmp_path / "dir" / "r.html", folder=False) is None
    assert "file, not a folder" in write_problem(tmp_path / "file", folder=True)
    assert write_problem(tmp_path / "dir", folder=False) == "it is a folder"
    assert "a file is in the way" in write_problem(tmp_path / "file" / "out", folder=True)
    assert "too long" in write_problem(tmp_path / ("x" * 300), folder=True)
    assert "too long" in write_problem("/" + "/".join(["d" * 200] * 25), folder=True)


def test_write_problem_sees_a_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fileio.os, "access", lambda path, mode: False)
    assert "not writable" in write_problem(tmp_path / "out", folder=True)


def test_a_temp_file_is_claimed_before_another_thread_s_cleanup_can_see_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cleanup that runs the moment the temporary file appears (another thread writing the same file)
    must leave it: it is claimed before it exists."""
    target = tmp_path / "out.json"
    real_open = os.open
    removed: list[list[Path]] = []

    def open_then_clean(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        fd = real_open(path, flags, mode)
        if str(path).endswith(".tmp"):
            removed.append(fileio.remove_stale_temps(target))
        return fd

    monkeypatch.setattr(fileio.os, "open", open_then_clean)
    fileio.atomic_write_text(target, "kept")
    assert removed == [[]] and target.read_text() == "kept"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
