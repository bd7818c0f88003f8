"""What the loaders share: path resolution, offline mode restored on exit, reading library exceptions, and
safetensors headers checked entry by entry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_saeval.sources.common import (
    exception_chain,
    exists,
    hub_offline,
    is_hub_unreachable,
    resolve_path,
    safetensors_header,
    short,
)


def test_resolve_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_path("saes/a", tmp_path) == tmp_path / "saes" / "a"
    assert resolve_path("saes/a", None) == Path("saes/a")
    assert resolve_path(tmp_path / "abs", "/elsewhere") == tmp_path / "abs"
    assert resolve_path("~/m", "/elsewhere") == tmp_path / "home" / "m"


def test_hub_offline_sets_and_restores_the_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    with hub_offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
        assert hub_constants.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["HF_DATASETS_OFFLINE"] == "0"
    assert hub_constants.HF_HUB_OFFLINE is False
    with pytest.raises(RuntimeError), hub_offline():
        raise RuntimeError("inside")
    assert "HF_HUB_OFFLINE" not in os.environ and hub_constants.HF_HUB_OFFLINE is False


def _chained() -> BaseException:
    try:
        try:
            try:
                raise OSError("couldn't connect to 'https://huggingface.co'")
            except OSError as low:
                raise ValueError("middle") from low
        except ValueError:
            raise RuntimeError("top")  # noqa: B904 - an implicit __context__ on purpose
    except RuntimeError as e:
        return e


def test_exception_chain_follows_causes_and_contexts() -> None:
    assert [type(e).__name__ for e in exception_chain(_chained())] == ["RuntimeError", "ValueError", "OSError"]
    loop = ValueError("a")
    loop.__context__ = KeyError("b")
    loop.__context__.__context__ = loop
    assert [type(e).__name__ for e in exception_chain(loop)] == ["ValueError", "KeyError"]  # no endless loop


def test_is_hub_unreachable() -> None:
    class LocalEntryNotFoundError(Exception):
        pass

    class Derived(LocalEntryNotFoundError):
        pass

    assert is_hub_unreachable(_chained())  # the words, deep in the chain
    assert is_hub_unreachable(Derived("no file"))  # the class name, through the class hierarchy
    assert is_hub_unreachable(RuntimeError("Outgoing traffic has been disabled."))
    assert not is_hub_unreachable(FileNotFoundError("tokens.npy"))
    assert not is_hub_unreachable(ValueError("bad config"))


def test_short_is_one_line_with_the_type() -> None:
    assert short(ValueError("bad\n   config")) == "ValueError: bad config"
    assert short(KeyError()) == "KeyError"
    cut = short(RuntimeError("x" * 500), limit=40)
    assert len(cut) == 40 and cut.startswith("RuntimeError: xxx") and cut.endswith("...")


# ------------------------------------------------------------------------------------------
# safetensors headers


def _raw_safetensors(path: Path, header: object, data: bytes = b"\0" * 64) -> Path:
    """A file laid out as safetensors (8-byte length, JSON header, data) with any header at all."""
    import json
    import struct

    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


_GOOD = {"dtype": "I64", "shape": [2, 4], "data_offsets": [0, 64]}


def test_safetensors_header_reads_a_real_file(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2, 3), "empty": torch.zeros(0, 3)}, tmp_path / "w.safetensors", metadata={"k": "v"})
    header = safetensors_header(tmp_path / "w.safetensors")
    assert header["a"]["shape"] == [2, 3] and header["empty"]["shape"] == [0, 3] and header["__metadata__"] == {"k": "v"}
    assert safetensors_header(_raw_safetensors(tmp_path / "ok.safetensors", {"tokens": _GOOD}))["tokens"] == _GOOD


@pytest.mark.parametrize(("entry", "reason"), [
    (1, "the entry of tensor 'W_enc' is 1, not an object with dtype, shape and data_offsets"),
    ([2, 4], "the entry of tensor 'W_enc' is [2, 4], not an object"),
    ({**_GOOD, "dtype": 5}, "tensor 'W_enc' has dtype 5, not a dtype name"),
    ({"shape": [2, 4], "data_offsets": [0, 64]}, "tensor 'W_enc' has dtype None"),
    ({**_GOOD, "shape": "8x32"}, "tensor 'W_enc' has shape '8x32', not a list of whole numbers >= 0"),
    ({**_GOOD, "shape": [-8, 32]}, "tensor 'W_enc' has shape [-8, 32], not a list"),
    ({**_GOOD, "shape": [True, 4]}, "tensor 'W_enc' has shape [True, 4], not a list"),
    ({**_GOOD, "shape": [2.0, 4]}, "tensor 'W_enc' has shape [2.0, 4], not a list"),
    ({**_GOOD, "shape": [2**64, 4]}, "not a list of whole numbers >= 0"),
    ({"dtype": "F32", "shape": [2]}, "tensor 'W_enc' has data_offsets None, not [start, end] with 0 <= start <= end"),
    ({**_GOOD, "data_offsets": [64, 0]}, "tensor 'W_enc' has data_offsets [64, 0], not [start, end]"),
    ({**_GOOD, "data_offsets": [0, "64"]}, "has data_offsets [0, '64'], not"),
    ({**_GOOD, "data_offsets": [0, 32, 64]}, "has data_offsets [0, 32, 64], not"),
    ({**_GOOD, "data_offsets": {"a": 0, "b": 64}}, "has data_offsets {'a': 0, 'b': 64}, not"),
    ({**_GOOD, "data_offsets": [-1, 64]}, "has data_offsets [-1, 64], not"),
])
def test_safetensors_header_refuses_malformed_entries(tmp_path: Path, entry: object, reason: str) -> None:
    file = _raw_safetensors(tmp_path / "w.safetensors", {"b_enc": _GOOD, "W_enc": entry})
    with pytest.raises(ValueError) as info:
        safetensors_header(file)
    assert reason in str(info.value)


@pytest.mark.parametrize("metadata", [1, "format=pt", {"format": 1}, {"a": None}])
def test_safetensors_header_refuses_malformed_metadata(tmp_path: Path, metadata: object) -> None:
    file = _raw_safetensors(tmp_path / "w.safetensors", {"__metadata__": metadata, "tokens": _GOOD})
    with pytest.raises(ValueError, match="__metadata__ is .*, not an object of strings"):
        safetensors_header(file)


def test_safetensors_header_names_long_values_briefly(tmp_path: Path) -> None:
    file = _raw_safetensors(tmp_path / "w.safetensors", {"x" * 500: {**_GOOD, "shape": list(range(-1, 500))}})
    with pytest.raises(ValueError) as info:
        safetensors_header(file)
    assert len(str(info.value)) < 200 and "..." in str(info.value)


def test_safetensors_header_nested_too_deeply_is_a_value_error(tmp_path: Path) -> None:
    text = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    (tmp_path / "w.safetensors").write_bytes(len(text).to_bytes(8, "little") + text)
    with pytest.raises(ValueError, match="no safetensors header"):
        safetensors_header(tmp_path / "w.safetensors")


@pytest.mark.parametrize("cut", [1, 40])
def test_a_header_longer_than_the_file_is_named_as_cut_off(tmp_path: Path, cut: int) -> None:
    """Read as it is, the cut header would be reported as bad UTF-8 or JSON at some position."""
    file = _raw_safetensors(tmp_path / "w.safetensors", {"W_enc": {**_GOOD, "data_offsets": [0, 0]}}, data=b"")
    whole = file.read_bytes()
    file.write_bytes(whole[:-cut])
    with pytest.raises(ValueError) as info:
        safetensors_header(file)
    size = len(whole) - 8
    assert str(info.value) == (f"its header is longer than the file: the first 8 bytes give a header of {size} "
                               f"bytes, but only {size - cut} bytes follow (the file is cut off)")


def test_a_link_that_leads_nowhere_is_named_as_such(tmp_path: Path) -> None:
    from pytest_saeval.errors import SourceError

    os.symlink(tmp_path / "gone.npy", tmp_path / "t.npy")
    os.symlink(tmp_path / "loop-b", tmp_path / "loop-a")
    os.symlink(tmp_path / "loop-a", tmp_path / "loop-b")
    for link in ("t.npy", "loop-a"):
        with pytest.raises(SourceError, match="is a symbolic link that leads nowhere") as info:
            exists(tmp_path / link, "token file")
        assert "point the link at the file or folder itself" in (info.value.fix or "")
    assert exists(tmp_path / "missing.npy", "token file") is False  # plainly missing: the caller says so


def test_missing_hint_names_urls_and_names_with_spaces(tmp_path: Path) -> None:
    from pytest_saeval.sources.common import missing_hint

    assert missing_hint(tmp_path / "nothing.npy") == ("", None)
    text, fix = missing_hint(Path("/suite/dir") / "file:///data/t.npy")  # what a path makes of file:///data/t.npy
    assert "it holds the URL file:///data/t.npy: paths name local files and folders, URLs are not read" in text
    assert fix == "give the local path itself: /data/t.npy"
    text, fix = missing_hint(tmp_path / "https://example.com/t.npy")
    assert "https://example.com/t.npy" in text and fix == "download it and give the local path of the copy"
    (tmp_path / "t.npy ").write_bytes(b"")
    text, fix = missing_hint(tmp_path / "t.npy")
    assert "the folder holds 't.npy ', whose name starts or ends with spaces" in text
    assert fix == "rename 't.npy ' to 't.npy'"


def test_json_text_shows_a_value_as_json_cut_with_its_length() -> None:
    from pytest_saeval.sources.common import json_text

    assert json_text("false") == '"false"' and json_text(64) == "64" and json_text({1, 2}) in ("{1, 2}", "{2, 1}")
    long = json_text(list(range(100)))
    assert long.startswith("[0, 1, 2") and long.endswith("... (390 characters)") and len(long) < 70
