"""Digests of files and folders from their bytes, and the stat-keyed memo's racy-clean rule."""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path

import pytest

from pytest_saeval.store import filekey
from pytest_saeval.store.entries import CacheWarning
from pytest_saeval.store.filekey import RACY_WINDOW_NS, FileDigests, FileStat, Unsettled
from pytest_saeval.store.hashing import Hasher
from tests.helpers import NEEDS_DEV_ZERO, NEEDS_FIFO, make_special_file

LATER = 60_000_000_000
"""A clock this far ahead makes every file just written look settled (its timestamps old enough)."""


def ahead() -> int:
    return time.time_ns() + LATER


def raw_digest(data: bytes) -> str:
    h = Hasher()
    h.raw(data)
    return h.hexdigest()


def test_a_file_digest_is_the_hash_of_its_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # more than one read chunk
    (tmp_path / "w.bin").write_bytes(data)
    assert FileDigests().file(tmp_path / "w.bin") == raw_digest(data)


@pytest.mark.parametrize("where", [0, 1 << 20, -1])
def test_any_byte_changed_changes_the_digest(tmp_path: Path, where: int) -> None:
    data = bytearray(os.urandom(2 * (1 << 20)))
    f = tmp_path / "w.bin"
    f.write_bytes(data)
    before = FileDigests().file(f)
    data[where] ^= 1
    f.write_bytes(data)
    assert FileDigests().file(f) != before


def test_the_racy_clean_rule_in_numbers() -> None:
    st = FileStat(dev=1, ino=2, size=3, mtime_ns=10 * 10**9, ctime_ns=11 * 10**9)
    assert not st.settled_before(11 * 10**9 + RACY_WINDOW_NS)  # ctime not older than the window
    assert st.settled_before(11 * 10**9 + RACY_WINDOW_NS + 1)
    assert not FileStat(1, 2, 3, mtime_ns=20 * 10**9, ctime_ns=0).settled_before(20 * 10**9 + RACY_WINDOW_NS)


def test_a_settled_file_is_read_once_then_answered_from_the_memo_across_processes(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights" * 1000)
    memo = tmp_path / "cache" / "filehashes.json"
    first = FileDigests(memo, clock=ahead)
    digest = first.file(f)
    assert first.reads == 1
    assert first.file(f) == digest and first.reads == 1
    first.save()
    second = FileDigests(memo, clock=ahead)  # a later run reads the memo file
    assert second.file(f) == digest
    assert second.reads == 0


def test_a_same_size_rewrite_within_the_same_second_is_seen(tmp_path: Path) -> None:
    """The file's timestamps are within the window of the moment it was read: the memo is not trusted."""
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 4096)
    memo = tmp_path / "filehashes.json"
    digests = FileDigests(memo)
    before = digests.file(f)
    st = os.stat(f)
    f.write_bytes(b"b" * 4096)  # same size, and the old mtime put back: only the racy rule can see it
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    digests.save()
    assert FileDigests(memo).file(f) != before
    assert digests.file(f) != before
    assert digests.reads == 2


