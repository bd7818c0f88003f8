"""Token data: token files of each format and their errors, vocabulary checks, datasets as SAE Lens reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_saeval.errors import InputError, SourceError
from pytest_saeval.sources.hf_datasets import tokens_from_dataset
from pytest_saeval.sources.tokens import check_tokens, load_token_file
from pytest_saeval.spec.suite import DatasetSpec
from tests.helpers import tiny_corpus, tiny_hooked_transformer

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
    assert "could not be read (corrupt or truncated?)" in _message(excinfo)
    assert str(path) in _message(excinfo)


def test_npy_with_pickled_objects_is_refused(tmp_path):
    np.save(tmp_path / "t.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(SourceError, match=r"object array .* refused"):
        load_token_file(tmp_path / "t.npy")


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

# ------------------------------------------------------------------------------------------
# datasets: the same rows as SAE Lens's ActivationsStore

CTX = 16


def _spec(path: str, **fields: object) -> DatasetSpec:
    """A dataset spec as a suite file gives it (not streamed unless asked)."""
    return DatasetSpec(path=path, **{"streaming": False, **fields})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model():
    return tiny_hooked_transformer()


@pytest.fixture(scope="module")
def docs() -> list[str]:
    corpus = tiny_corpus(30, seed=5, min_words=1, max_words=60)
    corpus[3] = ""  # an empty document
    return corpus


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory, docs: list[str]) -> dict[str, Path]:
    import datasets

    folder = tmp_path_factory.mktemp("data")
    jsonl = folder / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    parquet = folder / "docs.parquet"
    datasets.Dataset.from_dict({"text": docs, "id": list(range(len(docs)))}).to_parquet(str(parquet))
    rows = [[(i * 7 + j) % 150 for j in range(CTX + 4)] for i in range(12)]
    pretok = folder / "pretok.jsonl"
    pretok.write_text("".join(json.dumps({"input_ids": r}) + "\n" for r in rows))
    saved = folder / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": docs})}).save_to_disk(str(saved))
    return {"jsonl": jsonl, "parquet": parquet, "pretok": pretok, "saved": saved}


def _store_rows(model, data_file: Path, n_rows: int, prepend_bos: bool) -> torch.Tensor:
    """What SAE Lens's ActivationsStore yields for this data (its own loading, offline)."""
    import datasets
    from sae_lens.training.activations_store import ActivationsStore

    builder = "parquet" if data_file.suffix == ".parquet" else "json"
    dataset = datasets.load_dataset(builder, data_files=str(data_file), split="train")
    store = ActivationsStore(
        model=model,
        dataset=dataset,
        streaming=False,
        hook_name="blocks.0.hook_resid_pre",
        hook_head_index=None,
        context_size=CTX,
        d_in=32,
        n_batches_in_buffer=2,
        total_training_tokens=10,
        store_batch_size_prompts=4,
        train_batch_size_tokens=64,
        prepend_bos=prepend_bos,
        normalize_activations="none",
        device=torch.device("cpu"),
        dtype="float32",
    )
    return torch.cat([store.get_batch_tokens(4, raise_at_epoch_end=True) for _ in range(n_rows // 4)])


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
@pytest.mark.parametrize("prepend_bos", [True, False])
def test_text_dataset_rows_equal_activations_store(model, data_files, kind, prepend_bos):
    n_rows = 20
    ours = tokens_from_dataset(_spec(path=str(data_files[kind])), model=model, context_size=CTX, n_rows=n_rows, prepend_bos=prepend_bos)
    theirs = _store_rows(model, data_files[kind], n_rows, prepend_bos)
    assert ours.shape == (n_rows, CTX) and ours.dtype == torch.long
    assert torch.equal(ours, theirs)
    bos = model.tokenizer.bos_token_id
    assert bool((ours[:, 0] == bos).all()) is prepend_bos
    assert (ours[:, 1:] == bos).any()  # BOS separates documents inside windows


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
def test_pretokenized_dataset_rows_equal_activations_store(model, data_files):
    ours = tokens_from_dataset(_spec(path=str(data_files["pretok"])), model=model, context_size=CTX, n_rows=12)
    theirs = _store_rows(model, data_files["pretok"], 12, True)
    assert torch.equal(ours, theirs)
    assert ours[1, 0].item() == 7  # rows used as they are, cut to context_size


def test_streaming_gives_the_same_rows(model, data_files):
    a = tokens_from_dataset(_spec(path=str(data_files["jsonl"])), model=model, context_size=CTX, n_rows=8)
    b = tokens_from_dataset(_spec(path=str(data_files["jsonl"]), streaming=True), model=model, context_size=CTX, n_rows=8)
    assert torch.equal(a, b)


def test_saved_dataset_folder_and_relative_path(model, data_files):
    a = tokens_from_dataset(_spec(path=str(data_files["jsonl"])), model=model, context_size=CTX, n_rows=8)
    b = tokens_from_dataset(_spec(path="saved"), base_dir=data_files["saved"].parent, model=model, context_size=CTX, n_rows=8)
    assert torch.equal(a, b)


def test_saved_dataset_folder_unknown_split(model, data_files):
    with pytest.raises(SourceError) as excinfo:
        tokens_from_dataset(_spec(path=str(data_files["saved"]), split="trian"), model=model, context_size=CTX, n_rows=4)
    assert "no split 'trian'" in _message(excinfo) and "did you mean 'train'" in _message(excinfo)


def test_single_file_has_only_the_train_split(model, data_files):
    with pytest.raises(SourceError) as excinfo:
        tokens_from_dataset(_spec(path=str(data_files["jsonl"]), split="validation"), model=model, context_size=CTX, n_rows=2)
    assert "no split 'validation'" in _message(excinfo)


def test_too_few_rows_names_both_numbers(model, data_files):
    with pytest.raises(InputError) as excinfo:
        tokens_from_dataset(_spec(path=str(data_files["pretok"])), model=model, context_size=CTX, n_rows=13)
    assert "gives 12 rows of 16 tokens, but 13 are needed" in _message(excinfo)


def test_pretokenized_rows_shorter_than_context(model, data_files):
    with pytest.raises(InputError, match="20 pretokenized tokens, fewer than context_size 32"):
        tokens_from_dataset(_spec(path=str(data_files["pretok"])), model=model, context_size=32, n_rows=2)


def test_text_needs_a_tokenizer(data_files):
    with pytest.raises(SourceError, match="tokenizing it needs a model with a tokenizer"):
        tokens_from_dataset(_spec(path=str(data_files["jsonl"])), model=None, context_size=CTX, n_rows=2)


def test_pretokenized_needs_no_model(data_files):
    assert tokens_from_dataset(_spec(path=str(data_files["pretok"])), context_size=CTX, n_rows=2).shape == (2, CTX)


def test_unknown_column(model, data_files):
    with pytest.raises(SourceError) as excinfo:
        tokens_from_dataset(_spec(path=str(data_files["jsonl"]), column="txt"), model=model, context_size=CTX, n_rows=2)
    assert "no column 'txt'" in _message(excinfo) and "did you mean 'text'" in _message(excinfo)


def test_column_that_is_not_tokens(model, data_files):
    with pytest.raises(SourceError, match="not a list of token ids"):
        tokens_from_dataset(_spec(path=str(data_files["jsonl"]), column="id"), model=model, context_size=CTX, n_rows=2)


def test_unsupported_local_file(model, tmp_path):
    (tmp_path / "docs.xml").write_text("<a/>")
    with pytest.raises(SourceError, match="suffix '.xml'"):
        tokens_from_dataset(_spec(path=str(tmp_path / "docs.xml")), model=model, context_size=CTX, n_rows=2)


def test_empty_dataset(model, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SourceError, match="is empty"):
        tokens_from_dataset(_spec(path=str(tmp_path / "empty.jsonl")), model=model, context_size=CTX, n_rows=2)


@pytest.mark.parametrize("bad", [{"context_size": 0}, {"n_rows": -1}, {"n_rows": True}])
def test_sizes_must_be_positive(model, data_files, bad):
    kwargs = {"context_size": CTX, "n_rows": 2, **bad}
    with pytest.raises(InputError, match="must be a positive integer"):
        tokens_from_dataset(_spec(path=str(data_files["jsonl"])), model=model, **kwargs)


def test_hub_dataset_not_cached_with_hub_unreachable(model, monkeypatch, tmp_path):
    import datasets.config
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError) as excinfo:
        tokens_from_dataset(_spec(path="saeval-tests/no-such-dataset"), model=model, context_size=CTX, n_rows=2)
    assert "saeval-tests/no-such-dataset" in _message(excinfo)
    assert "not in the local Hugging Face cache" in _message(excinfo)
