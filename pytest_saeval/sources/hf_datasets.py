"""Token rows from a Hugging Face dataset (hub id, local folder or file), made exactly as SAE Lens's
``ActivationsStore`` makes them (same helpers, same order), so metrics on those rows match SAE Lens's.

No dataset code runs: every ``load_dataset`` call gets ``trust_remote_code=False`` (older ``datasets``
versions would otherwise ask on stdin), and a local folder holding a loading script is refused. Data
that turns out broken while it is read (a malformed ``.jsonl`` line) is a located error naming the dataset."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.errors import InputError, SourceError, did_you_mean
from pytest_saeval.sources.common import exception_chain, hub_offline, is_hub_unreachable, resolve_path, short
from pytest_saeval.spec.suite import DatasetSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["tokens_from_dataset"]

_TEXT_COLUMNS = ("tokens", "input_ids", "text", "problem")
_DATA_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".txt": "text",
    ".arrow": "arrow",
}


def tokens_from_dataset(
    spec: DatasetSpec,
    *,
    model: Any = None,
    context_size: int,
    n_rows: int,
    prepend_bos: bool = True,
    base_dir: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """The first ``n_rows`` rows ``[n_rows, context_size]`` SAE Lens's ``ActivationsStore`` makes of a dataset.

    ``spec.path``: a Hugging Face hub dataset id, or a local folder, or a local ``.jsonl`` / ``.json`` /
    ``.parquet`` / ``.csv`` / ``.txt`` / ``.arrow`` file (relative to ``base_dir`` when that exists);
    local data is read offline. A single local file has one split, ``train``. A folder written by
    ``Dataset.save_to_disk`` is read with ``load_from_disk``.

    ``spec.column``: by default the first of ``tokens``, ``input_ids``, ``text``, ``problem`` present
    (SAE Lens's order). A column of token lists is used row by row, each row cut to
    ``context_size`` (rows must be at least that long). A text column is tokenized with
    ``model.to_tokens(text, prepend_bos=False)``, documents are concatenated with BOS between them
    and cut into windows of ``context_size``, each window starting with BOS when ``prepend_bos``
    (SAE Lens's ``concat_and_batch_sequences``). Too little data for ``n_rows`` rows is an error.
    """
    import torch

    for key, value in (("context_size", context_size), ("n_rows", n_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{key} must be a positive integer, got {value!r}", fix=f"set {key} to a whole number >= 1")
    path, split = spec.path, spec.split
    data_files = {s: list(files) for s, files in spec.data_files} if spec.data_files else None
    dataset = _open_dataset(path, split=split, streaming=spec.streaming, name=spec.name, data_files=data_files,
                            base_dir=base_dir)
    rows: list[torch.Tensor] = []
    try:
        for row in _iter_rows(dataset, path=path, column=spec.column, model=model, context_size=context_size,
                              prepend_bos=prepend_bos):
            rows.append(row)
            if len(rows) == n_rows:
                break
    except (SourceError, InputError):
        raise
    except Exception as e:  # the libraries read lazily: a broken row shows only here
        raise SourceError(f"dataset {path!r} could not be read after {len(rows)} rows: {_why(e)}",
                          fix="check the data (e.g. one JSON object per line in a .jsonl file; the same columns in "
                          "every row)") from e
    if len(rows) < n_rows:
        raise InputError(
            f"dataset {path!r} (split {split!r}) gives {len(rows)} rows of {context_size} tokens, but {n_rows} are needed",
            fix="use more data, a smaller context_size, or fewer / smaller batches",
        )
    return torch.stack(rows).to(torch.long).contiguous()


def _open_dataset(path: str, *, split: str, streaming: bool, name: str | None,
                  data_files: dict[str, list[str]] | None, base_dir: str | os.PathLike[str] | None) -> Any:
    import datasets

    local = resolve_path(path, base_dir)
    if not local.exists() and Path(path).expanduser().exists():
        local = Path(path).expanduser()
    try:
        if local.exists():
            with hub_offline():
                return _open_local(local, split=split, streaming=streaming, name=name, data_files=data_files)
        return datasets.load_dataset(path, name, data_files=data_files, split=split, streaming=streaming,
                                     trust_remote_code=False)
    except SourceError:
        raise
    except Exception as e:
        if is_hub_unreachable(e) and not local.exists():
            raise SourceError(
                f"dataset {path!r} is not in the local Hugging Face cache and the hub cannot be reached",
                fix="download it once where the hub is reachable (datasets.load_dataset) so it lands in the cache, "
                "or save it to a local file / folder and give that path",
            ) from e
        if "unknown split" in str(e).lower():  # datasets raises a plain ValueError here: its text is all there is
            raise SourceError(f"dataset {path!r} has no split {split!r}: {short(e)}", fix="set split to one the dataset has (usually train)") from e
        raise SourceError(f"dataset {path!r} could not be loaded: {_why(e)}",
                          fix="check the dataset path, name, data_files and split, and that every row of the data is valid") from e


def _why(e: BaseException) -> str:
    """``e`` in short, with the first cause in its chain that says more (datasets wraps parse errors)."""
    causes = [c for c in exception_chain(e) if c is not e and str(c).strip()]
    return short(e, 150) + (f" ({short(causes[0], 200)})" if causes else "")


def _open_local(local: Path, *, split: str, streaming: bool, name: str | None, data_files: Any) -> Any:
    import datasets

    if local.is_dir():
        script = local / f"{local.name}.py"
        if script.is_file():
            raise SourceError(
                f"dataset folder '{local}' holds a loading script ({script.name}); dataset code is never run",
                fix="convert the data to .jsonl, .csv or .parquet files (or Dataset.save_to_disk) and point path at them",
            )
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise SourceError(
                        f"dataset folder '{local}' has no split {split!r}{did_you_mean(split, loaded)}",
                        fix=f"set split to one of {', '.join(loaded)}",
                    )
                loaded = loaded[split]
            return loaded.to_iterable_dataset() if streaming else loaded
        return datasets.load_dataset(str(local), name, data_files=data_files, split=split, streaming=streaming,
                                     trust_remote_code=False)
    if local.stat().st_size == 0:
        raise SourceError(f"dataset file '{local}' is empty", fix="check the dataset path")
    builder = _DATA_BUILDERS.get(local.suffix.lower())
    if builder is None:
        raise SourceError(
            f"dataset file '{local}' has suffix {local.suffix!r}; supported are {', '.join(_DATA_BUILDERS)}",
            fix="convert the data to JSON lines or parquet, or give a folder",
        )
    # A single file is the split "train" (as datasets names it).
    return datasets.load_dataset(builder, data_files=str(local), split=split, streaming=streaming,
                                 trust_remote_code=False)


def _pick_column(first: dict[str, Any], column: str | None, path: str) -> str:
    keys = list(first)
    if column is not None:
        if column not in first:
            raise SourceError(
                f"dataset {path!r} has no column {column!r}{did_you_mean(column, keys)}; its columns are {keys}",
                fix="set column to one of those",
            )
        return column
    for candidate in _TEXT_COLUMNS:
        if candidate in first:
            return candidate
    raise SourceError(
        f"dataset {path!r} has none of the columns {', '.join(_TEXT_COLUMNS)}; its columns are {keys}",
        fix="set column to the column that holds the text or the token ids",
    )


def _iter_rows(dataset: Any, *, path: str, column: str | None, model: Any, context_size: int, prepend_bos: bool) -> Iterator[torch.Tensor]:
    import torch

    iterator = iter(dataset)
    try:
        first = next(iterator)
    except StopIteration:
        raise SourceError(f"dataset {path!r} is empty", fix="check the dataset path, data_files and split") from None
    col = _pick_column(first, column, path)

    def values() -> Iterator[Any]:
        yield first[col]
        for row in iterator:
            yield row[col]

    sample = first[col]
    if isinstance(sample, str):
        yield from _text_rows(values(), model=model, path=path, context_size=context_size, prepend_bos=prepend_bos)
        return
    for index, value in enumerate(values()):
        try:
            row = torch.as_tensor(value)
        except Exception as e:
            raise SourceError(f"dataset {path!r}, row {index}: column {col!r} is neither text nor a list of token ids ({short(e, 120)})", fix="set column to the text or token-id column") from e
        if row.ndim != 1 or row.is_floating_point() or row.dtype == torch.bool:
            raise SourceError(
                f"dataset {path!r}, row {index}: column {col!r} holds {row.dtype} values of shape {list(row.shape)}, not a list of token ids",
                fix="set column to the text or token-id column",
            )
        if row.shape[0] < context_size:
            raise InputError(
                f"dataset {path!r}, row {index}: {row.shape[0]} pretokenized tokens, fewer than context_size {context_size}",
                fix=f"set context_size to {row.shape[0]} or less, or pretokenize with longer rows",
            )
        yield row[:context_size].to(torch.long)


def _text_rows(texts: Iterator[Any], *, model: Any, path: str, context_size: int, prepend_bos: bool) -> Iterator[torch.Tensor]:
    """ActivationsStore's text path: ``to_tokens(prepend_bos=False)`` per document, then SAE Lens's batching."""
    from sae_lens.pretokenize_runner import get_special_token_from_cfg
    from sae_lens.tokenization_and_batching import concat_and_batch_sequences

    tokenizer = getattr(model, "tokenizer", None)
    if model is None or tokenizer is None or not callable(getattr(model, "to_tokens", None)):
        raise SourceError(
            f"dataset {path!r} holds text, and tokenizing it needs a model with a tokenizer",
            fix="give the model folder its tokenizer files (tokenizer.save_pretrained), or pretokenize the dataset",
        )

    def token_docs() -> Iterator[torch.Tensor]:
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise SourceError(f"dataset {path!r}, row {index}: expected text, got {type(text).__name__}", fix="set column to the text column")
            yield model.to_tokens(text, truncate=False, move_to_device=False, prepend_bos=False).squeeze(0).cpu()

    bos = tokenizer.bos_token_id
    yield from concat_and_batch_sequences(
        tokens_iterator=token_docs(),
        context_size=context_size,
        begin_batch_token_id=bos if prepend_bos else None,
        begin_sequence_token_id=None,
        sequence_separator_token_id=get_special_token_from_cfg("bos", tokenizer),
        disable_concat_sequences=False,
    )