def test_on_one_second_timestamps_a_same_size_rewrite_leaves_the_stat_equal_and_is_still_seen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system that keeps whole seconds (ext3, HFS+): the rewrite's stat equals the first write's, so a memo
    keyed by stat alone would answer the old digest; the racy rule reads the file again."""
    real_of = FileStat.of

    def whole_seconds(st: os.stat_result) -> FileStat:
        found = real_of(st)
        return FileStat(found.dev, found.ino, found.size, found.mtime_ns // 10**9 * 10**9, found.ctime_ns // 10**9 * 10**9)

    monkeypatch.setattr(FileStat, "of", staticmethod(whole_seconds))
    f = tmp_path / "w.bin"
    for _ in range(5):  # until both writes fall within one second
        f.write_bytes(b"a" * 4096)
        digests = FileDigests(tmp_path / "filehashes.json")
        before, first = digests.file(f), FileStat.of(os.stat(f))
        f.write_bytes(b"b" * 4096)
        if FileStat.of(os.stat(f)) == first:
            break
    assert FileStat.of(os.stat(f)) == first
    assert digests.file(f) != before
    assert digests.reads == 2


def test_a_rewrite_of_a_settled_file_changes_its_stat_and_is_read_again(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 4096)
    digests = FileDigests(tmp_path / "filehashes.json", clock=ahead)
    before = digests.file(f)
    st = os.stat(f)
    time.sleep(0.02)
    f.write_bytes(b"b" * 4096)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored: ctime still moved
    assert os.stat(f).st_ctime_ns != st.st_ctime_ns
    assert digests.file(f) != before
    assert digests.reads == 2


def test_without_the_memo_every_file_is_read_every_time(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"x")
    digests = FileDigests(tmp_path / "filehashes.json", use_memo=False, clock=ahead)
    digests.file(f)
    digests.file(f)
    assert digests.reads == 2


def test_a_file_that_changes_while_it_is_read_is_unsettled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 100)
    real = filekey.file_hash

    def read_then_append(path: str) -> str:
        found = real(path)
        with open(path, "ab") as fh:
            fh.write(b"more")
        return found

    monkeypatch.setattr(filekey, "file_hash", read_then_append)
    with pytest.raises(Unsettled, match="changed while it was read"):
        FileDigests(clock=ahead).file(f)


def test_a_pipe_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "tokens.npy"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        FileDigests().file(fifo)


def tree(root: Path) -> str:
    return FileDigests().tree(root)


def test_a_folder_digest_covers_names_and_bytes_of_every_file_below_it(tmp_path: Path) -> None:
    root = tmp_path / "sae"
    (root / "sub").mkdir(parents=True)
    (root / "cfg.json").write_text("{}")
    (root / "sub" / "w.safetensors").write_bytes(b"123")
    base = tree(root)
    (root / "sub" / "w.safetensors").write_bytes(b"124")
    changed = tree(root)
    (root / "sub" / "w.safetensors").write_bytes(b"123")
    assert tree(root) == base != changed
    (root / "sub" / "w.safetensors").rename(root / "sub" / "v.safetensors")
    renamed = tree(root)
    (root / "sub" / "v.safetensors").rename(root / "sub" / "w.safetensors")
    (root / "extra.txt").write_text("")
    added = tree(root)
    assert len({base, renamed, added}) == 3


def test_version_control_and_byte_code_folders_are_left_out(tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text("{}")
    base = tree(root)
    for name in (".git", "__pycache__"):
        (root / name).mkdir()
        (root / name / "x").write_text("anything")
    assert tree(root) == base


def test_a_link_back_up_is_followed_once_and_a_broken_link_counts_by_name(tmp_path: Path) -> None:
    root = tmp_path / "model"
    (root / "inner").mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "inner" / "up").symlink_to(root, target_is_directory=True)
    base = tree(root)  # terminates
    (root / "gone").symlink_to(tmp_path / "missing")
    assert tree(root) != base


def test_a_single_file_and_a_folder_holding_it_differ(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x")
    assert tree(tmp_path / "d") != tree(tmp_path / "d" / "f")


def test_a_damaged_memo_is_started_afresh_with_one_warning(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 10)
    memo = tmp_path / "filehashes.json"
    digests = FileDigests(memo, clock=ahead)
    digest = digests.file(f)
    digests.save()
    memo.write_text(memo.read_text().replace(digest, "0" * 32))  # an entry changed: the digest no longer matches
    with pytest.warns(CacheWarning, match="filehashes.json cannot be used"):
        again = FileDigests(memo, clock=ahead)
        assert again.file(f) == digest
    assert again.reads == 1


def test_a_memo_that_cannot_be_read_is_not_a_problem(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"x")
    (tmp_path / "filehashes.json").mkdir()  # a folder in the way: the caches report the folder, not the memo
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        digests = FileDigests(tmp_path / "filehashes.json", clock=ahead)
        digests.file(f)
    with pytest.raises(OSError):
        digests.save()


def _memo_in_place(memo: Path, what: str) -> None:
    if what == "deep":
        memo.write_text('{"format": 1, "digest": "x", "entries": ' + "[" * 100_000 + "]" * 100_000 + "}")
    elif what == "long-int":
        memo.write_text('{"format": 1, "digest": "x", "entries": {"a": [' + "9" * 5000 + "]}}")
    else:
        make_special_file(memo, what)


@pytest.mark.parametrize(("what", "why"), [
    ("deep", "cannot be used .*nested more than 100 levels deep"),
    ("long-int", "cannot be used .*an integer with too many digits"),
    pytest.param("fifo", r"is not a regular file \(a FIFO\)", marks=NEEDS_FIFO),
    pytest.param("dev-zero", r"is not a regular file \(a character device\)", marks=NEEDS_DEV_ZERO),
])
def test_a_memo_python_cannot_read_is_started_afresh_with_one_warning(tmp_path: Path, what: str, why: str) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 10)
    memo = tmp_path / "filehashes.json"
    _memo_in_place(memo, what)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        digests = FileDigests(memo, clock=ahead)
        assert digests.file(f) == raw_digest(b"x" * 10)
        digests.save()  # writes a good memo in its place (a FIFO or a link is replaced, never read)
    assert [w.category for w in caught] == [CacheWarning]
    assert "filehashes.json" in str(caught[0].message)
    assert re.search(why, str(caught[0].message)), caught[0].message
    assert memo.is_file() and not memo.is_symlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = FileDigests(memo, clock=ahead)
        again.file(f)
    assert again.reads == 0
