"""Token files that are not what their name says: a linked text file, unsigned ids beyond int64."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.tokens import load_token_file


def test_a_text_file_linked_as_the_token_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my notes\n")
    os.symlink("notes.txt", tmp_path / "t.npy")
    with pytest.raises(SourceError) as info:
        load_token_file(tmp_path / "t.npy")
    message = str(info.value)
    assert "is not a .npy file" in message and "notes.txt" in message and "object array" not in message


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".safetensors"])
def test_unsigned_ids_beyond_int64_are_refused(tmp_path: Path, suffix: str) -> None:
    ids = np.arange(8, dtype=np.uint64).reshape(2, 4)
    ids[1, 2] = 2**64 - 1
    path = tmp_path / f"t{suffix}"
    tensor = torch.from_numpy(ids.view(np.int64)).view(torch.uint64)
    if suffix == ".npy":
        np.save(path, ids)
    elif suffix == ".pt":
        torch.save(tensor, path)
    else:
        save_file({"tokens": tensor}, path)
    with pytest.raises(SourceError, match="holds the id 18446744073709551615, too large for int64"):
        load_token_file(path)


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_unsigned_ids_in_range_load(tmp_path: Path, dtype: torch.dtype) -> None:
    torch.save(torch.arange(8).reshape(2, 4).to(dtype), tmp_path / "t.pt")
    assert load_token_file(tmp_path / "t.pt").tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_a_path_that_cannot_be_looked_up_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot be looked up: File name too long"):
        load_token_file(tmp_path / ("x" * 300 + ".npy"))
