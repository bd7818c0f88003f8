"""Token files (``.npy``, ``.pt``, ``.safetensors``) holding an integer array ``[n_sequences, context_size]``,
read without running any code in them, and the check of token ids against a model's vocabulary."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.errors import InputError, SourceError
from pytest_saeval.sources.common import exists, missing_hint, resolve_path, safetensors_header, short

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

__all__ = ["TOKEN_FILE_SUFFIXES", "TOKEN_KEYS", "TokenFile", "check_tokens", "inspect_token_file", "load_token_file"]

TOKEN_FILE_SUFFIXES = (".npy", ".pt", ".safetensors")
"""Token file formats :func:`load_token_file` reads."""

TOKEN_KEYS = ("tokens", "input_ids")
"""Keys looked up in a ``.pt`` dict or a ``.safetensors`` file (else its only tensor); a file holding both is refused."""

_FILE_FIX = "save the tokens as an integer array of shape [n_sequences, context_size], e.g. numpy.save('tokens.npy', tokens.astype('int64'))"


def load_token_file(path: str | os.PathLike[str], *, context_size: int | None = None, base_dir: str | os.PathLike[str] | None = None) -> torch.Tensor:
    """Read a token file into a CPU ``torch.long`` tensor ``[n_rows, ctx]``.

    - ``.npy``: read without pickle.
    - ``.pt``: ``torch.load(weights_only=True)``; a plain dense tensor (not sparse, nested, quantized
      or meta), or a dict with one under ``"tokens"`` or ``"input_ids"`` (not both).
    - ``.safetensors``: the tensor ``"tokens"`` or ``"input_ids"`` (not both), or the file's only tensor.

    The array must be 2-D, of an integer dtype (floats are refused even when whole) and
    non-negative. When ``context_size`` is given and the rows are longer, each row is cut to its
    first ``context_size`` tokens (as SAE Lens cuts pretokenized rows); shorter rows are an error.
    """
    file = _existing(path, base_dir)
    reader = {".npy": _read_npy, ".pt": _read_pt, ".safetensors": _read_safetensors}[file.suffix.lower()]
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


def _existing(path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None) -> Path:
    """The token file, after checking that it exists, is a file of a known format and is not empty."""
    file = resolve_path(path, base_dir)
    if not exists(file, "token file"):
        hint, fix = missing_hint(file)
        raise SourceError(
            f"token file '{file}' does not exist{hint}",
            fix=fix or "check data.tokens (relative paths are relative to the suite file)",
        )
    if not file.is_file():
        raise SourceError(f"token path '{file}' is not a file", fix=_FILE_FIX)
    if file.suffix.lower() not in TOKEN_FILE_SUFFIXES:
        raise SourceError(
            f"token file '{file}' has suffix {file.suffix!r}; supported are {', '.join(TOKEN_FILE_SUFFIXES)}",
            fix=_FILE_FIX,
        )
    if file.stat().st_size == 0:
        raise SourceError(f"token file '{file}' is empty", fix=_FILE_FIX)
    return file


@dataclass(frozen=True)
class TokenFile:
    """What a token file holds, read from its header alone (no torch, no full read)."""

    path: Path
    """The file."""
    shape: tuple[int, ...]
    """The array's shape (``[n_sequences, context_size]`` when it is usable)."""
    integer: bool
    """Whether its dtype is an integer type."""
    dtype: str
    """The dtype's name, for messages."""


_SAFETENSORS_INTS = {"I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64"}


