"""Atomic writes and file hashes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pytest_saeval import fileio
from pytest_saeval.fileio import atomic_write_bytes, atomic_write_text


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
