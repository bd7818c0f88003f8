"""Bounded reads: special files refused before a byte is read, size limits, and JSON that would exhaust
Python (deep nesting, huge integers) as a plain ValueError."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_saeval import bounded
from pytest_saeval.bounded import (
    DuplicateKey,
    NotRegularFile,
    parse_json,
    read_json,
    read_regular,
    size_text,
    unique_keys,
)
from pytest_saeval.fileio import os_reason
from tests.helpers import NEEDS_DEV_ZERO, NEEDS_FIFO

DEEP = "[" * 100_000 + "]" * 100_000


def test_read_regular_reads_a_file_within_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b"x" * 10)
    assert read_regular(path, limit=10) == b"x" * 10
    assert read_regular(path, limit=None) == b"x" * 10
    with pytest.raises(ValueError, match="it is larger than 9 bytes"):
        read_regular(path, limit=9)
    (tmp_path / "big").write_bytes(b"x" * (2 * 1024 * 1024 + 1))
    with pytest.raises(ValueError, match="it is larger than 2 MiB"):
        read_regular(tmp_path / "big", limit=2 * 1024 * 1024)


def test_read_regular_refuses_a_missing_file_and_a_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "nope", limit=10)
    with pytest.raises(IsADirectoryError):
        read_regular(tmp_path, limit=10)


@NEEDS_FIFO
def test_read_regular_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile, match=r"not a regular file \(a FIFO\)") as info:
        read_regular(fifo, limit=10)  # a blocking open would wait for a writer forever
    assert info.value.kind == "a FIFO" and info.value.filename == str(fifo)
    assert os_reason(info.value) == "not a regular file (a FIFO)"


@NEEDS_DEV_ZERO
def test_read_regular_refuses_a_link_to_a_device(tmp_path: Path) -> None:
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(NotRegularFile, match=r"not a regular file \(a character device\)"):
        read_regular(link, limit=None)  # reading it would fill memory


@NEEDS_FIFO
def test_read_regular_checks_what_it_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file swapped for a FIFO between the stat and the open is still refused, without blocking."""
    path, fifo = tmp_path / "a.json", tmp_path / "pipe"
    path.write_text("{}")
    os.mkfifo(fifo)
    real_open = os.open
    monkeypatch.setattr(bounded.os, "open", lambda p, *a: real_open(fifo if Path(p) == path else p, *a))
    with pytest.raises(NotRegularFile):
        read_regular(path, limit=10)


@pytest.mark.parametrize(("text", "why"), [
    (DEEP, "the JSON is nested more than 100 levels deep"),
    ('{"a": ' + "[" * 101 + "]" * 101 + "}", "the JSON is nested more than 100 levels deep"),
    ("1" * 5000, "the JSON holds an integer with too many digits"),
    ('{"a": [' + "9" * 5000 + "]}", "the JSON holds an integer with too many digits"),
], ids=["deep", "just-too-deep", "long-int", "long-int-inside"])
def test_parse_json_turns_what_python_cannot_handle_into_a_value_error(text: str, why: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_json(text)
    assert str(info.value) == why and type(info.value) is ValueError


def test_parse_json_keeps_everything_else() -> None:
    assert parse_json("[" * 100 + "]" * 100) == parse_json("[" * 100 + "]" * 100)  # exactly the limit
    assert parse_json('{"a": [1, 2.5, "[[[[", {"b": null}]}') == {"a": [1, 2.5, "[[[[", {"b": None}]}
    assert parse_json(b'{"a": 1}') == {"a": 1}
    assert parse_json("[[1]]", max_depth=2) == [[1]]
    with pytest.raises(ValueError, match="nested more than 1 levels deep"):
        parse_json("[[1]]", max_depth=1)
    with pytest.raises(json.JSONDecodeError) as info:
        parse_json('{\n"a": 1,}')
    assert info.value.lineno == 2

    class Hooked(Exception):
        pass

    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        raise Hooked

    with pytest.raises(Hooked):
        parse_json('{"a": 1}', object_pairs_hook=hook)


def test_read_json_reads_utf8_json(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"é": [1, 2]}', encoding="utf-8")
    assert read_json(path, limit=100) == {"é": [1, 2]}
    path.write_bytes(b'{"\xff": 1}')
    with pytest.raises(UnicodeDecodeError):
        read_json(path, limit=100)
    path.write_text(DEEP)
    with pytest.raises(ValueError, match="nested more than 100 levels deep"):
        read_json(path, limit=None)
    with pytest.raises(ValueError, match="larger than 1 KiB"):
        read_json(path, limit=1024)


def test_unique_keys_refuses_a_key_given_twice_at_any_depth() -> None:
    assert parse_json('{"a": {"b": 1}, "c": 2}', object_pairs_hook=unique_keys) == {"a": {"b": 1}, "c": 2}
    for text in ('{"a": 1, "a": 2}', '{"x": [{"b": 1, "b": 1}]}'):
        with pytest.raises(DuplicateKey) as info:
            parse_json(text, object_pairs_hook=unique_keys)
        assert info.value.key in ("a", "b") and isinstance(info.value, ValueError)


def test_size_text() -> None:
    assert [size_text(n) for n in (100, 1024, 16 * 1024 * 1024, 1 << 30, 1500)] == [
        "100 bytes", "1 KiB", "16 MiB", "1 GiB", "1500 bytes"]
