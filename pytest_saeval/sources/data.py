"""Token data: a fixed token file, or rows built from a Hugging Face dataset as SAE Lens builds them.

Token files (``.npy``, ``.pt``, ``.safetensors``) hold an integer array ``[n_sequences, context_size]``.
A dataset is turned into rows exactly as SAE Lens's ``ActivationsStore`` does (same helpers,
same order), so metrics computed on those rows match SAE Lens's on the same data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.errors import InputError, SourceError, did_you_mean
from pytest_saeval.sources.common import hub_offline, is_hub_unreachable, resolve_path, short

if TYPE_CHECKING:  # pragma: no cover
    import torch

TOKEN_FILE_SUFFIXES = (".npy", ".pt", ".safetensors")
"""Token file formats :func:`load_token_file` reads."""

TOKEN_KEYS = ("tokens", "input_ids")
"""Keys looked up in a ``.pt`` dict or a ``.safetensors`` file (else its only tensor)."""

_TEXT_COLUMNS = ("tokens", "input_ids", "text", "problem")
_DATA_BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".txt": "text",
    ".arrow": "arrow",
}
_FILE_FIX = "save the tokens as an integer array of shape [n_sequences, context_size], e.g. numpy.save('tokens.npy', tokens.astype('int64'))"


def load_token_file(path: str | os.PathLike[str], *, context_size: int | None = None, base_dir: str | os.PathLike[str] | None = None) -> torch.Tensor:
    """Read a token file into a CPU ``torch.long`` tensor ``[n_rows, ctx]``.

    - ``.npy``: read without pickle.
    - ``.pt``: ``torch.load(weights_only=True)``; a tensor, or a dict with one tensor under
      ``"tokens"`` or ``"input_ids"``.
    - ``.safetensors``: the tensor ``"tokens"`` or ``"input_ids"``, or the file's only tensor.

    The array must be 2-D, of an integer dtype (floats are refused even when whole) and
    non-negative. When ``context_size`` is given and the rows are longer, each row is cut to its
    first ``context_size`` tokens (as SAE Lens cuts pretokenized rows); shorter rows are an error.
    """
    file = resolve_path(path, base_dir)
    if not file.exists():
        raise SourceError(
            f"token file '{file}' does not exist",
            fix="check data.tokens (relative paths are relative to the suite file)",
        )
    if not file.is_file():
        raise SourceError(f"token path '{file}' is not a file", fix=_FILE_FIX)
    suffix = file.suffix.lower()
    if suffix not in TOKEN_FILE_SUFFIXES:
        raise SourceError(
            f"token file '{file}' has suffix {file.suffix!r}; supported are {', '.join(TOKEN_FILE_SUFFIXES)}",
            fix=_FILE_FIX,
        )
    if file.stat().st_size == 0:
        raise SourceError(f"token file '{file}' is empty", fix=_FILE_FIX)

    reader = {".npy": _read_npy, ".pt": _read_pt, ".safetensors": _read_safetensors}[suffix]
    array = reader(file)
    tokens = _validated(array, file)
    if context_size is not None:
        if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 1:
            raise InputError(f"context_size must be a positive integer, got {context_size!r}", fix="set data.context_size to a whole number >= 1")
        width = tokens.shape[1]
        if width < context_size:
            raise InputError(
                f"token file '{file}' has rows of {width} tokens, fewer than context_size {context_size}",
                fix=f"set data.context_size to {width} or less, or save longer rows",
            )
        if width > context_size:
            tokens = tokens[:, :context_size].contiguous()
    return tokens


def check_tokens(tokens: torch.Tensor, vocab_size: int, *, source: str | None = None) -> None:
    """Refuse token ids outside ``[0, vocab_size)`` (the model's embedding would fail or misread them)."""
    if tokens.numel() == 0:
        return
    what = f"tokens from '{source}'" if source else "tokens"
    top = int(tokens.max().item())
    low = int(tokens.min().item())
    if low < 0:
        raise InputError(f"{what} contain the negative id {low}", fix="token ids must be >= 0; tokenize with the model's tokenizer")
    if top >= vocab_size:
        raise InputError(
            f"{what} contain id {top}, but the model's vocabulary has {vocab_size} tokens (ids 0..{vocab_size - 1})",
            fix="tokenize the data with this model's tokenizer (the tokens were made for a different vocabulary)",
        )


# ---------------------------------------------------------------------------------------------
# token file readers: each returns a torch tensor or a numpy array


def _corrupt(file: Path, e: BaseException) -> SourceError:
    return SourceError(f"token file '{file}' could not be read (corrupt or truncated?): {short(e, 200)}", fix=_FILE_FIX)


def _read_npy(file: Path) -> Any:
    import numpy as np

    try:
        return np.load(file, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise SourceError(
                f"token file '{file}' holds a numpy object array (pickled Python objects) and was refused "
                "(read with allow_pickle=False: nothing in it was run)",
                fix="save an integer array: numpy.save(path, tokens.astype('int64'))",
            ) from e
        raise _corrupt(file, e) from e
    except Exception as e:
        raise _corrupt(file, e) from e


def _read_pt(file: Path) -> Any:
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise SourceError(
                f"token file '{file}' holds pickled Python objects other than tensors and was refused "
                "(read with torch.load(weights_only=True): nothing in it was run)",
                fix="save only the token tensor, torch.save(tokens, path) with a LongTensor, or use .npy / .safetensors",
            ) from e
        raise _corrupt(file, e) from e
    except Exception as e:
        raise _corrupt(file, e) from e
    if isinstance(obj, dict):
        found = [k for k in TOKEN_KEYS if k in obj]
        if not found:
            raise SourceError(
                f"token file '{file}' holds a dict with keys {sorted(map(str, obj))}, none of {', '.join(TOKEN_KEYS)}",
                fix="save torch.save({'tokens': tokens}, path) or the tensor itself",
            )
        obj = obj[found[0]]
    if not isinstance(obj, torch.Tensor):
        raise SourceError(
            f"token file '{file}' holds a {type(obj).__name__}, not a tensor",
            fix="save a LongTensor [n_sequences, context_size] with torch.save(tokens, path)",
        )
    return obj


def _read_safetensors(file: Path) -> Any:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            found = [k for k in TOKEN_KEYS if k in keys]
            if found:
                key = found[0]
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise SourceError(
                    f"token file '{file}' holds tensors {keys}, and none is named {' or '.join(TOKEN_KEYS)}",
                    fix="save the tokens under the key 'tokens'",
                )
            return f.get_tensor(key)
    except SourceError:
        raise
    except Exception as e:
        raise _corrupt(file, e) from e


def _validated(array: Any, file: Path) -> torch.Tensor:
    import numpy as np
    import torch

    if isinstance(array, np.ndarray):
        kind = array.dtype.kind
        dtype_name = str(array.dtype)
        is_int = kind in "iu"
    else:
        dtype_name = str(array.dtype).removeprefix("torch.")
        is_int = not array.is_floating_point() and not array.is_complex() and array.dtype != torch.bool
    if not is_int:
        raise SourceError(
            f"token file '{file}' holds {dtype_name} values; token ids must be integers",
            fix="convert the array to an integer dtype (int64 or int32) before saving",
        )
    if array.ndim != 2:
        raise SourceError(
            f"token file '{file}' holds an array of shape {list(array.shape)}; it must be 2-D [n_sequences, context_size]",
            fix="reshape the tokens to [n_sequences, context_size] before saving",
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise SourceError(f"token file '{file}' holds no tokens (shape {list(array.shape)})", fix=_FILE_FIX)
    if isinstance(array, np.ndarray):
        low, high = int(array.min()), int(array.max())
        if high > np.iinfo(np.int64).max:
            raise SourceError(f"token file '{file}' holds the id {high}, too large for int64", fix=_FILE_FIX)
        tokens = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    else:
        low = int(array.min().item())
        tokens = array.to(torch.long).contiguous()
    if low < 0:
        raise SourceError(f"token file '{file}' holds the negative id {low}", fix="token ids must be >= 0; tokenize with the model's tokenizer")
    return tokens


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets


def tokens_from_dataset(
    *,
    path: str,
    model: Any = None,
    context_size: int,
    n_rows: int,
    split: str = "train",
    column: str | None = None,
    streaming: bool = False,
    name: str | None = None,
    data_files: Any = None,
    prepend_bos: bool = True,
    base_dir: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """The first ``n_rows`` rows ``[n_rows, context_size]`` SAE Lens's ``ActivationsStore`` makes of a dataset.

    ``path``: a Hugging Face hub dataset id, or a local folder, or a local ``.jsonl`` / ``.json`` /
    ``.parquet`` / ``.csv`` / ``.txt`` / ``.arrow`` file (relative to ``base_dir`` when that exists);
    local data is read offline. A single local file has one split, ``train``. A folder written by
    ``Dataset.save_to_disk`` is read with ``load_from_disk``.

    ``column``: by default the first of ``tokens``, ``input_ids``, ``text``, ``problem`` present
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
    dataset = _open_dataset(path, split=split, streaming=streaming, name=name, data_files=data_files, base_dir=base_dir)
    rows: list[torch.Tensor] = []
    for row in _iter_rows(dataset, path=path, column=column, model=model, context_size=context_size, prepend_bos=prepend_bos):
        rows.append(row)
        if len(rows) == n_rows:
            break
    if len(rows) < n_rows:
        raise InputError(
            f"dataset {path!r} (split {split!r}) gives {len(rows)} rows of {context_size} tokens, but {n_rows} are needed",
            fix="use more data, a smaller context_size, or fewer / smaller batches",
        )
    return torch.stack(rows).to(torch.long).contiguous()


def _open_dataset(path: str, *, split: str, streaming: bool, name: str | None, data_files: Any, base_dir: Any) -> Any:
    import datasets

    local = resolve_path(path, base_dir)
    if not local.exists() and Path(path).expanduser().exists():
        local = Path(path).expanduser()
    try:
        if local.exists():
            with hub_offline():
                return _open_local(local, split=split, streaming=streaming, name=name, data_files=data_files)
        return datasets.load_dataset(path, name, data_files=data_files, split=split, streaming=streaming)
    except SourceError:
        raise
    except Exception as e:
        if is_hub_unreachable(e) and not local.exists():
            raise SourceError(
                f"dataset {path!r} is not in the local Hugging Face cache and the hub cannot be reached",
                fix="download it once where the hub is reachable (datasets.load_dataset) so it lands in the cache, "
                "or save it to a local file / folder and give that path",
            ) from e
        if "unknown split" in str(e).lower():
            raise SourceError(f"dataset {path!r} has no split {split!r}: {short(e)}", fix="set split to one the dataset has (usually train)") from e
        raise SourceError(f"dataset {path!r} could not be loaded: {short(e)}", fix="check the dataset path, name, data_files and split") from e


def _open_local(local: Path, *, split: str, streaming: bool, name: str | None, data_files: Any) -> Any:
    import datasets

    if local.is_dir():
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
        return datasets.load_dataset(str(local), name, data_files=data_files, split=split, streaming=streaming)
    if local.stat().st_size == 0:
        raise SourceError(f"dataset file '{local}' is empty", fix="check the dataset path")
    builder = _DATA_BUILDERS.get(local.suffix.lower())
    if builder is None:
        raise SourceError(
            f"dataset file '{local}' has suffix {local.suffix!r}; supported are {', '.join(_DATA_BUILDERS)}",
            fix="convert the data to JSON lines or parquet, or give a folder",
        )
    # A single file is the split "train" (as datasets names it).
    return datasets.load_dataset(builder, data_files=str(local), split=split, streaming=streaming)


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
