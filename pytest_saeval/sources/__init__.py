"""Sources: turn a model / SAE / token-data description into loaded objects.

- :mod:`.models`: ``load_model`` (Hugging Face folder, TransformerLens name or factory), ``resolve_device``.
- :mod:`.saes`: ``load_saes`` (SAE Lens folder, pretrained release + id or regex, or factory).
- :mod:`.data`: ``load_token_file``, ``check_tokens``, ``tokens_from_dataset``.
- :mod:`.hashing`: ``tensor_hash``, ``state_dict_hash``, ``model_hash``.

This module holds what the three loaders share (offline mode, ``module:function`` factories, path
resolution). Nothing here imports torch, TransformerLens or SAE Lens at import time. Every error is
one :class:`~pytest_saeval.errors.SourceError` (or ``InputError``) without a file location: the
session fills it in with ``err.located(file=..., line=..., key=...)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_saeval.errors import SourceError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from pytest_saeval.sources.data import check_tokens, load_token_file, tokens_from_dataset
    from pytest_saeval.sources.hashing import model_hash, state_dict_hash, tensor_hash
    from pytest_saeval.sources.models import ModelInfo, load_model, model_info, resolve_device
    from pytest_saeval.sources.saes import load_saes

_LAZY = {
    "load_model": "models",
    "model_info": "models",
    "ModelInfo": "models",
    "resolve_device": "models",
    "load_saes": "saes",
    "load_token_file": "data",
    "check_tokens": "data",
    "tokens_from_dataset": "data",
    "tensor_hash": "hashing",
    "state_dict_hash": "hashing",
    "model_hash": "hashing",
}

__all__ = ["call_factory", "hub_offline", "resolve_path", *_LAZY]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pytest_saeval.sources' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def resolve_path(path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None) -> Path:
    """``path`` as given when absolute (``~`` expanded), else relative to ``base_dir`` (or the cwd)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


@contextmanager
def hub_offline() -> Iterator[None]:
    """Forbid Hugging Face hub traffic (transformers, huggingface_hub, datasets) inside the block.

    Sets ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` in the environment and in the libraries'
    already-imported constants, and restores all of them on exit.
    """
    import huggingface_hub.constants as hub_constants

    env_keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved_env = {k: os.environ.get(k) for k in env_keys}
    saved_hub = hub_constants.HF_HUB_OFFLINE
    ds_config = sys.modules.get("datasets.config")
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


def call_factory(spec: str, *, base_dir: str | os.PathLike[str] | None = None, what: str = "object") -> Any:
    """Import ``module:function`` and return ``function()``.

    ``module`` is a dotted module path importable from ``sys.path`` or from ``base_dir`` (the suite
    file's folder, added to ``sys.path`` while importing), or a ``.py`` file path (relative to
    ``base_dir``). ``function`` may be dotted (``Class.method``). ``what`` names the expected result
    in error messages (``"model"``, ``"SAE"``).
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise SourceError(
            f"factory {spec!r} is not of the form 'module:function'",
            fix="write the factory as 'package.module:function' (a module on sys.path or next to the suite file)",
        )
    module_name, func_name = (part.strip() for part in spec.split(":"))
    is_file = module_name.endswith(".py")
    if (
        not module_name
        or not func_name
        or not all(_IDENTIFIER.fullmatch(p) for p in func_name.split("."))
        or (not is_file and not all(_IDENTIFIER.fullmatch(p) for p in module_name.split(".")))
    ):
        raise SourceError(
            f"factory {spec!r} is not of the form 'module:function'",
            fix="write the factory as 'package.module:function' with Python identifiers on both sides",
        )

    module = _import_factory_module(module_name, spec=spec, base_dir=base_dir, is_file=is_file)

    target: Any = module
    for i, part in enumerate(func_name.split(".")):
        if not hasattr(target, part):
            owner = module_name if i == 0 else ".".join(func_name.split(".")[:i])
            public = [n for n in dir(target) if not n.startswith("_")]
            raise SourceError(
                f"factory {spec!r}: {owner!r} has no attribute {part!r}{did_you_mean(part, public)}",
                fix=f"define {func_name}() in {module_name} or correct the name after ':'",
            )
        target = getattr(target, part)
    if not callable(target):
        raise SourceError(
            f"factory {spec!r}: {func_name!r} is a {type(target).__name__}, not a function",
            fix=f"point the factory at a function that takes no arguments and returns the {what}",
        )
    try:
        return target()
    except SourceError:
        raise
    except Exception as e:  # the user's code: report whatever it raised
        raise SourceError(
            f"factory {spec!r} raised {short(e)}",
            fix=f"fix {func_name}() in {module_name} so that it returns the {what} when called with no arguments",
        ) from e


def _import_factory_module(module_name: str, *, spec: str, base_dir: Any, is_file: bool) -> Any:
    if is_file:
        file = resolve_path(module_name, base_dir)
        if not file.is_file():
            raise SourceError(
                f"factory {spec!r}: module file '{file}' does not exist",
                fix="give the .py file relative to the suite file, or use a dotted module name",
            )
        unique = "_saeval_factory_" + re.sub(r"\W", "_", str(file.resolve()))
        if unique in sys.modules:
            return sys.modules[unique]
        mod_spec = importlib.util.spec_from_file_location(unique, file)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        added = _push_sys_path(file.parent)
        try:
            sys.modules[unique] = module
            mod_spec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(unique, None)
            raise SourceError(
                f"factory {spec!r}: importing '{file}' raised {short(e)}",
                fix="fix the error in that module (or its imports)",
            ) from e
        finally:
            _pop_sys_path(added)
        return module

    added = _push_sys_path(Path(base_dir)) if base_dir is not None else None
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            where = f" (looked on sys.path and in '{base_dir}')" if base_dir is not None else " (looked on sys.path)"
            raise SourceError(
                f"factory {spec!r}: module {module_name!r} not found{where}",
                fix="install the package that provides it, put the module next to the suite file, or correct the name before ':'",
            ) from e
        raise SourceError(
            f"factory {spec!r}: importing {module_name!r} failed because module {missing!r} is missing",
            fix=f"install {missing!r} in this environment",
        ) from e
    except Exception as e:
        raise SourceError(
            f"factory {spec!r}: importing {module_name!r} raised {short(e)}",
            fix="fix the error in that module (or its imports)",
        ) from e
    finally:
        _pop_sys_path(added)


def _push_sys_path(folder: Path) -> str | None:
    entry = str(folder.resolve())
    if entry in sys.path:
        return None
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    return entry


def _pop_sys_path(entry: str | None) -> None:
    if entry is not None:
        try:
            sys.path.remove(entry)
        except ValueError:
            pass
