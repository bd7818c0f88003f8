"""Token files that are not what their name says: a linked text file, unsigned ids beyond int64, a sparse,
nested, quantized or meta tensor, two token keys at once, a malformed safetensors header, a .npy file with
bytes after its array."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pytest_saeval.errors import SourceError
from pytest_saeval.sources.tokens import inspect_token_file, load_token_file


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


# ------------------------------------------------------------------------------------------
# .pt files holding a tensor that is not a plain dense one


def _ids() -> torch.Tensor:
    return torch.arange(8).reshape(2, 4)


_LAYOUTS = {
    "sparse_coo": (lambda: _ids().to_sparse(), "holds a sparse tensor (torch.sparse_coo)", "to_dense().long()"),
    "sparse_csr": (lambda: _ids().to_sparse_csr(), "holds a sparse tensor (torch.sparse_csr)", "to_dense().long()"),
    "sparse_csc": (lambda: _ids().to_sparse_csc(), "holds a sparse tensor (torch.sparse_csc)", "to_dense().long()"),
    "nested": (lambda: torch.nested.nested_tensor([torch.arange(3), torch.arange(2)]),
               "holds a nested tensor (torch.nested)", "one length"),
    "nested_2d": (lambda: torch.nested.nested_tensor([_ids(), _ids()]), "holds a nested tensor (torch.nested)",
                  "torch.stack(tokens.unbind()).long()"),
    "quantized": (lambda: torch.quantize_per_tensor(_ids().float(), 1.0, 0, torch.quint8),
                  "holds a quantized tensor (torch.quint8)", "dequantize()"),
    "meta": (lambda: _ids().to("meta"), "holds a meta tensor (a shape only, no token values)", "tokens.cpu().long()"),
}


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage:UserWarning")
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state:UserWarning")
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
@pytest.mark.parametrize("in_dict", [False, True], ids=["tensor", "dict"])
@pytest.mark.parametrize("layout", list(_LAYOUTS))
def test_a_tensor_that_is_not_plain_and_dense_is_one_source_error(tmp_path: Path, layout: str, in_dict: bool) -> None:
    make, held, fix = _LAYOUTS[layout]
    path = tmp_path / "t.pt"
    torch.save({"input_ids": make()} if in_dict else make(), path)
    assert inspect_token_file(path) is None  # a .pt file is only checked when read
    with pytest.raises(SourceError) as info:
        load_token_file(path)
    message = str(info.value)
    assert f"token file '{path}' {held}; token ids must be a dense integer tensor" in message
    assert fix in message.split("Fix: ")[1] and message.endswith("or use .npy")


def test_a_dense_integer_tensor_still_loads(tmp_path: Path) -> None:
    torch.save(_ids().to_sparse().to_dense().int(), tmp_path / "t.pt")
    assert load_token_file(tmp_path / "t.pt").tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_a_pt_dict_with_two_token_keys_is_refused(tmp_path: Path) -> None:
    torch.save({"input_ids": _ids(), "tokens": _ids() + 1}, tmp_path / "t.pt")
    with pytest.raises(SourceError) as info:
        load_token_file(tmp_path / "t.pt")
    assert "holds tensors under both 'tokens' and 'input_ids', so which one holds the tokens is unclear" in str(info.value)
    assert str(tmp_path / "t.pt") in str(info.value)
    assert "Fix: keep only one of them, e.g. torch.save({'tokens': tokens}, path)" in str(info.value)


def test_a_safetensors_file_with_two_token_keys_is_refused(tmp_path: Path) -> None:
    save_file({"input_ids": _ids(), "tokens": _ids() + 1}, tmp_path / "t.safetensors")
    for read in (load_token_file, inspect_token_file):
        with pytest.raises(SourceError, match="holds tensors under both 'tokens' and 'input_ids'"):
            read(tmp_path / "t.safetensors")


# ------------------------------------------------------------------------------------------
# .safetensors files whose header is JSON but not a valid safetensors header


def _raw_safetensors(path: Path, header: object, data: bytes = b"\0" * 64) -> Path:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


_ENTRY = {"dtype": "I64", "shape": [2, 4], "data_offsets": [0, 64]}


@pytest.mark.parametrize(("header", "reason"), [
    ({"tokens": 1}, "the entry of tensor 'tokens' is 1, not an object"),
    ({"tokens": {**_ENTRY, "shape": "8x32"}}, "tensor 'tokens' has shape '8x32', not a list of whole numbers >= 0"),
    ({"tokens": {**_ENTRY, "shape": [-8, 32]}}, "tensor 'tokens' has shape [-8, 32], not a list of whole numbers >= 0"),
    ({"tokens": {**_ENTRY, "data_offsets": [0, "x"]}}, "tensor 'tokens' has data_offsets [0, 'x'], not [start, end]"),
    ({"tokens": {**_ENTRY, "dtype": None}}, "tensor 'tokens' has dtype None, not a dtype name"),
    ({"__metadata__": 1, "tokens": _ENTRY}, "__metadata__ is 1, not an object of strings"),
])
def test_a_malformed_safetensors_header_is_one_source_error(tmp_path: Path, header: dict, reason: str) -> None:
    path = _raw_safetensors(tmp_path / "t.safetensors", header)
    with pytest.raises(SourceError) as info:
        inspect_token_file(path)
    assert f"token file '{path}' could not be read (corrupt or truncated?): ValueError: {reason}" in str(info.value)
    with pytest.raises(SourceError, match="could not be read"):  # safetensors itself refuses the header
        load_token_file(path)


def test_a_npy_file_with_bytes_after_its_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.npy"
    np.save(path, np.arange(12, dtype=np.int64).reshape(3, 4))
    with open(path, "ab") as fh:
        np.save(fh, np.arange(12, dtype=np.int64).reshape(3, 4))  # a second array: numpy.load reads the first
    for read in (load_token_file, inspect_token_file):
        with pytest.raises(SourceError) as info:
            read(path)
        message = str(info.value)
        assert f"token file '{path}' has " in message and "bytes after the [3, 4] int64 array" in message, message
