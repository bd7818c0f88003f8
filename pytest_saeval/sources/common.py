"""What the loaders share: path resolution, offline mode, and reading library exceptions."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["PROJECT_MARKERS", "exception_chain", "exists", "hub_offline", "is_hub_unreachable", "json_text", "missing_hint",
           "project_root", "resolve_path", "safetensors_header", "short"]

PROJECT_MARKERS = ("pyproject.toml", "pytest.ini", "setup.cfg", "tox.ini", "setup.py")
"""Files that mark a project's root folder (as pytest looks for its rootdir)."""


def project_root(start: str | os.PathLike[str]) -> Path | None:
    """The nearest folder at or above ``start`` holding one of :data:`PROJECT_MARKERS`, else None."""
    folder = Path(start).absolute()
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).is_file() for marker in PROJECT_MARKERS):
            return candidate
    return None


def resolve_path(path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None) -> Path:
    """``path`` as given when absolute (``~`` expanded), else relative to ``base_dir`` (or the cwd)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def exists(path: Path, what: str) -> bool:
    """Whether ``path`` exists; a path the system cannot even look up (a name too long, a NUL byte, no
    permission on a folder above it) is a :class:`~pytest_saeval.errors.SourceError` naming ``what``."""
    from pytest_saeval.errors import SourceError

    try:
        found = path.exists()
        dangling = not found and os.path.lexists(path)
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise SourceError(f"{what} '{short_path(path)}' cannot be looked up: {reason}",
                          fix="check the path (relative paths are relative to the suite file)") from e
    if dangling:  # a symbolic link whose target is missing, or a loop of links
        raise SourceError(f"{what} '{short_path(path)}' is a symbolic link that leads nowhere (it points to "
                          f"'{short_path(Path(os.readlink(path)))}'; a target at the end is missing, or the links "
                          "form a loop)",
                          fix="point the link at the file or folder itself, or give that path instead")
    return found


_SCHEMES = frozenset({"file:", "http:", "https:", "ftp:", "sftp:", "s3:", "gs:", "gcs:", "hf:", "az:", "abfs:"})
"""URL schemes as a path keeps them: ``file:///tmp/t.npy`` becomes the folder ``file:`` and ``tmp/t.npy``."""
_SCAN_LIMIT = 5000
"""Entries of a folder looked at for a name that differs only in spaces."""


def missing_hint(path: Path) -> tuple[str, str | None]:
    """Why ``path``, which does not exist, may have been meant otherwise: ``(text to add to the message, fix)``,
    ``("", None)`` when nothing is seen. A URL (``file://...``, ``https://...``) is no path: it is read as
    folders named ``file:`` or ``https:``; and a suite path is read without spaces at its start and end, so a
    file whose name has them next to it is named."""
    parts = path.parts
    at = next((i for i, part in enumerate(parts) if part.lower() in _SCHEMES and i + 1 < len(parts)), None)
    if at is not None:
        scheme, rest = parts[at].lower(), "/".join(parts[at + 1:])
        url = f"file:///{rest}" if scheme == "file:" else f"{scheme}//{rest}"
        return (f" (it holds the URL {url}: paths name local files and folders, URLs are not read)",
                f"give the local path itself: /{rest}" if scheme == "file:" else
                "download it and give the local path of the copy")
    try:
        with os.scandir(path.parent) as entries:
            for n, entry in enumerate(entries):
                if n >= _SCAN_LIMIT:
                    break
                if entry.name != path.name and entry.name.strip() == path.name:
                    return (f" (the folder holds {entry.name!r}, whose name starts or ends with spaces; a path in "
                            "a suite file is read without them)", f"rename {entry.name!r} to {path.name!r}")
    except (OSError, ValueError):
        pass
    return "", None


