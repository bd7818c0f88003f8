"""Stored answers: plain JSON under a key, verified by key, length and digest, written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_saeval.store.answers import ANSWER_FORMAT, AnswerStore, _digest
from pytest_saeval.store.entries import Unavailable, Unusable
from tests.helpers import SPECIAL_FILES, make_special_file

KEY = "ab" + "0" * 30
BODY = {"metrics": {"l0": 12.5, "mse": math.nan, "total_tokens": 4096, "neg": -0.0, "big": math.inf}, "ids": [1, 2]}


def test_a_body_comes_back_as_it_was_stored(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)
    store.put(KEY, BODY)
    found = store.get(KEY)
    assert found is not None
    metrics = found["metrics"]
    assert list(metrics) == ["l0", "mse", "total_tokens", "neg", "big"]
    assert metrics["l0"] == 12.5 and math.isnan(metrics["mse"]) and metrics["big"] == math.inf
    assert type(metrics["total_tokens"]) is int and math.copysign(1, metrics["neg"]) == -1
    assert store.path(KEY) == tmp_path / "answers" / "ab" / f"{KEY}.json"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_no_file_is_no_answer(tmp_path: Path) -> None:
    assert AnswerStore(tmp_path).get(KEY) is None


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    head, _, body = data.partition(b"\n")
    if how == "cut":
        path.write_bytes(data[:-5])
    elif how == "byte":
        path.write_bytes(head + b"\n" + body.replace(b"12.5", b"12.6"))
    elif how == "other-key":
        header = json.loads(head)
        path.write_bytes(json.dumps({**header, "key": "cd" + "1" * 30}).encode() + b"\n" + body)
    elif how == "old-format":
        header = json.loads(head)
        path.write_bytes(json.dumps({**header, "format": ANSWER_FORMAT + 1}).encode() + b"\n" + body)
    elif how == "no-header":
        path.write_bytes(body)
    elif how == "not-json":
        path.write_bytes(b"\xff\xfe garbage")


@pytest.mark.parametrize(("how", "why"), [("cut", "digest"), ("byte", "digest"), ("other-key", "another key"),
                                          ("old-format", "format"), ("no-header", "cannot be read"),
                                          ("not-json", "cannot be read")])
def test_a_damaged_file_is_unusable(tmp_path: Path, how: str, why: str) -> None:
    store = AnswerStore(tmp_path)
    store.put(KEY, BODY)
    _damage(store.path(KEY), how)
    with pytest.raises(Unusable, match=why):
        store.get(KEY)


def test_a_folder_in_place_of_the_file_is_a_broken_cache_folder(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)
    store.path(KEY).mkdir(parents=True)
    with pytest.raises(Unavailable, match="cannot read"):
        store.get(KEY)
    with pytest.raises(OSError):
        store.put(KEY, BODY)


DEEP = b"[" * 100_000 + b"]" * 100_000


def _write_with_digest(store: AnswerStore, body: bytes) -> None:
    """A file whose header is right for ``body``: only reading the body itself can find it bad."""
    header = {"key": KEY, "format": ANSWER_FORMAT, "digest": _digest(body), "length": len(body)}
    store.path(KEY).parent.mkdir(parents=True, exist_ok=True)
    store.path(KEY).write_bytes(json.dumps(header).encode() + b"\n" + body)


@pytest.mark.parametrize(("body", "why"), [
    (DEEP, "nested more than 100 levels deep"),
    (b'{"metrics": {"l0": ' + b"9" * 5000 + b"}}", "an integer with too many digits"),
], ids=["deep", "long-int"])
def test_a_body_python_cannot_read_is_unusable_even_with_its_digest(tmp_path: Path, body: bytes, why: str) -> None:
    store = AnswerStore(tmp_path)
    _write_with_digest(store, body)
    with pytest.raises(Unusable, match=f"cannot be read .*{why}"):
        store.get(KEY)
    store.put(KEY, BODY)  # the recomputed answer replaces it
    assert store.get(KEY) is not None


def test_a_deep_header_line_is_unusable(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)
    store.path(KEY).parent.mkdir(parents=True)
    store.path(KEY).write_bytes(DEEP + b"\n{}")
    with pytest.raises(Unusable, match="nested more than 100 levels deep"):
        store.get(KEY)


@pytest.mark.parametrize(("what", "kind"), SPECIAL_FILES)
def test_a_file_that_is_not_a_regular_file_is_unusable_unread(tmp_path: Path, what: str, kind: str) -> None:
    store = AnswerStore(tmp_path)
    path = store.path(KEY)
    path.parent.mkdir(parents=True)
    make_special_file(path, what)
    with pytest.raises(Unusable, match=rf"is not a regular file \({kind}\)"):
        store.get(KEY)  # a FIFO would block, /dev/zero never end
    store.put(KEY, BODY)
    assert store.get(KEY) is not None and not path.is_symlink()
