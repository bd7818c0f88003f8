"""Token rows from a Hugging Face dataset: the same rows as SAE Lens's ActivationsStore reads, and every error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pytest_saeval.errors import InputError, SourceError
from pytest_saeval.sources.hf_datasets import tokens_from_dataset
from pytest_saeval.spec.suite import DatasetSpec
from tests.helpers import tiny_corpus, tiny_hooked_transformer


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


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


# ------------------------------------------------------------------------------------------
# columns read by their name, as SAE Lens reads them; values that are no token ids; empty folders


@pytest.mark.parametrize("column", ["input_ids", "tokens"])
def test_a_token_column_of_strings_is_refused_not_tokenized(model, tmp_path, column):
    """SAE Lens reads tokens / input_ids as token ids because of their name (ActivationsStore): strings there
    are a mistake (a list written as text), not text to tokenize."""
    data = tmp_path / "ids.jsonl"
    data.write_text("".join(json.dumps({column: str(list(range(CTX)))}) + "\n" for _ in range(4)))
    with pytest.raises(SourceError) as excinfo:
        tokens_from_dataset(_spec(path=str(data)), model=model, context_size=CTX, n_rows=2)
    msg = _message(excinfo)
    assert f"row 0: column {column!r} holds text ('[0, 1, 2" in msg
    assert f"SAE Lens reads a column named {column} as token ids" in msg
    assert "list of integer token ids" in msg


def test_a_text_column_of_token_lists_is_refused(model, tmp_path):
    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"text": list(range(CTX))}) + "\n" for _ in range(4)))
    with pytest.raises(SourceError, match=r"row 0: column 'text' holds a list, not text, and SAE Lens tokenizes a "
                                          r"column named so"):
        tokens_from_dataset(_spec(path=str(data)), model=model, context_size=CTX, n_rows=2)


def test_a_token_id_beyond_int64_is_named(model, tmp_path):
    rows = [list(range(CTX)) for _ in range(4)]
    rows[0][3] = 2**70  # the JSON reader then stores the whole column as float64
    data = tmp_path / "big.jsonl"
    data.write_text("".join(json.dumps({"input_ids": r}) + "\n" for r in rows))
    with pytest.raises(SourceError) as excinfo:
        tokens_from_dataset(_spec(path=str(data)), model=model, context_size=CTX, n_rows=2)
    msg = _message(excinfo)
    assert f"row 0: column 'input_ids' holds the id {2**70}, beyond int64" in msg and "float32" not in msg


@pytest.mark.parametrize(("values", "needle"), [
    ([0.5] * CTX, "holds float64 values, not a list of integer token ids"),
    ([[1, 2]] * CTX, "of shape [16, 2], not a list of token ids"),
    ([True] * CTX, "holds bool values"),
])
def test_other_values_of_a_token_column_are_refused(model, tmp_path, values, needle):
    data = tmp_path / "odd.jsonl"
    data.write_text("".join(json.dumps({"tokens": values}) + "\n" for _ in range(4)))
    with pytest.raises(SourceError) as excinfo:
        tokens_from_dataset(_spec(path=str(data)), model=model, context_size=CTX, n_rows=2)
    assert needle in _message(excinfo)


def test_a_saved_empty_dataset_says_so(model, tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": []}).save_to_disk(str(tmp_path / "empty"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": []})}).save_to_disk(str(tmp_path / "emptydict"))
    for name, part in (("empty", "the dataset"), ("emptydict", "split 'train'")):
        with pytest.raises(SourceError) as excinfo:
            tokens_from_dataset(_spec(path=str(tmp_path / name)), model=model, context_size=CTX, n_rows=2)
        msg = _message(excinfo)
        assert f"was saved from an empty dataset: {part} holds no rows" in msg and "IndexError" not in msg


def test_a_folder_without_data_files_says_so_without_addresses(model, tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SourceError) as excinfo:
        tokens_from_dataset(_spec(path=str(tmp_path / "nothing")), model=model, context_size=CTX, n_rows=2)
    msg = _message(excinfo)
    assert "holds no data files (looked for .jsonl" in msg and " at 0x" not in msg