def inspect_token_file(path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None) -> TokenFile | None:
    """Shape and dtype of a ``.npy`` or ``.safetensors`` token file from its header, checked as far as the
    header allows (integer, 2-D, not empty); None for a ``.pt`` file (only reading it tells)."""
    file = _existing(path, base_dir)
    suffix = file.suffix.lower()
    if suffix == ".pt":
        return None
    if suffix == ".npy":
        shape, dtype = _npy_header(file)
        if dtype.hasobject:
            return None  # the full read refuses it, saying why
        info = TokenFile(file, shape, dtype.kind in "iu", str(dtype))
    else:
        info = _safetensors_header(file)
    if not info.integer:
        raise SourceError(f"token file '{file}' holds {info.dtype} values; token ids must be integers",
                          fix="convert the array to an integer dtype (int64 or int32) before saving")
    if len(info.shape) != 2:
        raise SourceError(f"token file '{file}' holds an array of shape {list(info.shape)}; it must be 2-D "
                          "[n_sequences, context_size]", fix="reshape the tokens to [n_sequences, context_size] before saving")
    if 0 in info.shape:
        raise SourceError(f"token file '{file}' holds no tokens (shape {list(info.shape)})", fix=_FILE_FIX)
    return info


def _safetensors_header(file: Path) -> TokenFile:
    """The token tensor's entry of a safetensors header (``tokens``, ``input_ids`` or the only tensor)."""
    try:
        header = safetensors_header(file)
    except (OSError, ValueError) as e:
        raise _corrupt(file, e) from e
    entry = header[_safetensors_key(file, [k for k in header if k != "__metadata__"])]
    # safetensors_header checked each entry: a dtype name and a shape of whole numbers >= 0
    return TokenFile(file, tuple(entry["shape"]), entry["dtype"] in _SAFETENSORS_INTS, entry["dtype"])


def _safetensors_key(file: Path, keys: list[str]) -> str:
    """The token tensor of a safetensors file holding tensors ``keys``: the one named as in
    :data:`TOKEN_KEYS`, else the only tensor."""
    found = _one_token_key(file, keys, "save_file({'tokens': tokens}, path)")
    if found is not None:
        return found
    if len(keys) != 1:
        raise SourceError(f"token file '{file}' holds tensors {keys}, and none is named {' or '.join(TOKEN_KEYS)}",
                          fix="save the tokens under the key 'tokens'")
    return keys[0]


def _one_token_key(file: Path, keys: Any, save: str) -> str | None:
    """The one key of :data:`TOKEN_KEYS` among ``keys`` (None when there is none); two of them at once
    are a :class:`SourceError` (which holds the tokens is unclear)."""
    found = [k for k in TOKEN_KEYS if k in keys]
    if len(found) > 1:
        raise SourceError(
            f"token file '{file}' holds tensors under both {' and '.join(map(repr, found))}, so which one holds "
            "the tokens is unclear",
            fix=f"keep only one of them, e.g. {save}",
        )
    return found[0] if found else None


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