def short_path(path: Path, limit: int = 120) -> str:
    """``path`` as text, its middle cut when it is longer than ``limit`` characters."""
    text = str(path)
    return text if len(text) <= limit else text[: limit // 2] + "..." + text[-limit // 2:]


@contextmanager
def hub_offline() -> Iterator[None]:
    """Forbid Hugging Face hub traffic (transformers, huggingface_hub, datasets) inside the block.

    Sets ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` in the environment and in the libraries'
    already-imported constants, and restores all of them on exit.
    """
    import huggingface_hub.constants

    hub_constants: Any = huggingface_hub.constants

    env_keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved_env = {k: os.environ.get(k) for k in env_keys}
    saved_hub = hub_constants.HF_HUB_OFFLINE
    ds_config: Any = sys.modules.get("datasets.config")
    saved_ds = (
        (getattr(ds_config, "HF_HUB_OFFLINE", None), getattr(ds_config, "HF_DATASETS_OFFLINE", None))
        if ds_config is not None
        else None
    )
    try:
        for k in env_keys:
            os.environ[k] = "1"
        hub_constants.HF_HUB_OFFLINE = True
        if ds_config is not None:
            ds_config.HF_HUB_OFFLINE = True
            ds_config.HF_DATASETS_OFFLINE = True
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        hub_constants.HF_HUB_OFFLINE = saved_hub
        if ds_config is not None and saved_ds is not None:
            ds_config.HF_HUB_OFFLINE, ds_config.HF_DATASETS_OFFLINE = saved_ds


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from (``__cause__`` / ``__context__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_hub_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says the Hugging Face hub could not be reached and the cache had nothing."""
    names = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError", "ConnectTimeout", "gaierror"}
    for e in exception_chain(exc):
        if any(cls.__name__ in names for cls in type(e).__mro__):
            return True
        text = str(e).lower()
        if any(
            phrase in text
            for phrase in ("couldn't connect to", "couldn't reach", "offline mode", "outgoing traffic has been disabled")
        ):
            return True
    return False


def short(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, cut to ``limit`` characters."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_text(value: Any, limit: int = 60) -> str:
    """A config value as its JSON text (``repr`` when it has none), cut to ``limit`` characters with the length
    said (``[0, 0, 0, ... (8000 characters)``)."""
    import json

    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit * 3 // 4] + f"... ({len(text)} characters)"


def safetensors_header(file: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": ...}``),
    read without torch. ``OSError`` when unreadable; ``ValueError`` when it is no safetensors header, an
    entry is malformed (see :func:`_check_header_entry`; the message names the tensor), or the file is
    shorter than its header or than the tensors the header lists (a truncated copy)."""
    import json

    with open(file, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        if not 0 < size < (1 << 27):
            raise ValueError("no safetensors header")
        actual = os.fstat(fh.fileno()).st_size
        if 8 + size > actual:  # read as it is, the cut header would be reported as bad UTF-8 or JSON
            raise ValueError(f"its header is longer than the file: the first 8 bytes give a header of {size} bytes, "
                             f"but only {max(actual - 8, 0)} bytes follow (the file is cut off)")
        try:
            header = json.loads(fh.read(size))
        except RecursionError as e:  # JSON nested deeper than Python's stack: no header either
            raise ValueError("no safetensors header (its JSON is nested too deeply)") from e
    if not isinstance(header, dict):
        raise ValueError("no safetensors header")
    for name, entry in header.items():
        _check_header_entry(name, entry)
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    needed, actual = 8 + size + max(ends, default=0), file.stat().st_size
    if actual < needed:
        raise ValueError(f"the file has {actual} bytes, its header lists {needed}")
    return header


_USIZE = 1 << 64
"""safetensors stores sizes and offsets as unsigned 64-bit integers."""


def _check_header_entry(name: str, entry: Any) -> None:
    """A ``ValueError`` naming the tensor unless ``entry`` is ``{"dtype": str, "shape": [n, ...],
    "data_offsets": [start, end]}`` (whole numbers >= 0, ``start <= end``); ``__metadata__`` must map
    strings to strings."""
    def natural(n: Any) -> bool:
        return isinstance(n, int) and not isinstance(n, bool) and 0 <= n < _USIZE

    def shown(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    if name == "__metadata__":
        if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
            raise ValueError(f"__metadata__ is {shown(entry)}, not an object of strings")
        return
    what = f"tensor {shown(name)}"
    if not isinstance(entry, dict):
        raise ValueError(f"the entry of {what} is {shown(entry)}, not an object with dtype, shape and data_offsets")
    if not isinstance(entry.get("dtype"), str):
        raise ValueError(f"{what} has dtype {shown(entry.get('dtype'))}, not a dtype name such as \"I64\"")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(natural(n) for n in shape):
        raise ValueError(f"{what} has shape {shown(shape)}, not a list of whole numbers >= 0")
    offsets = entry.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(natural(n) for n in offsets)
            and offsets[0] <= offsets[1]):
        raise ValueError(f"{what} has data_offsets {shown(offsets)}, not [start, end] with 0 <= start <= end")
