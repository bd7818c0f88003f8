"""Token rows from a Hugging Face dataset (hub id, local folder or file), made exactly as SAE Lens's
``ActivationsStore`` makes them (same helpers, same order), so metrics on those rows match SAE Lens's.

No dataset code runs: every ``load_dataset`` call gets ``trust_remote_code=False`` (older ``datasets``
versions would otherwise ask on stdin), and a local folder holding a loading script is refused. Data
that turns out broken while it is read (a malformed ``.jsonl`` line) is a located error naming the dataset."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.errors import InputError, SourceError, brief, did_you_mean
from pytest_saeval.sources.common import exception_chain, hub_offline, is_hub_unreachable, resolve_path, short
from pytest_saeval.spec.suite import DatasetSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["tokens_from_dataset"]

_TEXT_COLUMNS = ("tokens", "input_ids", "text", "problem")
_TOKEN_COLUMNS = ("tokens", "input_ids")
"""Columns SAE Lens reads as token ids by their name (``ActivationsStore``: ``is_dataset_tokenized``)."""
_TEXT_NAMES = ("text", "problem")
"""Columns SAE Lens tokenizes by their name."""
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
    (SAE Lens's order). As SAE Lens, the name decides what a column holds: ``tokens`` and ``input_ids``
    token ids (a row of anything but integers, such as the text ``"[0, 103]"`` or an id beyond int64, is an
    error), ``text`` and ``problem`` text; another column named by ``spec.column`` is told by its first
    value. A column of token lists is used row by row, each row cut to
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
    text = short(e, 150) + (f" ({short(causes[0], 200)})" if causes else "")
    return _ADDRESS.sub("", text)  # "<function resolve_pattern at 0x7f...>" says nothing to the user


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


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
            loaded = _load_from_disk(local)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise SourceError(
                        f"dataset folder '{local}' has no split {split!r}{did_you_mean(split, loaded)}",
                        fix=f"set split to one of {', '.join(loaded)}",
                    )
                loaded = loaded[split]
            return loaded.to_iterable_dataset() if streaming else loaded
        try:
            return datasets.load_dataset(str(local), name, data_files=data_files, split=split, streaming=streaming,
                                         trust_remote_code=False)
        except Exception as e:
            if any(type(c).__name__ == "EmptyDatasetError" for c in exception_chain(e)):
                raise SourceError(f"dataset folder '{local}' holds no data files (looked for "
                                  f"{', '.join(_DATA_BUILDERS)} files, and a Dataset.save_to_disk folder)",
                                  fix="point path at the folder or file that holds the data") from e
            raise
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


def _load_from_disk(local: Path) -> Any:
    """``datasets.load_from_disk``; a folder saved from an empty dataset (its ``state.json`` lists no data files,
    which ``datasets`` reports as an ``IndexError``) is an error saying so."""
    import json

    import datasets

    try:
        return datasets.load_from_disk(str(local))
    except Exception as e:
        empty = []
        for state in (local / "state.json", *sorted(local.glob("*/state.json"))):
            try:
                files = json.loads(state.read_text(encoding="utf-8")).get("_data_files") if state.is_file() else None
            except (OSError, ValueError, AttributeError):
                continue
            if files == []:
                empty.append("the dataset" if state.parent == local else f"split {state.parent.name!r}")
        if empty:
            raise SourceError(f"dataset folder '{local}' was saved from an empty dataset: {', '.join(empty)} "
                              "holds no rows (its state.json lists no data files)",
                              fix="save the dataset again with its rows (Dataset.save_to_disk), or point path at "
                                  "the data") from e
        raise


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

    # SAE Lens's ActivationsStore decides by the column's name: "tokens" and "input_ids" hold token ids,
    # "text" and "problem" text, whatever their values are. Another column (``column:``) by its values.
    pretokenized = col in _TOKEN_COLUMNS or (col not in _TEXT_NAMES and not isinstance(first[col], str))
    if not pretokenized:
        yield from _text_rows(values(), model=model, path=path, column=col, context_size=context_size,
                              prepend_bos=prepend_bos)
        return
    for index, value in enumerate(values()):
        row = _token_row(value, where=f"dataset {path!r}, row {index}: column {col!r}",
                         named=col if col in _TOKEN_COLUMNS else None)
        if row.shape[0] < context_size:
            raise InputError(
                f"dataset {path!r}, row {index}: {row.shape[0]} pretokenized tokens, fewer than context_size {context_size}",
                fix=f"set context_size to {row.shape[0]} or less, or pretokenize with longer rows",
            )
        yield row[:context_size]


_INT64_MAX = (1 << 63) - 1


def _token_row(value: Any, *, where: str, named: str | None) -> torch.Tensor:
    """One row of a pretokenized column as a 1-D ``long`` tensor, or a :class:`SourceError` saying what it holds
    instead (text, floats, an id beyond int64, another shape)."""
    import numpy as np
    import torch

    fix = ("store each row as a list of integer token ids (e.g. [0, 103, 83], not the text \"[0, 103, 83]\"), or "
           "put text in a column named text" if named else "set column to the text or token-id column")
    if isinstance(value, (str, bytes)):
        because = f", and SAE Lens reads a column named {named} as token ids" if named else ""
        raise SourceError(f"{where} holds text ({brief(value, 40)}), not a list of token ids{because}", fix=fix)
    try:
        array = np.asarray(value)
    except Exception as e:
        raise SourceError(f"{where} is neither text nor a list of token ids ({short(e, 120)})", fix=fix) from e
    if array.ndim != 1:
        raise SourceError(f"{where} holds {array.dtype} values of shape {list(array.shape)}, not a list of token ids",
                          fix=fix)
    beyond = _beyond_int64(array)
    if beyond is not None:
        raise SourceError(f"{where} holds the id {beyond}, beyond int64 and so beyond any vocabulary"
                          + (" (a JSON reader stores a column holding such a number as floats)"
                             if array.dtype.kind == "f" else ""),
                          fix="tokenize the data again with the model's tokenizer: token ids lie in [0, vocabulary size)")
    if array.dtype.kind not in "iu":
        shown = next((brief(v, 40) for v in array.tolist() if isinstance(v, (str, bytes))), None)
        what = f"text values ({shown})" if shown is not None else f"{array.dtype} values"
        raise SourceError(f"{where} holds {what}, not a list of integer token ids", fix=fix)
    return torch.from_numpy(array.astype(np.int64))


def _beyond_int64(array: Any) -> int | None:
    """The first value of ``array`` (integers, or whole floats) outside int64, else None."""
    kind = array.dtype.kind
    if kind == "f":
        huge = [v for v in array.tolist() if v == v and abs(v) != float("inf") and v == int(v) and abs(v) > _INT64_MAX]
        return int(huge[0]) if huge else None
    if kind in "uO":
        return next((int(v) for v in array.tolist()
                     if isinstance(v, int) and not isinstance(v, bool) and not -_INT64_MAX - 1 <= v <= _INT64_MAX), None)
    return None


def _text_rows(texts: Iterator[Any], *, model: Any, path: str, column: str, context_size: int,
               prepend_bos: bool) -> Iterator[torch.Tensor]:
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
                raise SourceError(
                    f"dataset {path!r}, row {index}: column {column!r} holds a {type(text).__name__}, not text"
                    + (", and SAE Lens tokenizes a column named so" if column in _TEXT_NAMES else ""),
                    fix="put token ids in a column named tokens or input_ids, or set column to the text column")
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