def _npy_header(file: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from a ``.npy`` file's header (numpy's own header reader; nothing else is read).
    A file that is not ``.npy`` (a text file linked as the token file, say) is named as such."""
    import numpy as np

    with open(file, "rb") as fh:
        head = fh.read(6)
        if head != b"\x93NUMPY":
            link = f" (a link to '{os.path.realpath(file)}')" if file.is_symlink() else ""
            raise SourceError(
                f"token file '{file}'{link} is not a .npy file: it starts with {head!r}, not numpy's header",
                fix="point data.tokens at the token array itself, saved with numpy.save(path, tokens.astype('int64'))",
            )
        fh.seek(0)
        try:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
        except Exception as e:  # any header numpy cannot read is a corrupt file
            raise _corrupt(file, e) from e
        if not dtype.hasobject:  # an object array's size is its pickle's: refused by the reader
            _check_npy_size(file, tuple(shape), dtype, fh.tell(), os.fstat(fh.fileno()).st_size)
    return tuple(shape), dtype


def _check_npy_size(file: Path, shape: tuple[int, ...], dtype: np.dtype[Any], offset: int, size: int) -> None:
    """The data after the header is exactly ``prod(shape) * itemsize`` bytes: fewer is a cut-off file,
    more is one appended to (numpy's reader would take the first array and ignore the rest)."""
    expected = offset + math.prod(shape) * dtype.itemsize
    if size == expected:
        return
    what = (f"is cut off: its header describes {list(shape)} {dtype} ({expected:,} bytes) but the file has {size:,}"
            if size < expected else
            f"has {size - expected:,} bytes after the {list(shape)} {dtype} array its header describes "
            "(appended to, or more than one array in one file?)")
    raise SourceError(f"token file '{file}' {what}", fix=_FILE_FIX)


def _read_npy(file: Path) -> Any:
    import numpy as np

    if _npy_header(file)[1].hasobject:
        raise SourceError(
            f"token file '{file}' holds a numpy object array (pickled Python objects) and was refused "
            "(read with allow_pickle=False: nothing in it was run)",
            fix="save an integer array: numpy.save(path, tokens.astype('int64'))",
        )
    try:
        return np.load(file, allow_pickle=False)
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
    except pickle.UnpicklingError as e:  # weights_only's refusal (or a pickle stream too damaged to say)
        raise SourceError(
            f"token file '{file}' holds pickled Python objects other than tensors, or a damaged pickle, and was "
            "refused (read with torch.load(weights_only=True): nothing in it was run)",
            fix="save only the token tensor, torch.save(tokens, path) with a LongTensor, or use .npy / .safetensors",
        ) from e
    except Exception as e:
        raise _corrupt(file, e) from e
    if isinstance(obj, dict):
        key = _one_token_key(file, obj, "torch.save({'tokens': tokens}, path)")
        if key is None:
            raise SourceError(
                f"token file '{file}' holds a dict with keys {sorted(map(str, obj))}, none of {', '.join(TOKEN_KEYS)}",
                fix="save torch.save({'tokens': tokens}, path) or the tensor itself",
            )
        obj = obj[key]
    if not isinstance(obj, torch.Tensor):
        raise SourceError(
            f"token file '{file}' holds a {type(obj).__name__}, not a tensor",
            fix="save a LongTensor [n_sequences, context_size] with torch.save(tokens, path)",
        )
    _check_plain(obj, file)
    return obj


_DENSE_FIX = "save a dense integer tensor: torch.save(tokens.to_dense().long(), path), or use .npy"


def _check_plain(tensor: torch.Tensor, file: Path) -> None:
    """Refuse a tensor that is not a plain dense one in CPU memory (sparse, nested, quantized, meta):
    reading its values (min, max, a cast) would fail inside torch, or read no values at all."""
    import torch

    if tensor.is_nested:
        what, fix = ("a nested tensor (torch.nested)",
                     "cut or pad the rows to one length and save a dense integer tensor [n_sequences, context_size]: "
                     "torch.save(torch.stack(tokens.unbind()).long(), path), or use .npy")
    elif tensor.layout != torch.strided:
        layout = str(tensor.layout)
        what, fix = (f"a {'sparse ' if 'sparse' in layout else ''}tensor ({layout})", _DENSE_FIX)
    elif tensor.is_quantized:
        what, fix = (f"a quantized tensor ({tensor.dtype})",
                     "save the token ids as a plain integer tensor: torch.save(tokens.dequantize().round().long(), path), "
                     "or use .npy")
    elif tensor.is_meta or tensor.device.type != "cpu":
        what = ("a meta tensor (a shape only, no token values)" if tensor.is_meta or tensor.device.type == "meta"
                else f"a tensor on the {tensor.device.type} device")
        fix = "save the token values from the CPU: torch.save(tokens.cpu().long(), path), or use .npy"
    else:
        return
    raise SourceError(f"token file '{file}' holds {what}; token ids must be a dense integer tensor "
                      "[n_sequences, context_size]", fix=fix)


def _read_safetensors(file: Path) -> Any:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            return f.get_tensor(_safetensors_key(file, list(f.keys())))
    except SourceError:
        raise
    except Exception as e:
        raise _corrupt(file, e) from e


def _unsigned() -> tuple[Any, ...]:
    import torch

    return tuple(getattr(torch, name) for name in ("uint16", "uint32", "uint64") if hasattr(torch, name))


def _validated(array: Any, file: Path) -> torch.Tensor:
    import numpy as np
    import torch

    if isinstance(array, torch.Tensor) and array.dtype in _unsigned():
        array = array.numpy()  # torch has no min/max for wide unsigned ints; numpy does
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
