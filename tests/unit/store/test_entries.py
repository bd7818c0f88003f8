"""One cache entry: a safetensors file that carries its key and a digest; a file that is damaged, holds
another key or was edited is Unusable, a folder that cannot be read is Unavailable."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from pytest_saeval.store import entries
from pytest_saeval.store.entries import (
    CacheWarning,
    Unavailable,
    Unusable,
    _tensors_digest,
    digest,
    read_entry,
    warn_unusable,
    write_entry,
)
from tests.helpers import SPECIAL_FILES, make_special_file

TENSORS = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1, 2, 3], dtype=torch.int64)}


def test_an_entry_reads_back_its_header_and_tensors(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    write_entry(path, "k1", {"d_sae": 3, "names": ["x"]}, TENSORS)
    header, tensors = read_entry(path, "k1")  # type: ignore[misc]
    assert header == {"d_sae": 3, "names": ["x"]}
    assert set(tensors) == {"a", "b"}
    assert all(torch.equal(tensors[n], TENSORS[n]) and tensors[n].dtype == TENSORS[n].dtype for n in TENSORS)
    assert [p.name for p in tmp_path.iterdir()] == ["e.safetensors"]  # no temporary file left


def test_no_file_is_none(tmp_path: Path) -> None:
    assert read_entry(tmp_path / "missing.safetensors", "k") is None


def test_another_key_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    write_entry(path, "k1", {}, TENSORS)
    with pytest.raises(Unusable, match="holds another key"):
        read_entry(path, "k2")


def test_a_damaged_file_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    write_entry(path, "k1", {}, TENSORS)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(Unusable, match="cannot be read"):
        read_entry(path, "k1")
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(Unusable, match="cannot be read"):
        read_entry(path, "k1")


def _rewrite_header(path: Path, edit) -> None:
    """Change the safetensors JSON header in place (same tensors bytes)."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])


def test_an_edited_tensor_or_header_does_not_match_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    write_entry(path, "k1", {"n": 1}, TENSORS)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one byte of the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(Unusable, match="does not match its digest"):
        read_entry(path, "k1")
    write_entry(path, "k1", {"n": 1}, TENSORS)
    _rewrite_header(path, lambda h: h["__metadata__"].update(header='{"n": 2}'))
    with pytest.raises(Unusable, match="does not match its digest"):
        read_entry(path, "k1")


def test_a_folder_in_the_entrys_place_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "e.safetensors").mkdir()
    with pytest.raises(Unavailable, match=r"cannot read .*e\.safetensors"):
        read_entry(tmp_path / "e.safetensors", "k")


def test_digest_is_a_function_of_the_plain_data() -> None:
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert digest({"a": 1}) != digest({"a": "1"})


def test_warn_unusable_names_the_file_and_why(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_unusable(tmp_path / "e.safetensors", "holds another key")
    (w,) = caught
    assert w.category is CacheWarning
    assert f"the entry {tmp_path / 'e.safetensors'} holds another key; recomputing it" in str(w.message)


def test_a_deep_header_with_its_digest_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    write_entry(path, "k1", {}, TENSORS)
    deep = "[" * 100_000 + "]" * 100_000
    _, tensors = read_entry(path, "k1")  # type: ignore[misc]
    right = _tensors_digest(tensors, deep)
    _rewrite_header(path, lambda h: h["__metadata__"].update(header=deep, digest=right))
    with pytest.raises(Unusable, match="has a bad header .*nested more than 100 levels deep"):
        read_entry(path, "k1")


def test_metadata_that_is_not_an_object_is_unusable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "e.safetensors"
    write_entry(path, "k1", {}, TENSORS)
    real_loads = json.loads
    monkeypatch.setattr(entries.json, "loads", lambda raw: {"__metadata__": "text"} if isinstance(raw, bytes) else real_loads(raw))
    with pytest.raises(Unusable, match="has a bad header"):
        read_entry(path, "k1")


@pytest.mark.parametrize(("what", "kind"), SPECIAL_FILES)
def test_a_file_that_is_not_a_regular_file_is_unusable_unread(tmp_path: Path, what: str, kind: str) -> None:
    path = tmp_path / "e.safetensors"
    make_special_file(path, what)
    with pytest.raises(Unusable, match=rf"is not a regular file \({kind}\)"):
        read_entry(path, "k1")  # a FIFO would block, /dev/zero never end
    write_entry(path, "k1", {}, TENSORS)  # the recomputed entry replaces it
    assert read_entry(path, "k1") is not None
