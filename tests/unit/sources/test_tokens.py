"""Token files: each format and its errors, context cuts, and the vocabulary checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_saeval.errors import InputError, SourceError
from pytest_saeval.sources.tokens import check_tokens, inspect_token_file, load_token_file

TOKENS = np.arange(4 * 6, dtype=np.int64).reshape(4, 6) * 3 % 150


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


# ------------------------------------------------------------------------------------------
# token files


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.uint8])
def test_npy(tmp_path, dtype):
    np.save(tmp_path / "t.npy", TOKENS.astype(dtype))
    tokens = load_token_file(tmp_path / "t.npy")
    assert tokens.dtype == torch.long and tokens.device.type == "cpu"
    assert torch.equal(tokens, torch.from_numpy(TOKENS))


def test_pt_tensor_and_dicts(tmp_path):
    expected = torch.from_numpy(TOKENS)
    torch.save(expected.to(torch.int32), tmp_path / "a.pt")
    torch.save({"tokens": expected}, tmp_path / "b.pt")
    torch.save({"input_ids": expected, "note": torch.zeros(1)}, tmp_path / "c.pt")
    for name in ("a.pt", "b.pt", "c.pt"):
        assert torch.equal(load_token_file(tmp_path / name), expected)


def test_pt_dict_without_token_key(tmp_path):
    torch.save({"ids": torch.from_numpy(TOKENS)}, tmp_path / "t.pt")
    with pytest.raises(SourceError) as excinfo:
        load_token_file(tmp_path / "t.pt")
    assert "none of tokens, input_ids" in _message(excinfo) and "['ids']" in _message(excinfo)


def test_pt_holding_a_list(tmp_path):
    torch.save([[1, 2], [3, 4]], tmp_path / "t.pt")
    with pytest.raises(SourceError, match="holds a list, not a tensor"):
        load_token_file(tmp_path / "t.pt")


class _Payload:
    def __reduce__(self):  # what a malicious pickle would do: run code on load
        return (print, ("code ran",))


def test_pt_is_never_unpickled_with_code(tmp_path, capsys):
    torch.save({"tokens": _Payload()}, tmp_path / "t.pt")
    with pytest.raises(SourceError, match=r"pickled Python objects .* refused"):
        load_token_file(tmp_path / "t.pt")
    assert "code ran" not in capsys.readouterr().out


def test_safetensors_keys(tmp_path):
    from safetensors.torch import save_file

    expected = torch.from_numpy(TOKENS)
    save_file({"tokens": expected, "other": torch.zeros(2)}, tmp_path / "a.safetensors")
    save_file({"input_ids": expected.to(torch.int32)}, tmp_path / "b.safetensors")
    save_file({"whatever": expected}, tmp_path / "c.safetensors")
    for name in ("a.safetensors", "b.safetensors", "c.safetensors"):
        assert torch.equal(load_token_file(tmp_path / name), expected)
    save_file({"x": expected, "y": expected.clone()}, tmp_path / "d.safetensors")
    with pytest.raises(SourceError, match="none is named tokens or input_ids"):
        load_token_file(tmp_path / "d.safetensors")


def test_relative_to_base_dir(tmp_path):
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "t.npy", TOKENS)
    assert load_token_file("data/t.npy", base_dir=tmp_path).shape == (4, 6)


def test_context_size_cuts_longer_rows(tmp_path):
    np.save(tmp_path / "t.npy", TOKENS)
    tokens = load_token_file(tmp_path / "t.npy", context_size=4)
    assert torch.equal(tokens, torch.from_numpy(TOKENS[:, :4]))
    assert tokens.is_contiguous()
    assert load_token_file(tmp_path / "t.npy", context_size=6).shape == (4, 6)


def test_context_size_longer_than_rows(tmp_path):
    np.save(tmp_path / "t.npy", TOKENS)
    with pytest.raises(InputError) as excinfo:
        load_token_file(tmp_path / "t.npy", context_size=8)
    assert "rows of 6 tokens, fewer than context_size 8" in _message(excinfo)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_context_size_must_be_positive_int(tmp_path, bad):
    np.save(tmp_path / "t.npy", TOKENS)
    with pytest.raises(InputError, match="context_size must be a positive integer"):
        load_token_file(tmp_path / "t.npy", context_size=bad)


def test_missing_file(tmp_path):
    with pytest.raises(SourceError) as excinfo:
        load_token_file(tmp_path / "nope.npy")
    msg = _message(excinfo)
    assert "does not exist" in msg and str(tmp_path / "nope.npy") in msg and "data.tokens" in msg


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(SourceError, match="is not a file"):
        load_token_file(tmp_path)


def test_unsupported_suffix(tmp_path):
    (tmp_path / "t.csv").write_text("1,2\n")
    with pytest.raises(SourceError, match=r"suffix '.csv'; supported are .npy, .pt, .safetensors"):
        load_token_file(tmp_path / "t.csv")


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".safetensors"])
def test_empty_file(tmp_path, suffix):
    (tmp_path / f"t{suffix}").write_bytes(b"")
    with pytest.raises(SourceError, match="is empty"):
        load_token_file(tmp_path / f"t{suffix}")


@pytest.mark.parametrize("suffix", [".npy", ".pt", ".safetensors"])
def test_truncated_file(tmp_path, suffix):
    from safetensors.torch import save_file

    path = tmp_path / f"t{suffix}"
    big = np.arange(2000, dtype=np.int64).reshape(20, 100)
    if suffix == ".npy":
        np.save(path, big)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(big), path)
    else:
        save_file({"tokens": torch.from_numpy(big)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError) as excinfo:
        load_token_file(path)
    # .npy: the header's shape says how many bytes should follow; the other formats fail in their reader
    expected = "is cut off: its header describes [20, 100] int64" if suffix == ".npy" else \
        "could not be read (corrupt or truncated?)"
    assert expected in _message(excinfo)
    assert str(path) in _message(excinfo)


def test_npy_with_pickled_objects_is_refused(tmp_path):
    np.save(tmp_path / "t.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(SourceError, match=r"object array .* refused"):
        load_token_file(tmp_path / "t.npy")
    assert inspect_token_file(tmp_path / "t.npy") is None  # the header says object: left to the full read


def test_npy_header_is_read_without_the_array(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((3, 5), dtype=np.int32))
    info = inspect_token_file(tmp_path / "t.npy")
    assert info is not None and info.shape == (3, 5) and info.integer and info.dtype == "int32"
    (tmp_path / "cut.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:20])  # the header itself is cut
    with pytest.raises(SourceError, match=r"cut.npy' could not be read \(corrupt or truncated\?\)"):
        inspect_token_file(tmp_path / "cut.npy")


@pytest.mark.parametrize("shape", [(12,), (2, 3, 2)])
def test_not_two_dimensional(tmp_path, shape):
    np.save(tmp_path / "t.npy", np.zeros(shape, dtype=np.int64))
    with pytest.raises(SourceError) as excinfo:
        load_token_file(tmp_path / "t.npy")
    assert f"shape {list(shape)}" in _message(excinfo) and "must be 2-D" in _message(excinfo)


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_float_tokens_are_refused_even_when_whole(tmp_path, suffix):
    floats = TOKENS.astype(np.float32)
    if suffix == ".npy":
        np.save(tmp_path / f"t{suffix}", floats)
    else:
        torch.save(torch.from_numpy(floats), tmp_path / f"t{suffix}")
    with pytest.raises(SourceError) as excinfo:
        load_token_file(tmp_path / f"t{suffix}")
    assert "holds float32 values; token ids must be integers" in _message(excinfo)


def test_bool_tokens_are_refused(tmp_path):
    torch.save(torch.ones(2, 3, dtype=torch.bool), tmp_path / "t.pt")
    with pytest.raises(SourceError, match="must be integers"):
        load_token_file(tmp_path / "t.pt")


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_negative_ids(tmp_path, suffix):
    bad = TOKENS.copy()
    bad[2, 3] = -5
    if suffix == ".npy":
        np.save(tmp_path / f"t{suffix}", bad)
    else:
        torch.save(torch.from_numpy(bad), tmp_path / f"t{suffix}")
    with pytest.raises(SourceError, match="negative id -5"):
        load_token_file(tmp_path / f"t{suffix}")


def test_no_rows(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((0, 8), dtype=np.int64))
    with pytest.raises(SourceError, match="holds no tokens"):
        load_token_file(tmp_path / "t.npy")


# ------------------------------------------------------------------------------------------
# vocabulary


def test_check_tokens_accepts_ids_in_range():
    check_tokens(torch.tensor([[0, 5, 159]]), 160)


def test_check_tokens_out_of_vocabulary():
    with pytest.raises(InputError) as excinfo:
        check_tokens(torch.tensor([[0, 5], [300, 7]]), 160, source="eval_tokens.npy")
    msg = _message(excinfo)
    assert "id 300" in msg and "vocabulary has 160 tokens" in msg and "eval_tokens.npy" in msg
    assert "this model's tokenizer" in msg


def test_check_tokens_negative():
    with pytest.raises(InputError, match="negative id -1"):
        check_tokens(torch.tensor([[0, -1]]), 160)


@pytest.mark.parametrize(("given", "fix"), [
    ("file:///tmp/saeval-tokens.npy", "give the local path itself: /tmp/saeval-tokens.npy"),
    ("https://example.com/t.npy", "download it and give the local path of the copy"),
])
def test_a_url_as_token_path_says_urls_are_not_read(tmp_path, given, fix):
    with pytest.raises(SourceError) as excinfo:
        inspect_token_file(given, base_dir=tmp_path)
    assert "URLs are not read" in excinfo.value.message and excinfo.value.fix == fix


def test_a_token_file_whose_name_ends_in_a_space_is_named(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((2, 4), dtype=np.int64))
    (tmp_path / "t.npy").rename(tmp_path / "t.npy ")
    with pytest.raises(SourceError) as excinfo:
        load_token_file("t.npy", base_dir=tmp_path)  # the suite's "t.npy " as the suite reader gives it
    assert "the folder holds 't.npy '" in excinfo.value.message and excinfo.value.fix == "rename 't.npy ' to 't.npy'"
